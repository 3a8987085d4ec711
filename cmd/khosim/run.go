package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"khosim/kbuild"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

func init() {
	register(&command{
		name:    "run",
		args:    runArgs,
		summary: "replay scenario files, each on a fresh machine",
		run:     runCmd,
		flags:   true,
	})
}

// runFlags are the options of khosim run.
type runFlags struct {
	verbose   bool
	json      bool
	tap       bool
	junit     string // --junit FILE
	run       string // -run REGEXP
	keepGoing bool
	seed      uint64
	dumpFDT   string
	report    string // --report DIR (report.go)
	build     []scn.BuildKey
}

const runArgs = "[-v] [--json | --tap] [--junit FILE] [-run REGEXP] [--keep-going] [--seed N] [--build KEY=VALUE]... [--dump-fdt FILE.dtb] [--report DIR] FILE.scn|DIR|DIR/...  ..."

// parseInterleaved parses flags that may come before, between or after
// the file names, as `khosim run a.scn -v b.scn` users expect; "--" ends
// the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var files []string
	for len(args) > 0 {
		before := len(args)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := before - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(files, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		files = append(files, rest[0])
		args = rest[1:]
	}
	return files, nil
}

// runCmd is `khosim run`: every file named (directories and DIR/...
// patterns expanded, -run filtering) is parsed before anything runs; a
// parse error or an unreadable file stops the run (exit 2) unless
// --keep-going, which runs the others. Every file gets an outcome, which
// --json, --tap and --junit report for a CI; the text output ends with a
// totals line. Exit status: 3 for an internal error, else 2 for a usage
// error, a parse error or a missing file, else 1 for a failed file, else
// 0.
func runCmd(e *env, args []string) int {
	var f runFlags
	fs := flag.NewFlagSet("khosim run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.BoolVar(&f.verbose, "v", false, "echo every statement with its result and the kernel log (on stderr with --json or --tap)")
	fs.BoolVar(&f.json, "json", false, "print one JSON record per file on stdout, whatever became of it")
	fs.BoolVar(&f.tap, "tap", false, "print the outcomes as TAP version 13 on stdout (kselftest style)")
	fs.StringVar(&f.junit, "junit", "", "also write the outcomes as JUnit XML to `FILE`")
	fs.StringVar(&f.run, "run", "", "run only the files whose path matches `REGEXP`")
	fs.BoolVar(&f.keepGoing, "keep-going", false, "run the files that parse even when others do not (or are missing)")
	fs.Uint64Var(&f.seed, "seed", 0, "machine seed of files whose machine statement has no seed=")
	fs.StringVar(&f.dumpFDT, "dump-fdt", "", "save the last KHO handover FDT to `FILE.dtb`")
	fs.Func("build", "boot every file's kernel with `KEY=VALUE` (e.g. kho=radix) unless its boot gives that key; repeatable", func(v string) error {
		key, value, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("want KEY=VALUE, e.g. kho=radix")
		}
		if _, err := kbuild.Default().With(key, value); err != nil {
			return err
		}
		f.build = append(f.build, scn.BuildKey{Key: key, Value: value})
		return nil
	})
	fs.StringVar(&f.report, "report", "", "write an HTML report of the runs (memory maps, timeline, handover) to `DIR`/index.html")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: khosim run %s\n", runArgs)
		fs.PrintDefaults()
	}
	usage := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		if msg != "" {
			fmt.Fprintf(e.stderr, "khosim run: %s\n", msg)
		}
		if f.json || slices.Contains(args, "--json") || slices.Contains(args, "-json") {
			_ = newJSONEncoder(e.stdout).Encode(jsonOutcome{Status: "usage_error", Problem: msg, Failures: []jsonFailure{}})
		}
		return exitUsage
	}
	names, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return usage("%v", err)
	}
	if f.json && f.tap {
		return usage("--json and --tap both write stdout: choose one")
	}
	var filter *regexp.Regexp
	if f.run != "" {
		if filter, err = regexp.Compile(f.run); err != nil {
			return usage("-run: %v", err)
		}
	}
	if len(names) == 0 {
		fs.Usage()
		return usage("")
	}
	files := expandPatterns(names, filter)
	if len(files) == 0 {
		return usage("-run %q matches none of the files", f.run)
	}
	machineOut := f.json || f.tap // stdout is for a program

	// Parse everything before running anything.
	outs := make([]outcome, len(files))
	scripts := make([]*scn.Script, len(files))
	bad := false
	for i, name := range files {
		outs[i].file = name
		src, err := os.ReadFile(name)
		if err != nil {
			outs[i].kind, outs[i].problem = outMissing, err.Error()
			fmt.Fprintf(e.stderr, "khosim: %v\n", err)
			bad = true
			continue
		}
		s, err := scenarios.Parse(name, src)
		if err != nil {
			outs[i].kind, outs[i].problem = outParseError, err.Error()
			fmt.Fprintln(e.stderr, err)
			bad = true
			continue
		}
		scripts[i] = s
	}

	opts := scenarios.Options{Seed: f.seed, Build: f.build}
	if f.verbose {
		opts.Verbose = e.stdout
		if machineOut {
			opts.Verbose = e.stderr
		}
	}
	if e.tty {
		opts.Progress = newProgressBar(e.stderr).update
	}
	if e.tune != nil {
		e.tune(&opts)
	}
	status := exitOK
	if bad {
		status = exitUsage
	}
	var lastFDT []byte
	reps := &reports{dir: f.report}
	for i, s := range scripts {
		if s == nil {
			continue
		}
		if bad && !f.keepGoing {
			outs[i].kind, outs[i].problem = outNotRun, "not run: another file did not parse or is missing (--keep-going runs it)"
			continue
		}
		res := scenarios.Run(s, withReport(opts, reps.start(s.File)))
		outs[i].res = res
		for _, fl := range res.Failures {
			fmt.Fprintln(e.stderr, fl.Format(res.File))
		}
		if !machineOut {
			fmt.Fprintln(e.stdout, res.Summary())
		}
		switch {
		case res.Internal:
			outs[i].kind = outInternal
			status = exitInternal
		case !res.Passed:
			outs[i].kind = outFailed
			if status == exitOK {
				status = exitFail
			}
		default:
			outs[i].kind = outPassed
		}
		if res.FDT != nil {
			lastFDT = res.FDT
		}
	}
	switch {
	case f.json:
		enc := newJSONEncoder(e.stdout)
		for _, o := range outs {
			if err := enc.Encode(jsonRecord(o)); err != nil {
				fmt.Fprintf(e.stderr, "khosim: %v\n", err)
				return exitInternal
			}
		}
		fmt.Fprintln(e.stderr, totals(outs))
	case f.tap:
		writeTAP(e.stdout, outs)
	case !bad || f.keepGoing:
		fmt.Fprintln(e.stdout, totals(outs))
	}
	if f.junit != "" {
		if err := writeJUnitFile(f.junit, outs); err != nil {
			fmt.Fprintf(e.stderr, "khosim: --junit: %v\n", err)
			if status == exitOK {
				status = exitFail
			}
		}
	}
	if !reps.finish(e) && status == exitOK {
		status = exitFail
	}
	if f.dumpFDT != "" {
		if lastFDT == nil {
			fmt.Fprintf(e.stderr, "khosim: --dump-fdt: no file activated KHO, no handover FDT to save\n")
		} else if err := os.WriteFile(f.dumpFDT, lastFDT, 0o644); err != nil {
			fmt.Fprintf(e.stderr, "khosim: --dump-fdt: %v\n", err)
			if status == exitOK {
				status = exitFail
			}
		}
	}
	return status
}

