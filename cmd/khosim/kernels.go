package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"khosim/kbuild"
	"khosim/machine"
)

func init() {
	register(&command{
		name:    "kernels",
		summary: "list the kernel build keys of boot and kexec (KEY=VALUE): values, defaults, what each means",
		run:     kernelsCmd,
	})
}

func kernelsCmd(e *env, args []string) int {
	if len(args) != 0 {
		fmt.Fprintf(e.stderr, "usage: khosim kernels\n")
		return exitUsage
	}
	printKernels(e.stdout)
	return exitOK
}

// printKernels prints the build keys (kbuild.Keys()), marking the values
// khosim cannot build yet (machine.Supported: a kernel of the default
// build with that value fails with ENOSYS).
func printKernels(w io.Writer) {
	fmt.Fprintf(w, "Kernel builds: what each kernel speaks across a live update.\n\n")
	fmt.Fprintf(w, "    boot  [KEY=VALUE...]\n    kexec [KEY=VALUE...] [-> ERRNO]\n\n")
	fmt.Fprintf(w, "On boot a key not given takes its default; on kexec it is inherited from\n")
	fmt.Fprintf(w, "the running kernel (kexec kho=radix changes the tracker only). A key given\n")
	fmt.Fprintf(w, "twice counts with its last value.\n\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tVALUES\tDEFAULT\n")
	missing := false
	type row struct {
		key     kbuild.KeyInfo
		meaning []string
	}
	var rows []row
	for _, k := range kbuild.Keys() {
		var vals []string
		for _, v := range k.Values {
			b, err := kbuild.Default().With(k.Name, v)
			if err == nil && machine.Supported(b) != nil {
				v += "*"
				missing = true
			}
			vals = append(vals, v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Name, strings.Join(vals, " | "), k.Default)
		rows = append(rows, row{k, wrap(k.Meaning, 72)})
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "%s:\n", r.key.Name)
		for _, l := range r.meaning {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	if missing {
		fmt.Fprintf(w, "\n* not built into khosim yet: a boot or kexec with it is a scenario failure (ENOSYS)\n")
	}
	fmt.Fprintf(w, "\nWhat each value writes (w) and reads (r) in a handover (machine.Compatibles):\n\n")
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, k := range []string{"kho", "fdbox", "luo", "memfd", "fdbox_shmem"} {
		for _, v := range kbuildValues(k) {
			b, err := kbuild.Default().With(k, v)
			if err != nil {
				continue
			}
			part := k
			switch k {
			case "memfd":
				b.LUO, part = true, "luo" // memfd= is the LUO serialization
			case "fdbox_shmem":
				part = "fdbox" // fdbox_shmem= is FDBox's storage node
			}
			var wr, rd []string
			for _, c := range machine.Compatibles(b) {
				if c.Part == part {
					wr, rd = c.Writes, c.Reads
				}
			}
			fmt.Fprintf(tw, "%s=%s\tw: %s\n\tr: %s\n", k, v, orNone(wr), orNone(rd))
		}
	}
	tw.Flush()
}

// kbuildValues returns the values of a build key.
func kbuildValues(key string) []string {
	for _, k := range kbuild.Keys() {
		if k.Name == key {
			return k.Values
		}
	}
	return nil
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "(none)"
	}
	return strings.Join(xs, ", ")
}

// wrap breaks s into lines of at most width bytes at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
