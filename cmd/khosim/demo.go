package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

func init() {
	register(&command{
		name:    "demo",
		args:    "[-v] [--script] [--report DIR]",
		summary: "run the built-in demo (what `khosim` alone does): the FDBox RFC's 1 GiB memfd across kexec",
		run:     runDemo,
		flags:   true,
	})
}

// runDemo runs the RFC cover letter's demo, embedded in the binary, and
// prints a short report.
func runDemo(e *env, args []string) int {
	fs := flag.NewFlagSet("khosim demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	verbose := fs.Bool("v", false, "echo every statement with its result and the kernel log")
	script := fs.Bool("script", false, "print the demo's scenario file and exit")
	reportDir := fs.String("report", "", "write an HTML report of the demo (memory maps, timeline, handover) to `DIR`/index.html")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(e.stderr, "usage: khosim demo [-v] [--script] [--report DIR]\n")
		return exitUsage
	}
	src, err := scenarios.Library.ReadFile(scenarios.DemoFile)
	if err != nil {
		fmt.Fprintf(e.stderr, "khosim: the embedded demo is missing: %v\n", err)
		return exitInternal
	}
	if *script {
		e.stdout.Write(src)
		return exitOK
	}
	s, err := scenarios.Parse(scenarios.DemoFile, src)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitInternal // the embedded file is tested: this is a bug
	}

	fmt.Fprintf(e.stdout, "khosim: the FDBox RFC demo: a 1 GiB memfd is created, boxed, sealed,\n")
	fmt.Fprintf(e.stdout, "handed over by KHO across kexec, restored and compared.\n")
	fmt.Fprintf(e.stdout, "(scenario: %s; `khosim demo --script` prints it)\n\n", scenarios.DemoFile)

	opts := scenarios.Options{}
	if *verbose {
		opts.Verbose = e.stdout
	}
	if e.tty {
		opts.Progress = newProgressBar(e.stderr).update
	}
	reps := &reports{dir: *reportDir}
	opts.Report = reps.start(scenarios.DemoFile)
	start := time.Now()
	res := scenarios.Run(s, opts)
	total := time.Since(start)
	if *verbose {
		fmt.Fprintln(e.stdout)
	}
	report(e, s, res, total)
	for _, f := range res.Failures {
		fmt.Fprintln(e.stderr, f.Format(res.File))
	}
	wrote := reps.finish(e)
	switch {
	case res.Internal:
		return exitInternal
	case !res.Passed, !wrote:
		return exitFail
	}
	return exitOK
}

// report prints what the demo preserved, what it cost and the verdict.
func report(e *env, s *scn.Script, res *scenarios.Result, total time.Duration) {
	w := e.stdout
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	m := s.Machine
	row("machine", "%s of RAM, seed %d", humanBytes(m.Memory), m.Seed)

	var files, pages, bytes uint64
	for i, b := range res.Preserved {
		label := ""
		if i == 0 {
			label = "preserved"
		}
		var parts []string
		for _, f := range b.Files {
			files++
			pages += f.Pages
			bytes += uint64(f.Size)
			parts = append(parts, fmt.Sprintf("%s %q (%s, %d pages)", f.Kind, f.Name, humanBytes(uint64(f.Size)), f.Pages))
		}
		row(label, "box %q: %s", b.Name, strings.Join(parts, ", "))
	}
	if len(res.Preserved) == 0 {
		row("preserved", "nothing (KHO was not activated)")
	} else {
		row("", "%s, %s, %d pages, %s of file data", plural(len(res.Preserved), "box", "boxes"),
			plural(int(files), "file", "files"), pages, humanBytes(bytes))
	}
	row("handover", "FDT of %s, %d pages preserved in physical memory", humanBytes(res.Stats.FDTBytes), res.Stats.PreservedPages)

	// Wall times by phase: everything before kho activate is "fdbox
	// create" (fill the memfd, hash it, box it); the kexec statement is
	// the machine's kexec (scrub, early boot, kho_populate) followed by
	// the new kernel's initcalls, which revive the boxes and memfds: the
	// restore, with the statements up to the first expectation (open the
	// box, unseal, get the fd); the expectations are "cmp".
	var create, activate, kexec, restore, check time.Duration
	phase := 0
	for _, st := range res.Steps {
		switch x := st.Stmt.(type) {
		case *scn.KHO:
			if x.Activate {
				activate += st.Wall
				phase = 1
				continue
			}
		case *scn.Kexec:
			initcalls := min(res.Stats.Machine.RestoreTime, st.Wall)
			kexec += st.Wall - initcalls
			restore += initcalls
			phase = 2
			continue
		case *scn.Expect, *scn.ExpectInvariants:
			if phase == 2 {
				phase = 3
			}
		}
		switch phase {
		case 0, 1:
			create += st.Wall
		case 2:
			restore += st.Wall
		default:
			check += st.Wall
		}
	}
	row("wall time", "create+fill+hash %s | kho activate %s | kexec %s | restore %s | compare+hash+audit %s",
		secs(create), secs(activate), secs(kexec), secs(restore), secs(check))
	row("", "total %s", secs(total))

	switch {
	case res.Internal:
		row("verdict", "INTERNAL ERROR (a simulator bug; details below)")
	case !res.Passed:
		row("verdict", "FAIL (details below)")
	default:
		row("verdict", "PASS: the memfd came back with the same size and the same bytes")
		row("", "(compared byte for byte against rand(7), and by XXH3 hash)")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// humanBytes prints a byte count with a binary unit: 1 GiB, 4.1 MiB, 512 B.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[exp]
	if n%div == 0 {
		return fmt.Sprintf("%d %s", n/div, suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
