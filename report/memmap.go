package report

import (
	"bufio"
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"

	"khosim/fdt"
	"khosim/machine"
	"khosim/physmem"
)

// Colours of the frame kinds (machine.FrameKind), the same in every map.
var kindColours = [machine.NrFrameKinds]string{
	machine.KindFree:        "#e6e6e6",
	machine.KindScratchFree: "#bfe3f5",
	machine.KindLowMem:      "#a1887f",
	machine.KindKernelImage: "#5d4037",
	machine.KindMemmap:      "#fb8c00",
	machine.KindReserved:    "#9e9e9e",
	machine.KindSlab:        "#8e24aa",
	machine.KindTracker:     "#ec407a",
	machine.KindFDT:         "#d50000",
	machine.KindPageCache:   "#43a047",
	machine.KindSwapCache:   "#fdd835",
	machine.KindPreserved:   "#1e40af",
	machine.KindUsed:        "#546e7a",
	machine.KindUnowned:     "#000000",
	machine.KindUninit:      "#ff00ff",
}

// kindText says what each kind is, for the legend.
var kindText = [machine.NrFrameKinds]string{
	machine.KindFree:        "free",
	machine.KindScratchFree: "free, in KHO scratch",
	machine.KindLowMem:      "low 1 MiB (reserved)",
	machine.KindKernelImage: "kernel image",
	machine.KindMemmap:      "memmap (struct pages)",
	machine.KindReserved:    "other memblock reservations",
	machine.KindSlab:        "slab / kernel metadata",
	machine.KindTracker:     "KHO tracker pages",
	machine.KindFDT:         "handover FDT",
	machine.KindPageCache:   "page cache (a shade per file)",
	machine.KindSwapCache:   "swap cache",
	machine.KindPreserved:   "preserved / handed over",
	machine.KindUsed:        "other allocations",
	machine.KindUnowned:     "allocated, no owner (leak)",
	machine.KindUninit:      "uninitialised struct page",
}

// fileShades are the page-cache colours, one per file by its name's hash,
// so that a file keeps its shade across snapshots and kernels.
var fileShades = []string{"#2e7d32", "#43a047", "#66bb6a", "#00897b", "#26a69a", "#7cb342", "#558b2f", "#00695c", "#9ccc65", "#4db6ac"}

// colour returns the fill of a kind and owner.
func colour(k machine.FrameKind, owner string) string {
	if k == machine.KindPageCache && owner != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(owner))
		return fileShades[h.Sum32()%uint32(len(fileShades))]
	}
	return kindColours[k]
}

// landmark kinds are shown even where they do not fill a cell.
func landmark(k machine.FrameKind) bool {
	switch k {
	case machine.KindFDT, machine.KindTracker, machine.KindSlab, machine.KindPreserved, machine.KindUnowned, machine.KindUninit:
		return true
	}
	return false
}

func bytesOf(frames uint64) string { return fdt.HumanBytes(frames * physmem.PageSize) }

// WriteMemMapText prints a memory map as text, one run a line:
//
//	0x0000000000000000-0x00000000000fffff      256 frames    1 MiB  low-mem       low memory
//	0x0000000001000000-0x0000000001ffffff     4096 frames   16 MiB  kernel-image  kernel image
//	0x0000000007800000-0x0000000007ffffff     2048 frames    8 MiB  page-cache    memfd:guest-ram  [scratch]
//
// after a header naming the boot and build, and followed by the totals per
// kind, the scratch usage, the FDT's placement and the migrations. It is
// what `khosim memmap` prints. It returns the first write error.
func WriteMemMapText(w io.Writer, mm *machine.MemMap) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "memory map of boot %d (%s): %d frames, %s\n", mm.Boot, mm.Build, mm.Frames, bytesOf(mm.Frames))
	for _, r := range mm.Runs {
		end := r.End().Phys() - 1
		owner := r.Owner
		if r.Ino != 0 {
			owner = fmt.Sprintf("%s (inode %d)", owner, r.Ino)
		}
		sc := ""
		if r.Scratch {
			sc = "  [scratch]"
		}
		line := fmt.Sprintf("  0x%016x-0x%016x %9d frames %9s  %-12s  %s%s", uint64(r.PFN.Phys()), uint64(end), r.Frames, bytesOf(r.Frames), r.Kind, owner, sc)
		bw.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	bw.WriteString("totals:\n")
	for k := range machine.NrFrameKinds {
		if n := mm.Counts[k]; n > 0 {
			fmt.Fprintf(bw, "  %-12s %9d frames %9s\n", k, n, bytesOf(n))
		}
	}
	for _, r := range mm.Scratch {
		fmt.Fprintf(bw, "scratch: %#x-%#x, %s\n", uint64(r.Base), uint64(r.End())-1, fdt.HumanBytes(r.Size))
	}
	if len(mm.Scratch) > 0 {
		fmt.Fprintf(bw, "scratch usage: %d frames used, %d free\n", mm.ScratchUsed, mm.ScratchFree)
	}
	if p := mm.FDT; p != nil {
		fmt.Fprintf(bw, "FDT: %s at %#x, %d bytes in %d frames%s\n", fdtDirection(p), uint64(p.Addr), p.Size, p.Frames, map[bool]string{true: ", IN SCRATCH"}[p.InScratch])
	} else {
		bw.WriteString("FDT: none\n")
	}
	out, back := migrationTotals(mm)
	fmt.Fprintf(bw, "migrations out of scratch: %d pages in %d runs", out.pages, out.runs)
	if back.runs > 0 {
		fmt.Fprintf(bw, "; put back: %d pages in %d runs", back.pages, back.runs)
	}
	if mm.MigrationsDropped > 0 {
		fmt.Fprintf(bw, "; %d runs not traced", mm.MigrationsDropped)
	}
	bw.WriteString("\n")
	return bw.Flush()
}

