package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"khosim/kbuild"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

func init() {
	register(&command{
		name:    "run",
		args:    "[-v] [--json] [--seed N] [--build KEY=VALUE]... [--dump-fdt FILE.dtb] FILE.scn...",
		summary: "replay scenario files, each on a fresh machine",
		run:     runCmd,
	})
}

// runFlags are the options of khosim run.
type runFlags struct {
	verbose bool
	json    bool
	seed    uint64
	dumpFDT string
	build   []scn.BuildKey
}

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

func runCmd(e *env, args []string) int {
	var f runFlags
	fs := flag.NewFlagSet("khosim run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.BoolVar(&f.verbose, "v", false, "echo every statement with its result and the kernel log")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per file on stdout")
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
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: khosim run [-v] [--json] [--seed N] [--build KEY=VALUE]... [--dump-fdt FILE.dtb] FILE.scn...\n")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(files) == 0 {
		fs.Usage()
		return exitUsage
	}

	// Parse everything before running anything.
	scripts := make([]*scn.Script, 0, len(files))
	bad := false
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(e.stderr, "khosim: %v\n", err)
			bad = true
			continue
		}
		s, err := scenarios.Parse(name, src)
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			bad = true
			continue
		}
		scripts = append(scripts, s)
	}
	if bad {
		return exitUsage
	}

	opts := scenarios.Options{Seed: f.seed, Build: f.build}
	if f.verbose {
		opts.Verbose = e.stdout
	}
	if e.tty {
		opts.Progress = newProgressBar(e.stderr).update
	}
	if e.tune != nil {
		e.tune(&opts)
	}
	status := exitOK
	var lastFDT []byte
	enc := json.NewEncoder(e.stdout)
	for _, s := range scripts {
		res := scenarios.Run(s, opts)
		for _, fl := range res.Failures {
			fmt.Fprintln(e.stderr, fl.Format(res.File))
		}
		if f.json {
			if err := enc.Encode(jsonResult(res)); err != nil {
				fmt.Fprintf(e.stderr, "khosim: %v\n", err)
				return exitInternal
			}
		} else {
			fmt.Fprintln(e.stdout, res.Summary())
		}
		switch {
		case res.Internal:
			status = exitInternal
		case !res.Passed && status == exitOK:
			status = exitFail
		}
		if res.FDT != nil {
			lastFDT = res.FDT
		}
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
