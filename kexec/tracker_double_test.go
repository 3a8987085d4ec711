package kexec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fdt"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/physmem"
)

// listTracker is a test double of the Tracker seam that keeps its record
// where mainline's trackers do, in pages of its own outside the FDT: at
// Finalize it writes a linked list of 4 KiB pages, each
//
//	u64 next;    // physical address of the next page, 0 at the end
//	u64 count;   // entries in this page
//	u64 entry[]; // phys | order of each preserved folio
//
// and points the root's "test-list-map" at the first. The next kernel
// reads the list from physical memory alone. It proves that the interface
// lets a tracker allocate and hand over its own pages, fill a root
// placeholder at Finalize, free its pages at Unfinalize, and validate a
// record it cannot trust.
type listTracker struct {
	h       *KHO
	folios  map[physmem.PFN]uint // the live record (host side, as mainline's xarrays are)
	pages   []physmem.PFN        // the serialized list, in order
	rootVal []byte               // the root placeholder
	failAt  int                  // Finalize fails allocating its failAt-th page (0: never)
}

const (
	listCompatible = "kho-test"
	listProp       = "test-list-map"
	listPerPage    = (physmem.PageSize - 16) / 8
	listName       = kbuild.Tracker("test-list")
)

func newListTracker(h *KHO) Tracker { return &listTracker{h: h, folios: map[physmem.PFN]uint{}} }

func (t *listTracker) Name() kbuild.Tracker    { return listName }
func (t *listTracker) Compatible() string      { return listCompatible }
func (t *listTracker) ClientRecords() bool     { return false }
func (t *listTracker) Finalizes() bool         { return true }
func (t *listTracker) SubtreeProperty() string { return "fdt" }
func (t *listTracker) EstimateRoot() uint64    { return 64 }
func (t *listTracker) Dump() string {
	return fmt.Sprintf("test-list: %d folios, %d pages", len(t.folios), len(t.pages))
}

func (t *listTracker) Preserve(pfn physmem.PFN, order uint) error {
	t.folios[pfn] = order
	return nil
}

func (t *listTracker) Unpreserve(pfn physmem.PFN, order uint) { delete(t.folios, pfn) }

func (t *listTracker) WriteRoot(w *fdt.Writer) error {
	b, err := w.PropertyPlaceholder(listProp, 8)
	t.rootVal = b
	return err
}

func (t *listTracker) Finalize() error {
	mm := t.h.MM()
	keys := slices.Sorted(func(yield func(physmem.PFN) bool) {
		for p := range t.folios {
			if !yield(p) {
				return
			}
		}
	})
	var prev []byte
	for i := 0; i == 0 || i*listPerPage < len(keys); i++ {
		if t.failAt == len(t.pages)+1 {
			return errno.ENOMEM
		}
		pfn, err := mm.AllocPages(physmem.GFPKernel, 0)
		if err != nil {
			return err
		}
		t.pages = append(t.pages, pfn)
		page := mm.Frames.Frame(pfn)
		clear(page)
		chunk := keys[i*listPerPage : min(len(keys), (i+1)*listPerPage)]
		binary.LittleEndian.PutUint64(page[8:], uint64(len(chunk)))
		for j, p := range chunk {
			binary.LittleEndian.PutUint64(page[16+8*j:], uint64(p.Phys())|uint64(t.folios[p]))
		}
		if prev == nil {
			binary.LittleEndian.PutUint64(t.rootVal, uint64(pfn.Phys()))
		} else {
			binary.LittleEndian.PutUint64(prev, uint64(pfn.Phys()))
		}
		prev = page[:8]
	}
	return nil
}

func (t *listTracker) Unfinalize() {
	for _, p := range t.pages {
		t.h.MM().FreePages(p, 0)
	}
	t.pages = nil
}

func (t *listTracker) MetadataPages() iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		for _, p := range slices.Sorted(slices.Values(t.pages)) {
			if !yield(Mem{Addr: p.Phys(), Size: physmem.PageSize}) {
				return
			}
		}
	}
}

func (t *listTracker) MetadataFrames() uint64 { return uint64(len(t.pages)) }

func (t *listTracker) Recognise(f *fdt.FDT) string {
	if ok, _ := f.NodeCheckCompatible(f.Root(), listCompatible); !ok {
		return "root is not " + listCompatible
	}
	if _, err := f.GetPropLE64(f.Root(), listProp); err != nil {
		return "no " + listProp
	}
	return ""
}