func fdtDirection(p *machine.FDTPlacement) string {
	if p.Outgoing {
		return "outgoing"
	}
	return "incoming"
}

type migTotal struct {
	runs  int
	pages uint64
}

func migrationTotals(mm *machine.MemMap) (out, back migTotal) {
	for _, m := range mm.Migrations {
		t := &out
		if m.Back {
			t = &back
		}
		t.runs++
		t.pages += m.Pages
	}
	return out, back
}

// SVGOptions tunes WriteMemMapSVG.
type SVGOptions struct {
	// Title heads the picture (default: the boot and build).
	Title string
	// ID prefixes the element ids (markers, patterns), so that several
	// maps can share an HTML page. Default "m".
	ID string
	// MaxCells bounds the cells (bins of frames) the map is drawn with
	// (default and at most 2048); each row has 64.
	MaxCells int
	// MaxArrows bounds the migration arrows (default 48): the largest
	// aggregated moves are drawn, the rest counted in the caption.
	MaxArrows int
}

// SVG geometry.
const (
	svgCols    = 64
	svgCell    = 12
	svgRowGap  = 6
	svgLeft    = 118
	svgTop     = 46
	svgRight   = 20
	svgMaxCell = 2048
)

// component is one kind/owner's frames in a cell.
type component struct {
	kind   machine.FrameKind
	owner  string
	frames uint64
}

// cell is a bin of frames.
type cell struct {
	comps   []component
	scratch uint64 // frames in scratch
	frames  uint64 // frames of memory in the cell (the last may be short)
}

func (c *cell) add(k machine.FrameKind, owner string, n uint64, scratch bool) {
	c.frames += n
	if scratch {
		c.scratch += n
	}
	for i := range c.comps {
		if c.comps[i].kind == k && c.comps[i].owner == owner {
			c.comps[i].frames += n
			return
		}
	}
	c.comps = append(c.comps, component{k, owner, n})
}

// sorted orders the components by frames, most first, then by kind and
// owner: the first is the cell's dominant owner.
func (c *cell) sorted() {
	slices.SortFunc(c.comps, func(a, b component) int {
		if x := cmp.Compare(b.frames, a.frames); x != 0 {
			return x
		}
		if x := cmp.Compare(a.kind, b.kind); x != 0 {
			return x
		}
		return cmp.Compare(a.owner, b.owner)
	})
}

func (c *cell) pure() bool { return len(c.comps) == 1 }

// grid is a memory map binned into cells.
type grid struct {
	mm        *machine.MemMap
	perCell   uint64 // frames per cell, a power of two
	cells     []cell
	rows      int
	rowHeight int
}

func newGrid(mm *machine.MemMap, maxCells int) *grid {
	if maxCells <= 0 || maxCells > svgMaxCell {
		maxCells = svgMaxCell
	}
	per := uint64(1)
	for mm.Frames > per*uint64(maxCells) {
		per <<= 1
	}
	g := &grid{mm: mm, perCell: per}
	g.cells = make([]cell, (mm.Frames+per-1)/per)
	for _, r := range mm.Runs {
		for p, end := uint64(r.PFN), uint64(r.End()); p < end; {
			i := p / per
			n := min(end, (i+1)*per) - p
			g.cells[i].add(r.Kind, r.Owner, n, r.Scratch)
			p += n
		}
	}
	for i := range g.cells {
		g.cells[i].sorted()
	}
	g.rows = (len(g.cells) + svgCols - 1) / svgCols
	g.rowHeight = svgCell + svgRowGap
	return g
}

