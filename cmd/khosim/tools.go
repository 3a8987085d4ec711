package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"khosim/fault"
	"khosim/fdt"
)

func init() {
	register(&command{
		name:    "faults",
		summary: "list the fault-injection sites (for `fault SITE` in scenarios)",
		run:     faultsCmd,
	})
	register(&command{
		name:    "fdt",
		args:    "FILE.dtb",
		summary: "print a device tree blob (e.g. from run --dump-fdt) as DTS-like text",
		run:     fdtCmd,
	})
}

func faultsCmd(e *env, args []string) int {
	if len(args) != 0 {
		fmt.Fprintf(e.stderr, "usage: khosim faults\n")
		return exitUsage
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "SITE\tERRNO\tWHERE\n")
	for _, s := range fault.Sites() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Site, s.Errno.Name(), s.What)
	}
	tw.Flush()
	return exitOK
}

func fdtCmd(e *env, args []string) int {
	if len(args) != 1 {
		fmt.Fprintf(e.stderr, "usage: khosim fdt FILE.dtb\n")
		return exitUsage
	}
	blob, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "khosim: %v\n", err)
		return exitFail
	}
	if err := fdt.Dump(e.stdout, blob); err != nil {
		fmt.Fprintf(e.stderr, "khosim: %s: %v\n", args[0], err)
		return exitFail
	}
	return exitOK
}
