package kexec

import (
	"fmt"
	"iter"
	"strings"

	"khosim/fdt"
	"khosim/invariant"
	"khosim/kbuild"
	"khosim/physmem"
)

// bitmaps is mainline KHO's tracker from 6.16 to 6.19
// (kernel/kexec_handover.c, kernel/liveupdate/kexec_handover.c in 6.19),
// as 6.19 lays it out: root compatible "kho-v1" and a root property
// "preserved-memory-map", the physical address of the first chunk.
//
// Outgoing, it is kho_mem_track: for each order (the orders xarray, one
// struct kho_mem_phys per order) a sparse array (the phys_bits xarray) of
// struct kho_mem_phys_bits, bitmaps of PRESERVE_BITS bits: bit i of the
// bitmap at index n of order o is the folio of that order at pfn
// (n*PRESERVE_BITS + i) << o. kho_preserve_folio sets the bit
// (__kho_preserve_order, allocating the bitmap on first use:
// xa_load_or_alloc), kho_unpreserve_folio clears it
// (__kho_unpreserve_order); a bitmap is never freed, even when empty. At
// kho_finalize the bitmaps are listed in linked chunk pages
// (kho_mem_serialize), each chunk holding bitmaps of one order:
//
//	struct khoser_mem_chunk {                    // one 4 KiB page
//		u64 next;                            // phys of the next chunk, 0 at the end
//		u32 order;
//		u32 num_elms;                        // <= KHOSER_BITMAP_SIZE (255)
//		struct khoser_mem_bitmap_ptr {
//			u64 phys_start;              // (n * PRESERVE_BITS) << (order + PAGE_SHIFT)
//			u64 bitmap;                  // phys of the kho_mem_phys_bits
//		} bitmaps[255];
//	};
//
// all little endian, orders ascending and each order's bitmaps by index,
// one chunk at least per order that ever had a kho_mem_phys.
//
// The bitmaps and chunks are pages this tracker owns (6.19 allocates both
// with get_zeroed_page: allocBitmap, newChunk); they are handed over with
// the preserved folios but not preserved themselves: the next kernel reads
// them before it allocates outside scratch and they are free memory after
// memblock_free_all. The xarrays are host-side (Go slices): Linux's xarray
// nodes are slab memory the next kernel never sees.
//
// PRESERVE_BITS is 6.19's, PAGE_SIZE * 8 (one page per bitmap, "kho:
// Increase metadata bitmap size to PAGE_SIZE"). 6.16 to 6.18 kzalloc'd
// 512-byte bitmaps (PRESERVE_BITS 4096) under the same compatible: a 6.18
// kernel reading a 6.19 handover would read an eighth of each bitmap and
// place the next bitmap's folios wrongly. khosim models one of the two.
//
// State machine (of the record; the KHO core keeps clients from preserving
// once it is serialized, except in the abort, which unserializes first):
//
//	open --Finalize ok--> serialized --Unfinalize--> open
//	open --Finalize fails--> open (its chunks freed)
//
// References: the tracker holds the one reference of each bitmap and chunk
// page (pages).
type bitmaps struct {
	h     *KHO
	track [physmem.MaxPageOrder + 1]bitmapsPhys // kho_mem_track.orders
	pages metaPages                             // every bitmap and chunk page
	nbits int                                   // bitmap pages

	chunks     []physmem.PFN // the chunk list, in list order (serialized)
	serialized bool
	rootVal    []byte // the root's "preserved-memory-map" in the FDT buffer
}

// bitmapsPhys is struct kho_mem_phys of one order.
type bitmapsPhys struct {
	// present: the order's kho_mem_phys exists (it is created by the
	// first preserve of the order, even one whose bitmap allocation then
	// fails, and never freed): kho_mem_serialize writes a chunk for it.
	present bool
	// bits is phys_bits: at index pfn_high / PRESERVE_BITS, the bitmap
	// page's pfn + 1 (0: no bitmap).
	bits []physmem.PFN
}

// bitmap returns the bitmap page at index n, if any.
func (p *bitmapsPhys) bitmap(n uint64) (physmem.PFN, bool) {
	if n >= uint64(len(p.bits)) || p.bits[n] == 0 {
		return 0, false
	}
	return p.bits[n] - 1, true
}