// xy returns the top-left corner of cell i.
func (g *grid) xy(i int) (int, int) {
	return svgLeft + (i%svgCols)*svgCell, svgTop + (i/svgCols)*g.rowHeight
}

func (g *grid) cellOf(pfn physmem.PFN) int {
	return min(int(uint64(pfn)/g.perCell), len(g.cells)-1)
}

// rangeText is "0x1000000-0x1ffffff (16 MiB)" for cells [a, b).
func (g *grid) rangeText(a, b int) string {
	start := uint64(a) * g.perCell
	end := min(uint64(b)*g.perCell, g.mm.Frames)
	return fmt.Sprintf("%#x-%#x (%s)", start*physmem.PageSize, end*physmem.PageSize-1, bytesOf(end-start))
}

func compText(c component) string {
	s := fmt.Sprintf("%s: %d frames", c.kind, c.frames)
	if c.owner != "" {
		s = fmt.Sprintf("%s %s: %d frames", c.kind, c.owner, c.frames)
	}
	return s
}

// xmlEsc escapes text for SVG and HTML.
func xmlEsc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#39;")
		default:
			if r < 0x20 && r != '\n' && r != '\t' {
				fmt.Fprintf(&b, "&#x%x;", r)
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// WriteMemMapSVG draws a memory map as a self-contained SVG: physical
// memory in address order, 64 cells a row, each cell a power-of-two bin
// of frames coloured by the kind (and, for page cache, the file) that
// holds most of it, with a smaller inner square where a landmark (FDT,
// tracker, slab, preserved, unowned frames) hides in a cell dominated by
// something else. Runs of cells held whole by one owner merge into one
// rectangle. Every rectangle's <title> names the address range and each
// owner's exact frame count. Under each row a band marks KHO scratch; the
// FDT is outlined; arrows draw the migrations out of scratch (aggregated
// by source and destination cell, the largest MaxArrows); a scale and a
// legend with each kind's frames follow. The output depends only on mm.
func WriteMemMapSVG(w io.Writer, mm *machine.MemMap, opt SVGOptions) error {
	if opt.ID == "" {
		opt.ID = "m"
	}
	if opt.MaxArrows <= 0 {
		opt.MaxArrows = 48
	}
	if opt.Title == "" {
		opt.Title = fmt.Sprintf("boot %d (%s)", mm.Boot, mm.Build)
	}
	g := newGrid(mm, opt.MaxCells)
	legend := legendItems(mm)
	legendRows := (len(legend) + legendCols - 1) / legendCols
	gridBottom := svgTop + g.rows*g.rowHeight
	width := svgLeft + svgCols*svgCell + svgRight
	height := gridBottom + 34 + legendRows*18 + 8
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" class="memmap" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<title>physical memory map: %s</title>`+"\n", xmlEsc(opt.Title))
	fmt.Fprintf(bw, `<defs><marker id="%s-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#263238"/></marker></defs>`+"\n", opt.ID)
	fmt.Fprintf(bw, `<text x="4" y="14" font-size="13" font-weight="bold">%s</text>`+"\n", xmlEsc(opt.Title))
	fmt.Fprintf(bw, `<text class="scale" x="4" y="30">1 cell = %s, 1 row = %s; %s of memory in %d cells</text>`+"\n",
		bytesOf(g.perCell), bytesOf(g.perCell*svgCols), bytesOf(mm.Frames), len(g.cells))
	for c := 0; c <= svgCols; c += 16 {
		x := svgLeft + c*svgCell
		fmt.Fprintf(bw, `<text class="axis" x="%d" y="%d" text-anchor="middle" font-size="9">+%s</text>`+"\n", x, svgTop-4, bytesOf(uint64(c)*g.perCell))
	}

	bw.WriteString(`<g class="cells">` + "\n")
	for row := 0; row < g.rows; row++ {
		first := row * svgCols
		_, y := g.xy(first)
		fmt.Fprintf(bw, `<text class="addr" x="%d" y="%d" text-anchor="end" font-size="10">%#x</text>`+"\n", svgLeft-6, y+svgCell-2, uint64(first)*g.perCell*physmem.PageSize)
		last := min(first+svgCols, len(g.cells))
		for i := first; i < last; {
			c := &g.cells[i]
			j := i + 1
			if c.pure() {
				for j < last && g.cells[j].pure() && g.cells[j].comps[0].kind == c.comps[0].kind &&
					g.cells[j].comps[0].owner == c.comps[0].owner {
					j++
				}
			}
			x, _ := g.xy(i)
			d := c.comps[0]
			var title strings.Builder
			title.WriteString(g.rangeText(i, j))
			if c.pure() {
				var n uint64
				for k := i; k < j; k++ {
					n += g.cells[k].frames
				}
				title.WriteString(": " + compText(component{d.kind, d.owner, n}))
			} else {
				for k, cp := range c.comps {
					if k == 8 {
						fmt.Fprintf(&title, "\n+ %d more owners", len(c.comps)-k)
						break
					}
					title.WriteString("\n" + compText(cp))
				}
			}
			if c.scratch > 0 && j == i+1 {
				fmt.Fprintf(&title, "\n(%d frames in KHO scratch)", c.scratch)
			}
			fmt.Fprintf(bw, `<rect class="k-%s" x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				d.kind, x, y, (j-i)*svgCell, svgCell, colour(d.kind, d.owner), xmlEsc(title.String()))
			if !c.pure() {
				for _, cp := range c.comps[1:] {
					if landmark(cp.kind) && cp.kind != d.kind {
						fmt.Fprintf(bw, `<rect class="mark k-%s" x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
							cp.kind, x+3, y+3, svgCell-6, svgCell-6, colour(cp.kind, cp.owner), xmlEsc(g.rangeText(i, i+1)+": "+compText(cp)))
						break
					}
				}
			}
			i = j
		}
		// The scratch band under the row.
		for i := first; i < last; {
			if g.cells[i].scratch == 0 {
				i++
				continue
			}
			j := i + 1
			for j < last && g.cells[j].scratch > 0 {
				j++
			}
			var n uint64
			for k := i; k < j; k++ {
				n += g.cells[k].scratch
			}
			x, _ := g.xy(i)
			fmt.Fprintf(bw, `<rect class="scratch" x="%d" y="%d" width="%d" height="3" fill="#0288d1"><title>KHO scratch: %d frames in %s</title></rect>`+"\n",
				x, y+svgCell+1, (j-i)*svgCell, n, xmlEsc(g.rangeText(i, j)))
			i = j
		}
	}
	bw.WriteString("</g>\n")

	if p := mm.FDT; p != nil && p.Frames > 0 {
		a, b := g.cellOf(p.Addr.PFN()), g.cellOf(p.Addr.PFN()+physmem.PFN(p.Frames)-1)
		for i := a; i <= b; {
			j := min(b+1, (i/svgCols+1)*svgCols)
			x, y := g.xy(i)
			fmt.Fprintf(bw, `<rect class="fdt-outline" x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#b71c1c" stroke-width="2"><title>%s handover FDT at %#x: %d bytes in %d frames</title></rect>`+"\n",
				x-1, y-1, (j-i)*svgCell+2, svgCell+2, fdtDirection(p), uint64(p.Addr), p.Size, p.Frames)
			i = j
		}
	}

	arrows, rest := g.arrows(opt.MaxArrows)
	if len(arrows) > 0 {
		bw.WriteString(`<g class="migrations" fill="none" stroke="#263238" stroke-width="1.3">` + "\n")
		for _, a := range arrows {
			x1, y1 := g.xy(a.from)
			x2, y2 := g.xy(a.to)
			x1, y1, x2, y2 = x1+svgCell/2, y1+svgCell/2, x2+svgCell/2, y2+svgCell/2
			// Bow the curve sideways by a fifth of its length.
			mx, my := (x1+x2)/2+(y2-y1)/5, (y1+y2)/2-(x2-x1)/5-8
			dash := ""
			verb := "migrated out of scratch"
			if a.back {
				dash = ` stroke-dasharray="3,2"`
				verb = "put back into scratch (aborted activation)"
			}
			fmt.Fprintf(bw, `<path class="migration" d="M%d,%d Q%d,%d %d,%d"%s marker-end="url(#%s-arrow)"><title>%d pages of %s %s: %s to %s</title></path>`+"\n",
				x1, y1, mx, my, x2, y2, dash, opt.ID, a.pages, xmlEsc(a.owner), verb, xmlEsc(g.rangeText(a.from, a.from+1)), xmlEsc(g.rangeText(a.to, a.to+1)))
		}
		bw.WriteString("</g>\n")
	}
	out, back := migrationTotals(mm)
	caption := fmt.Sprintf("migrations out of scratch: %d pages", out.pages)
	if back.pages > 0 {
		caption += fmt.Sprintf(", %d put back", back.pages)
	}
	if rest > 0 {
		caption += fmt.Sprintf(" (%d smaller moves not drawn)", rest)
	}
	if p := mm.FDT; p != nil {
		caption += fmt.Sprintf("; %s FDT at %#x (%d bytes)", fdtDirection(p), uint64(p.Addr), p.Size)
	}
	if len(mm.Scratch) > 0 {
		caption += fmt.Sprintf("; scratch %d used / %d free frames", mm.ScratchUsed, mm.ScratchFree)
	}
	fmt.Fprintf(bw, `<text class="caption" x="4" y="%d">%s</text>`+"\n", gridBottom+12, xmlEsc(caption))

	bw.WriteString(`<g class="legend">` + "\n")
	for i, it := range legend {
		x := 4 + (i%legendCols)*((width-8)/legendCols)
		y := gridBottom + 24 + (i/legendCols)*18
		fmt.Fprintf(bw, `<rect class="swatch" x="%d" y="%d" width="12" height="12" fill="%s" stroke="#555" stroke-width="0.5"/><text x="%d" y="%d">%s</text>`+"\n",
			x, y, it.fill, x+16, y+10, xmlEsc(it.text))
	}
	bw.WriteString("</g>\n</svg>\n")
	return bw.Flush()
}

