package physmem

import (
	"math/bits"
	"unsafe"

	"khosim/invariant"
)

// CheckInvariants verifies the kernel's memory model and returns the first
// broken invariant as an *invariant.Violation, or nil. It runs in
// O(frames + regions), reading the memmap once, and never reads a struct
// page that is not initialised:
//   - memblock: region arrays sorted, disjoint, merged, inside memory;
//   - before memblock_free_all: allocator empty, and every page all zero
//     unless the memmap is recycled (its stale bytes are not checked);
//   - after: the record of noinit frames (wholly inside
//     MEMBLOCK_RSRV_NOINIT reserved regions) agrees with memblock, and
//     what RestoreFolio restored lies within it;
//   - every frame in exactly one state — in a free block on the
//     buddy lists (PG_buddy head, refcount 0, aligned to its order,
//     interior pages untouched) or on a per-CPU list (head with refcount 0
//     and no flags, a cached order, aligned, interior untouched), allocated
//     (refcount > 0; a large folio's tails point to its head), PG_reserved
//     (overlapping a reserved region or a hole), all zero (overlapping a
//     noinit region without being wholly inside it), or uninitialised (a
//     noinit frame RestoreFolio has not restored: skipped unread, since
//     its struct page holds stale bytes);
//   - no free block (buddy or per-CPU) and no allocated folio covers an
//     uninitialised frame, and no free or per-CPU list links to one: the
//     allocator never hands out a preserved frame before it is restored;
//   - free blocks on the buddy lists coalesced (no buddy of the same order
//     and migratetype free on the buddy lists: a buddy on a per-CPU list
//     legitimately blocks merging), of their pageblocks' migratetype;
//   - free lists and per-CPU lists well-formed, each holding exactly its
//     blocks;
//   - nr_free, pcp->count, NR_FREE_PAGES and managed_pages agree with the
//     memmap;
//   - pageblocks MIGRATE_CMA exactly where they overlap KHO scratch;
//   - the slab allocator: every slab page consistent with its cache and
//     its free list (threaded through the free objects' bytes) holding
//     exactly its free objects; every cache's counters and lists matching
//     its slabs, no slab off its lists (leaked); vmalloc areas holding
//     allocated pages.
func (mm *MM) CheckInvariants() error {
	if err := mm.Memblock.check(); err != nil {
		return invariant.New(pkg, invMemblockRegions, mm.Memblock.String(), "%v", err)
	}
	if !mm.Memblock.handedOver {
		return mm.checkBeforeFreeAll()
	}
	if v := mm.checkNoinitRecord(); v != nil {
		return v
	}
	if v := mm.checkPageblocks(); v != nil {
		return v
	}
	if err := mm.checkDeferred(); err != nil {
		return err
	}
	var c checker
	c.mm = mm
	if v := c.walkMemmap(); v != nil {
		return v
	}
	if v := c.checkFreeLists(); v != nil {
		return v
	}
	if v := c.checkPcpLists(); v != nil {
		return v
	}
	if v := c.checkSlabCaches(); v != nil {
		return v
	}
	if z := &mm.Zone; z.managed != c.freeFrame+c.allocated {
		return invariant.New(pkg, invFreeCounts, z.String(), "managed_pages %d, but %d frames are free and %d allocated",
			z.managed, c.freeFrame, c.allocated)
	}
	return nil
}

// violation builds a Violation whose dump shows the page and the zone.
func (mm *MM) violation(name string, pfn PFN, detail string, args ...any) *invariant.Violation {
	return invariant.New(pkg, name, mm.dumpPage(pfn)+"\n"+mm.Zone.String(), detail, args...)
}

func (mm *MM) checkBeforeFreeAll() error {
	z := &mm.Zone
	if z.managed != 0 || z.NrFreePages() != 0 {
		return invariant.New(pkg, invFreeCounts, z.String(), "buddy allocator populated before memblock_free_all")
	}
	for pb, mt := range z.pageblockMT {
		if mt != MigrateMovable {
			return mm.violation(invPageblockMT, PFN(pb)<<PageblockOrder, "pageblock %d is %v before memblock_free_all", pb, mt)
		}
	}
	if mm.Memmap.noinit != nil || mm.Memmap.uninit != nil {
		return invariant.New(pkg, invNoinitReserved, z.String(), "noinit frames recorded before memblock_free_all")
	}
	// A recycled memmap holds the previous kernel's struct pages until
	// memblock_free_all initialises it: nothing to check in them.
	if mm.Memmap.stale {
		return nil
	}
	if i := firstNonZero(mm.Memmap.pages); i >= 0 {
		return mm.violation(invFrameState, PFN(i), "page initialised before memblock_free_all")
	}
	return nil
}

