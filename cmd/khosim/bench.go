package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"khosim/bench"
	"khosim/kbuild"
)

func init() {
	register(&command{
		name:    "bench",
		args:    "[--sizes 64MiB,256MiB,1GiB,4GiB] [--orders 0,9] [--designs stash,seal,luo] [--kho arrays,bitmaps,radix] [--preserve SIZES] [--machine SIZE] [--runs N] [--warmup N] [--json] [--cpuprofile FILE] [-v]",
		summary: "measure the blackout of each live-update design against a copy-out/copy-in baseline (docs/performance.md)",
		run: func(e *env, args []string) int {
			return benchMain(args, e.stdout, e.stderr)
		},
		flags: true,
	})
}

// benchFlags are the options of khosim bench.
type benchFlags struct {
	sizes    []uint64
	orders   []int
	designs  []bench.Design
	trackers []kbuild.Tracker
	runs     int
	warmup   int
	json     bool
	verbose  bool
	cpuprof  string
	preserve []uint64 // --preserve: P4's reserve+serialize rows instead of handover rows
	machine  uint64   // --machine: P5's big-machine handover
}

// parseBenchFlags parses khosim bench's command line.
func parseBenchFlags(args []string, stderr io.Writer) (benchFlags, error) {
	f := benchFlags{sizes: bench.DefaultSizes, orders: bench.DefaultOrders, runs: bench.DefaultRuns, warmup: bench.DefaultWarmup,
		designs: []bench.Design{bench.DesignStash}, trackers: []kbuild.Tracker{kbuild.Default().KHO}}
	fs := flag.NewFlagSet("khosim bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("sizes", "comma-separated memfd `SIZES`, multiples of 2MiB (default 64MiB,256MiB,1GiB,4GiB)", func(s string) error {
		v, err := bench.ParseSizes(s)
		f.sizes = v
		return err
	})
	fs.Func("orders", "comma-separated folio `ORDERS`: 0 (4 KiB pages) and/or 9 (2 MiB folios) (default 0,9)", func(s string) error {
		v, err := bench.ParseOrders(s)
		f.orders = v
		return err
	})
	fs.Func("designs", "comma-separated live-update `DESIGNS`: stash (the RFC), seal (serialize at SEAL), luo (LUO sessions) (default stash)", func(s string) error {
		v, err := bench.ParseDesigns(s)
		f.designs = v
		return err
	})
	fs.Func("kho", "comma-separated KHO `TRACKERS`: arrays, bitmaps, radix (default arrays)", func(s string) error {
		v, err := bench.ParseTrackers(s)
		f.trackers = v
		return err
	})
	fs.Func("preserve", "instead of handover rows, measure reserve (PRESERVE_FD) + serialize (kho finalize) of a fallocated order-0 memfd of each of `SIZES` under each --kho tracker, through LUO (docs/performance.md, P4)", func(s string) error {
		v, err := bench.ParseSizes(s)
		f.preserve = v
		return err
	})
	fs.Func("machine", "`SIZE` of RAM of a big-machine run (P5): each memfd size is fallocated, not filled, and handed over once, by kernels built with deferred_struct_page_init=on; no copy baseline (e.g. --machine 16TiB --sizes 256GiB --orders 9)", func(s string) error {
		v, err := bench.ParseSizes(s)
		if err == nil && len(v) != 1 {
			err = errors.New("one size")
		}
		if err == nil {
			f.machine = v[0]
		}
		return err
	})
	fs.IntVar(&f.runs, "runs", bench.DefaultRuns, "handover cycles per row; the row reports medians")
	fs.IntVar(&f.warmup, "warmup", bench.DefaultWarmup, "untimed handover cycles per row before the measured ones")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per row on stdout (the summary goes to stderr)")
	fs.BoolVar(&f.verbose, "v", false, "print every step's time on stderr")
	fs.StringVar(&f.cpuprof, "cpuprofile", "", "write a CPU profile of the whole run to `FILE`; timed phases carry pprof labels phase=activate|kexec|restore and cycle=warmup|measured")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: khosim bench [--sizes 64MiB,256MiB,1GiB,4GiB] [--orders 0,9] [--designs stash,seal,luo] [--kho arrays,bitmaps,radix] [--preserve SIZES] [--machine SIZE] [--runs N] [--warmup N] [--json] [--cpuprofile FILE] [-v]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "khosim bench: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return f, errors.New("usage")
	}
	if f.runs < 1 {
		fmt.Fprintf(stderr, "khosim bench: --runs must be at least 1\n")
		return f, errors.New("usage")
	}
	if f.warmup < 0 {
		fmt.Fprintf(stderr, "khosim bench: --warmup must not be negative\n")
		return f, errors.New("usage")
	}
	return f, nil
}

