package report

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kernel"
	"khosim/machine"
	"khosim/physmem"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./report -update to create it")
	require.Equal(t, string(want), string(got), "%s differs (go test ./report -update rewrites it)", path)
}

// mapBuilder builds a MemMap by hand: the SVG and text forms are pure
// functions of it, so their golden files do not change with the kernel.
type mapBuilder struct{ mm *machine.MemMap }

func newMap(frames uint64, scratch ...physmem.MemblockRegion) *mapBuilder {
	return &mapBuilder{&machine.MemMap{Boot: 1, Build: "kho=arrays fdbox=stash", Frames: frames, Scratch: scratch}}
}

func (b *mapBuilder) run(frames uint64, kind machine.FrameKind, owner string, ino uint64) *mapBuilder {
	var pfn physmem.PFN
	if n := len(b.mm.Runs); n > 0 {
		pfn = b.mm.Runs[n-1].End()
	}
	r := machine.MemRun{PFN: pfn, Frames: frames, Kind: kind, Owner: owner, Ino: ino, Scratch: b.mm.InScratch(pfn)}
	b.mm.Runs = append(b.mm.Runs, r)
	b.mm.Counts[kind] += frames
	return b
}

// synthetic is a 128 MiB machine after an FDBox activation: boot
// reservations, a memfd preserved out of scratch with its migrations
// (two put back by an earlier failed attempt), the FDT and a tracker page
// in cells dominated by other owners, another file in scratch.
func synthetic() *machine.MemMap {
	sc := physmem.MemblockRegion{Base: 112 * MiB, Size: 16 * MiB, Flags: physmem.MemblockKHOScratch}
	b := newMap(32768, sc).
		run(256, machine.KindLowMem, kernel.ReservationLowMem, 0).
		run(3840, machine.KindFree, "", 0).
		run(4096, machine.KindKernelImage, kernel.ReservationKernelImage, 0).
		run(512, machine.KindMemmap, kernel.ReservationMemmap, 0).
		run(1, machine.KindFDT, "outgoing handover FDT", 0).
		run(1, machine.KindTracker, "kho: bitmaps tracker", 0).
		run(3, machine.KindSlab, "slab: xa_node", 0).
		run(1019, machine.KindFree, "", 0).
		run(512, machine.KindPreserved, "memfd:guest-ram", 0).
		run(14336, machine.KindFree, "", 0).
		run(1024, machine.KindPageCache, "memfd:other", 7).
		run(1, machine.KindUnowned, "allocated, no owner reports it", 0).
		run(3071, machine.KindFree, "", 0).
		run(256, machine.KindPageCache, "memfd:in-scratch", 9).
		run(3840, machine.KindScratchFree, "", 0)
	mm := b.mm
	mm.ScratchUsed, mm.ScratchFree = 256, 3840
	mm.FDT = &machine.FDTPlacement{Outgoing: true, Addr: physmem.PFN(8704).Phys(), Size: 1234, Frames: 1}
	mm.Migrations = []kernel.MigrationRun{
		{From: 28672 + 512, To: 9216, Pages: 256, Ino: 3},
		{From: 28672 + 768, To: 9472, Pages: 256, Ino: 3},
		{From: 9600, To: 28672 + 1000, Pages: 2, Ino: 3, Back: true},
	}
	return mm
}

// big is a 64 GiB machine whose page cache is interleaved with free frames
// at every other frame for its first GiB: 262144 runs that the SVG must
// bin into at most 2048 cells.
func big() *machine.MemMap {
	const frames = 64 << 30 >> 12
	sc := physmem.MemblockRegion{Base: 32 << 30, Size: 4 << 30, Flags: physmem.MemblockKHOScratch}
	b := newMap(frames, sc).
		run(256, machine.KindLowMem, kernel.ReservationLowMem, 0).
		run(3840, machine.KindFree, "", 0).
		run(4096, machine.KindKernelImage, kernel.ReservationKernelImage, 0).
		run(262144, machine.KindMemmap, kernel.ReservationMemmap, 0)
	for i := 0; i < 131072; i++ {
		b.run(1, machine.KindPageCache, "memfd:guest-ram", 3).run(1, machine.KindFree, "", 0)
	}
	used := uint64(0)
	for _, r := range b.mm.Runs {
		used += r.Frames
	}
	b.run(8<<30>>12-used+(24<<30>>12), machine.KindFree, "", 0).
		run(4<<30>>12, machine.KindScratchFree, "", 0).
		run(frames-(36<<30>>12), machine.KindFree, "", 0)
	b.mm.ScratchFree = 4 << 30 >> 12
	return b.mm
}