// checkNoinitRecord compares the noinit bitmap, which the allocator goes
// by to avoid uninitialised struct pages, with memblock's noinit regions
// less the holes in memory,
// and checks that RestoreFolio restored only noinit frames. It reads no
// struct page.
func (mm *MM) checkNoinitRecord() *invariant.Violation {
	words := (mm.Memmap.NumPages() + 63) / 64
	want, _ := mm.noinitBitmap(heapBitmap)
	dump := func() string { return mm.Memblock.String() + mm.Zone.String() }
	if (want == nil) != (mm.Memmap.noinit == nil) || (mm.Memmap.noinit != nil && (uint64(len(mm.Memmap.noinit)) != words || len(mm.Memmap.uninit) != len(mm.Memmap.noinit))) {
		return invariant.New(pkg, invNoinitReserved, dump(), "noinit bitmap of %d words (uninit %d), memblock's noinit regions need %d",
			len(mm.Memmap.noinit), len(mm.Memmap.uninit), len(want))
	}
	for w := range mm.Memmap.noinit {
		if mm.Memmap.noinit[w] != want[w] {
			return invariant.New(pkg, invNoinitReserved, dump(), "noinit bitmap word %d is %#x, memblock's noinit regions make it %#x",
				w, mm.Memmap.noinit[w], want[w])
		}
		if x := mm.Memmap.uninit[w] &^ mm.Memmap.noinit[w]; x != 0 {
			return invariant.New(pkg, invNoinitReserved, dump(), "%v uninitialised, but it is not noinit",
				PFN(uint64(w)<<6+uint64(bits.TrailingZeros64(x))))
		}
	}
	return nil
}

// coversUninitialised checks that the block or folio of 2^order frames at
// pfn covers no frame whose struct page is uninitialised, before anything
// reads the struct pages of its interior. (Small enough to inline: the
// walk calls it for every block.)
func (c *checker) coversUninitialised(pfn PFN, order uint, what string) *invariant.Violation {
	if c.mm.Memmap.noinit == nil && pfn+1<<order <= c.mm.Memmap.limit {
		return nil
	}
	return c.coversUninitialisedSlow(pfn, order, what)
}

func (c *checker) coversUninitialisedSlow(pfn PFN, order uint, what string) *invariant.Violation {
	if u, ok := c.mm.firstUninitialised(pfn, pfn+1<<order); ok {
		return c.mm.violation(invNoinitReserved, pfn, "%s of order %d at %v covers %v, preserved (noinit) and not restored",
			what, order, pfn, u)
	}
	end := pfn + 1<<order
	for _, r := range c.mm.Memmap.deferred {
		if r.start < end && pfn < r.end {
			return c.mm.violation(invDeferred, pfn, "%s of order %d at %v covers %v, deferred (struct page not initialised)",
				what, order, pfn, max(pfn, r.start))
		}
	}
	return nil
}

// checkPageblocks compares each pageblock's migratetype with KHO scratch.
func (mm *MM) checkPageblocks() *invariant.Violation {
	want := make([]MigrateType, len(mm.Zone.pageblockMT))
	for r := range mm.Memblock.Memory() {
		if r.Flags&MemblockKHOScratch != 0 {
			for pb := r.Base.PFN() >> PageblockOrder; pb<<PageblockOrder < r.End().PFNUp(); pb++ {
				want[pb] = MigrateCMA
			}
		}
	}
	for pb, mt := range mm.Zone.pageblockMT {
		if mt != want[pb] {
			return mm.violation(invPageblockMT, PFN(pb)<<PageblockOrder,
				"pageblock %d is %v, want %v (MIGRATE_CMA exactly where it overlaps KHO scratch)", pb, mt, want[pb])
		}
	}
	return nil
}