// walk yields the list's pages, checking each: inside memory, outside
// scratch and the FDT, never twice, at most one per listPerPage frames.
func (t *listTracker) walk(f *fdt.FDT) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		phys, _ := f.GetPropLE64(f.Root(), listProp)
		seen := map[uint64]bool{}
		limit := t.h.MM().Frames.NumFrames()/listPerPage + 1
		for phys != 0 {
			m := Mem{Addr: physmem.PhysAddr(phys), Size: physmem.PageSize}
			switch {
			case !m.Addr.PageAligned() || !t.h.MM().Memblock.IsRegionMemory(m.Addr, m.Size):
				yield(nil, fmt.Errorf("list page %#x outside memory", phys))
				return
			case overlapsAny(m, t.h.in.scratch) || m.Overlaps(t.h.in.fdtMem):
				yield(nil, fmt.Errorf("list page %#x in scratch or the FDT", phys))
				return
			case seen[phys]:
				yield(nil, fmt.Errorf("list page %#x linked twice: a cycle", phys))
				return
			case uint64(len(seen)) >= limit:
				yield(nil, errors.New("more list pages than memory could need"))
				return
			}
			seen[phys] = true
			page := t.h.MM().Frames.Frame(m.PFN())
			if !yield(page, nil) {
				return
			}
			phys = binary.LittleEndian.Uint64(page)
		}
	}
}

func (t *listTracker) Validate(f *fdt.FDT) error {
	for page, err := range t.walk(f) {
		if err != nil {
			return err
		}
		if binary.LittleEndian.Uint64(page[8:]) > listPerPage {
			return errors.New("list page count beyond the page")
		}
	}
	return nil
}

func (t *listTracker) Collect(f *fdt.FDT, bad func(string, error)) iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		for page := range t.walk(f) {
			for j := range binary.LittleEndian.Uint64(page[8:]) {
				e := binary.LittleEndian.Uint64(page[16+8*j:])
				order := uint(e & (physmem.PageSize - 1))
				if !yield(Mem{Addr: physmem.PhysAddr(e &^ (physmem.PageSize - 1)), Size: physmem.PageSize << order}) {
					return
				}
			}
		}
	}
}

func (t *listTracker) Check(preserved iter.Seq2[physmem.Folio, uint]) error {
	n := 0
	for f, order := range preserved {
		if o, ok := t.folios[f.PFN()]; !ok || o != order {
			return t.h.violation("test-list-record", "preserved %v order %d not recorded", f, order)
		}
		n++
	}
	if n != len(t.folios) {
		return t.h.violation("test-list-record", "%d folios recorded, %d preserved", len(t.folios), n)
	}
	return nil
}

// doubleWorld is a kernel with a KHO of the test-list tracker, and the
// kexec that boots the next one, as the machine does it.
type doubleWorld struct {
	t      *testing.T
	frames *physmem.Frames
	k      *kernel.Kernel
	h      *KHO
}

func newDoubleWorld(t *testing.T) *doubleWorld {
	frames, err := physmem.NewFrames(256 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { _ = frames.Close() })
	w := &doubleWorld{t: t, frames: frames}
	w.boot(nil)
	return w
}

func (w *doubleWorld) boot(ho *Handover) {
	params := kernel.BootParams{BootID: 1, Cmdline: "kho_scratch=32M", EarlyInit: func(k *kernel.Kernel) error {
		w.h = New(k, nil, newListTracker)
		w.h.Populate(ho)
		return nil
	}}
	if ho != nil {
		params.Scratch, params.BootID = ho.Scratch, 2
	}
	k, err := kernel.Boot(kernel.Hardware{Frames: w.frames}, params)
	require.NoError(w.t, err)
	k.RegisterRefOwner("kho", w.h.VisitRefs)
	k.RegisterFrameCounter("tracker", w.h.FramesTracker)
	k.RegisterFrameCounter("preserved", w.h.FramesPreserved)
	w.k = k
	w.t.Cleanup(func() {
		if !k.Gone() {
			k.Poison("test over")
		}
	})
}

func (w *doubleWorld) kexec() {
	ho, keep := w.h.PrepareKexec()
	Scrub(w.k, keep)
	w.k.Poison("kexec")
	w.boot(ho)
}