// writeJUnitFile writes the JUnit report to path.
func writeJUnitFile(path string, outs []outcome) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeJUnit(out, outs); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// jsonFile is the --json object of one file.
type jsonFile struct {
	File     string              `json:"file"`
	Passed   bool                `json:"passed"`
	Internal bool                `json:"internal_error"`
	Failures []scenarios.Failure `json:"failures"`
	Stats    jsonStats           `json:"stats"`
}

type jsonStats struct {
	Statements     int                `json:"statements"`
	Kexecs         int                `json:"kexecs"`
	Reboots        int                `json:"reboots"`
	PreservedPages uint64             `json:"preserved_pages"`
	FDTBytes       uint64             `json:"fdt_bytes"`
	WallMS         float64            `json:"wall_ms"`
	TimingsMS      map[string]float64 `json:"timings_ms"`
	Machine        any                `json:"machine"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func jsonResult(res *scenarios.Result) jsonFile {
	out := jsonFile{
		File:     res.File,
		Passed:   res.Passed,
		Internal: res.Internal,
		Failures: res.Failures,
		Stats: jsonStats{
			Statements:     res.Stats.Statements,
			Kexecs:         res.Stats.Kexecs,
			Reboots:        res.Stats.Reboots,
			PreservedPages: res.Stats.PreservedPages,
			FDTBytes:       res.Stats.FDTBytes,
			WallMS:         ms(res.Stats.Wall),
			TimingsMS:      map[string]float64{},
			Machine:        res.Stats.Machine,
		},
	}
	if out.Failures == nil {
		out.Failures = []scenarios.Failure{}
	}
	for k, d := range res.Stats.Timings {
		out.Stats.TimingsMS[k] = ms(d)
	}
	return out
}

// progressBar draws Options.Progress reports on a terminal, at most ten
// times a second, and erases itself when a step finishes.
type progressBar struct {
	w    io.Writer
	last time.Time
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w} }

func (b *progressBar) update(p scenarios.Progress) {
	if p.Finished {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.last = time.Time{}
		return
	}
	if now := time.Now(); now.Sub(b.last) >= 100*time.Millisecond {
		b.last = now
		const width = 30
		frac := float64(p.Done) / float64(max(p.Total, 1))
		n := int(frac * width)
		what := p.What
		if len(what) > 40 {
			what = what[:37] + "..."
		}
		fmt.Fprintf(b.w, "\r\x1b[K%-40s [%s%s] %3.0f%% of %s", what,
			repeat('#', n), repeat('.', width-n), frac*100, scn.FormatSize(p.Total))
	}
}

func repeat(c byte, n int) string {
	if n <= 0 {
		return ""
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// oneScenarioFile parses the flags of a command that takes one scenario
// file (memmap, reduce) and reads the file. When ok is false, status is
// the command's exit status: 0 for -h, 2 for a usage error or an
// unreadable file (said on stderr).
func oneScenarioFile(e *env, fs *flag.FlagSet, args []string) (file string, src []byte, status int, ok bool) {
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, exitOK, false
		}
		return "", nil, exitUsage, false
	}
	if len(files) != 1 {
		fs.Usage()
		return "", nil, exitUsage, false
	}
	src, err = os.ReadFile(files[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "khosim: %v\n", err)
		return "", nil, exitUsage, false
	}
	return files[0], src, exitOK, true
}