// checker carries the state of one memmap walk.
type checker struct {
	mm        *MM
	blocks    [MaxPageOrder + 1][NrMigrateTypes]uint64 // free blocks found in the memmap
	pcp       [nrPcpLists]uint64                       // per-CPU blocks found in the memmap
	freeFrame uint64
	allocated uint64 // frames in allocated folios

	slabs   []slabCensus // by cache id: what the memmap's slab pages hold
	visited []uint64     // scratch bitmap of a free-list walk
}

// slabCensus is what the memmap walk found of one cache.
type slabCensus struct {
	slabs, inuse, empty uint64
	pages, objs         uint64
}

// walkMemmap classifies every frame, skipping over free blocks and large
// folios once their interior is checked.
func (c *checker) walkMemmap() *invariant.Violation {
	mm := c.mm
	pages := mm.Memmap.pages
	n := PFN(len(pages))
	reserved, noinit := mm.pfnRanges()
	anyNoinit := mm.Memmap.noinit != nil
	for pfn := PFN(0); pfn < n; {
		// Preserved and not restored: its struct page holds stale bytes
		// (see Memmap.stale) and is skipped unread. Blocks and folios
		// that would cover it are caught at their heads.
		if anyNoinit && mm.uninitialised(pfn) {
			pfn++
			continue
		}
		// Deferred: free, its struct page not initialised yet, unread.
		if pfn >= mm.Memmap.limit {
			if r, ok := mm.Memmap.deferredAt(pfn); ok {
				c.freeFrame += uint64(r.end - pfn)
				pfn = r.end
				continue
			}
		}
		p := &pages[pfn]
		if p.mapcount < 0 {
			return mm.violation(invMapcount, pfn, "negative mapcount")
		}
		switch {
		case p.flags&PGBuddy != 0:
			order, v := c.checkFreeBlock(pfn)
			if v != nil {
				return v
			}
			pfn += 1 << order
		case p.flags&PGSlab != 0:
			order, v := c.checkSlab(pfn)
			if v != nil {
				return v
			}
			pfn += 1 << order
		case p.flags&PGHead != 0:
			order, v := c.checkFolio(pfn)
			if v != nil {
				return v
			}
			pfn += 1 << order
		case p.flags&PGTail != 0:
			return mm.violation(invCompound, pfn, "tail page outside any large folio")
		case p.refcount == 0 && p.lru != [2]uint32{}:
			order, v := c.checkPcpBlock(pfn)
			if v != nil {
				return v
			}
			pfn += 1 << order
		case p.flags&PGReserved != 0:
			if p.refcount <= 0 || p.flags>>flagsOrderShift != 0 || p.lru != [2]uint32{} {
				return mm.violation(invFrameState, pfn, "reserved page with refcount %d or allocator state", p.refcount)
			}
			if !reserved.overlaps(pfn, pfn+1) {
				return mm.violation(invFrameState, pfn, "PG_reserved page outside reserved memory and holes")
			}
			pfn++
		case p.refcount > 0:
			if p.flags>>flagsOrderShift != 0 || p.lru != [2]uint32{} {
				return mm.violation(invFrameState, pfn, "order-0 page with allocator state")
			}
			c.allocated++
			pfn++
		case *p == Page{}:
			// Only a frame partly in a noinit region (which
			// memblock_free_all neither reserves nor frees) stays all
			// zero; a restored frame is wholly noinit and always owned.
			if !noinit.overlaps(pfn, pfn+1) || mm.Restored(pfn, 1) {
				return mm.violation(invFrameState, pfn, "frame neither free, allocated, reserved nor preserved (leaked)")
			}
			pfn++
		default:
			return mm.violation(invFrameState, pfn, "page with refcount %d neither free, allocated nor reserved", p.refcount)
		}
	}
	return nil
}

