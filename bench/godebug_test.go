package bench

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestReexec runs this test binary as a child that calls Reexec and
// prints the GODEBUG it ends up with: madvdontneed=0 is added to what was
// there, and a GODEBUG that already chooses madvdontneed is kept.
func TestReexec(t *testing.T) {
	if os.Getenv("KHOSIM_REEXEC_CHILD") == "1" {
		Reexec()
		fmt.Printf("child GODEBUG=%q\n", os.Getenv("GODEBUG"))
		return
	}
	for _, tc := range []struct{ in, want string }{
		{"", GODEBUG},
		{"gctrace=0", "gctrace=0," + GODEBUG},
		{"madvdontneed=1", "madvdontneed=1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReexec$")
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
		cmd.Env = append(cmd.Env, "KHOSIM_REEXEC_CHILD=1", "GODEBUG="+tc.in)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GODEBUG=%q: %v\n%s", tc.in, err, out)
		}
		if want := fmt.Sprintf("child GODEBUG=%q\n", tc.want); !strings.Contains(string(out), want) {
			t.Errorf("GODEBUG=%q: child printed %q, want %q", tc.in, out, want)
		}
	}
}
