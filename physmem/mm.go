package physmem

import (
	"fmt"

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
//	NewMM            memmap all uninitialised; memblock.memory = all frames (e820)
//	Memblock.*       reserve, allocate, mark scratch, scratch-only mode
//	MemblockFreeAll  the buddy allocator takes every unreserved frame
//	AllocPages, Folio*, RestoreFolio, ...  the running kernel
//	Close            the memmap is gone (kexec, or the end of the simulation)
//
// MM is not safe for concurrent use.
type MM struct {
	Frames   *Frames   // shared with every kernel of the machine
	Memblock *Memblock // boot allocator; read-only after MemblockFreeAll
	Memmap   Memmap    // struct pages, this kernel's
	Zone     Zone      // the buddy allocator's lists and counters
	faults   *fault.Injector
	restored []uint64 // a bit per frame RestoreFolio initialised (allocated at the first)
}

// NewMM boots a kernel's memory model over frames: a fresh all-zero memmap
// (every page uninitialised, as memmap_init leaves pages reserved until
// memblock_free_all), a memblock whose memory is the whole machine
// (e820__memblock_setup; Remove makes holes), and an empty buddy allocator.
// Every page allocation, from memblock or the buddy allocator, reports to
// faults (may be nil) at fault.PageAlloc first.
//
// Errors: EINVAL if frames is nil, closed, or beyond the 2^32-1 frames the
// memmap can link (16 TiB); ENOMEM if the host cannot map the memmap. The
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
		faults: faults,
	}
	if err := mm.Memblock.Add(0, frames.Size()); err != nil {
		_ = mm.Memmap.close(frames)
		return nil, err
	}
	return mm, nil
}

// Close ends the memmap; no *Page obtained from this MM may be used
// afterwards (its host memory is cleared and reused for the next kernel's
// memmap on the same Frames, or unmapped). The Frames are not closed.
// Closing twice returns EBADF.
func (mm *MM) Close() error { return mm.Memmap.close(mm.Frames) }

// Page returns the struct page of frame pfn (pfn_to_page).
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (mm *MM) Page(pfn PFN) *Page { return mm.Memmap.Page(pfn) }

// MemblockFreeAll hands memory to the buddy allocator at the end of early
// boot (memblock_free_all). It
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
//   - makes memblock read-only.
//
// Errors: EINVAL if it already ran.
func (mm *MM) MemblockFreeAll() error {
	mb := mm.Memblock
	if mb.handedOver {
		return errno.EINVAL
	}
	n := PFN(mm.Memmap.NumPages())
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
	hole := PhysAddr(0)
	for r := range mb.Memory() {
		if hole < r.Base {
			mm.reserveBootmemRegion(hole.PFN(), r.Base.PFNUp())
		}
		hole = r.End()
	}
	if hole < mb.limit {
		mm.reserveBootmemRegion(hole.PFN(), n)
	}
	for r := range mb.FreeRanges() {
		start, end := r.Base.PFNUp(), r.End().PFN()
		if start < end {
			mm.freeRange(start, end)
			mm.Zone.managed += uint64(end - start)
		}
	}
	mm.zonePcpUpdate()
	mb.handedOver = true
	return nil
}

// reserveBootmemRegion marks [start, end) PG_reserved with one reference
// (reserve_bootmem_region / init_unavailable_range).
func (mm *MM) reserveBootmemRegion(start, end PFN) {
	for pfn := start; pfn < end; pfn++ {
		mm.Memmap.pages[pfn] = Page{flags: PGReserved, refcount: 1}
	}
}

// RestoreFolio turns preserved frames back into a folio after kexec: the
// struct page initialisation of kho_restore_folio() / kho_restore_page().
// The frames [pfn, pfn+2^order) must have been reserved MEMBLOCK_RSRV_NOINIT
// before memblock_free_all and not restored since. The folio gets refcount
// 1, which the caller owns (drop it with FolioPut; at zero the frames go to
// the buddy allocator), and counts as managed memory
// (adjust_managed_page_count).
//
// Errors: EINVAL before memblock_free_all, for an order above MaxPageOrder,
// a pfn not aligned to the order or beyond memory, frames not wholly in
// noinit reserved memory, or frames already initialised.
func (mm *MM) RestoreFolio(pfn PFN, order uint) (Folio, error) {
	nr := PFN(1) << order
	if !mm.Memblock.handedOver || order > MaxPageOrder || pfn&(nr-1) != 0 ||
		!mm.Frames.rangeOK(pfn, uint64(nr)) ||
		!mm.Memblock.IsReservedNoinit(pfn.Phys(), uint64(nr)*PageSize) {
		return 0, errno.EINVAL
	}
	// Restored before (then perhaps freed, split or reallocated)? Only
	// RestoreFolio initialises the struct pages of noinit memory, so its
	// record of what it restored is exact; the head must still be
	// uninitialised too.
	if mm.restored == nil {
		mm.restored = make([]uint64, (mm.Memmap.NumPages()+63)/64)
	}
	if !mm.Memmap.pages[pfn].uninitialised() || !bitsClearSet(mm.restored, uint64(pfn), uint64(pfn+nr)) {
		return 0, errno.EINVAL
	}
	mm.prepNewPage(pfn, order, 0)
	mm.Zone.managed += uint64(nr)
	return Folio(pfn), nil
}

// bitsClearSet sets bits [s, e) of b if none of them is set, and reports
// whether it did; b is unchanged otherwise.
func bitsClearSet(b []uint64, s, e uint64) bool {
	mask := func(w uint64) uint64 {
		lo, hi := max(s, w<<6)-w<<6, min(e, w<<6+64)-w<<6
		m := ^uint64(0) << lo
		if hi < 64 {
			m &= 1<<hi - 1
		}
		return m
	}
	for w := s >> 6; w<<6 < e; w++ {
		if b[w]&mask(w) != 0 {
			return false
		}
	}
	for w := s >> 6; w<<6 < e; w++ {
		b[w] |= mask(w)
	}
	return true
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

func (mm *MM) allReservedClean(pfn PFN, n uint64) bool {
	for _, p := range mm.Memmap.pages[pfn : pfn+PFN(n)] {
		if p != (Page{flags: PGReserved, refcount: 1}) {
			return false
		}
	}
	return true
}

// dumpPage describes a page for a Violation, as dump_page() does.
func (mm *MM) dumpPage(pfn PFN) string {
	if uint64(pfn) >= mm.Memmap.NumPages() {
		return fmt.Sprintf("%v: no struct page", pfn)
	}
	return fmt.Sprintf("page %v: %v (pageblock %v)", pfn, &mm.Memmap.pages[pfn],
		mm.Zone.pageblockMT[pfn>>PageblockOrder])
}