// benchMain is `khosim bench`: it measures every (size, order) row and
// prints the table (or JSON rows), the scaling check and the targets.
// Exit status: 0 when every row was measured (a missed target is
// reported, not an error); 1 when a measurement failed; 2 for a usage
// error; 3 for a panic inside the simulator.
func benchMain(args []string, stdout, stderr io.Writer) (status int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "khosim bench: internal error: %v\n%s", p, debug.Stack())
			status = exitInternal
		}
	}()
	f, err := parseBenchFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.cpuprof != "" {
		pf, err := os.Create(f.cpuprof)
		if err != nil {
			fmt.Fprintf(stderr, "khosim bench: %v\n", err)
			return exitFail
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(stderr, "khosim bench: %v\n", err)
			return exitFail
		}
		defer pprof.StopCPUProfile()
	}
	opts := bench.Options{Runs: f.runs, Warmup: f.warmup, Seed: 1}
	if f.verbose {
		opts.Log = stderr
	}
	if len(f.preserve) > 0 {
		return benchPreserve(f, opts, stdout, stderr)
	}
	if f.machine != 0 {
		return benchMachine(f, opts, stdout, stderr)
	}
	var rows []bench.Row
	var failed error
measure:
	for _, s := range f.sizes {
		for _, o := range f.orders {
			for _, d := range f.designs {
				for _, t := range f.trackers {
					if !f.verbose {
						fmt.Fprintf(stderr, "measuring %s order %d %s kho=%s...\n", bench.FormatSize(s), o, d, t)
					}
					opts.Design, opts.KHO = d, t
					r, err := bench.Measure(s, o, opts)
					if err != nil {
						failed = fmt.Errorf("%s order %d %s kho=%s: %w", bench.FormatSize(s), o, d, t, err)
						break measure
					}
					rows = append(rows, r)
				}
			}
		}
	}
	var peak uint64
	for _, r := range rows {
		peak = max(peak, r.PeakRSSBytes)
	}
	if p, err := bench.PeakRSS(); err == nil {
		peak = max(peak, p)
	}
	sum := bench.Summarize(rows, peak)
	if f.json {
		if err := bench.WriteJSON(stdout, rows); err != nil {
			fmt.Fprintf(stderr, "khosim bench: %v\n", err)
			return exitFail
		}
		sum.Write(stderr)
	} else {
		if len(rows) > 0 {
			bench.WriteTable(stdout, rows)
			fmt.Fprintln(stdout)
			sum.Write(stdout)
			fmt.Fprintf(stdout, "(%d handover cycles per row after %d untimed warm-up cycles, medians; times are wall clock on this machine; BLACKOUT = ENTER + KEXEC+BOOT + REOPEN; BLACKOUT/COPY 1/N: the blackout took 1/N of the copies' time)\n", f.runs, f.warmup)
		}
	}
	if failed != nil {
		fmt.Fprintf(stderr, "khosim bench: %s\n", strings.TrimSpace(failed.Error()))
		return exitFail
	}
	return exitOK
}

// benchPreserve is `khosim bench --preserve SIZES`: P4's rows, one per
// (size, tracker), and the ratio line.
func benchPreserve(f benchFlags, opts bench.Options, stdout, stderr io.Writer) int {
	var rows []bench.PreserveRow
	var failed error
	for _, s := range f.preserve {
		for _, t := range f.trackers {
			if !f.verbose {
				fmt.Fprintf(stderr, "measuring preserve %s kho=%s...\n", bench.FormatSize(s), t)
			}
			r, err := bench.MeasurePreserve(s, t, opts)
			if err != nil {
				failed = fmt.Errorf("preserve %s kho=%s: %w", bench.FormatSize(s), t, err)
				break
			}
			rows = append(rows, r)
		}
		if failed != nil {
			break
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(stderr, "khosim bench: %v\n", err)
				return exitFail
			}
		}
	} else if len(rows) > 0 {
		if err := bench.WritePreserveTable(stdout, rows); err != nil {
			fmt.Fprintf(stderr, "khosim bench: %v\n", err)
			return exitFail
		}
	}
	if failed != nil {
		fmt.Fprintf(stderr, "khosim bench: %s\n", strings.TrimSpace(failed.Error()))
		return exitFail
	}
	return exitOK
}

// benchMachine is khosim bench --machine: one big-machine handover
// (bench.MeasureMachine) per size and order.
func benchMachine(f benchFlags, opts bench.Options, stdout, stderr io.Writer) int {
	for _, s := range f.sizes {
		for _, o := range f.orders {
			opts.Design, opts.KHO = f.designs[0], f.trackers[0]
			fmt.Fprintf(stderr, "measuring machine %s, %s order %d...\n", bench.FormatSize(f.machine), bench.FormatSize(s), o)
			row, err := bench.MeasureMachine(f.machine, s, o, opts, opts.Log)
			if err != nil {
				fmt.Fprintf(stderr, "khosim bench: machine %s, %s order %d: %v\n", bench.FormatSize(f.machine), bench.FormatSize(s), o, err)
				return exitFail
			}
			bench.WriteMachine(stdout, row)
		}
	}
	return exitOK
}
