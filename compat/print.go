package compat

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// code is one front-end's outcome in the matrix.
func code(o Outcome) string {
	switch o.Result {
	case "revived":
		return "R"
	case "revived-lossy":
		return "r"
	case "refused":
		return "x"
	case "n/a":
		return "-"
	}
	return "!"
}

// cellCode is a pair's two outcomes: FDBox's, then LUO's (a space where
// the old build has no such front-end).
func cellCode(c Cell, from Entry) string {
	if c.Err != nil {
		return "!!"
	}
	fd, lu := " ", " "
	for _, o := range c.Outcomes {
		if o.Frontend == "fdbox" {
			fd = code(o)
		} else {
			lu = code(o)
		}
	}
	return fd + lu
}

// Write prints the matrix: the builds by number, a table of rows (the old
// kernel) by columns (the new one), and every reason behind a refusal or a
// loss, with the pairs it applies to.
func Write(w io.Writer, builds []Entry, cells []Cell) {
	fmt.Fprintf(w, "Kernel builds (old kernel: row, new kernel: column):\n")
	width := 0
	for _, e := range builds {
		width = max(width, len(e.Name))
	}
	for i, e := range builds {
		fmt.Fprintf(w, "  %2d %-*s %s\n", i+1, width, e.Name, e.Build)
	}
	fmt.Fprintf(w, "\nEach cell: FDBox's outcome, then LUO's, for a 6 MiB memfd with a hole,\na 2 MiB THP range and seals (F_SEAL_SHRINK|F_SEAL_GROW):\n")
	fmt.Fprintf(w, "  R revived   r revived, seals lost   x refused   - the new kernel lacks the front-end\n")
	fmt.Fprintf(w, "  (blank: the old kernel lacks it)   ! broken (a bug)\n\n")
	fmt.Fprintf(w, "     ")
	for i := range builds {
		fmt.Fprintf(w, "%3d", i+1)
	}
	fmt.Fprintln(w)
	for i, from := range builds {
		fmt.Fprintf(w, "  %2d ", i+1)
		for j := range builds {
			fmt.Fprintf(w, " %s", cellCode(cells[i*len(builds)+j], from))
		}
		fmt.Fprintln(w)
	}
	type why struct{ fe, text string }
	pairs := map[why][]string{}
	var order []why
	for i, c := range cells {
		if c.Err != nil {
			k := why{"error", c.Err.Error()}
			if pairs[k] == nil {
				order = append(order, k)
			}
			pairs[k] = append(pairs[k], fmt.Sprintf("%d>%d", i/len(builds)+1, i%len(builds)+1))
			continue
		}
		for _, o := range c.Outcomes {
			if o.Result == "revived" || o.Result == "n/a" {
				continue
			}
			k := why{o.Frontend + " " + o.Result, o.Why}
			if pairs[k] == nil {
				order = append(order, k)
			}
			pairs[k] = append(pairs[k], fmt.Sprintf("%d>%d", i/len(builds)+1, i%len(builds)+1))
		}
	}
	if len(order) == 0 {
		return
	}
	fmt.Fprintf(w, "\nWhy (pairs old>new):\n")
	slices.SortStableFunc(order, func(a, b why) int { return strings.Compare(a.fe, b.fe) })
	for _, k := range order {
		ps := pairs[k]
		list := strings.Join(ps, " ")
		if len(ps) > 12 {
			list = strings.Join(ps[:12], " ") + fmt.Sprintf(" ... (%d pairs)", len(ps))
		}
		fmt.Fprintf(w, "  %s: %s\n      %s\n", k.fe, k.text, list)
	}
}