// checkFreeBlock checks the free block whose head is at pfn.
func (c *checker) checkFreeBlock(pfn PFN) (uint, *invariant.Violation) {
	mm := c.mm
	pages := mm.Memmap.pages
	p := &pages[pfn]
	order := uint(p.private)
	nr := PFN(1) << order
	if p.flags != PGBuddy || p.refcount != 0 || p.mapcount != 0 || p.mapping != 0 || p.index != 0 {
		return 0, mm.violation(invFreeBlock, pfn, "free block head carries state beyond PG_buddy")
	}
	if p.private > MaxPageOrder || pfn&(nr-1) != 0 || pfn+nr > PFN(len(pages)) {
		return 0, mm.violation(invFreeBlock, pfn, "free block of order %d misaligned or beyond the zone", p.private)
	}
	if v := c.coversUninitialised(pfn, order, "free block"); v != nil {
		return 0, v
	}
	mt := mm.Zone.pageblockMT[pfn>>PageblockOrder]
	for i := pfn; i < pfn+nr; i += PageblockNrPages {
		if mm.Zone.pageblockMT[i>>PageblockOrder] != mt {
			return 0, mm.violation(invFreeBlock, pfn, "free block of order %d spans %v and %v pageblocks",
				order, mt, mm.Zone.pageblockMT[i>>PageblockOrder])
		}
	}
	if i := firstNonZero(pages[pfn+1 : pfn+nr]); i >= 0 {
		return 0, mm.violation(invFreeBlock, pfn+1+PFN(i), "page inside the free block at %v is not clear", pfn)
	}
	if buddy := pfn ^ nr; order < MaxPageOrder && buddy+nr <= PFN(len(pages)) && !mm.uninitialised(buddy) &&
		(buddy < mm.Memmap.limit || !mm.Memmap.deferredInit(buddy)) {
		bp := &pages[buddy]
		if bp.flags == PGBuddy && bp.private == uint64(order) && mm.Zone.pageblockMT[buddy>>PageblockOrder] == mt {
			return 0, mm.violation(invCoalesced, pfn, "free buddies %v and %v of order %d not merged", pfn, buddy, order)
		}
	}
	c.blocks[order][mt]++
	c.freeFrame += uint64(nr)
	return order, nil
}

// checkFolio checks the large folio whose head is at pfn.
func (c *checker) checkFolio(pfn PFN) (uint, *invariant.Violation) {
	mm := c.mm
	pages := mm.Memmap.pages
	p := &pages[pfn]
	order := p.order()
	nr := PFN(1) << order
	if order == 0 || order > MaxPageOrder || pfn&(nr-1) != 0 || pfn+nr > PFN(len(pages)) {
		return 0, mm.violation(invCompound, pfn, "large folio of order %d misaligned or beyond the zone", order)
	}
	if v := c.coversUninitialised(pfn, order, "folio"); v != nil {
		return 0, v
	}
	if p.refcount <= 0 || p.flags&(PGTail|PGBuddy|PGReserved) != 0 || p.lru != [2]uint32{} {
		return 0, mm.violation(invCompound, pfn, "large folio head with refcount %d or allocator state", p.refcount)
	}
	want := pfnLink(pfn)
	for i := pfn + 1; i < pfn+nr; i++ {
		t := &pages[i]
		if t.flags != PGTail || t.lru != [2]uint32{want, 0} || t.refcount != 0 || t.mapping != 0 ||
			t.index != 0 || t.private != 0 || t.mapcount < 0 {
			return 0, mm.violation(invCompound, i, "not a clean tail of the folio at %v", pfn)
		}
	}
	c.allocated += uint64(nr)
	return order, nil
}