// The layout of kho-v1's bitmaps (6.19).
const (
	// BitmapsPreserveBits is PRESERVE_BITS: the bits of one struct
	// kho_mem_phys_bits, a page.
	BitmapsPreserveBits = physmem.PageSize * 8
	// KhoserChunkHdrSize is sizeof(struct khoser_mem_chunk_hdr).
	KhoserChunkHdrSize = 16
	// KhoserBitmapPtrSize is sizeof(struct khoser_mem_bitmap_ptr).
	KhoserBitmapPtrSize = 16
	// KhoserBitmapSize is KHOSER_BITMAP_SIZE: the entries of one chunk.
	KhoserBitmapSize = (physmem.PageSize - KhoserChunkHdrSize) / KhoserBitmapPtrSize
)

func init() {
	RegisterTracker(TrackerInfo{Name: kbuild.TrackerBitmaps, Root: KHOCompatible + " + " + PreservedMemoryMapProp + " (khoser_mem_chunk list)", New: func(h *KHO) Tracker { return &bitmaps{h: h} }})
}

func (t *bitmaps) Name() kbuild.Tracker    { return kbuild.TrackerBitmaps }
func (t *bitmaps) Compatible() string      { return KHOCompatible }
func (t *bitmaps) ClientRecords() bool     { return false }
func (t *bitmaps) Finalizes() bool         { return true }
func (t *bitmaps) SubtreeProperty() string { return "fdt" }

// EstimateRoot implements Tracker: the u64 property, its header and name.
func (t *bitmaps) EstimateRoot() uint64 { return 64 }

// allocBitmap allocates one struct kho_mem_phys_bits (6.19:
// get_zeroed_page in xa_load_or_alloc; 6.16-6.18 kzalloc'd 512 bytes).
func (t *bitmaps) allocBitmap() (physmem.PFN, error) { return allocMetaPage(t.h, &t.pages) }

// Preserve implements Tracker: __kho_preserve_order. It fails, recording
// nothing, when the bitmap the folio needs cannot be allocated.
func (t *bitmaps) Preserve(pfn physmem.PFN, order uint) error {
	physxa := &t.track[order]
	physxa.present = true
	high := uint64(pfn) >> order
	n := high / BitmapsPreserveBits
	page, ok := physxa.bitmap(n)
	if !ok {
		var err error
		if page, err = t.allocBitmap(); err != nil {
			return err
		}
		if n >= uint64(len(physxa.bits)) {
			physxa.bits = append(physxa.bits, make([]physmem.PFN, n+1-uint64(len(physxa.bits)))...)
		}
		physxa.bits[n] = page + 1
		t.nbits++
	}
	i := high % BitmapsPreserveBits
	t.h.mm.Frames.Frame(page)[i>>3] |= 1 << (i & 7)
	return nil
}

// Unpreserve implements Tracker: __kho_unpreserve_order clears the bit and
// keeps the bitmap.
func (t *bitmaps) Unpreserve(pfn physmem.PFN, order uint) {
	high := uint64(pfn) >> order
	page, ok := t.track[order].bitmap(high / BitmapsPreserveBits)
	if !ok {
		invariant.Panic("kexec", "bitmaps-record", t.Dump(), "unpreserving %v order %d, which has no bitmap", pfn, order)
	}
	i := high % BitmapsPreserveBits
	t.h.mm.Frames.Frame(page)[i>>3] &^= 1 << (i & 7)
}

// WriteRoot implements Tracker: the placeholder of "preserved-memory-map"
// (kho_finalize in 6.16 reserves it the same way, before the clients'
// nodes), 0 until Finalize.
func (t *bitmaps) WriteRoot(w *fdt.Writer) error {
	b, err := w.PropertyPlaceholder(PreservedMemoryMapProp, 8)
	if err != nil {
		return err
	}
	putLE64(b, 0, 0)
	t.rootVal = b
	return nil
}

