package main

import (
	"flag"
	"fmt"
	"time"

	"khosim/fuzz"
)

func init() {
	register(&command{
		name:    "reduce",
		args:    "[--time D] FILE.scn",
		summary: "shrink a failing scenario to a minimal one failing the same way (stdout; progress on stderr)",
		run:     reduceCmd,
	})
}

// reduceCmd shrinks a failing scenario: exit 0 with the reduced scenario
// on stdout, 1 when the file does not fail.
func reduceCmd(e *env, args []string) int {
	fs := flag.NewFlagSet("khosim reduce", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	budget := fs.Duration("time", 5*time.Minute, "time budget")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: khosim reduce [--time D] FILE.scn\n")
		fs.PrintDefaults()
	}
	file, src, status, ok := oneScenarioFile(e, fs, args)
	if !ok {
		return status
	}
	f, _, _ := fuzz.Check(file, string(src))
	if f == nil {
		fmt.Fprintf(e.stderr, "khosim reduce: %s passes (as written and under the tracker variants): nothing to reduce\n", file)
		return exitFail
	}
	if f.Kind == "parse" {
		fmt.Fprintln(e.stderr, f.Message)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "khosim reduce: %s fails: %s\n", file, f)
	r := &fuzz.Reducer{Budget: *budget, Progress: e.stderr}
	out, rf := r.Reduce(string(src), f)
	if rf != nil {
		fmt.Fprintf(e.stdout, "# %s\n", oneLineMsg(rf.String()))
	}
	fmt.Fprint(e.stdout, out)
	return exitOK
}

func oneLineMsg(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