func svgOf(t *testing.T, mm *machine.MemMap, opt SVGOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, WriteMemMapSVG(&b, mm, opt))
	return b.Bytes()
}

// svgStats parses an SVG and counts its elements by name and class,
// checking every rect and path in the cells and migrations has a title.
type svgStats struct {
	elems   map[string]int // by element name
	classes map[string]int // by class attribute
	titles  []string
}

func parseSVG(t *testing.T, b []byte) svgStats {
	t.Helper()
	st := svgStats{elems: map[string]int{}, classes: map[string]int{}}
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []xml.StartElement
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "the SVG is well-formed XML")
		switch e := tok.(type) {
		case xml.StartElement:
			st.elems[e.Name.Local]++
			for _, a := range e.Attr {
				if a.Name.Local == "class" {
					st.classes[a.Value]++
				}
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if n := len(stack); n > 0 && stack[n-1].Name.Local == "title" {
				st.titles = append(st.titles, string(e))
			}
		}
	}
	return st
}

func TestMemMapSVGGolden(t *testing.T) {
	b := svgOf(t, synthetic(), SVGOptions{})
	golden(t, "memmap-synthetic.svg", b)
	st := parseSVG(t, b)
	require.Equal(t, 1, st.elems["svg"])
	require.Equal(t, 1, st.classes["fdt-outline"], "the FDT is outlined")
	require.Equal(t, 3, st.classes["migration"], "two moves out of scratch, one back")
	require.Equal(t, 4, st.classes["scratch"], "a scratch band under each of its 4 rows")
	require.NotZero(t, st.classes["mark k-fdt"]+st.classes["mark k-tracker"]+st.classes["mark k-slab"], "small owners are marked")
	require.NotZero(t, st.classes["mark k-unowned"], "a leaked frame is marked")
	require.Equal(t, st.elems["rect"]+st.elems["path"]-1 /* the arrow head */ -st.classes["swatch"], len(st.titles)-1 /* the svg's */, "every shape has a title")
	for _, want := range []string{
		"1 cell = 64 KiB, 1 row = 4 MiB",
		"page-cache memfd:other: 1024 frames",
		"preserved memfd:guest-ram: 512 frames",
		"256 pages of inode 3 migrated out of scratch",
		"2 pages of inode 3 put back into scratch",
		"outgoing handover FDT at 0x2200000: 1234 bytes in 1 frames",
		"KHO scratch: 1024 frames in 0x7000000-0x73fffff (4 MiB)",
		"fdt: handover FDT, 1 frames (4 KiB)",
		"page cache of memfd:other: 1024 frames (4 MiB)",
	} {
		require.Contains(t, string(b), want)
	}
}

// TestMemMapSVGStaysSmall: 262144 runs on a 64 GiB machine draw in at most
// 2048 cells, with exact counts in the titles.
func TestMemMapSVGStaysSmall(t *testing.T) {
	mm := big()
	b := svgOf(t, mm, SVGOptions{})
	golden(t, "memmap-64gib.svg", b)
	st := parseSVG(t, b)
	require.LessOrEqual(t, st.classes["k-page-cache"]+st.classes["k-free"]+st.classes["k-memmap"]+st.classes["k-scratch"]+st.classes["k-low-mem"]+st.classes["k-kernel-image"], 2048)
	require.Less(t, len(b), 64*KiB, "%d bytes", len(b))
	require.Contains(t, string(b), "1 cell = 32 MiB, 1 row = 2 GiB")
	// The first GiB's mixed cells say exactly what they hold.
	require.Contains(t, string(b), "\nfree: 4096 frames\npage-cache memfd:guest-ram: 4096 frames")
	require.Zero(t, st.classes["migration"], "no migrations")
	// Fewer cells on request.
	small := parseSVG(t, svgOf(t, mm, SVGOptions{MaxCells: 64}))
	require.LessOrEqual(t, small.elems["rect"]-small.classes["swatch"], 64+64)
}

