package physmem

import (
	"fmt"
	"iter"
	"math/bits"

	"khosim/errno"
	"khosim/fault"
)

// MM is one kernel instance's view of the machine's memory: the Frames it
// shares with every kernel that runs on the machine, and the memmap,
// memblock and buddy allocator (Zone) it builds for itself at boot and
// loses at kexec.
//
// Boot sequence, as start_kernel / mm_core_init:
//
//	NewMM            memmap allocated, not initialised (stale bytes if its
//	                 host memory is recycled, zeros if fresh);
//	                 memblock.memory = all frames (e820)
//	Memblock.*       reserve, allocate, mark scratch, scratch-only mode
//	MemblockFreeAll  every struct page initialised but those of
//	                 MEMBLOCK_RSRV_NOINIT frames; the buddy allocator takes
//	                 every unreserved frame
//	RestoreFolio     initialises the struct pages of a preserved (noinit) folio
//	AllocPages, Folio*, KmemCache*, Kmalloc, Kvmalloc ...  the running kernel
//	Close            the memmap is gone (kexec, or the end of the simulation)
//
// MM is not safe for concurrent use.
type MM struct {
	Frames   *Frames   // shared with every kernel of the machine
	Memblock *Memblock // boot allocator; read-only after MemblockFreeAll
	Memmap   Memmap    // struct pages, this kernel's
	Zone     Zone      // the buddy allocator's lists and counters
	faults   *fault.Injector
	// slab is the slab allocator (slab.go), up from MemblockFreeAll on.
	slab slabState
	// deferredInit is CONFIG_DEFERRED_STRUCT_PAGE_INIT (deferred.go);
	// sectionPages is PAGES_PER_SECTION, its unit (a power of two; the
	// tests shrink it).
	deferredInit bool
	sectionPages PFN
}

// NewMM boots a kernel's memory model over frames: a memmap whose struct
// pages are not initialised yet (the previous kernel's memmap recycled,
// holding its stale bytes, or a fresh all-zero one; see newMemmap), a
// memblock whose memory is the whole machine (e820__memblock_setup; Remove
// makes holes), and an empty buddy allocator. MemblockFreeAll initialises
// the memmap.
// Every page allocation, from memblock or the buddy allocator, reports to
// faults (may be nil) at fault.PageAlloc first.
//
// Errors: EINVAL if frames is nil, closed, or beyond the 2^32 frames
// (16 TiB) the memmap can name (of 16 TiB, the top 8 KiB are a hole: see
// maxMemmapPages); ENOMEM if the host cannot map the memmap. The
// caller must Close the MM (the Frames stay open).
func NewMM(frames *Frames, faults *fault.Injector) (*MM, error) {
	if frames == nil || frames.mem == nil {
		return nil, errno.EINVAL
	}
	n := frames.NumFrames()
	memmap, err := newMemmap(frames, n)
	if err != nil {
		return nil, err
	}
	mm := &MM{
		Frames:   frames,
		Memblock: NewMemblock(frames.Size()),
		Memmap:   memmap,
		Zone: Zone{
			pageblockMT: make([]MigrateType, (n+PageblockNrPages-1)/PageblockNrPages),
			pcp:         perCPUPages{high: bootPagesetHigh, batch: bootPagesetBatch}, // zone_pcp_init
		},
		faults:       faults,
		sectionPages: PagesPerSection,
	}
	// Frames from maxLinkPFN on (the top 8 KiB of a 16 TiB machine) are
	// a hole: see maxMemmapPages.
	if err := mm.Memblock.Add(0, min(n, maxLinkPFN)*PageSize); err != nil {
		_ = mm.Memmap.close(frames)
		return nil, err
	}
	return mm, nil
}

// Close ends the memmap; no *Page obtained from this MM may be used
// afterwards (its host memory is reused, as it is, for the next kernel's
// memmap on the same Frames, or unmapped). The Frames are not closed.
// Closing twice returns EBADF.
func (mm *MM) Close() error { return mm.Memmap.close(mm.Frames) }

