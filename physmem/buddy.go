package physmem

import (
	"fmt"
	"math/bits"
	"strings"

	"khosim/errno"
	"khosim/fault"
)

// MigrateType models enum migratetype: the pageblock tag that keeps
// movable and unmovable data apart. Only two matter here: all memory boots
// MIGRATE_MOVABLE (memmap_init), and KHO scratch is MIGRATE_CMA so that it
// only ever holds movable data and can be scratch again at the next kexec.
// Grouping by mobility within normal memory (MIGRATE_UNMOVABLE,
// MIGRATE_RECLAIMABLE and the stealing between them) is not modelled:
// unmovable allocations take MIGRATE_MOVABLE blocks.
type MigrateType uint8

const (
	MigrateMovable MigrateType = iota // MIGRATE_MOVABLE: normal memory
	MigrateCMA                        // MIGRATE_CMA: KHO scratch

	NrMigrateTypes = iota // MIGRATE_TYPES
)

func (mt MigrateType) String() string {
	switch mt {
	case MigrateMovable:
		return "Movable"
	case MigrateCMA:
		return "CMA"
	}
	return fmt.Sprintf("migratetype(%d)", uint8(mt))
}

// GFP is a set of allocation flags (gfp_t, include/linux/gfp_types.h).
// Reclaim, IO and FS bits are not modelled.
type GFP uint32

const (
	// GFPMovable is __GFP_MOVABLE: the data can be migrated, so it may be
	// placed in MIGRATE_CMA (KHO scratch) pageblocks.
	GFPMovable GFP = 1 << iota
	// GFPZero is __GFP_ZERO: the frames are zeroed.
	GFPZero

	// GFPKernel is GFP_KERNEL: unmovable kernel data, never in scratch.
	GFPKernel GFP = 0
	// GFPHighUserMovable is GFP_HIGHUSER_MOVABLE: page cache and user
	// memory, preferring normal memory and falling back to scratch.
	GFPHighUserMovable = GFPMovable

	gfpKnown = GFPMovable | GFPZero
)

func (g GFP) String() string {
	var s []string
	if g&GFPMovable != 0 {
		s = append(s, "__GFP_MOVABLE")
	}
	if g&GFPZero != 0 {
		s = append(s, "__GFP_ZERO")
	}
	if g&^gfpKnown != 0 {
		s = append(s, fmt.Sprintf("%#x", uint32(g&^gfpKnown)))
	}
	if len(s) == 0 {
		return "GFP_KERNEL"
	}
	return strings.Join(s, "|")
}

// Zone models the buddy allocator's part of struct zone (one ZONE_NORMAL
// spanning every frame): free_area[order].free_list[migratetype], the
// per-CPU page lists of the one simulated CPU (zone->per_cpu_pageset, see
// pcp.go), the pageblock migratetypes (pageblock_flags) and the page
// counters. All lists are threaded through the memmap (page->buddy_list,
// page->pcp_list), so allocation and free touch no Go heap.
type Zone struct {
	freeArea    [MaxPageOrder + 1]freeArea
	pcp         perCPUPages
	pageblockMT []MigrateType
	managed     uint64 // zone->managed_pages
	// deferred counts the free frames whose struct pages are not
	// initialised yet (deferred.go): free and managed, on no list.
	deferred uint64
}

// freeArea models struct free_area. Linux keeps only the total nr_free;
// the per-list counts serve the statistics and the invariant check.
type freeArea struct {
	freeList [NrMigrateTypes]uint32 // link of the first block, 0 if empty
	nrFree   [NrMigrateTypes]uint64 // blocks on each list
}

// NrFree returns the free blocks of an order on the buddy lists
// (free_area[order].nr_free); blocks on the per-CPU lists are not counted.
func (z *Zone) NrFree(order uint) uint64 {
	var n uint64
	for _, c := range z.freeArea[order].nrFree {
		n += c
	}
	return n
}

// NrFreeList returns the free blocks of an order and migratetype on the
// buddy lists.
func (z *Zone) NrFreeList(order uint, mt MigrateType) uint64 { return z.freeArea[order].nrFree[mt] }

// NrFreePages returns the free frames (zone NR_FREE_PAGES), including
// those on the per-CPU lists, which Linux's counter leaves out.
func (z *Zone) NrFreePages() uint64 {
	return z.NrFreePagesOf(MigrateMovable) + z.NrFreePagesOf(MigrateCMA)
}

