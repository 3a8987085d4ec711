// Command khosim is the khosim simulator's command line.
//
//	khosim                       run the built-in demo (the FDBox RFC's 1 GiB memfd across kexec)
//	khosim demo [-v] [--script] [--report DIR]  the same, with options
//	khosim run [-v] [--json] [--seed N] [--dump-fdt FILE.dtb] [--report DIR] FILE.scn...
//	khosim memmap [--svg FILE.svg] [--at NAME] FILE.scn  the memory map at the end or at `snapshot NAME`
//	khosim faults                list the fault-injection sites
//	khosim fuzz [--seed N] [--runs N | --time D] [--out DIR] [--shard K/N]  random scenarios under the oracle
//	khosim reduce FILE.scn       shrink a failing scenario
//	khosim kernels               list the kernel build keys of boot and kexec (also: khosim help kernels)
//	khosim fdt FILE.dtb          print a device tree blob as DTS-like text
//
// Exit status: 0 success; 1 a scenario failed; 2 usage or parse error;
// 3 internal error (a panic inside the simulator).
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"khosim/bench"
	"khosim/scenarios"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFail     = 1
	exitUsage    = 2
	exitInternal = 3
)

// env is what a subcommand runs with: its output streams and whether
// stderr is a terminal (for progress bars).
type env struct {
	stdout, stderr io.Writer
	tty            bool
	// tune, if set, adjusts the options of every run (tests use it to
	// trace or to break a run).
	tune func(*scenarios.Options)
}

// command is a subcommand. To add one, write a file with a
// func init() { register(&command{...}) }.
type command struct {
	name    string
	args    string // the usage line after the name
	summary string // one line for `khosim help`
	run     func(e *env, args []string) int
	// flags: run parses a flag.FlagSet, whose -h prints the flags' help.
	flags bool
}

var commands []*command

// register adds a subcommand.
func register(c *command) {
	commands = append(commands, c)
	slices.SortFunc(commands, func(a, b *command) int { return strings.Compare(a.name, b.name) })
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		bench.Reexec() // returns unless it replaced the process (see bench.GODEBUG)
	}
	// The command runs in a child process, so that a Go runtime crash
	// exits 3, not 2 (supervise.go).
	if !supervised() {
		if exe, err := os.Executable(); err == nil {
			if status, ok := supervise(exe, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr); ok {
				os.Exit(status)
			}
		}
	}
	e := &env{stdout: os.Stdout, stderr: os.Stderr, tty: isTerminal(os.Stderr)}
	os.Exit(khosim(e, os.Args[1:]))
}

// khosim runs the command line args and returns the exit status.
func khosim(e *env, args []string) int {
	if len(args) == 0 {
		return runDemo(e, nil)
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(e, args[1:])
	case "version", "-version", "--version":
		fmt.Fprintln(e.stdout, version())
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "khosim: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return exitUsage
	}
	if wantsHelp(args[1:]) {
		return commandHelp(e, c)
	}
	return c.run(e, args[1:])
}

// wantsHelp reports whether a command's arguments ask for its help: -h,
// -help or --help before any "--". Every command answers them the same
// way (commandHelp), whatever its own parsing.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// commandHelp is the help of one command, on stdout, exit 0: its usage
// line and summary, then its flags for a command that has some.
func commandHelp(e *env, c *command) int {
	fmt.Fprintf(e.stdout, "usage: %s\n    %s\n", strings.TrimSpace("khosim "+c.name+" "+c.args), c.summary)
	if c.flags {
		fmt.Fprintln(e.stdout, "\nflags:")
		quiet := &env{stdout: io.Discard, stderr: flagDefaultsOnly{e.stdout}}
		c.run(quiet, []string{"-h"})
	}
	return exitOK
}

// flagDefaultsOnly passes on a FlagSet's -h output but its own "usage:"
// line, which commandHelp has printed already.
type flagDefaultsOnly struct{ w io.Writer }

func (f flagDefaultsOnly) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("usage: ")) || bytes.HasPrefix(b, []byte("Usage of ")) {
		return len(b), nil
	}
	return f.w.Write(b)
}

// version is `khosim --version`: the module's version and VCS revision
// as the Go toolchain stamped them, and the Go version.
func version() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value[:min(12, len(s.Value))]
			}
		}
	}
	return fmt.Sprintf("khosim %s%s %s", v, rev, runtime.Version())
}

// help prints the usage, or, for `help TOPIC`, the topic: `kernels` (the
// kernel build keys) or a command's usage line and summary.
func help(e *env, topics []string) int {
	switch {
	case len(topics) == 0:
		usage(e.stdout)
		return exitOK
	case len(topics) > 1:
		fmt.Fprintf(e.stderr, "usage: khosim help [TOPIC]\n")
		return exitUsage
	case topics[0] == "kernels":
		printKernels(e.stdout)
		return exitOK
	}
	c := lookup(topics[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "khosim: no help on %q (topics: kernels and the commands)\n\n", topics[0])
		usage(e.stderr)
		return exitUsage
	}
	fmt.Fprintf(e.stdout, "usage: %s\n    %s\n", strings.TrimSpace("khosim "+c.name+" "+c.args), c.summary)
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage:\n  khosim                 run the built-in demo\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n        %s\n", strings.TrimSpace("khosim "+c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "  khosim help [kernels | COMMAND]   (or khosim COMMAND -h)\n        this text, the kernel build keys, or a command's usage\n")
	fmt.Fprintf(w, "  khosim --version\n        the version of khosim\n")
	fmt.Fprintf(w, "\nexit status: 0 ok, 1 scenario failure, 2 usage or parse error, 3 internal error\n")
}

// isTerminal reports whether f is a character device (a terminal), the
// test golang.org/x/term would make without the dependency.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