// Finalize implements Tracker: kho_mem_serialize, then the root property
// points at the first chunk (0 when nothing was ever preserved).
func (t *bitmaps) Finalize() error {
	t.freeChunks() // kho_update_memory_map discards an earlier map
	mm := t.h.mm
	var cur []byte
	newChunk := func(order uint) error {
		pfn, err := allocMetaPage(t.h, &t.pages)
		if err != nil {
			return err
		}
		page := mm.Frames.Frame(pfn)
		putLE32(page, 8, uint32(order))
		if cur != nil {
			putLE64(cur, 0, uint64(pfn.Phys()))
		}
		t.chunks = append(t.chunks, pfn)
		cur = page
		return nil
	}
	for order := range t.track {
		physxa := &t.track[order]
		if !physxa.present {
			continue
		}
		if err := newChunk(uint(order)); err != nil {
			t.freeChunks()
			return err
		}
		for n := range physxa.bits {
			page, ok := physxa.bitmap(uint64(n))
			if !ok {
				continue
			}
			num := le32(cur, 12)
			if num == KhoserBitmapSize {
				if err := newChunk(uint(order)); err != nil {
					t.freeChunks()
					return err
				}
				num = 0
			}
			off := KhoserChunkHdrSize + KhoserBitmapPtrSize*int(num)
			putLE64(cur, off, (uint64(n)*BitmapsPreserveBits)<<(uint(order)+physmem.PageShift))
			putLE64(cur, off+8, uint64(page.Phys()))
			putLE32(cur, 12, num+1)
		}
	}
	if t.rootVal != nil {
		putLE64(t.rootVal, 0, t.firstChunk())
	}
	t.serialized = true
	return nil
}

func (t *bitmaps) firstChunk() uint64 {
	if len(t.chunks) == 0 {
		return 0
	}
	return uint64(t.chunks[0].Phys())
}

// freeChunks is kho_mem_ser_free.
func (t *bitmaps) freeChunks() {
	for _, p := range t.chunks {
		freeMetaPage(t.h, &t.pages, p)
	}
	t.chunks = nil
}

// Unfinalize implements Tracker: the chunks are freed; the bitmaps, the
// record of what is preserved, stay.
func (t *bitmaps) Unfinalize() {
	t.freeChunks()
	t.serialized = false
	t.rootVal = nil
}

// MetadataPages implements Tracker.
func (t *bitmaps) MetadataPages() iter.Seq[Mem] { return t.pages.seq() }

// MetadataFrames implements Tracker.
func (t *bitmaps) MetadataFrames() uint64 { return uint64(t.pages.len()) }

// Check implements Tracker: every preserved folio's bit is set and no
// other bit is (bitmaps-record); the tracker owns exactly its bitmaps and
// chunks; while KHO is active the chunks list exactly the bitmaps, as
// kho_mem_serialize lays them out, and the root points at the first
// (bitmaps-serialized).
func (t *bitmaps) Check(preserved iter.Seq2[physmem.Folio, uint]) error {
	h := t.h
	mm := h.mm
	var n uint64
	for f, order := range preserved {
		high := uint64(f) >> order
		page, ok := t.track[order].bitmap(high / BitmapsPreserveBits)
		i := high % BitmapsPreserveBits
		if !ok || !t.track[order].present || mm.Frames.Frame(page)[i>>3]&(1<<(i&7)) == 0 {
			return h.violation("bitmaps-record", "preserved %v (order %d) is not set in its bitmap", f, order)
		}
		n++
	}
	var set uint64
	nbits := 0
	for order := range t.track {
		for m := range t.track[order].bits {
			page, ok := t.track[order].bitmap(uint64(m))
			if !ok {
				continue
			}
			nbits++
			if !t.pages.has(page) {
				return h.violation("bitmaps-record", "bitmap %v (order %d, index %d) is not a page of the tracker", page, order, m)
			}
			set += popcount(mm.Frames.Frame(page))
		}
	}
	if set != n {
		return h.violation("bitmaps-record", "the bitmaps have %d bits set for %d preserved folios", set, n)
	}
	if nbits != t.nbits || t.pages.len() != nbits+len(t.chunks) {
		return h.violation("bitmaps-record", "%d pages owned for %d bitmaps (%d counted) and %d chunks",
			t.pages.len(), nbits, t.nbits, len(t.chunks))
	}
	if h.dumping {
		return nil
	}
	if t.serialized != (h.state == Active) {
		return h.violation("bitmaps-serialized", "serialized=%v while KHO is %v", t.serialized, h.state)
	}
	if !t.serialized {
		return nil
	}
	if err := t.checkChunks(); err != nil {
		return h.violation("bitmaps-serialized", "%v", err)
	}
	if !h.fdtTampered && t.rootVal != nil && le64(t.rootVal, 0) != t.firstChunk() {
		return h.violation("bitmaps-serialized", "the root's %s is %#x, the first chunk is at %#x",
			PreservedMemoryMapProp, le64(t.rootVal, 0), t.firstChunk())
	}
	return nil
}