// Page returns the struct page of frame pfn (pfn_to_page).
//
// The struct page of a frame inside MEMBLOCK_RSRV_NOINIT reserved memory
// that RestoreFolio has not restored is not initialised: it holds stale
// bytes (the previous kernel's struct page, or zeros), which the caller
// must not read (see PageInitialised).
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
//   - the struct page is initialised (see PageInitialised); otherwise
//     panics with "page-initialised". (Memmap.Page, the raw pfn_to_page,
//     hands such a page out poisoned instead.)
func (mm *MM) Page(pfn PFN) *Page {
	m := &mm.Memmap
	if uint64(pfn) >= uint64(len(m.pages)) || !m.open || m.pages[pfn].flags == pagePoisonFlags {
		return mm.pageSlow(pfn, "pfn_to_page")
	}
	return &m.pages[pfn]
}

// pageSlow is Page on behalf of op for a pfn out of range or while the
// memmap is not open (Memmap.open): it serves a readable frame and
// refuses, naming op, an uninitialised or deferred struct page.
func (mm *MM) pageSlow(pfn PFN, op string) *Page {
	if mm.Memmap.readable(pfn) && !mm.Memmap.uninitialised(pfn) {
		return &mm.Memmap.pages[pfn]
	}
	p := mm.Memmap.pageSlow(pfn)
	if mm.Memmap.uninitialised(pfn) {
		mm.badUninitialised(pfn, op)
	}
	if mm.Memmap.deferredInit(pfn) {
		bug(invPageInit, mm.dumpPage(pfn), "%s on %v, whose struct page is deferred (CONFIG_DEFERRED_STRUCT_PAGE_INIT: free, not initialised yet)", op, pfn)
	}
	return p
}

// PageInitialised reports whether the struct page of frame pfn holds this
// kernel's state: memblock_free_all has run and the frame is not inside
// MEMBLOCK_RSRV_NOINIT reserved memory, or RestoreFolio restored it.
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (mm *MM) PageInitialised(pfn PFN) bool {
	mm.Memmap.checkPFN(pfn)
	return mm.Memblock.handedOver && !mm.uninitialised(pfn) && !mm.Memmap.deferredInit(pfn)
}

// Restored reports whether RestoreFolio has initialised the struct page of
// any of the n frames from pfn: whether any of them, preserved by the
// previous kernel and reserved MEMBLOCK_RSRV_NOINIT, has been handed to
// this kernel's allocator.
// Preconditions:
//   - the frames exist; otherwise panics with "pfn-in-range".
func (mm *MM) Restored(pfn PFN, n uint64) bool {
	if !mm.Frames.rangeOK(pfn, n) {
		mm.Frames.badRange(pfn, n)
	}
	m := &mm.Memmap
	if m.noinit == nil {
		return false
	}
	s, e := uint64(pfn), uint64(pfn)+n
	for w := s >> 6; w<<6 < e; w++ {
		if (m.noinit[w]&^m.uninit[w])&wordMask(w, s, e) != 0 {
			return true
		}
	}
	return false
}

// uninitialised reports whether the struct page of pfn, a valid frame, is
// one memblock_free_all left uninitialised (MEMBLOCK_RSRV_NOINIT) and
// RestoreFolio has not initialised since: it must not be read.
func (mm *MM) uninitialised(pfn PFN) bool { return mm.Memmap.uninitialised(pfn) }

// firstUninitialised returns the first frame of [start, end) whose struct
// page is uninitialised (see uninitialised), if any.
func (mm *MM) firstUninitialised(start, end PFN) (PFN, bool) {
	if mm.Memmap.uninit == nil || start >= end {
		return 0, false
	}
	s, e := uint64(start), uint64(end)
	for w := s >> 6; w<<6 < e; w++ {
		if x := mm.Memmap.uninit[w] & wordMask(w, s, e); x != 0 {
			return PFN(w<<6 + uint64(bits.TrailingZeros64(x))), true
		}
	}
	return 0, false
}

// noinitFrames yields, in address order, the runs of frames wholly inside
// MEMBLOCK_RSRV_NOINIT reserved memory, up to the end of the memmap.
// Adjacent noinit regions count as one, so a frame they share is inside.
func (mm *MM) noinitFrames() iter.Seq[pfnRange] {
	return func(yield func(pfnRange) bool) {
		n := PFN(mm.Memmap.NumPages())
		var base, end PhysAddr // the current run of noinit regions
		flush := func() bool {
			if s, e := base.PFNUp(), min(end.PFN(), n); s < e {
				return yield(pfnRange{s, e})
			}
			return true
		}
		for r := range mm.Memblock.Reserved() {
			if r.Flags&MemblockRsrvNoinit == 0 {
				continue
			}
			if r.Base != end || end == 0 {
				if !flush() {
					return
				}
				base = r.Base
			}
			end = r.End()
		}
		flush()
	}
}