// checkSlab checks the slab whose head page is at pfn: its struct page,
// its tails and the free list in its objects' bytes.
func (c *checker) checkSlab(pfn PFN) (uint, *invariant.Violation) {
	mm := c.mm
	pages := mm.Memmap.pages
	p := &pages[pfn]
	cache := mm.cacheOfPage(p)
	if cache == nil {
		return 0, mm.violation(invSlabPage, pfn, "slab page names cache %d, which does not exist", p.private>>slabCacheShift&slabCacheMask)
	}
	order := slabOrder(p)
	if order != uint(cache.order) && order != uint(cache.minOrder) {
		return 0, mm.violation(invSlabPage, pfn, "slab of %s has order %d: neither the cache's %d nor its minimum %d", cache.name, order, cache.order, cache.minOrder)
	}
	nr := PFN(1) << order
	wantFlags := PGSlab
	if order > 0 {
		wantFlags |= PGHead | PageFlags(order)<<flagsOrderShift
	}
	if p.flags != wantFlags || p.refcount != 1 || p.mapcount != 0 || p.mapping != 0 {
		return 0, mm.violation(invSlabPage, pfn, "slab of %s (order %d) with flags %v order %d refcount %d mapcount %d mapping %d",
			cache.name, order, p.Flags(), p.order(), p.refcount, p.mapcount, p.mapping)
	}
	if pfn&(nr-1) != 0 || pfn+nr > PFN(len(pages)) {
		return 0, mm.violation(invSlabPage, pfn, "slab of order %d misaligned or beyond the zone", order)
	}
	if v := c.coversUninitialised(pfn, order, "slab"); v != nil {
		return 0, v
	}
	want := pfnLink(pfn)
	for i := pfn + 1; i < pfn+nr; i++ {
		if t := &pages[i]; *t != (Page{flags: PGTail, lru: [2]uint32{want, 0}}) {
			return 0, mm.violation(invSlabPage, i, "not a clean tail of the slab at %v", pfn)
		}
	}
	objects := uint64(p.private >> slabObjShift & slabObjectsMask)
	inuse := p.private & slabInuseMask
	if objects != uint64(cache.objectsOf(order)) || inuse > objects || p.private&^(slabInuseMask|slabObjectsMask<<slabObjShift|slabCacheMask<<slabCacheShift) != 0 {
		return 0, mm.violation(invSlabPage, pfn, "slab of %s: objects %d (a slab of order %d: %d), inuse %d", cache.name, objects, order, cache.objectsOf(order), inuse)
	}
	// The free list, in the frame's bytes.
	words := int(objects+63) / 64
	if cap(c.visited) < words {
		c.visited = make([]uint64, words)
	}
	visited := c.visited[:words]
	clear(visited)
	base := pfn.Phys()
	var free uint64
	for v := p.index; v != 0; v = cache.getFreePointer(pa(v)) {
		off := uint64(pa(v) - base)
		if v < va(base) || off >= objects*uint64(cache.size) || off%uint64(cache.size) != 0 {
			return 0, mm.violation(invSlabPage, pfn, "slab of %s: free list reaches %#x, not an object of the slab (after %d free objects)",
				cache.name, v, free)
		}
		slot := off / uint64(cache.size)
		if visited[slot/64]&(1<<(slot%64)) != 0 {
			return 0, mm.violation(invSlabPage, pfn, "slab of %s: free list reaches slot %d twice (a double free, or a loop)", cache.name, slot)
		}
		visited[slot/64] |= 1 << (slot % 64)
		free++
	}
	if free != objects-inuse {
		return 0, mm.violation(invSlabPage, pfn, "slab of %s: inuse %d of %d objects, but its free list holds %d",
			cache.name, inuse, objects, free)
	}
	if c.slabs == nil {
		c.slabs = make([]slabCensus, len(mm.slab.caches))
	}
	cs := &c.slabs[cache.id]
	cs.slabs++
	cs.inuse += inuse
	cs.pages += uint64(nr)
	cs.objs += objects
	if inuse == 0 {
		cs.empty++
	}
	c.allocated += uint64(nr)
	return order, nil
}

