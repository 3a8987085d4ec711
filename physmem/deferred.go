package physmem

import (
	"slices"

	"khosim/errno"
)

// Deferred struct page initialisation (CONFIG_DEFERRED_STRUCT_PAGE_INIT).
//
// A kernel built with it initialises at boot only the struct pages early
// boot needs: the low zones whole and the first section of the highest
// one (memmap_init_range / defer_init stop at pgdat->first_deferred_pfn),
// and the reserved memory above (reserve_bootmem_region ->
// init_deferred_page) and KHO scratch (memmap_init_kho_scratch_pages).
// The free memory above first_deferred_pfn stays uninitialised; when the
// allocator runs short before page_alloc_init_late, deferred_grow_zone
// initialises and frees at least another section of it
// (deferred_init_maxorder), and page_alloc_init_late's
// deferred_init_memmap threads initialise the rest.
//
// khosim differs on purpose in one respect: page_alloc_init_late does not
// initialise the rest. Deferred memory is initialised only when the
// allocator needs it, a section at a time from the lowest address up, as
// deferred_grow_zone does, so that a memmap nobody touches costs the host
// nothing and machines far larger than the host boot. What a user sees is
// what Linux shows after page_alloc_init_late: deferred frames count as
// free (NR_FREE_PAGES, MIGRATE_MOVABLE) and managed memory, every free
// frame can be allocated, and walkers of the memmap (FreeBlockAt,
// PageIsFree) see them as free. What differs is only which free frame an
// allocation gets, and nothing promises that. The struct page of a
// deferred frame is not initialised: Page refuses it (MM.Page panics
// with "page-initialised"; Memmap.Page hands it out poisoned).
//
// The state lives in Memmap.deferred: the free frames not initialised
// yet, as sorted disjoint runs consumed from the front.

// PagesPerSection is PAGES_PER_SECTION on x86-64 (SECTION_SIZE_BITS 27:
// 128 MiB), the unit of deferral and of deferred_grow_zone (MM.sectionPages,
// which the tests shrink so that small machines defer too).
const PagesPerSection = 1 << (27 - PageShift)

// The x86-64 zone boundaries defer_init goes by: the low zones, ZONE_DMA
// (below 16 MiB) and ZONE_DMA32 (below 4 GiB), are initialised whole when
// a higher zone exists. khosim has one zone; it models them for this
// computation only.
const (
	zoneDMAEnd   = PFN(16 << 20 >> PageShift)
	zoneDMA32End = PFN(4 << 30 >> PageShift)
)

// SetDeferredStructPageInit turns deferred struct page initialisation on
// or off for this kernel (the build's CONFIG_DEFERRED_STRUCT_PAGE_INIT).
//
// Errors: EINVAL after memblock_free_all.
func (mm *MM) SetDeferredStructPageInit(on bool) error {
	if mm.Memblock.handedOver {
		return errno.EINVAL
	}
	mm.deferredInit = on
	return nil
}

// DeferredStructPageInit reports whether this kernel defers struct page
// initialisation.
func (mm *MM) DeferredStructPageInit() bool { return mm.deferredInit }

// DeferredPages returns the free frames whose struct pages are not
// initialised yet (counted free and managed: see the package comment on
// deferral).
func (mm *MM) DeferredPages() uint64 { return mm.Zone.deferred }

// firstDeferredPFN returns pgdat->first_deferred_pfn as defer_init sets it
// on this memory: the first section-aligned frame of memory in the highest
// zone once more than PAGES_PER_SECTION frames of that zone have been
// initialised; ok is false if no frame is deferred.
func (mm *MM) firstDeferredPFN() (PFN, bool) {
	var end PFN
	for r := range mm.Memblock.Memory() {
		end = r.End().PFN()
	}
	zoneStart := PFN(0)
	switch {
	case end > zoneDMA32End:
		zoneStart = zoneDMA32End
	case end > zoneDMAEnd:
		zoneStart = zoneDMAEnd
	}
	var seen uint64 // frames of the zone memmap_init has initialised so far
	for r := range mm.Memblock.Memory() {
		s, e := max(r.Base.PFNUp(), zoneStart), r.End().PFN()
		if s >= e {
			continue
		}
		// The first pfn p >= s, section aligned, with seen + (p - s) >=
		// PAGES_PER_SECTION (nr_initialised > PAGES_PER_SECTION counts
		// p itself).
		sec := mm.sectionPages
		p := max(s, s+PFN(uint64(sec)-min(seen, uint64(sec))))
		p = (p + sec - 1) &^ (sec - 1)
		if p < e {
			return p, true
		}
		seen += uint64(e - s)
	}
	return 0, false
}