// noinitBitmap returns a bit per frame set for the frames RestoreFolio
// may restore: those of memory wholly inside MEMBLOCK_RSRV_NOINIT
// reserved regions (noinitFrames less the holes, which are no preserved
// memory), or nil if there are none. MemblockFreeAll records it in
// mm.Memmap.noinit; the invariant check recomputes it to compare.
func (mm *MM) noinitBitmap(alloc func(words uint64) ([]uint64, error)) ([]uint64, error) {
	var b []uint64
	for r := range mm.noinitFrames() {
		if b == nil {
			var err error
			if b, err = alloc((mm.Memmap.NumPages() + 63) / 64); err != nil {
				return nil, err
			}
		}
		bitsSet(b, uint64(r.start), uint64(r.end))
	}
	if b != nil {
		mm.forEachHole(func(start, end PFN) {
			if start < end {
				bitsClear(b, uint64(start), uint64(end))
			}
		})
	}
	return b, nil
}

// heapBitmap allocates a bitmap of words on the Go heap.
func heapBitmap(words uint64) ([]uint64, error) { return make([]uint64, words), nil }

// MemblockFreeAll hands memory to the buddy allocator at the end of early
// boot (memblock_free_all). It
//   - initialises the struct page of every frame except those wholly inside
//     MEMBLOCK_RSRV_NOINIT reserved regions, if the memmap holds stale
//     bytes: the work of memmap_init (the early part of memory),
//     deferred_init_memmap (free ranges, CONFIG_DEFERRED_STRUCT_PAGE_INIT)
//     and memmap_init_reserved_pages -> reserve_bootmem_region (reserved
//     ranges, which skips MEMBLOCK_RSRV_NOINIT ones). Initialising clears
//     the struct pages (Memmap.zero); the noinit frames keep whatever the
//     memmap held until RestoreFolio initialises them (kho_restore_folio),
//     and nothing reads them before;
//   - tags every pageblock that overlaps KHO scratch memory MIGRATE_CMA
//     (kho_release_scratch), leaving the rest MIGRATE_MOVABLE;
//   - marks each page that overlaps a reserved region PG_reserved with
//     refcount 1 (reserve_bootmem_region), except in MEMBLOCK_RSRV_NOINIT
//     regions, whose pages stay uninitialised for KHO to restore, and
//     likewise every page outside memory (init_unavailable_range);
//   - frees every page wholly inside unreserved memory to the buddy
//     allocator in the largest aligned blocks (__free_pages_memory), scratch
//     frames onto the MIGRATE_CMA lists;
//   - sizes the per-CPU page lists from the managed pages
//     (setup_per_cpu_pageset);
//   - makes memblock read-only;
//   - brings up the slab allocator with its kmalloc caches
//     (kmem_cache_init, which mm_core_init runs right after
//     memblock_free_all): before, kernel metadata comes from memblock.
//
// Errors: EINVAL if it already ran; ENOMEM if the host cannot map the
// record of noinit frames.
func (mm *MM) MemblockFreeAll() error {
	mb := mm.Memblock
	if mb.handedOver {
		return errno.EINVAL
	}
	n := PFN(mm.Memmap.NumPages())
	noinit, err := mm.noinitBitmap(HostBitmap)
	if err != nil {
		return err
	}
	if mm.Memmap.noinit = noinit; noinit != nil {
		// uninit starts as noinit, copied run by run: words outside
		// noinit memory stay untouched (they cost the host nothing on
		// a machine far larger than it).
		if mm.Memmap.uninit, err = HostBitmap(uint64(len(noinit))); err != nil {
			FreeHostBitmap(noinit)
			mm.Memmap.noinit = nil
			return err
		}
		for r := range mm.noinitFrames() {
			ws, we := r.start>>6, (r.end+63)>>6
			copy(mm.Memmap.uninit[ws:we], noinit[ws:we])
			mm.Memmap.pending += bitsCount(noinit, uint64(r.start), uint64(r.end))
		}
	}
	m := &mm.Memmap
	m.sealed = m.pending != 0 && m.khoTails == 0 && m.pending == m.khoHeads && mm.noinitPoisoned()
	// The free memory to hand over now, and the rest deferred
	// (CONFIG_DEFERRED_STRUCT_PAGE_INIT, deferred.go).
	var now []pfnRange
	mm.deferFreeRanges(func(start, end PFN) { now = append(now, pfnRange{start, end}) })
	if mm.Memmap.stale {
		// Frames of a hole under a noinit region are skipped here too:
		// reserveBootmemRegion below writes their struct pages whole.
		// Deferred frames are cleared when deferredGrowZone initialises
		// them.
		var skip rangeCursor
		for r := range mm.noinitFrames() {
			skip.add(r)
		}
		var deferred rangeCursor
		for _, r := range mm.Memmap.deferred {
			deferred.add(r)
		}
		skip.merge(deferred)
		next := PFN(0)
		for _, r := range skip.r {
			mm.Memmap.zero(next, r.start)
			next = r.end
		}
		mm.Memmap.zero(next, n)
		mm.Memmap.stale = false
	}
	mm.Memmap.ready = true
	mm.Memmap.reopen()
	for r := range mb.Memory() {
		if r.Flags&MemblockKHOScratch == 0 {
			continue
		}
		for pb := r.Base.PFN() >> PageblockOrder; pb<<PageblockOrder < r.End().PFNUp(); pb++ {
			mm.Zone.pageblockMT[pb] = MigrateCMA
		}
	}
	for r := range mb.Reserved() {
		if r.Flags&MemblockRsrvNoinit == 0 {
			mm.reserveBootmemRegion(r.Base.PFN(), min(r.End().PFNUp(), n))
		}
	}
	// Frames outside memory are initialised PG_reserved
	// (init_unavailable_range) even under a noinit reservation: they are
	// no preserved memory RestoreFolio could give out.
	mm.forEachHole(mm.reserveBootmemRegion)
	for _, r := range now {
		mm.freeRange(r.start, r.end)
		mm.Zone.managed += uint64(r.end - r.start)
	}
	mm.zonePcpUpdate()
	mb.handedOver = true
	mm.kmemCacheInit()
	return nil
}

