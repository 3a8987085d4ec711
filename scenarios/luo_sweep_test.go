package scenarios

import (
	"fmt"
	"strings"
	"testing"
)

// sweepFiles are the memfds of the LUO fault sweeps: token, session, size
// and data seed. Three files in two sessions, so that a fault can hit the
// first, a middle and the last of them.
var luoSweepFiles = []struct {
	token   int
	session string
	size    string
	seed    int
}{
	{1, "s", "64KiB", 1},
	{2, "s", "16KiB", 2},
	{3, "t", "8KiB", 3},
}

// luoSweep writes the scenario of one sweep step: the files preserved
// (the preserveFails-th PRESERVE_FD failing with ENOMEM when not 0), the
// kexec (failing first with EIO when freezeFails, at that file), and the
// next kernel retrieving every token (the retrieveFails-th restore
// failing with EIO when not 0), finishing, and the leak check.
func luoSweep(site string, nth int) string {
	var b strings.Builder
	b.WriteString("machine memory=128MiB seed=34\nboot luo=on\nlet idle = frames(used)\nprocess p uid=0\n")
	b.WriteString("p: lu = open(\"/dev/liveupdate\", O_RDWR)\n")
	b.WriteString("p: s = ioctl(lu, LIVEUPDATE_IOCTL_CREATE_SESSION, name=\"s\")\n")
	b.WriteString("p: t = ioctl(lu, LIVEUPDATE_IOCTL_CREATE_SESSION, name=\"t\")\n")
	if site == "luo_preserve" {
		fmt.Fprintf(&b, "fault luo_preserve nth=%d\n", nth)
	}
	for i, f := range luoSweepFiles {
		fmt.Fprintf(&b, "p: m%d = memfd_create(\"m%d\", 0)\n", f.token, f.token)
		fmt.Fprintf(&b, "p: pwrite(m%d, 0, %s, rand(%d))\n", f.token, f.size, f.seed)
		b.WriteString("let before = frames(used)\n")
		if site == "luo_preserve" && i+1 == nth {
			fmt.Fprintf(&b, "p: ioctl(%s, LIVEUPDATE_SESSION_PRESERVE_FD, fd=m%d, token=%d) -> ENOMEM\n", f.session, f.token, f.token)
			b.WriteString("expect frames(used) == before\n")
			fmt.Fprintf(&b, "p: ftruncate(m%d, 1MiB)\n", f.token) // not frozen
			continue
		}
		fmt.Fprintf(&b, "p: ioctl(%s, LIVEUPDATE_SESSION_PRESERVE_FD, fd=m%d, token=%d)\n", f.session, f.token, f.token)
	}
	b.WriteString("expect invariants\n")
	if site == "luo_freeze" {
		b.WriteString("let before = frames(used)\n")
		fmt.Fprintf(&b, "fault luo_freeze nth=%d\nkexec -> EIO\n", nth)
		b.WriteString("expect frames(used) == before\nexpect frames(preserved) == 0\nexpect invariants\n")
		for _, f := range luoSweepFiles {
			fmt.Fprintf(&b, "expect content(p:m%d, 0, %s) == rand(%d)\n", f.token, f.size, f.seed)
			fmt.Fprintf(&b, "p: ftruncate(m%d, 1MiB) -> EPERM\n", f.token) // still frozen
		}
	}
	if site == "luo_retrieve" {
		fmt.Fprintf(&b, "fault luo_retrieve nth=%d\n", nth)
	}
	b.WriteString("kexec\nexpect frames(preserved) == 0\nprocess p uid=0\n")
	b.WriteString("p: lu = open(\"/dev/liveupdate\", O_RDWR)\n")
	b.WriteString("p: s = ioctl(lu, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name=\"s\")\n")
	b.WriteString("p: t = ioctl(lu, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name=\"t\")\n")
	for i, f := range luoSweepFiles {
		call := fmt.Sprintf("p: m%d = ioctl(%s, LIVEUPDATE_SESSION_RETRIEVE_FD, token=%d)", f.token, f.session, f.token)
		switch {
		case site == "luo_preserve" && i+1 == nth:
			b.WriteString(call + " -> ENOENT\n")
		case site == "luo_retrieve" && i+1 == nth:
			b.WriteString(call + " -> EIO\n" + call + " -> EIO\n")
		default:
			b.WriteString(call + "\n")
			fmt.Fprintf(&b, "expect size(p:m%d) == %s\n", f.token, f.size)
			fmt.Fprintf(&b, "expect content(p:m%d, 0, %s) == rand(%d)\n", f.token, f.size, f.seed)
		}
	}
	b.WriteString("p: ioctl(s, LIVEUPDATE_SESSION_FINISH)\np: ioctl(t, LIVEUPDATE_SESSION_FINISH)\nexpect invariants\n")
	b.WriteString("exit p\nexpect frames(preserved) == 0\nexpect frames(used) == idle\nexpect invariants\n")
	return b.String()
}

// TestLUOFaultSweeps sweeps each LUO fault site over every file of one
// workload, through the language: the contract's errno at the n-th file,
// nothing lost (every other file comes back with its data; after a failed
// reboot path, every file is still preserved and frozen and the next
// kexec carries all of them), nothing leaked (the kernel ends with only
// LUO's own blocks in use). luo/fault_test.go sweeps the same sites in Go.
func TestLUOFaultSweeps(t *testing.T) {
	for _, site := range []string{"luo_preserve", "luo_freeze", "luo_retrieve"} {
		for nth := 1; nth <= len(luoSweepFiles); nth++ {
			t.Run(fmt.Sprintf("%s/%d", site, nth), func(t *testing.T) {
				src := luoSweep(site, nth)
				res := runSource(t, site+".scn", src, Options{})
				for _, f := range res.Failures {
					t.Errorf("%s\nscenario:\n%s", f.Format(res.File), src)
				}
			})
		}
	}
	// One past the last file, each site never fires: the fault stays armed
	// and the workload is carried whole.
	src := strings.Replace(luoSweep("", 0), "boot luo=on\n", "boot luo=on\nfault luo_freeze nth=4\n", 1)
	if res := runSource(t, "beyond.scn", src, Options{}); !res.Passed {
		t.Errorf("luo_freeze nth=4: %v", res.Failures)
	}
}