// checkSlabCaches compares every cache's counters and lists with the slabs
// the memmap walk found, and checks the vmalloc areas.
func (c *checker) checkSlabCaches() *invariant.Violation {
	mm := c.mm
	pages := mm.Memmap.pages
	for _, cache := range mm.slab.caches {
		if cache == nil {
			continue
		}
		var cs slabCensus
		if c.slabs != nil {
			cs = c.slabs[cache.id]
		}
		dump := cache.String()
		if cache.nrSlabs != cs.slabs || cache.inuse != cs.inuse || cache.nrPages != cs.pages || cache.nrObjs != cs.objs {
			return invariant.New(pkg, invSlabCache, dump, "%s counts %d slabs of %d frames and %d objects (%d in use); its slab pages are %d of %d frames holding %d (%d in use)",
				cache.name, cache.nrSlabs, cache.nrPages, cache.nrObjs, cache.inuse, cs.slabs, cs.pages, cs.objs, cs.inuse)
		}
		if cs.empty > 1 {
			return invariant.New(pkg, invSlabCache, dump, "%s keeps %d empty slabs (at most one)", cache.name, cs.empty)
		}
		var listed uint64
		for _, l := range []struct {
			name string
			l    *slabList
			full bool
		}{{"partial", &cache.partial, false}, {"full", &cache.full, true}} {
			var prev uint32
			var n uint64
			for link := l.l.first; link != 0; link = pages[linkPFN(link)].lru[0] {
				pfn := linkPFN(link)
				if uint64(pfn) >= uint64(len(pages)) || mm.uninitialised(pfn) {
					return invariant.New(pkg, invSlabCache, dump, "%s %s list links to %v, not an initialised frame", cache.name, l.name, pfn)
				}
				p := &pages[pfn]
				if p.flags&PGSlab == 0 || mm.cacheOfPage(p) != cache {
					return mm.violation(invSlabCache, pfn, "%s %s list holds a page that is not one of its slabs", cache.name, l.name)
				}
				if full := p.private&slabInuseMask == uint64(slabObjects(p)); full != l.full {
					return mm.violation(invSlabCache, pfn, "%s %s list holds a slab with %d of %d objects in use",
						cache.name, l.name, p.private&slabInuseMask, slabObjects(p))
				}
				if p.lru[1] != prev {
					return mm.violation(invSlabCache, pfn, "%s %s list: prev link %s, want %s", cache.name, l.name, linkString(p.lru[1]), linkString(prev))
				}
				if n++; n > cs.slabs {
					return mm.violation(invSlabCache, pfn, "%s %s list holds more slabs than the cache has (%d)", cache.name, l.name, cs.slabs)
				}
				prev = link
			}
			if l.l.last != prev || l.l.nr != n {
				return invariant.New(pkg, invSlabCache, dump, "%s %s list: last %s nr %d, but it ends at %s after %d slabs",
					cache.name, l.name, linkString(l.l.last), l.l.nr, linkString(prev), n)
			}
			listed += n
		}
		if listed != cs.slabs {
			return invariant.New(pkg, invSlabCache, dump, "%s has %d slab pages but its lists hold %d: a slab leaked",
				cache.name, cs.slabs, listed)
		}
	}
	var vmPages uint64
	for id, a := range mm.slab.vmap {
		for _, pfn := range a.pages {
			if uint64(pfn) >= uint64(len(pages)) || mm.uninitialised(pfn) {
				return invariant.New(pkg, invSlabCache, mm.slabString(), "vmalloc area %d holds %v, not an initialised frame", id, pfn)
			}
			if p := &pages[pfn]; p.refcount < 1 || p.flags&(PGSlab|PGBuddy|PGHead|PGTail|PGReserved) != 0 || p.mapping != 0 {
				return mm.violation(invSlabCache, pfn, "vmalloc area %d holds a page that is not an allocated order-0 page", id)
			}
		}
		vmPages += uint64(len(a.pages))
	}
	if vmPages != mm.slab.vmPages {
		return invariant.New(pkg, invSlabCache, mm.slabString(), "vmalloc counts %d frames, its areas hold %d", mm.slab.vmPages, vmPages)
	}
	return nil
}

// checkFreeLists walks every free list against the blocks the memmap walk
// found, then the counters.
func (c *checker) checkFreeLists() *invariant.Violation {
	mm := c.mm
	pages := mm.Memmap.pages
	z := &mm.Zone
	for order := range uint(MaxPageOrder + 1) {
		for mt := range MigrateType(NrMigrateTypes) {
			fa := &z.freeArea[order]
			var prev uint32
			var count uint64
			for l := fa.freeList[mt]; l != 0; l = pages[linkPFN(l)].lru[0] {
				pfn := linkPFN(l)
				if uint64(pfn) >= uint64(len(pages)) {
					return mm.violation(invFreeList, linkPFN(prev), "free_area[%d] %v links to %v beyond the zone", order, mt, pfn)
				}
				if mm.uninitialised(pfn) {
					return mm.violation(invNoinitReserved, pfn, "free_area[%d] %v links to %v, preserved (noinit) and not restored", order, mt, pfn)
				}
				p := &pages[pfn]
				if p.flags != PGBuddy || p.private != uint64(order) || z.pageblockMT[pfn>>PageblockOrder] != mt {
					return mm.violation(invFreeList, pfn, "free_area[%d] %v holds a page that is not a free block of its order and migratetype", order, mt)
				}
				if p.lru[1] != prev {
					return mm.violation(invFreeList, pfn, "free_area[%d] %v: prev link %s, want %s", order, mt, linkString(p.lru[1]), linkString(prev))
				}
				if count++; count > c.blocks[order][mt] {
					return mm.violation(invFreeList, pfn, "free_area[%d] %v lists more blocks than the memmap holds (%d)", order, mt, c.blocks[order][mt])
				}
				prev = l
			}
			if count != c.blocks[order][mt] {
				return invariant.New(pkg, invFreeList, z.String(), "free_area[%d] %v lists %d blocks, the memmap holds %d", order, mt, count, c.blocks[order][mt])
			}
			if fa.nrFree[mt] != count {
				return invariant.New(pkg, invFreeCounts, z.String(), "free_area[%d] %v nr_free %d, lists %d", order, mt, fa.nrFree[mt], count)
			}
		}
	}
	return nil
}