// noinitPoisoned reports whether the struct page of every uninitialised
// frame is poisoned (see Memmap.sealed). It reads only their flags, as
// PF_POISONED_CHECK would.
func (mm *MM) noinitPoisoned() bool {
	m := &mm.Memmap
	for r := range mm.noinitFrames() {
		for pfn := r.start; pfn < r.end; pfn++ {
			if m.uninitialised(pfn) && m.pages[pfn].flags != pagePoisonFlags {
				return false
			}
		}
	}
	return true
}

// forEachHole calls f for each run [start, end) of frames outside
// memblock.memory, in address order.
func (mm *MM) forEachHole(f func(start, end PFN)) {
	mb := mm.Memblock
	hole := PhysAddr(0)
	for r := range mb.Memory() {
		if hole < r.Base {
			f(hole.PFN(), r.Base.PFNUp())
		}
		hole = r.End()
	}
	if hole < mb.limit {
		f(hole.PFN(), PFN(mm.Memmap.NumPages()))
	}
}

// reserveBootmemRegion marks [start, end) PG_reserved with one reference
// (reserve_bootmem_region / init_unavailable_range).
func (mm *MM) reserveBootmemRegion(start, end PFN) {
	for pfn := start; pfn < end; pfn++ {
		mm.Memmap.pages[pfn] = Page{flags: PGReserved, refcount: 1}
	}
}