// NrFreePagesOf returns the free frames in pageblocks of one migratetype
// (NR_FREE_CMA_PAGES for MigrateCMA), including those on the per-CPU
// lists. Linux keeps these as vmstat counters; here they are summed from
// nr_free and the per-CPU list counts.
func (z *Zone) NrFreePagesOf(mt MigrateType) uint64 {
	n := z.nrFreeBuddyPagesOf(mt) + z.nrPcpPagesOf(mt)
	if mt == MigrateMovable {
		n += z.deferred // free after page_alloc_init_late, in movable pageblocks
	}
	return n
}

// nrFreeBuddyPagesOf returns the free frames of migratetype mt on the
// buddy lists.
func (z *Zone) nrFreeBuddyPagesOf(mt MigrateType) uint64 {
	var n uint64
	for order := range z.freeArea {
		n += z.freeArea[order].nrFree[mt] << order
	}
	return n
}

// ManagedPages returns the frames the buddy allocator manages, free or
// allocated (zone_managed_pages).
func (z *Zone) ManagedPages() uint64 { return z.managed }

// PageblockMigratetype returns the migratetype of pfn's pageblock
// (get_pageblock_migratetype).
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (z *Zone) PageblockMigratetype(pfn PFN) MigrateType {
	if uint64(pfn>>PageblockOrder) >= uint64(len(z.pageblockMT)) {
		badPageblock(pfn)
	}
	return z.pageblockMT[pfn>>PageblockOrder]
}

func badPageblock(pfn PFN) { bug(invPFNInRange, "", "no pageblock for %v", pfn) }

// String formats the free lists as show_free_areas() does, the total and
// cma counting the buddy lists only, then the per-CPU lists:
// "Normal: 1*4kB (M) 3*8kB (MC) ... = 12345kB (cma 0kB, managed 16384kB)
// pcp count:3 high:4 batch:1".
func (z *Zone) String() string {
	var b strings.Builder
	b.WriteString("Normal:")
	for o := range uint(MaxPageOrder + 1) {
		fmt.Fprintf(&b, " %d*%dkB", z.NrFree(o), (PageSize>>10)<<o)
		tags := ""
		if z.freeArea[o].nrFree[MigrateMovable] > 0 {
			tags += "M"
		}
		if z.freeArea[o].nrFree[MigrateCMA] > 0 {
			tags += "C"
		}
		if tags != "" {
			fmt.Fprintf(&b, " (%s)", tags)
		}
	}
	buddy := z.nrFreeBuddyPagesOf(MigrateMovable) + z.nrFreeBuddyPagesOf(MigrateCMA)
	fmt.Fprintf(&b, " = %dkB (cma %dkB, managed %dkB) pcp count:%d high:%d batch:%d", buddy*PageSize>>10,
		z.nrFreeBuddyPagesOf(MigrateCMA)*PageSize>>10, z.managed*PageSize>>10, z.pcp.count, z.pcp.high, z.pcp.batch)
	if z.deferred != 0 {
		fmt.Fprintf(&b, " deferred:%dkB", z.deferred*PageSize>>10)
	}
	return b.String()
}

// addToFreeList makes pfn the head of a free block of 2^order frames and
// puts it first on its list (set_buddy_order + __add_to_free_list).
// Preconditions: the block's pages are all zero.
func (mm *MM) addToFreeList(pfn PFN, order uint, mt MigrateType) {
	pages := mm.Memmap.pages
	fa := &mm.Zone.freeArea[order]
	next := fa.freeList[mt]
	pages[pfn] = Page{flags: PGBuddy, private: uint64(order), lru: [2]uint32{next, 0}}
	if next != 0 {
		pages[linkPFN(next)].lru[1] = pfnLink(pfn)
	}
	fa.freeList[mt] = pfnLink(pfn)
	fa.nrFree[mt]++
}

// delFromFreeList unlinks the free block at pfn and clears its head, so the
// block's pages are all zero again (del_page_from_free_list).
func (mm *MM) delFromFreeList(pfn PFN, order uint, mt MigrateType) {
	pages := mm.Memmap.pages
	fa := &mm.Zone.freeArea[order]
	p := &pages[pfn]
	next, prev := p.lru[0], p.lru[1]
	if prev != 0 {
		pages[linkPFN(prev)].lru[0] = next
	} else {
		fa.freeList[mt] = next
	}
	if next != 0 {
		pages[linkPFN(next)].lru[1] = prev
	}
	*p = Page{}
	fa.nrFree[mt]--
}