// checkPcpBlock checks the block on a per-CPU list whose head is at pfn.
func (c *checker) checkPcpBlock(pfn PFN) (uint, *invariant.Violation) {
	mm := c.mm
	pages := mm.Memmap.pages
	p := &pages[pfn]
	if p.flags != 0 || p.mapcount != 0 || p.mapping != 0 || p.index != 0 {
		return 0, mm.violation(invPcpBlock, pfn, "per-CPU list page carries state beyond its links and order")
	}
	if p.private > MaxPageOrder || !pcpAllowedOrder(uint(p.private)) {
		return 0, mm.violation(invPcpBlock, pfn, "per-CPU list page of order %d, which the lists do not cache", p.private)
	}
	order := uint(p.private)
	nr := PFN(1) << order
	if pfn&(nr-1) != 0 || pfn+nr > PFN(len(pages)) {
		return 0, mm.violation(invPcpBlock, pfn, "per-CPU block of order %d misaligned or beyond the zone", order)
	}
	if v := c.coversUninitialised(pfn, order, "per-CPU block"); v != nil {
		return 0, v
	}
	if i := firstNonZero(pages[pfn+1 : pfn+nr]); i >= 0 {
		return 0, mm.violation(invPcpBlock, pfn+1+PFN(i), "page inside the per-CPU block at %v is not clear", pfn)
	}
	c.pcp[orderToPindex(mm.Zone.pageblockMT[pfn>>PageblockOrder], order)]++
	c.freeFrame += uint64(nr)
	return order, nil
}

// checkPcpLists walks every per-CPU list against the blocks the memmap
// walk found, then pcp->count.
func (c *checker) checkPcpLists() *invariant.Violation {
	mm := c.mm
	pages := mm.Memmap.pages
	z := &mm.Zone
	pcp := &z.pcp
	if pcp.batch < 1 || pcp.high < 0 {
		return invariant.New(pkg, invPcpList, z.String(), "pcp->batch %d, pcp->high %d", pcp.batch, pcp.high)
	}
	var pagesListed uint64
	for pindex := range nrPcpLists {
		l := &pcp.lists[pindex]
		order, mt := pindexToOrder(pindex), pindexToMigratetype(pindex)
		if (l.first == 0) != (l.last == 0) {
			return invariant.New(pkg, invPcpList, z.String(), "pcp list %d (order %d %v): first %s, last %s",
				pindex, order, mt, linkString(l.first), linkString(l.last))
		}
		prev := pcpListHead
		var count uint64
		for link := l.first; link != 0 && link != pcpListHead; link = pages[linkPFN(link)].lru[0] {
			pfn := linkPFN(link)
			if uint64(pfn) >= uint64(len(pages)) {
				return invariant.New(pkg, invPcpList, z.String(), "pcp list %d (order %d %v) links to %v beyond the zone", pindex, order, mt, pfn)
			}
			if mm.uninitialised(pfn) {
				return mm.violation(invNoinitReserved, pfn, "pcp list %d (order %d %v) links to %v, preserved (noinit) and not restored", pindex, order, mt, pfn)
			}
			p := &pages[pfn]
			if !p.onPcpList() || p.flags != 0 || p.private != uint64(order) || z.pageblockMT[pfn>>PageblockOrder] != mt {
				return mm.violation(invPcpList, pfn, "pcp list %d (order %d %v) holds a page that is not a per-CPU block of its order and migratetype", pindex, order, mt)
			}
			if p.lru[1] != prev {
				return mm.violation(invPcpList, pfn, "pcp list %d: prev link %s, want %s", pindex, linkString(p.lru[1]), linkString(prev))
			}
			if count++; count > c.pcp[pindex] {
				return mm.violation(invPcpList, pfn, "pcp list %d (order %d %v) lists more blocks than the memmap holds (%d)", pindex, order, mt, c.pcp[pindex])
			}
			prev = link
		}
		if l.first != 0 && l.last != prev {
			return invariant.New(pkg, invPcpList, z.String(), "pcp list %d: last %s, but the list ends at %s", pindex, linkString(l.last), linkString(prev))
		}
		if count != c.pcp[pindex] {
			return invariant.New(pkg, invPcpList, z.String(), "pcp list %d (order %d %v) lists %d blocks, the memmap holds %d", pindex, order, mt, count, c.pcp[pindex])
		}
		if l.nr != count {
			return invariant.New(pkg, invFreeCounts, z.String(), "pcp list %d (order %d %v) counts %d blocks, lists %d", pindex, order, mt, l.nr, count)
		}
		pagesListed += count << order
	}
	if uint64(pcp.count) != pagesListed {
		return invariant.New(pkg, invFreeCounts, z.String(), "pcp->count %d, the lists hold %d pages", pcp.count, pagesListed)
	}
	return nil
}