// TestTrackerDoubleHandsOverItsPages: a tracker whose record lives in
// pages of its own hands the folios over: the pages are allocated at
// activation (frames(tracker)), survive the scrub, are read by the next
// kernel from physical memory, and are free memory there once read.
func TestTrackerDoubleHandsOverItsPages(t *testing.T) {
	w := newDoubleWorld(t)
	mm := w.k.MM
	var folios []physmem.Folio
	for i, order := range []uint{0, 0, 9, 3, 0} {
		f, err := mm.FolioAlloc(physmem.GFPKernel, order)
		require.NoError(t, err)
		mm.Frames.Fill(f.PFN(), 1<<order, uint64(0x1111*(i+1)))
		_, err = w.h.PreserveFolio(f)
		require.NoError(t, err)
		mm.FolioPut(f) // KHO's reference keeps it
		folios = append(folios, f)
	}
	require.NoError(t, w.k.CheckInvariants())
	require.NoError(t, w.h.CheckInvariants())
	require.Zero(t, w.k.FrameCounts().Tracker, "the list is written at finalize")
	require.NoError(t, w.h.Activate())
	require.Equal(t, uint64(1), w.k.FrameCounts().Tracker)
	require.NoError(t, w.k.CheckInvariants(), "the tracker's page has an owner")
	require.NoError(t, w.h.CheckInvariants())
	listPage := slices.Collect(w.h.tracker.MetadataPages())[0]

	w.kexec()
	in := w.h.InRanges()
	require.Len(t, in, len(folios))
	for _, f := range folios {
		order := uint(0)
		for _, r := range in {
			if r.PFN() == f.PFN() {
				order, _ = r.FolioOrder()
			}
		}
		got, err := w.h.ClaimMem(FolioMem(f, order))
		require.NoError(t, err, "claim %v", f)
		require.Equal(t, f, got)
		want := make([]byte, physmem.PageSize<<order)
		for i := 0; i < len(want); i += 8 {
			binary.LittleEndian.PutUint64(want[i:], uint64(0x1111*(slices.Index(folios, f)+1)))
		}
		require.Equal(t, want, w.k.MM.Frames.Span(f.PFN(), 1<<order), "the data of %v", f)
		w.k.MM.FolioPut(got)
	}
	w.h.ReturnUnclaimed()
	require.Zero(t, w.k.FrameCounts().Tracker, "the old kernel's list is not this kernel's record")
	require.True(t, w.k.MM.PageInitialised(listPage.PFN()), "read, then free memory at memblock_free_all")
	order, free := w.k.MM.FreeBlockAt(listPage.PFN())
	require.True(t, free || w.k.MM.Page(listPage.PFN()).RefCount() == 0, "list page free (order %d)", order)
	require.NoError(t, w.k.CheckInvariants())
	require.NoError(t, w.h.CheckInvariants())
}

// TestTrackerDoubleFinalizeFails: a tracker that cannot allocate at
// Finalize fails the activation; Unfinalize frees what it had, and the
// preservations made outside the activation stay.
func TestTrackerDoubleFinalizeFails(t *testing.T) {
	w := newDoubleWorld(t)
	mm := w.k.MM
	var fs []physmem.Folio
	for range listPerPage + 3 { // two list pages
		f, err := mm.FolioAlloc(physmem.GFPKernel, 0)
		require.NoError(t, err)
		_, err = w.h.PreserveFolio(f)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	w.h.tracker.(*listTracker).failAt = 2
	used := w.k.FrameCounts().Used
	require.ErrorIs(t, w.h.Activate(), errno.ENOMEM)
	require.Equal(t, Idle, w.h.State())
	require.Zero(t, w.k.FrameCounts().Tracker, "the first list page was freed")
	require.Equal(t, used, w.k.FrameCounts().Used, "and the FDT buffer")
	require.Equal(t, len(fs), w.h.PreservedFolios(), "what was preserved before activation stays")
	w.h.tracker.(*listTracker).failAt = 0
	require.NoError(t, w.h.Activate())
	require.Equal(t, uint64(2), w.k.FrameCounts().Tracker)
	require.NoError(t, w.h.Deactivate())
	require.Zero(t, w.k.FrameCounts().Tracker)
	for _, f := range fs {
		require.NoError(t, w.h.UnpreserveFolio(f))
		mm.FolioPut(f)
	}
	require.NoError(t, w.k.CheckInvariants())
}

// TestTrackerDoubleCorruptRecord: a list the next kernel cannot trust (a
// cycle, a page outside memory, a page in scratch) makes it refuse the
// handover whole: nothing is reserved, nothing leaks.
func TestTrackerDoubleCorruptRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		next func(w *doubleWorld, page physmem.PFN) uint64
		want string
	}{
		{"cycle", func(w *doubleWorld, page physmem.PFN) uint64 { return uint64(page.Phys()) }, "cycle"},
		{"outside memory", func(*doubleWorld, physmem.PFN) uint64 { return 1 << 40 }, "outside memory"},
		{"in scratch", func(w *doubleWorld, _ physmem.PFN) uint64 { return uint64(w.k.Scratch[0].Base) }, "scratch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDoubleWorld(t)
			f, err := w.k.MM.FolioAlloc(physmem.GFPKernel, 0)
			require.NoError(t, err)
			_, err = w.h.PreserveFolio(f)
			require.NoError(t, err)
			w.k.MM.FolioPut(f)
			require.NoError(t, w.h.Activate())
			page := slices.Collect(w.h.tracker.MetadataPages())[0].PFN()
			binary.LittleEndian.PutUint64(w.k.MM.Frames.Frame(page), tc.next(w, page))
			w.kexec()
			require.Contains(t, w.h.HandoverRefused(), tc.want)
			require.Empty(t, w.h.InRanges())
			require.Zero(t, w.k.FrameCounts().Preserved)
			require.NoError(t, w.k.CheckInvariants())
			require.NoError(t, w.h.CheckInvariants())
			c := w.k.FrameCounts()
			require.Zero(t, c.Used, "every frame outside boot's reservations is free")
		})
	}
}