// rmqueueSmallest takes the smallest free block of at least 2^order frames
// from the lists of mt and gives back the part it does not need
// (__rmqueue_smallest + expand).
func (mm *MM) rmqueueSmallest(order uint, mt MigrateType) (PFN, bool) {
	for cur := order; cur <= MaxPageOrder; cur++ {
		l := mm.Zone.freeArea[cur].freeList[mt]
		if l == 0 {
			continue
		}
		pfn := linkPFN(l)
		mm.delFromFreeList(pfn, cur, mt)
		for cur > order { // expand(): the upper halves go back
			cur--
			mm.addToFreeList(pfn+1<<cur, cur, mt)
		}
		return pfn, true
	}
	return 0, false
}

// AllocPages allocates 2^order contiguous frames and returns the first
// (alloc_pages). The caller gets a folio: the head has refcount 1 (the
// caller's reference, dropped with FreePages or FolioPut) and, for order >
// 0, PG_head and the order, each tail PG_tail and its head.
//
// Placement (__rmqueue): from normal (MIGRATE_MOVABLE) pageblocks; a
// __GFP_MOVABLE request falls back to KHO scratch (MIGRATE_CMA), which
// unmovable requests never get. Linux also balances CMA use once over half
// the free memory is CMA; the simulator always prefers normal memory.
// Orders the per-CPU lists cache come from them (rmqueue_pcplist), others
// from the buddy lists (rmqueue_buddy).
//
// Pages on the per-CPU lists block buddy merging, so a request can fail
// while enough memory is free. Linux then drains the lists
// (drain_all_pages in __alloc_pages_direct_reclaim) and retries; so does
// AllocPages, for each migratetype before it falls back to the next, so
// that scratch is used only when normal memory cannot serve the request
// and ENOMEM means no aligned free run of the order exists.
//
// Errors: what the fault.PageAlloc site injects (checked first); EINVAL for
// an order above MaxPageOrder or unknown GFP bits; ENOMEM when no block is
// free.
func (mm *MM) AllocPages(gfp GFP, order uint) (PFN, error) {
	if mm.faults != nil {
		if err := mm.faults.Hit(fault.PageAlloc); err != nil {
			return 0, err
		}
	}
	if order > MaxPageOrder || gfp&^gfpKnown != 0 {
		return 0, errno.EINVAL
	}
	pfn, ok := mm.rmqueue(order, MigrateMovable)
	for !ok && mm.deferredGrowZone(order) {
		pfn, ok = mm.rmqueue(order, MigrateMovable)
	}
	if !ok && gfp&GFPMovable != 0 {
		pfn, ok = mm.rmqueue(order, MigrateCMA) // __rmqueue_cma_fallback
	}
	if !ok {
		return 0, errno.ENOMEM
	}
	mm.prepNewPage(pfn, order, gfp)
	return pfn, nil
}

// rmqueue takes a block of order from the free memory of migratetype mt
// (rmqueue): the per-CPU lists for the orders they cache, else the buddy
// lists. If that fails while per-CPU lists of mt hold pages, it drains
// them (drain_all_pages) and tries once more.
func (mm *MM) rmqueue(order uint, mt MigrateType) (PFN, bool) {
	for {
		var pfn PFN
		var ok bool
		if pcpAllowedOrder(order) {
			pfn, ok = mm.rmqueuePcplist(order, mt)
		} else {
			pfn, ok = mm.rmqueueSmallest(order, mt) // rmqueue_buddy
		}
		if ok || !mm.Zone.pcpHolds(mt) {
			return pfn, ok
		}
		mm.DrainAllPages()
	}
}

// FolioAlloc allocates a folio of 2^order pages (folio_alloc); as
// AllocPages.
func (mm *MM) FolioAlloc(gfp GFP, order uint) (Folio, error) {
	pfn, err := mm.AllocPages(gfp, order)
	return Folio(pfn), err
}

// prepNewPage gives a block its first reference and compound metadata
// (prep_new_page + prep_compound_page). The head must be all zero (it only
// sets its refcount and flags); every tail is written whole, whatever it
// held, and none is read. So it serves both a block just taken from the
// free lists (AllocPages: all its pages are zero) and frames whose struct
// pages hold stale bytes once RestoreFolio has cleared the head (as
// kho_init_folio initialises head and tails).
func (mm *MM) prepNewPage(pfn PFN, order uint, gfp GFP) {
	prepCompound(mm.Memmap.pages, pfn, order)
	if gfp&GFPZero != 0 {
		mm.Frames.Zero(pfn, 1<<order)
	}
}