// pfnRange is a range of frames [start, end).
type pfnRange struct{ start, end PFN }

// pfnRanges returns, sorted and disjoint, the frames that may be
// PG_reserved (overlapping a reserved region that is not noinit, or a hole
// in memory) and those that may be uninitialised (overlapping a noinit
// reserved region).
func (mm *MM) pfnRanges() (reserved, noinit rangeCursor) {
	mb := mm.Memblock
	for r := range mb.Reserved() {
		pr := pfnRange{r.Base.PFN(), r.End().PFNUp()}
		if r.Flags&MemblockRsrvNoinit != 0 {
			noinit.add(pr)
		} else {
			reserved.add(pr)
		}
	}
	var holes rangeCursor
	hole := PhysAddr(0)
	for r := range mb.Memory() {
		if hole < r.Base {
			holes.add(pfnRange{hole.PFN(), r.Base.PFNUp()})
		}
		hole = r.End()
	}
	if hole < mb.limit {
		holes.add(pfnRange{hole.PFN(), PFN(mm.Memmap.NumPages())})
	}
	reserved.merge(holes)
	return reserved, noinit
}

// rangeCursor answers "does [start, end) overlap the set" for
// non-decreasing start in amortised O(1).
type rangeCursor struct {
	r []pfnRange // sorted by start, disjoint
	i int
}

// add appends a range not starting before the previous one, merging.
func (c *rangeCursor) add(pr pfnRange) {
	if k := len(c.r) - 1; k >= 0 && pr.start <= c.r[k].end {
		c.r[k].end = max(c.r[k].end, pr.end)
		return
	}
	c.r = append(c.r, pr)
}

// merge unions another cursor's ranges into c.
func (c *rangeCursor) merge(o rangeCursor) {
	all := c.r
	c.r = nil
	i, j := 0, 0
	for i < len(all) || j < len(o.r) {
		if j == len(o.r) || (i < len(all) && all[i].start <= o.r[j].start) {
			c.add(all[i])
			i++
		} else {
			c.add(o.r[j])
			j++
		}
	}
}

func (c *rangeCursor) overlaps(start, end PFN) bool {
	for c.i < len(c.r) && c.r[c.i].end <= start {
		c.i++
	}
	return c.i < len(c.r) && c.r[c.i].start < end
}

// firstNonZero returns the index of the first page that is not all zero,
// or -1, reading the pages as words.
func firstNonZero(ps []Page) int {
	const words = int(unsafe.Sizeof(Page{}) / 8)
	if len(ps) == 0 {
		return -1
	}
	w := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(ps))), len(ps)*words)
	for i, x := range w {
		if x != 0 {
			return i / words
		}
	}
	return -1
}