// RestoreFolio turns preserved frames back into a folio after kexec: the
// struct page initialisation of kho_restore_folio() / kho_restore_page()
// (kho_init_folio / kho_init_pages in recent kernels). The frames
// [pfn, pfn+2^order) must have been reserved MEMBLOCK_RSRV_NOINIT before
// memblock_free_all and not restored since. Their struct pages were never
// initialised (they hold stale bytes: see Memmap); RestoreFolio writes
// every one of them whole, head and tails, and never reads them. The folio
// gets refcount 1, which the caller owns (drop it with FolioPut; at zero
// the frames go to the buddy allocator), and counts as managed memory
// (adjust_managed_page_count).
//
// Errors: EINVAL before memblock_free_all, for an order above MaxPageOrder,
// a pfn not aligned to the order or beyond the frames, frames not wholly
// in noinit reserved memory (a hole under a noinit reservation is not
// memory), or frames already initialised.
func (mm *MM) RestoreFolio(pfn PFN, order uint) (Folio, error) {
	nr := PFN(1) << order
	// The noinit bitmap holds exactly the frames of memory wholly inside
	// MEMBLOCK_RSRV_NOINIT reservations (MemblockFreeAll).
	if !mm.Memblock.handedOver || order > MaxPageOrder || pfn&(nr-1) != 0 ||
		!mm.Frames.rangeOK(pfn, uint64(nr)) || mm.Memmap.noinit == nil {
		return 0, errno.EINVAL
	}
	if !mm.restoreBits(pfn, nr) {
		return 0, errno.EINVAL
	}
	mm.Memmap.pending -= uint64(nr)
	mm.Memmap.reopen()
	mm.Memmap.pages[pfn] = Page{} // the head whole; prepNewPage writes the tails whole
	mm.prepNewPage(pfn, order, 0)
	mm.Zone.managed += uint64(nr)
	return Folio(pfn), nil
}

// restoreBits is RestoreFolio's check and record: the frames [pfn,
// pfn+nr), a naturally aligned block, must all be noinit and not restored
// before (then perhaps freed, split or reallocated); it clears their
// uninit bits and reports whether it did. Only RestoreFolio initialises
// the struct pages of noinit memory, so its record of what it restored is
// exact, and the only thing to go by: the struct pages themselves hold
// stale bytes (MemblockFreeAll set up both bitmaps, since the frames are
// noinit): restored frames are noinit ones whose uninit bit is clear. A
// block of at most 64 frames lies in one word of each bitmap.
func (mm *MM) restoreBits(pfn, nr PFN) bool {
	m := &mm.Memmap
	if nr <= 64 {
		w, bit := pfn>>6, (uint64(1)<<nr-1)<<(pfn&63)
		if nr == 64 {
			bit = ^uint64(0)
		}
		if m.noinit[w]&bit != bit || m.uninit[w]&bit != bit {
			return false
		}
		m.uninit[w] &^= bit
		return true
	}
	s, e := uint64(pfn), uint64(pfn+nr)
	if !bitsAll(m.noinit, s, e) || !bitsAll(m.uninit, s, e) {
		return false
	}
	bitsClear(m.uninit, s, e)
	return true
}

// wordMask returns the bits of word w of a bitmap that fall in [s, e),
// which must overlap the word.
func wordMask(w, s, e uint64) uint64 {
	lo, hi := max(s, w<<6)-w<<6, min(e, w<<6+64)-w<<6
	m := ^uint64(0) << lo
	if hi < 64 {
		m &= 1<<hi - 1
	}
	return m
}

// bitsCount returns how many of bits [s, e) of b are set.
func bitsCount(b []uint64, s, e uint64) uint64 {
	var n uint64
	for w := s >> 6; w<<6 < e; w++ {
		n += uint64(bits.OnesCount64(b[w] & wordMask(w, s, e)))
	}
	return n
}

// bitsAny reports whether any of bits [s, e) of b is set.
func bitsAny(b []uint64, s, e uint64) bool {
	for w := s >> 6; w<<6 < e; w++ {
		if b[w]&wordMask(w, s, e) != 0 {
			return true
		}
	}
	return false
}

// bitsAll reports whether every one of bits [s, e) of b is set.
func bitsAll(b []uint64, s, e uint64) bool {
	for w := s >> 6; w<<6 < e; w++ {
		if m := wordMask(w, s, e); b[w]&m != m {
			return false
		}
	}
	return true
}

// bitsClear clears bits [s, e) of b.
func bitsClear(b []uint64, s, e uint64) {
	for w := s >> 6; w<<6 < e; w++ {
		b[w] &^= wordMask(w, s, e)
	}
}

// bitsSet sets bits [s, e) of b.
func bitsSet(b []uint64, s, e uint64) {
	for w := s >> 6; w<<6 < e; w++ {
		b[w] |= wordMask(w, s, e)
	}
}