// legendCols is the legend's columns: two leave room for a kind's text
// with its counts, or a file's name (about 75 characters).
const legendCols = 2

type legendItem struct{ fill, text string }

// legendItems lists every kind present, then the page-cache files (the
// ten largest, then how many more) with their shades.
func legendItems(mm *machine.MemMap) []legendItem {
	var out []legendItem
	for k := range machine.NrFrameKinds {
		if n := mm.Counts[k]; n > 0 {
			out = append(out, legendItem{kindColours[k], fmt.Sprintf("%s: %s, %d frames (%s)", k, kindText[k], n, bytesOf(n))})
		}
	}
	files := map[string]uint64{}
	for _, r := range mm.Runs {
		if r.Kind == machine.KindPageCache {
			files[r.Owner] += r.Frames
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(files[b], files[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for i, n := range names {
		if i == 10 {
			out = append(out, legendItem{kindColours[machine.KindPageCache], fmt.Sprintf("... and %d more files", len(names)-i)})
			break
		}
		out = append(out, legendItem{colour(machine.KindPageCache, n), fmt.Sprintf("page cache of %s: %d frames (%s)", n, files[n], bytesOf(files[n]))})
	}
	if len(mm.Scratch) > 0 {
		out = append(out, legendItem{"#0288d1", "band under a row: KHO scratch"})
	}
	return out
}

type arrow struct {
	from, to int
	pages    uint64
	back     bool
	owner    string
}

// arrows aggregates the migrations by source and destination cell and
// returns the max largest (by pages, then address), and how many more
// there were.
func (g *grid) arrows(max int) ([]arrow, int) {
	owners := map[uint64]string{}
	for _, r := range g.mm.Runs {
		if r.Ino != 0 {
			owners[r.Ino] = r.Owner
		}
	}
	type key struct {
		from, to int
		back     bool
	}
	agg := map[key]*arrow{}
	var keys []key
	for _, m := range g.mm.Migrations {
		// One arrow per run, from its first frame's cell to its first
		// destination's; runs between the same cells add up.
		k := key{g.cellOf(m.From), g.cellOf(m.To), m.Back}
		a := agg[k]
		if a == nil {
			owner := owners[m.Ino]
			if owner == "" {
				owner = fmt.Sprintf("inode %d", m.Ino)
			}
			a = &arrow{from: k.from, to: k.to, back: m.Back, owner: owner}
			agg[k] = a
			keys = append(keys, k)
		}
		a.pages += m.Pages
	}
	out := make([]arrow, 0, len(keys))
	for _, k := range keys {
		out = append(out, *agg[k])
	}
	slices.SortFunc(out, func(a, b arrow) int {
		if c := cmp.Compare(b.pages, a.pages); c != 0 {
			return c
		}
		if c := cmp.Compare(a.from, b.from); c != 0 {
			return c
		}
		return cmp.Compare(a.to, b.to)
	})
	if len(out) > max {
		return out[:max], len(out) - max
	}
	return out, 0
}