// checkChunks compares the chunk pages with what kho_mem_serialize writes
// for the bitmaps as they are.
func (t *bitmaps) checkChunks() error {
	mm := t.h.mm
	ci := 0
	var cur []byte
	var num uint32
	next := func(order int) error {
		if cur != nil && le32(cur, 12) != num {
			return fmt.Errorf("chunk %d holds %d entries, want %d", ci-1, le32(cur, 12), num)
		}
		if ci >= len(t.chunks) {
			return fmt.Errorf("%d chunks, more are needed", len(t.chunks))
		}
		page := mm.Frames.Frame(t.chunks[ci])
		if cur != nil && le64(cur, 0) != uint64(t.chunks[ci].Phys()) {
			return fmt.Errorf("chunk %d links %#x, not chunk %d", ci-1, le64(cur, 0), ci)
		}
		if le32(page, 8) != uint32(order) {
			return fmt.Errorf("chunk %d has order %d, want %d", ci, le32(page, 8), order)
		}
		cur, num = page, 0
		ci++
		return nil
	}
	for order := range t.track {
		physxa := &t.track[order]
		if !physxa.present {
			continue
		}
		if err := next(order); err != nil {
			return err
		}
		for n := range physxa.bits {
			page, ok := physxa.bitmap(uint64(n))
			if !ok {
				continue
			}
			if num == KhoserBitmapSize {
				if err := next(order); err != nil {
					return err
				}
			}
			off := KhoserChunkHdrSize + KhoserBitmapPtrSize*int(num)
			start := (uint64(n) * BitmapsPreserveBits) << (uint(order) + physmem.PageShift)
			if le64(cur, off) != start || le64(cur, off+8) != uint64(page.Phys()) {
				return fmt.Errorf("chunk %d entry %d is {%#x, %#x}, want {%#x, %#x}",
					ci-1, num, le64(cur, off), le64(cur, off+8), start, uint64(page.Phys()))
			}
			num++
		}
	}
	if cur != nil && (le32(cur, 12) != num || le64(cur, 0) != 0) {
		return fmt.Errorf("the last chunk holds %d entries (want %d) and links %#x", le32(cur, 12), num, le64(cur, 0))
	}
	if ci != len(t.chunks) {
		return fmt.Errorf("%d chunks, %d needed", len(t.chunks), ci)
	}
	return nil
}

// Dump implements Tracker.
func (t *bitmaps) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bitmaps (kho-v1, PRESERVE_BITS %d): %d bitmap pages", BitmapsPreserveBits, t.nbits)
	for order := range t.track {
		if !t.track[order].present {
			continue
		}
		c := 0
		for _, p := range t.track[order].bits {
			if p != 0 {
				c++
			}
		}
		fmt.Fprintf(&b, " [order %d: %d]", order, c)
	}
	fmt.Fprintf(&b, ", %d chunk pages, serialized=%v, first chunk %#x", len(t.chunks), t.serialized, t.firstChunk())
	return b.String()
}

// Recognise implements Tracker: "kho-v1" with an 8-byte
// "preserved-memory-map". KHO v4's arrays layout has the same compatible
// and no such property: it is refused, never read as an empty bitmap map.
func (t *bitmaps) Recognise(f *fdt.FDT) string {
	if ok, err := f.NodeCheckCompatible(f.Root(), KHOCompatible); err != nil || !ok {
		return fmt.Sprintf("root node is not compatible with %q", KHOCompatible)
	}
	if _, err := f.GetProp(f.Root(), PreservedMemoryMapProp); err != nil {
		return fmt.Sprintf("root has no %q: the kho-v1 layout of KHO v4's kho_mem arrays (kho=arrays), not the bitmaps this kernel reads", PreservedMemoryMapProp)
	}
	if _, err := f.GetPropLE64(f.Root(), PreservedMemoryMapProp); err != nil {
		return fmt.Sprintf("root's %q is not a u64: %v", PreservedMemoryMapProp, err)
	}
	return ""
}

// maxBitmaps is the most bitmaps of an order memory of nframes frames can
// need.
func maxBitmaps(nframes uint64, order uint) uint64 {
	return ((nframes-1)>>order)/BitmapsPreserveBits + 1
}

// inBitmapsLimit bounds the chunk and bitmap pages of a valid record.
func inBitmapsLimit(nframes uint64) uint64 {
	var n uint64
	for o := uint(0); o <= physmem.MaxPageOrder; o++ {
		b := maxBitmaps(nframes, o)
		n += b + (b+KhoserBitmapSize-1)/KhoserBitmapSize
	}
	return n
}