// FreeReservedPages gives n reserved frames from pfn to the buddy allocator
// (free_reserved_area: ClearPageReserved, then __free_page), e.g. boot data
// the kernel no longer needs. They go straight to the buddy lists in the
// largest aligned blocks; Linux frees them a page at a time through the
// per-CPU lists, whose batches return them to the same place.
//
// Errors: EINVAL, changing nothing, unless every frame is PG_reserved with
// refcount 1 and otherwise clean.
func (mm *MM) FreeReservedPages(pfn PFN, n uint64) error {
	if !mm.Frames.rangeOK(pfn, n) || !mm.allReservedClean(pfn, n) {
		return errno.EINVAL
	}
	clear(mm.Memmap.pages[pfn : pfn+PFN(n)])
	mm.freeRange(pfn, pfn+PFN(n))
	mm.Zone.managed += n
	return nil
}

// InitCMAReservedPageblock gives a reserved pageblock of KHO scratch to
// the buddy allocator as MIGRATE_CMA (init_cma_reserved_pageblock): how the
// first kernel releases the scratch it reserved at boot with PhysAlloc and
// MarkKHOScratch.
//
// Errors: EINVAL, changing nothing, unless pfn starts a pageblock that
// overlaps scratch memory and all of whose frames are PG_reserved with
// refcount 1 and otherwise clean.
func (mm *MM) InitCMAReservedPageblock(pfn PFN) error {
	if pfn%PageblockNrPages != 0 || !mm.Frames.rangeOK(pfn, PageblockNrPages) ||
		!mm.pageblockInScratch(pfn) || !mm.allReservedClean(pfn, PageblockNrPages) {
		return errno.EINVAL
	}
	clear(mm.Memmap.pages[pfn : pfn+PageblockNrPages])
	mm.Zone.pageblockMT[pfn>>PageblockOrder] = MigrateCMA
	mm.freeOnePage(pfn, PageblockOrder)
	mm.Zone.managed += PageblockNrPages
	return nil
}

// pageblockInScratch reports whether the pageblock at pfn overlaps memory
// flagged MEMBLOCK_KHO_SCRATCH.
func (mm *MM) pageblockInScratch(pfn PFN) bool {
	base, end := pfn.Phys(), (pfn + PageblockNrPages).Phys()
	for _, r := range mm.Memblock.memory.touching(base, end) {
		if r.Flags&MemblockKHOScratch != 0 && r.Base < end && r.End() > base {
			return true
		}
	}
	return false
}

// allReservedClean reports whether frames [pfn, pfn+n) are all PG_reserved
// with refcount 1 and otherwise clean; never, without reading them, if any
// has an uninitialised struct page.
func (mm *MM) allReservedClean(pfn PFN, n uint64) bool {
	if _, ok := mm.firstUninitialised(pfn, pfn+PFN(n)); ok {
		return false
	}
	for _, p := range mm.Memmap.pages[pfn : pfn+PFN(n)] {
		if p != (Page{flags: PGReserved, refcount: 1}) {
			return false
		}
	}
	return true
}

// dumpPage describes a page for a Violation, as dump_page() does. It only
// prints: an uninitialised struct page is shown as it is, marked so.
func (mm *MM) dumpPage(pfn PFN) string {
	if uint64(pfn) >= mm.Memmap.NumPages() {
		return fmt.Sprintf("%v: no struct page", pfn)
	}
	if mm.uninitialised(pfn) {
		// Its bytes are the previous kernel's: not this kernel's to read,
		// not even in a dump.
		return fmt.Sprintf("page %v: uninitialised (MEMBLOCK_RSRV_NOINIT, not restored) (pageblock %v)",
			pfn, mm.Zone.pageblockMT[pfn>>PageblockOrder])
	}
	if mm.Memmap.deferredInit(pfn) {
		return fmt.Sprintf("page %v: deferred (free, struct page not initialised yet) (pageblock %v)",
			pfn, mm.Zone.pageblockMT[pfn>>PageblockOrder])
	}
	return fmt.Sprintf("page %v: %v (pageblock %v)", pfn, &mm.Memmap.pages[pfn],
		mm.Zone.pageblockMT[pfn>>PageblockOrder])
}
