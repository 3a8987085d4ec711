package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
)

// superviseEnv, in the environment of the child that runs the command,
// holds the number of the descriptor its crash output goes to.
const superviseEnv = "KHOSIM_CRASH_FD"

// crashFD is that descriptor: the first of exec.Cmd.ExtraFiles.
const crashFD = 3

// maxCrash bounds the crash report the supervisor keeps (it only needs to
// know there was one; the child prints it on stderr too).
const maxCrash = 64 << 10

// A Go runtime crash — a fatal error such as "fatal error: stack
// overflow", or a panic nobody recovered, in any goroutine — ends the
// process with status 2, which for khosim means a usage or parse error.
// The runner recovers the panics of a statement (exit 3), but a fatal
// error cannot be recovered, so khosim runs every command in a child
// process of its own binary and watches it: the child sends its crash
// output (runtime/debug.SetCrashOutput) to a pipe, and a child that wrote
// anything there crashed, whatever its status; the supervisor then exits
// with exitInternal. Everything else passes through: the child inherits
// stdin, stdout and stderr (so terminals are still terminals), and its
// exit status is the command's.

// supervised reports whether this process is the child of a supervisor,
// and if so points the runtime's crash output at the supervisor's pipe.
func supervised() bool {
	v := os.Getenv(superviseEnv)
	if v == "" {
		return false
	}
	fd, err := strconv.Atoi(v)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "crash-output")
	if f == nil {
		return false
	}
	defer f.Close()
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		return false
	}
	return true
}

// supervise runs exe with args in a child process and returns the exit
// status for the command: the child's, or exitInternal if it crashed, or
// 128+N if a signal N killed it. ok is false if the child could not be
// started (the caller then runs the command itself).
func supervise(exe string, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (status int, ok bool) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, false
	}
	defer r.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(env, fmt.Sprintf("%s=%d", superviseEnv, crashFD))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, false
	}
	w.Close()

	var crash bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(&crash, io.LimitReader(r, maxCrash))
		_, _ = io.Copy(io.Discard, r)
	})
	// Ctrl-C reaches the child from the terminal; a signal sent to the
	// supervisor alone is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	for waiting := true; waiting; {
		select {
		case s := <-sigs:
			if s != os.Interrupt {
				_ = cmd.Process.Signal(s)
			}
		case waitErr = <-done:
			waiting = false
		}
	}
	wg.Wait()

	if crash.Len() > 0 {
		fmt.Fprintf(stderr, "khosim: internal error: the simulator crashed (a Go runtime fatal error or an unrecovered panic, reported above); exit status %d\n", exitInternal)
		return exitInternal, true
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// A reader that went away (SIGPIPE) or a Ctrl-C needs no word.
			if sig := ws.Signal(); sig != syscall.SIGPIPE && sig != syscall.SIGINT {
				fmt.Fprintf(stderr, "khosim: killed by signal %v\n", sig)
			}
			return 128 + int(ws.Signal()), true
		}
		return ee.ExitCode(), true
	}
	if waitErr != nil {
		fmt.Fprintf(stderr, "khosim: %v\n", waitErr)
		return exitInternal, true
	}
	return exitOK, true
}
