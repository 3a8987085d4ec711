package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary act as a supervised khosim child that
// ends as the variable says (see TestMain).
const childEnv = "KHOSIM_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(testChild(mode))
	}
	os.Exit(m.Run())
}

func recurse(n int) int {
	var pad [128]byte
	pad[n%128] = byte(n)
	return recurse(n+1) + int(pad[0])
}

// testChild ends the way mode says: a fatal error, an unrecovered panic,
// an exit status, or a signal.
func testChild(mode string) int {
	if !supervised() {
		return 99
	}
	switch mode {
	case "overflow": // fatal error: stack overflow
		debug.SetMaxStack(1 << 20)
		recurse(0)
	case "panic": // in another goroutine, where nothing recovers it
		done := make(chan bool)
		go func() { panic("boom") }()
		<-done
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "status2":
		os.Stderr.WriteString("t.scn:1:1: a parse error\n")
		return exitUsage
	case "status1":
		return exitFail
	}
	return exitOK
}

// TestSupervise checks the exit status of a supervised command: a Go
// runtime crash (which the runtime ends with status 2, a usage error's)
// exits 3; an exit status passes through; a signal gives 128+N.
func TestSupervise(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		mode   string
		status int
		stderr string
	}{
		{"overflow", exitInternal, "fatal error: stack overflow"},
		{"panic", exitInternal, "panic: boom"},
		{"status2", exitUsage, "a parse error"},
		{"status1", exitFail, ""},
		{"ok", exitOK, ""},
		{"kill", 128 + int(syscall.SIGKILL), "killed by signal killed"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := append(os.Environ(), childEnv+"="+tc.mode)
			status, ok := supervise(exe, []string{"-test.run=^$"}, env, nil, &stdout, &stderr)
			if !ok {
				t.Fatal("the child did not start")
			}
			if status != tc.status {
				t.Errorf("status %d, want %d; stderr:\n%s", status, tc.status, firstLines(stderr.String(), 5))
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, firstLines(stderr.String(), 5))
			}
			if tc.status == exitInternal && !strings.Contains(stderr.String(), "khosim: internal error: the simulator crashed") {
				t.Errorf("no note of the crash:\n%s", stderr.String())
			}
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