// bitmapsEntry is one khoser_mem_bitmap_ptr of the incoming record.
type bitmapsEntry struct {
	order  uint
	start  uint64
	bitmap []byte
}

// walk yields every entry of the incoming record, checking the structure
// as it goes (kho_mem_deserialize with the checks Linux does not make):
// every chunk and bitmap page passes inMetaCheck (inside memory, outside
// scratch, the FDT and this kernel's boot reservations, linked once, no
// more than inBitmapsLimit); a chunk's order is at most MAX_PAGE_ORDER and
// its num_elms at most KHOSER_BITMAP_SIZE; an entry's phys_start is the
// start of a bitmap's span of its order, inside memory, and no other
// entry of the order has it. The first error ends the walk.
func (t *bitmaps) walk(f *fdt.FDT) iter.Seq2[bitmapsEntry, error] {
	return func(yield func(bitmapsEntry, error) bool) {
		phys, err := f.GetPropLE64(f.Root(), PreservedMemoryMapProp)
		if err != nil {
			yield(bitmapsEntry{}, err)
			return
		}
		nframes := t.h.mm.Frames.NumFrames()
		check := newInMetaCheck(t.h, inBitmapsLimit(nframes))
		var dup [physmem.MaxPageOrder + 1]bitmap
		where := func() string { return "the root's " + PreservedMemoryMapProp }
		for phys != 0 {
			cphys := phys
			chunk, err := check.page(phys, "chunk", where)
			if err != nil {
				yield(bitmapsEntry{}, err)
				return
			}
			order, num := le32(chunk, 8), le32(chunk, 12)
			switch {
			case order > physmem.MaxPageOrder:
				yield(bitmapsEntry{}, fmt.Errorf("chunk %#x: order %d beyond MAX_PAGE_ORDER", phys, order))
				return
			case num > KhoserBitmapSize:
				yield(bitmapsEntry{}, fmt.Errorf("chunk %#x: %d entries, a chunk holds %d", phys, num, KhoserBitmapSize))
				return
			}
			if dup[order] == nil {
				dup[order] = make(bitmap, (maxBitmaps(nframes, uint(order))+63)/64)
			}
			span := uint64(BitmapsPreserveBits) << (uint(order) + physmem.PageShift)
			for j := range int(num) {
				off := KhoserChunkHdrSize + KhoserBitmapPtrSize*j
				start, bm := le64(chunk, off), le64(chunk, off+8)
				ew := func() string { return fmt.Sprintf("chunk %#x entry %d", cphys, j) }
				n := start / span
				switch {
				case start%span != 0:
					yield(bitmapsEntry{}, fmt.Errorf("%s: phys_start %#x is not a multiple of an order-%d bitmap's span %#x", ew(), start, order, span))
					return
				case n >= maxBitmaps(nframes, uint(order)):
					yield(bitmapsEntry{}, fmt.Errorf("%s: phys_start %#x beyond memory", ew(), start))
					return
				case dup[order][n>>6]&(1<<(n&63)) != 0:
					yield(bitmapsEntry{}, fmt.Errorf("%s: a second order-%d bitmap at phys_start %#x", ew(), order, start))
					return
				}
				dup[order].set(n)
				page, err := check.page(bm, "bitmap", ew)
				if err != nil {
					yield(bitmapsEntry{}, err)
					return
				}
				if !yield(bitmapsEntry{order: uint(order), start: start, bitmap: page}, nil) {
					return
				}
			}
			phys = le64(chunk, 0)
			where = func() string { return fmt.Sprintf("chunk %#x", cphys) }
		}
	}
}

// Validate implements Tracker: the whole record walks without error.
func (t *bitmaps) Validate(f *fdt.FDT) error {
	for _, err := range t.walk(f) {
		if err != nil {
			return err
		}
	}
	return nil
}

// Collect implements Tracker: deserialize_bitmap for every entry, in list
// order. Validate accepted the structure, so nothing is malformed here; a
// bit may still describe memory the KHO core refuses.
func (t *bitmaps) Collect(f *fdt.FDT, bad func(string, error)) iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		for e, err := range t.walk(f) {
			if err != nil {
				bad("/"+PreservedMemoryMapProp, err)
				return
			}
			if !yieldBits(e.bitmap, e.start, e.order, yield) {
				return
			}
		}
	}
}
