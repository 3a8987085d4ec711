package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"khosim/machine"
	htmlreport "khosim/report"
	"khosim/scenarios"
)

func init() {
	register(&command{
		name:    "memmap",
		args:    "[--svg FILE.svg] [--at NAME] [--seed N] FILE.scn",
		summary: "run a scenario and print (or draw as SVG) the physical memory map at its end or at `snapshot NAME`",
		run:     memmapCmd,
		flags:   true,
	})
}

// memmapCmd runs one scenario and shows the running kernel's memory map
// (machine.MemoryMap) after its last statement, or at its `snapshot
// NAME`: as text on stdout (report.WriteMemMapText) or as SVG in a file
// (report.WriteMemMapSVG, "-" for stdout). A failing scenario still
// shows the map where it stopped (exit status 1).
func memmapCmd(e *env, args []string) int {
	fs := flag.NewFlagSet("khosim memmap", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	svg := fs.String("svg", "", "draw the map as SVG into `FILE` (- for stdout) instead of printing it")
	at := fs.String("at", "", "the map at the statement `snapshot NAME` instead of the end")
	seed := fs.Uint64("seed", 0, "machine seed if the machine statement has no seed=")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: khosim memmap [--svg FILE.svg] [--at NAME] [--seed N] FILE.scn\n")
		fs.PrintDefaults()
	}
	file, src, status, ok := oneScenarioFile(e, fs, args)
	if !ok {
		return status
	}
	s, err := scenarios.Parse(file, src)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}

	var snap *htmlreport.Snap
	var snapErr error
	take := func(label string, m *machine.Machine) {
		snap, snapErr = htmlreport.Snapshot(m, label)
	}
	opts := scenarios.Options{Seed: *seed}
	if *at != "" {
		opts.AtSnapshot = func(name string, m *machine.Machine) {
			if name == *at {
				take("snapshot "+name, m)
			}
		}
	} else {
		opts.AtEnd = func(m *machine.Machine) { take("end of "+file, m) }
	}
	if e.tune != nil {
		e.tune(&opts)
	}
	res := scenarios.Run(s, opts)
	for _, fl := range res.Failures {
		fmt.Fprintln(e.stderr, fl.Format(res.File))
	}
	status = exitOK
	switch {
	case res.Internal:
		status = exitInternal
	case !res.Passed:
		status = exitFail
	}
	switch {
	case snapErr != nil:
		fmt.Fprintf(e.stderr, "khosim: memmap: %v\n", snapErr)
		return max(status, exitFail)
	case snap == nil && *at != "":
		fmt.Fprintf(e.stderr, "khosim: memmap: %s reached no `snapshot %s`\n", file, *at)
		return max(status, exitFail)
	case snap == nil:
		fmt.Fprintf(e.stderr, "khosim: memmap: no kernel runs at the end of %s\n", file)
		return max(status, exitFail)
	}
	if err := writeMap(e, *svg, snap); err != nil {
		fmt.Fprintf(e.stderr, "khosim: memmap: %v\n", err)
		return max(status, exitFail)
	}
	return status
}

// writeMap prints snap's map as text, or draws it as SVG into path.
func writeMap(e *env, path string, snap *htmlreport.Snap) error {
	if path == "" {
		return htmlreport.WriteMemMapText(e.stdout, snap.Map)
	}
	var w io.Writer = e.stdout
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	title := fmt.Sprintf("%s — boot %d (%s)", snap.Label, snap.Boot, snap.Build)
	if err := htmlreport.WriteMemMapSVG(w, snap.Map, htmlreport.SVGOptions{Title: title}); err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && path != "-" {
		return f.Close()
	}
	return nil
}