// FreePages drops the caller's reference to the block allocated at pfn
// with the given order and frees it once the count reaches zero
// (__free_pages).
// Preconditions (bugs, which panic with the invariant named):
//   - pfn is a valid frame ("pfn-in-range"), not a tail ("folio-is-head")
//     and not free ("folio-not-free");
//   - the refcount is positive ("put-zero-refcount": double free);
//   - order is the order it was allocated with ("free-order-matches");
//   - at the last reference the page is clean ("free-page-clean").
func (mm *MM) FreePages(pfn PFN, order uint) {
	p := mm.folioPage(Folio(pfn), "__free_pages")
	if p.order() != order {
		bug(invFreeOrder, mm.dumpPage(pfn), "__free_pages(%v, %d) of a block of order %d", pfn, order, p.order())
	}
	mm.putRefs(Folio(pfn), p, 1)
}

// freePagesPrepare checks that the block at pfn is clean and clears its
// pages, returning its order (free_pages_prepare / free_tail_page_prepare).
func (mm *MM) freePagesPrepare(pfn PFN) uint {
	pages := mm.Memmap.pages
	head := &pages[pfn]
	order := head.order()
	if head.mapcount != 0 || head.mapping != 0 || head.flags&flagsCheckAtFree != 0 {
		bug(invFreePageClean, mm.dumpPage(pfn), "freeing %v: mapped, in a mapping, or flags %v set (bad_page)",
			pfn, head.Flags()&flagsCheckAtFree)
	}
	want := pfnLink(pfn)
	for i := pfn + 1; i < pfn+1<<order; i++ {
		t := &pages[i]
		if t.flags != PGTail || t.lru[0] != want || t.mapcount != 0 || t.refcount != 0 {
			bug(invCompound, mm.dumpPage(i), "freeing %v: tail %v is not a clean tail of it", pfn, i)
		}
		*t = Page{}
	}
	*head = Page{}
	return order
}

// freePages returns a block of cleared pages to the buddy lists, a
// pageblock at a time if it spans several, since they may differ in
// migratetype (split_large_buddy).
func (mm *MM) freePages(pfn PFN, order uint) {
	if order <= PageblockOrder {
		mm.freeOnePage(pfn, order)
		return
	}
	for i := PFN(0); i < 1<<order; i += PageblockNrPages {
		mm.freeOnePage(pfn+i, PageblockOrder)
	}
}

// freeOnePage returns a block of cleared pages to the free lists, merging
// it with its buddy (pfn ^ 1<<order) while the buddy is a free block of the
// same order, of the same migratetype, and inside the zone
// (__free_one_page).
func (mm *MM) freeOnePage(pfn PFN, order uint) {
	pages := mm.Memmap.pages
	z := &mm.Zone
	mt := z.pageblockMT[pfn>>PageblockOrder]
	n := PFN(len(pages))
	for order < MaxPageOrder {
		buddy := pfn ^ 1<<order
		if buddy+1<<order > n {
			break
		}
		if mm.uninitialised(buddy) {
			break // preserved, not restored: not free, and its struct page is not to be read
		}
		if buddy >= mm.Memmap.limit && mm.Memmap.deferredInit(buddy) {
			break // deferred: free, but on no list, and its struct page is not to be read
		}
		bp := &pages[buddy]
		if bp.flags != PGBuddy || bp.private != uint64(order) {
			break
		}
		if order >= PageblockOrder && z.pageblockMT[buddy>>PageblockOrder] != mt {
			break // never merge across migratetypes (MIGRATE_CMA is not mergeable)
		}
		mm.delFromFreeList(buddy, order, mt)
		pfn &= buddy
		order++
	}
	mm.addToFreeList(pfn, order, mt)
}

// freeRange hands frames [start, end) to the allocator in the largest
// aligned blocks (__free_pages_memory).
// Preconditions: the pages are all zero.
func (mm *MM) freeRange(start, end PFN) {
	for start < end {
		order := uint(MaxPageOrder)
		if start != 0 {
			order = min(order, uint(bits.TrailingZeros64(uint64(start))))
		}
		for start+1<<order > end {
			order--
		}
		mm.freePages(start, order)
		start += 1 << order
	}
}