// deferFreeRanges splits the free memory memblock_free_all hands over into
// what it frees now and what it defers (see the package comment on
// deferral): free memory from first_deferred_pfn up, less KHO scratch,
// which is initialised early. It records the deferred runs and calls free
// for the rest, in address order.
func (mm *MM) deferFreeRanges(free func(start, end PFN)) {
	fd, ok := mm.firstDeferredPFN()
	for r := range mm.Memblock.FreeRanges() {
		start, end := r.Base.PFNUp(), r.End().PFN()
		if start >= end {
			continue
		}
		if !mm.deferredInit || !ok || r.Flags&MemblockKHOScratch != 0 || end <= fd {
			free(start, end)
			continue
		}
		if start < fd {
			free(start, fd)
			start = fd
		}
		m := &mm.Memmap
		if k := len(m.deferred) - 1; k >= 0 && m.deferred[k].end == start {
			m.deferred[k].end = end
		} else {
			m.deferred = append(m.deferred, pfnRange{start, end})
		}
		mm.Zone.deferred += uint64(end - start)
		mm.Zone.managed += uint64(end - start)
	}
	mm.Memmap.relimit()
}

// deferredGrowZone is deferred_grow_zone(): it initialises the struct
// pages of at least 2^order deferred frames, rounded up to a section
// (PAGES_PER_SECTION), from the lowest deferred frame up, and frees them
// to the buddy allocator in the largest aligned blocks
// (deferred_init_maxorder). It reports whether it freed anything.
func (mm *MM) deferredGrowZone(order uint) bool {
	m := &mm.Memmap
	if len(m.deferred) == 0 {
		return false
	}
	sec := mm.sectionPages
	need := (uint64(1)<<order + uint64(sec) - 1) &^ (uint64(sec) - 1)
	var done uint64
	for done < need && len(m.deferred) > 0 {
		r := &m.deferred[0]
		// Up to the section boundary that brings done to need, or the
		// end of the run.
		end := r.end
		if want := r.start + PFN(need-done); want < end {
			end = min(end, (want+sec-1)&^(sec-1))
		}
		start := r.start
		r.start = end
		if r.start == r.end {
			m.deferred = m.deferred[1:]
		}
		m.relimit()
		m.zero(start, end)
		mm.Zone.deferred -= uint64(end - start)
		mm.freeRange(start, end)
		done += uint64(end - start)
	}
	return true
}

// deferredAt returns the run of deferred frames holding pfn, if any.
func (m *Memmap) deferredAt(pfn PFN) (pfnRange, bool) {
	if len(m.deferred) == 0 || pfn < m.deferred[0].start {
		return pfnRange{}, false
	}
	i, found := slices.BinarySearchFunc(m.deferred, pfn, func(r pfnRange, p PFN) int {
		switch {
		case r.end <= p:
			return -1
		case r.start > p:
			return 1
		}
		return 0
	})
	if !found {
		return pfnRange{}, false
	}
	return m.deferred[i], true
}

// relimit recomputes limit, below which no frame is deferred.
func (m *Memmap) relimit() {
	m.limit = PFN(len(m.pages))
	if len(m.deferred) > 0 {
		m.limit = m.deferred[0].start
	}
	m.reopen()
}

// deferredBlock returns the order of the largest aligned block at pfn, a
// deferred frame of run r, that r holds whole: what FreeBlockAt reports
// for deferred memory, free as it is after page_alloc_init_late.
func deferredBlock(pfn PFN, r pfnRange) uint {
	order := uint(MaxPageOrder)
	for order > 0 && (pfn&(1<<order-1) != 0 || pfn+1<<order > r.end) {
		order--
	}
	return order
}

// checkDeferred checks the record of deferred frames: sorted, disjoint,
// inside free memory (neither reserved nor scratch), counted exactly in
// the zone, and limit at its first frame. It reads no struct page.
func (mm *MM) checkDeferred() error {
	m := &mm.Memmap
	var n uint64
	prev := PFN(0)
	for i, r := range m.deferred {
		if r.start >= r.end || (i > 0 && r.start <= prev) || uint64(r.end) > uint64(len(m.pages)) {
			return mm.violation(invDeferred, r.start, "deferred run %d [%v, %v) empty, unsorted or beyond the memmap", i, r.start, r.end)
		}
		prev = r.end
		n += uint64(r.end - r.start)
	}
	if n != mm.Zone.deferred {
		return mm.violation(invDeferred, 0, "deferred runs hold %d frames, the zone counts %d", n, mm.Zone.deferred)
	}
	if want := func() PFN {
		if len(m.deferred) > 0 {
			return m.deferred[0].start
		}
		return PFN(len(m.pages))
	}(); m.limit != want {
		return mm.violation(invDeferred, m.limit, "memmap limit %v, want %v", m.limit, want)
	}
	for r := range mm.Memblock.Reserved() {
		if err := mm.deferredOverlap(r.Base.PFN(), r.End().PFNUp(), "reserved region "+r.String()); err != nil {
			return err
		}
	}
	for r := range mm.Memblock.Memory() {
		if r.Flags&MemblockKHOScratch != 0 {
			if err := mm.deferredOverlap(r.Base.PFN(), r.End().PFNUp(), "KHO scratch "+r.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// deferredOverlap reports a violation if a deferred run overlaps [start,
// end).
func (mm *MM) deferredOverlap(start, end PFN, what string) error {
	for _, r := range mm.Memmap.deferred {
		if r.start < end && start < r.end {
			return mm.violation(invDeferred, max(r.start, start), "deferred run [%v, %v) overlaps %s", r.start, r.end, what)
		}
	}
	return nil
}