func TestMemMapSVGDeterministic(t *testing.T) {
	a := svgOf(t, synthetic(), SVGOptions{ID: "x"})
	b := svgOf(t, synthetic(), SVGOptions{ID: "x"})
	require.Equal(t, a, b)
	require.Contains(t, string(a), `id="x-arrow"`)
	require.Contains(t, string(a), `url(#x-arrow)`)
}

func TestMemMapArrowsCapped(t *testing.T) {
	mm := synthetic()
	mm.Migrations = nil
	for i := range 100 {
		mm.Migrations = append(mm.Migrations, kernel.MigrationRun{From: physmem.PFN(28672 + 16*i), To: physmem.PFN(9216 + 16*i), Pages: 16, Ino: 3})
	}
	st := parseSVG(t, svgOf(t, mm, SVGOptions{MaxArrows: 10}))
	require.Equal(t, 10, st.classes["migration"])
	require.Contains(t, strings.Join(st.titles, "\n"), "")
	b := svgOf(t, mm, SVGOptions{MaxArrows: 10})
	require.Contains(t, string(b), "migrations out of scratch: 1600 pages (90 smaller moves not drawn)")
}

func TestMemMapTextGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteMemMapText(&b, synthetic()))
	golden(t, "memmap-synthetic.txt", b.Bytes())
	require.Contains(t, b.String(), "page-cache    memfd:in-scratch (inode 9)  [scratch]\n")
	require.Contains(t, b.String(), "migrations out of scratch: 512 pages in 2 runs; put back: 2 pages in 1 runs\n")
}

// TestMemMapOfMachine draws a real machine at each phase of a live update:
// the SVG is well-formed, deterministic (two machines driven alike draw
// the same bytes), shows the migrations out of scratch after activation
// and the handed-over frames after the next kernel's early boot.
func TestMemMapOfMachine(t *testing.T) {
	draw := func() map[machine.Phase][]byte {
		m := newMachine(t)
		out := map[machine.Phase][]byte{}
		m.SetPhaseHook(func(e machine.PhaseEvent) {
			mm, err := m.MemoryMap()
			require.NoError(t, err)
			out[e.Phase] = svgOf(t, mm, SVGOptions{})
			var txt bytes.Buffer
			require.NoError(t, WriteMemMapText(&txt, mm))
			out[e.Phase+" text"] = txt.Bytes()
		})
		liveUpdate(t, m, nil)
		return out
	}
	a, b := draw(), draw()
	require.Equal(t, a, b, "the same machine state draws the same map")
	act := parseSVG(t, a[machine.PhaseActivated])
	require.NotZero(t, act.classes["migration"], "migrations out of scratch are drawn")
	require.Equal(t, 1, act.classes["fdt-outline"])
	require.Contains(t, string(a[machine.PhaseActivated]), "preserved memfd:guest-ram")
	require.Contains(t, string(a[machine.PhaseEarlyBoot]), "preserved handed over, not yet claimed")
	require.Contains(t, string(a[machine.PhaseRestored]), "page-cache memfd:guest-ram")
	require.Contains(t, string(a[machine.PhaseActivated+" text"]), "FDT: outgoing at ")
	require.Contains(t, string(a[machine.PhaseEarlyBoot+" text"]), "FDT: incoming at ")
	require.NotContains(t, string(a[machine.PhaseRestored+" text"]), "unowned")
	fmt.Fprint(io.Discard, string(a[machine.PhaseActivated+" text"]))
}
