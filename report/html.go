package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"khosim/fdt"
	"khosim/machine"
)

// IndexFile is the name of the report Write writes in its directory.
const IndexFile = "index.html"

// Write writes the report of r into dir (created if needed) as one
// self-contained file, dir/index.html: inline CSS and SVG, no script, no
// external asset, nothing fetched when it is opened. It returns the
// file's path.
func Write(dir string, r *Run) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		return "", err
	}
	path := filepath.Join(dir, IndexFile)
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

const css = `body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1b5e20;font-weight:bold}.fail{color:#b71c1c;font-weight:bold}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
.scroll{overflow-x:auto}.snap{margin-bottom:2em}.err{color:#b71c1c}
details{margin-left:1em}summary{cursor:pointer}code{font-size:.95em}
.tree td:first-child{font-family:monospace}.muted{color:#777}`

// Render writes the report of r as one HTML document (what Write saves).
func Render(w io.Writer, r *Run) error {
	bw := bufio.NewWriter(w)
	h := func(s string) string { return xmlEsc(s) }
	fmt.Fprintf(bw, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>khosim report: %s</title>\n<style>%s</style></head><body>\n", h(r.Title), css)
	fmt.Fprintf(bw, "<h1>khosim report: %s</h1>\n", h(r.Title))
	verdict := `<span class="muted">not finished</span>`
	if r.Done {
		verdict = map[bool]string{true: `<span class="pass">PASS</span>`, false: `<span class="fail">FAIL</span>`}[r.Passed]
	}
	c := r.Machine
	scratch := "default (1/16 of memory)"
	switch {
	case c.ScratchBytes != 0:
		scratch = fdt.HumanBytes(c.ScratchBytes)
	case c.ScratchPercent != 0:
		scratch = fmt.Sprintf("%d%%", c.ScratchPercent)
	}
	fmt.Fprintf(bw, "<table><tr><th>verdict</th><td>%s</td></tr><tr><th>machine</th><td>%s of RAM, swap %s, KHO scratch %s, seed %d</td></tr>"+
		"<tr><th>statements</th><td>%d</td></tr><tr><th>snapshots</th><td>%d</td></tr><tr><th>failures</th><td>%d</td></tr></table>\n",
		verdict, fdt.HumanBytes(c.Memory), fdt.HumanBytes(c.Swap), scratch, c.Seed, r.count(EventStatement), len(r.Snaps), len(r.Fails))
	bw.WriteString(`<p>Sections: <a href="#timeline">timeline</a> · <a href="#memory">memory maps</a> · <a href="#handover">handover</a> · <a href="#failures">failures</a></p>` + "\n")

	bw.WriteString("<h2 id=\"timeline\">Timeline</h2>\n")
	r.writeTimeline(bw)

	bw.WriteString("<h2 id=\"memory\">Memory maps</h2>\n")
	if len(r.Snaps) == 0 {
		bw.WriteString("<p class=\"muted\">No snapshot was taken.</p>\n")
	}
	for i, s := range r.Snaps {
		if err := writeSnap(bw, i, s); err != nil {
			return err
		}
	}

	bw.WriteString("<h2 id=\"handover\">Handover</h2>\n")
	writeHandovers(bw, r)

	bw.WriteString("<h2 id=\"failures\">Failures</h2>\n")
	if len(r.Fails) == 0 {
		bw.WriteString("<p class=\"muted\">None.</p>\n")
	}
	for _, f := range r.Fails {
		fmt.Fprintf(bw, "<div class=\"failure\"><h3 class=\"err\">line %d: %s</h3><p>%s</p>\n", f.Line, h(f.Statement), h(f.Message))
		if len(f.Dump) > 0 {
			fmt.Fprintf(bw, "<pre>%s</pre>\n", h(strings.Join(f.Dump, "\n")))
		}
		if f.Snap >= 0 {
			fmt.Fprintf(bw, "<p>Memory at the failure: <a href=\"#snap-%d\">%s</a></p>\n", f.Snap, h(r.Snaps[f.Snap].Label))
		}
		bw.WriteString("</div>\n")
	}
	bw.WriteString("</body></html>\n")
	return bw.Flush()
}

func (r *Run) count(k EventKind) int {
	n := 0
	for _, e := range r.Events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func countsText(cs []Count) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %d", c.Name, c.Value)
	}
	return strings.Join(parts, ", ")
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// blackout returns the event indices the blackout spans and what to call
// it: the runner's marks, or, without them, from the first activation to
// the last restore.
func (r *Run) blackout() (from, to int, label string, ok bool) {
	from, to = -1, -1
	for i, e := range r.Events {
		switch e.Kind {
		case EventBlackoutStart:
			if from < 0 {
				from = i
			}
		case EventBlackoutEnd:
			to = i
		}
	}
	if from >= 0 {
		if to < from {
			to = len(r.Events) - 1
		}
		return from, to, "blackout", true
	}
	for i, e := range r.Events {
		if e.Kind == EventPhase && e.Text == string(machine.PhaseBeforeActivation) && from < 0 {
			from = i
		}
		if e.Kind == EventPhase && e.Text == string(machine.PhaseRestored) && from >= 0 {
			to = i
		}
	}
	if from >= 0 && to > from {
		return from, to, "activation to restore (the runner marked no blackout)", true
	}
	return 0, 0, "", false
}

// writeTimeline draws the events in order, one slot each: statements as
// bars whose height grows with the log of their time (red when they
// failed), phases and snapshots as labelled lines, the blackout as a
// band; then the table of every event with its counts.
func (r *Run) writeTimeline(bw *bufio.Writer) {
	n := len(r.Events)
	if n == 0 {
		bw.WriteString("<p class=\"muted\">No events.</p>\n")
		return
	}
	slot := max(4, min(24, 1000/n))
	const left, top, lane = 60, 30, 90
	width := left + n*slot + 20
	height := top + lane + 70
	var maxTook time.Duration
	for _, e := range r.Events {
		maxTook = max(maxTook, e.Took)
	}
	scale := math.Log1p(float64(maxTook) / 1e3)
	bw.WriteString("<div class=\"scroll\">")
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="%d" height="%d" font-family="sans-serif" font-size="10">`+"\n", width, height)
	bw.WriteString("<title>timeline: statements, phases and the blackout</title>\n")
	if from, to, label, ok := r.blackout(); ok {
		x1, x2 := left+from*slot, left+(to+1)*slot
		fmt.Fprintf(bw, `<rect class="blackout" x="%d" y="%d" width="%d" height="%d" fill="#ffcdd2" opacity="0.7"><title>%s: %s</title></rect>`+"\n",
			x1, top-12, x2-x1, lane+14, xmlEsc(label), xmlEsc(dur(r.Events[to].At+r.Events[to].Took-r.Events[from].At)))
		fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#b71c1c">%s</text>`+"\n", x1+2, top-2, xmlEsc(label))
	}
	fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, top+lane, left+n*slot, top+lane)
	fmt.Fprintf(bw, `<text x="4" y="%d">time (log)</text>`+"\n", top+lane/2)
	for i, e := range r.Events {
		x := left + i*slot
		title := fmt.Sprintf("#%d %s", i+1, e.Kind)
		if e.Line > 0 {
			title += fmt.Sprintf(" line %d", e.Line)
		}
		title += ": " + e.Text
		if e.Took > 0 {
			title += " (" + dur(e.Took) + ")"
		}
		if len(e.Counts) > 0 {
			title += "\n" + countsText(e.Counts)
		}
		if e.Err != "" {
			title += "\n" + e.Err
		}
		switch e.Kind {
		case EventStatement:
			hgt := 3
			if scale > 0 {
				hgt += int(float64(lane-6) * math.Log1p(float64(e.Took)/1e3) / scale)
			}
			fill := "#78909c"
			if e.Err != "" {
				fill = "#e53935"
			}
			fmt.Fprintf(bw, `<rect class="statement" x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				x+1, top+lane-hgt, slot-2, hgt, fill, xmlEsc(title))
		case EventFailure:
			fmt.Fprintf(bw, `<path class="failure" d="M%d,%d l%d,%d l%d,0 z" fill="#b71c1c"><title>%s</title></path>`+"\n",
				x+slot/2, top+lane-14, slot/2, 12, -slot, xmlEsc(title))
		default:
			colour := map[EventKind]string{EventPhase: "#1565c0", EventSnapshot: "#2e7d32", EventBlackoutStart: "#b71c1c", EventBlackoutEnd: "#b71c1c"}[e.Kind]
			fmt.Fprintf(bw, `<line class="%s" x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="4,2"><title>%s</title></line>`+"\n",
				strings.ReplaceAll(string(e.Kind), " ", "-"), x+slot/2, top, x+slot/2, top+lane, colour, xmlEsc(title))
			fmt.Fprintf(bw, `<text x="%d" y="%d" transform="rotate(45 %d %d)" fill="%s">%s</text>`+"\n",
				x+slot/2, top+lane+10, x+slot/2, top+lane+10, colour, xmlEsc(e.Text))
		}
	}
	bw.WriteString("</svg></div>\n")

	bw.WriteString("<table class=\"events\"><tr><th>#</th><th>at</th><th>line</th><th>what</th><th>took</th><th>work</th><th>snapshot</th></tr>\n")
	for i, e := range r.Events {
		what := xmlEsc(e.Text)
		if e.Kind != EventStatement {
			what = fmt.Sprintf("<i>%s</i>: %s", e.Kind, what)
		}
		if e.Err != "" {
			what += fmt.Sprintf(" <span class=\"err\">%s</span>", xmlEsc(e.Err))
		}
		line := ""
		if e.Line > 0 {
			line = fmt.Sprint(e.Line)
		}
		snap := ""
		if e.Snap >= 0 {
			snap = fmt.Sprintf("<a href=\"#snap-%d\">map</a>", e.Snap)
		}
		fmt.Fprintf(bw, "<tr><td class=\"n\">%d</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td>%s</td><td class=\"n\">%s</td><td>%s</td><td>%s</td></tr>\n",
			i+1, dur(e.At), line, what, dur(e.Took), xmlEsc(countsText(e.Counts)), snap)
	}
	bw.WriteString("</table>\n")
}

// writeSnap writes one snapshot: its map as SVG, the counts, the text
// form.
func writeSnap(bw *bufio.Writer, i int, s *Snap) error {
	fmt.Fprintf(bw, "<div class=\"snap\" id=\"snap-%d\"><h3>%d. %s</h3>\n<div class=\"scroll\">", i, i+1, xmlEsc(s.Label))
	if err := WriteMemMapSVG(bw, s.Map, SVGOptions{ID: fmt.Sprintf("s%d", i), Title: fmt.Sprintf("%s — boot %d (%s)", s.Label, s.Boot, s.Build)}); err != nil {
		return err
	}
	bw.WriteString("</div>\n<table><tr><th>frames(...)</th><th>frames</th><th>bytes</th></tr>\n")
	for _, c := range s.Counts {
		fmt.Fprintf(bw, "<tr><td>%s</td><td class=\"n\">%d</td><td class=\"n\">%s</td></tr>\n", xmlEsc(c.Name), c.Value, bytesOf(c.Value))
	}
	fmt.Fprintf(bw, "<tr><td>folios migrated out of scratch</td><td class=\"n\">%d</td><td></td></tr></table>\n", s.Migrated)
	bw.WriteString("<details><summary>the map as text</summary><pre>")
	var t bytes.Buffer
	if err := WriteMemMapText(&t, s.Map); err != nil {
		return err
	}
	bw.WriteString(xmlEsc(t.String()))
	bw.WriteString("</pre></details></div>\n")
	return nil
}

// writeHandovers decodes the handover of the run: the last outgoing FDT
// (what the last kexec handed over, as written) and the first incoming
// one, unless it reads the same.
func writeHandovers(bw *bufio.Writer, r *Run) {
	var out, in *Snap
	for _, s := range r.Snaps {
		if s.Handover == nil {
			continue
		}
		if s.Handover.Outgoing {
			out = s
		} else if in == nil {
			in = s
		}
	}
	if out == nil && in == nil {
		bw.WriteString("<p class=\"muted\">No handover FDT was written or received.</p>\n")
		return
	}
	var outHTML string
	if out != nil {
		outHTML = handoverHTML(out)
		bw.WriteString(outHTML)
	}
	if in != nil {
		inHTML := handoverHTML(in)
		if out != nil && treeHTML(in.Handover) == treeHTML(out.Handover) {
			fmt.Fprintf(bw, "<p>The next kernel received this FDT at %#x unchanged (snapshot “%s”).</p>\n", in.Handover.Addr, xmlEsc(in.Label))
			return
		}
		bw.WriteString(inHTML)
	}
}

func treeHTML(ho *Handover) string {
	if ho.Root == nil {
		return "error: " + ho.Err
	}
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	writeNode(bw, ho.Root, 0)
	_ = bw.Flush()
	return b.String()
}

func handoverHTML(s *Snap) string {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	writeHandover(bw, s)
	_ = bw.Flush()
	return b.String()
}

func writeHandover(bw *bufio.Writer, s *Snap) {
	ho := s.Handover
	fmt.Fprintf(bw, "<h3>%s FDT at %#x, %d bytes (from snapshot “%s”)</h3>\n", map[bool]string{true: "Outgoing", false: "Incoming"}[ho.Outgoing], ho.Addr, ho.Size, xmlEsc(s.Label))
	bw.WriteString("<table class=\"tracker\">")
	fmt.Fprintf(bw, "<tr><th>tracker</th><td>kho=%s, root compatible %q</td></tr>", xmlEsc(ho.Tracker), ho.Compatible)
	fmt.Fprintf(bw, "<tr><th>kho_mem records</th><td>%d ranges, %s, in %d \"mem\" properties</td></tr>", ho.Ranges, fdt.HumanBytes(ho.RangeBytes), ho.MemProps)
	orders := slices.Sorted(func(yield func(int) bool) {
		for o := range ho.RangesByOrder {
			if !yield(o) {
				return
			}
		}
	})
	var parts []string
	for _, o := range orders {
		if o < 0 {
			parts = append(parts, fmt.Sprintf("%d not a folio size", ho.RangesByOrder[o]))
		} else {
			parts = append(parts, fmt.Sprintf("%d of order %d (%s)", ho.RangesByOrder[o], o, fdt.HumanBytes(4096<<o)))
		}
	}
	fmt.Fprintf(bw, "<tr><th>ranges by order</th><td>%s</td></tr>", xmlEsc(strings.Join(parts, ", ")))
	if ho.Outgoing {
		fmt.Fprintf(bw, "<tr><th>pages preserved</th><td>%d</td></tr>", ho.PreservedPages)
	}
	fmt.Fprintf(bw, "<tr><th>tracker pages</th><td>%d</td></tr><tr><th>tracker state</th><td><code>%s</code></td></tr></table>\n", ho.TrackerFrames, xmlEsc(ho.TrackerDump))
	if ho.Err != "" {
		fmt.Fprintf(bw, "<p class=\"err\">The FDT does not parse: %s</p>\n", xmlEsc(ho.Err))
		return
	}
	writeNode(bw, ho.Root, 0)
}

// writeNode writes a decoded node as nested details, each property in its
// real type.
func writeNode(bw *bufio.Writer, n *fdt.Node, depth int) {
	name := n.Name
	switch {
	case n.Path == "/":
		name = "/"
	case name == "":
		name = "(unnamed storage node)"
	}
	open := ""
	if depth < 5 {
		open = " open"
	}
	fmt.Fprintf(bw, "<details class=\"fdt-node\"%s><summary><b>%s</b> <span class=\"muted\">%s</span></summary>\n", open, xmlEsc(name), xmlEsc(n.Path))
	if len(n.Props) > 0 {
		bw.WriteString("<table class=\"tree\"><tr><th>property</th><th>type</th><th>value</th></tr>\n")
		for _, p := range n.Props {
			fmt.Fprintf(bw, "<tr><td>%s</td><td>%s</td><td>%s</td></tr>\n", xmlEsc(p.Name), p.Value.Type, valueHTML(p.Value))
		}
		bw.WriteString("</table>\n")
	}
	for _, c := range n.Children {
		writeNode(bw, c, depth+1)
	}
	bw.WriteString("</details>\n")
}

func valueHTML(v fdt.Value) string {
	var b strings.Builder
	b.WriteString(xmlEsc(v.Summary()))
	switch v.Type {
	case fdt.TypeKHOMem:
		b.WriteString("<table><tr><th>#</th><th>address</th><th>size</th><th>order</th></tr>")
		for i, m := range v.Mems {
			order := "—"
			if o := orderOf(m.Size); o >= 0 {
				order = fmt.Sprint(o)
			}
			fmt.Fprintf(&b, "<tr><td class=\"n\">%d</td><td><code>%#x</code></td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>", i, m.Addr, fdt.HumanBytes(m.Size), order)
		}
		if v.Count > len(v.Mems) {
			fmt.Fprintf(&b, "<tr><td colspan=\"4\" class=\"muted\">... %d more</td></tr>", v.Count-len(v.Mems))
		}
		b.WriteString("</table>")
	case fdt.TypeU64Array, fdt.TypeFolioFlags:
		entries := make([]string, len(v.Nums))
		for i := range v.Nums {
			entries[i] = v.Entry(i)
		}
		b.WriteString(": <code>" + xmlEsc(strings.Join(entries, ", ")))
		if v.Count > len(v.Nums) {
			fmt.Fprintf(&b, ", ... %d more", v.Count-len(v.Nums))
		}
		b.WriteString("</code>")
	case fdt.TypeRaw:
		if len(v.Raw) > 0 {
			fmt.Fprintf(&b, ": <code>% x</code>", v.Raw[:min(len(v.Raw), 64)])
			if len(v.Raw) > 64 {
				b.WriteString(" ...")
			}
		}
	}
	return b.String()
}

func orderOf(size uint64) int {
	for o := 0; o < 40; o++ {
		if size == 4096<<o {
			return o
		}
	}
	return -1
}
