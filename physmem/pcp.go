package physmem

import "math/bits"

// Per-CPU page lists (struct per_cpu_pages, mm/page_alloc.c).
//
// Linux keeps a cache of free pages per CPU and zone so that most order-0
// allocations and frees take no zone lock and neither split nor merge
// buddies: free_unref_page puts a page on the list, rmqueue_pcplist takes
// one, and only every batch pages does the list exchange pages with the
// buddy lists (rmqueue_bulk, free_pcppages_bulk).
//
// khosim runs one CPU, so the zone has one per_cpu_pages and the model is
// deterministic. The lists cache orders 0 to PAGE_ALLOC_COSTLY_ORDER
// (pcp_allowed_order). Linux also caches the PMD order (NR_PCP_THP), with a
// high mark derived from the low watermark; watermarks are not modelled and
// high here is at most 252 pages, so a PMD block would spill back at every
// free and caching it would only cost time: it is not cached. A page on a
// per-CPU list
// is free: refcount 0, not PG_buddy, its order in page->private (so that a
// memmap walk can tell the block's size) and the list threaded through
// page->pcp_list (lru here). The lists are circular as Linux's list_head
// is, so a page on one always has a non-zero link (pcpListHead stands for
// the list head), which tells it from an all-zero page.
//
// Linux keeps one list per order and MIGRATE_PCPTYPES migratetype and puts
// MIGRATE_CMA pages on the MIGRATE_MOVABLE list (free_unref_page), which
// unmovable allocations, using MIGRATE_UNMOVABLE lists, never touch. The
// model folds unmovable into MIGRATE_MOVABLE (see MigrateType), so it gives
// MIGRATE_CMA its own lists instead: an unmovable allocation never gets a
// scratch page from a per-CPU list.
//
// Unlike Linux's NR_FREE_PAGES, which drops when rmqueue_bulk moves pages to
// a per-CPU list, Zone.NrFreePages counts pages on the lists as free: they
// are.

// PageAllocCostlyOrder is the largest order Linux considers cheap to
// allocate and caches on the per-CPU lists (PAGE_ALLOC_COSTLY_ORDER).
const PageAllocCostlyOrder = 3

const (
	// nrPcpLists is NR_PCP_LISTS (without NR_PCP_THP): a list per
	// migratetype for each order up to PAGE_ALLOC_COSTLY_ORDER.
	nrPcpLists = NrMigrateTypes * (PageAllocCostlyOrder + 1)

	// bootPagesetHigh and bootPagesetBatch are the boot pageset's high and
	// batch (BOOT_PAGESET_HIGH, BOOT_PAGESET_BATCH): until
	// memblock_free_all sizes the lists, a freed page goes straight back to
	// the buddy lists.
	bootPagesetHigh  = 0
	bootPagesetBatch = 1

	// pcpListHead is the link value that stands for the list head in a
	// per-CPU list page's links. No PFN encodes to it: the memmap has at
	// most maxLinkPFN pages, whose links are 1..maxLinkPFN.
	pcpListHead = ^uint32(0)
)

// perCPUPages models struct per_cpu_pages for the one simulated CPU.
type perCPUPages struct {
	count int // pages on the lists (pcp->count)
	high  int // free_pcppages_bulk once count reaches high (pcp->high)
	batch int // chunk size for buddy add/remove (pcp->batch)
	lists [nrPcpLists]pcpList
}

// pcpList is one of pcp->lists: a list_head whose ends are kept as links
// (0: empty), plus the number of blocks on it, which Linux does not keep
// and the statistics and the invariant check use.
type pcpList struct {
	first, last uint32
	nr          uint64
}

// pcpAllowedOrder reports whether blocks of order are cached on the
// per-CPU lists (pcp_allowed_order, without the PMD order).
func pcpAllowedOrder(order uint) bool { return order <= PageAllocCostlyOrder }

// orderToPindex returns the list index for an order and migratetype
// (order_to_pindex). Preconditions: pcpAllowedOrder(order).
func orderToPindex(mt MigrateType, order uint) int {
	return NrMigrateTypes*int(order) + int(mt)
}

// pindexToOrder returns the order a list holds (pindex_to_order).
func pindexToOrder(pindex int) uint { return uint(pindex / NrMigrateTypes) }

// pindexToMigratetype returns the migratetype a list holds.
func pindexToMigratetype(pindex int) MigrateType { return MigrateType(pindex % NrMigrateTypes) }

// zoneBatchsize returns the per-CPU batch for a zone of managed pages
// (zone_batchsize): about 0.1% of the zone or 1 MiB, whichever is smaller,
// clamped to 2^n - 1, and at least 1 (zone_set_pageset_high_and_batch).
func zoneBatchsize(managed uint64) int {
	batch := int(min(managed>>10, (1<<20)/PageSize))
	batch /= 4
	if batch < 1 {
		batch = 1
	}
	batch = 1<<(bits.Len(uint(batch+batch/2))-1) - 1 // rounddown_pow_of_two(batch + batch/2) - 1
	return max(1, batch)
}

// zoneHighsize returns the per-CPU high mark (zone_highsize). Linux bases
// it on the zone's low watermark; watermarks are not modelled, so high is
// the floor Linux enforces, batch * 4.
func zoneHighsize(batch int) int { return batch << 2 }

// zonePcpUpdate sizes the per-CPU lists from the zone's managed pages
// (zone_pcp_update -> zone_set_pageset_high_and_batch), as
// setup_per_cpu_pageset does once memblock_free_all has run.
func (mm *MM) zonePcpUpdate() {
	pcp := &mm.Zone.pcp
	pcp.batch = zoneBatchsize(mm.Zone.managed)
	pcp.high = zoneHighsize(pcp.batch)
}

// pcpListAdd puts the cleared block at pfn first on l (list_add): the hot
// end, which rmqueue_pcplist takes from.
func (mm *MM) pcpListAdd(l *pcpList, pfn PFN, order uint) {
	pages := mm.Memmap.pages
	link := pfnLink(pfn)
	next := l.first
	if next == 0 {
		l.last = link
		next = pcpListHead
	} else {
		pages[linkPFN(next)].lru[1] = link
	}
	// The page is cleared: only the order and links to write, the links one
	// by one (a [2]uint32 literal goes through the stack and stalls the
	// store forwarding).
	p := &pages[pfn]
	p.private = uint64(order)
	p.lru[0], p.lru[1] = next, pcpListHead
	l.first = link
	l.nr++
}

// pcpListAddTail puts the cleared block at pfn last on l (list_add_tail),
// as rmqueue_bulk does.
func (mm *MM) pcpListAddTail(l *pcpList, pfn PFN, order uint) {
	pages := mm.Memmap.pages
	link := pfnLink(pfn)
	prev := l.last
	if prev == 0 {
		l.first = link
		prev = pcpListHead
	} else {
		pages[linkPFN(prev)].lru[0] = link
	}
	p := &pages[pfn]
	p.private = uint64(order)
	p.lru[0], p.lru[1] = pcpListHead, prev
	l.last = link
	l.nr++
}

// pcpListDel unlinks the block at pfn from l and clears its head, so the
// block's pages are all zero again (list_del).
func (mm *MM) pcpListDel(l *pcpList, pfn PFN) {
	pages := mm.Memmap.pages
	p := &pages[pfn]
	next, prev := p.lru[0], p.lru[1]
	if prev == pcpListHead {
		l.first = next
	} else {
		pages[linkPFN(prev)].lru[0] = next
	}
	if next == pcpListHead {
		l.last = prev
	} else {
		pages[linkPFN(next)].lru[1] = prev
	}
	if l.first == pcpListHead {
		l.first, l.last = 0, 0
	}
	p.private, p.lru = 0, [2]uint32{} // the rest of a per-CPU page is zero
	l.nr--
}

// freeUnrefPage frees a cleared block of an order the per-CPU lists cache
// (free_unref_page -> free_unref_page_commit): it goes first on the list
// of its order and pageblock migratetype, and once the lists hold high
// pages or more, free_pcppages_bulk returns batch of them to the buddy
// lists (Linux <= 5.13; later kernels scale the amount with
// nr_pcp_free).
func (mm *MM) freeUnrefPage(pfn PFN, order uint) {
	z := &mm.Zone
	pcp := &z.pcp
	pindex := orderToPindex(z.pageblockMT[pfn>>PageblockOrder], order)
	mm.pcpListAdd(&pcp.lists[pindex], pfn, order)
	pcp.count += 1 << order
	if pcp.count >= pcp.high {
		mm.freePcppagesBulk(pcp.batch, pindex)
	}
}

// freePcppagesBulk returns count pages' worth of blocks from the per-CPU
// lists to the buddy lists, merging them there (free_pcppages_bulk). It
// empties list pindex first, then the others round-robin, each from its
// cold end.
func (mm *MM) freePcppagesBulk(count int, pindex int) {
	pcp := &mm.Zone.pcp
	count = min(count, pcp.count)
	pindex-- // ensure the requested pindex is drained first
	for count > 0 {
		var l *pcpList
		for range nrPcpLists { // remove pages from lists in a round-robin fashion
			if pindex++; pindex >= nrPcpLists {
				pindex = 0
			}
			if l = &pcp.lists[pindex]; l.first != 0 {
				break
			}
		}
		if l.first == 0 {
			bug(invPcpList, mm.Zone.String(), "pcp->count %d but every per-CPU list is empty", pcp.count)
		}
		order := pindexToOrder(pindex)
		for count > 0 && l.first != 0 {
			pfn := linkPFN(l.last)
			mm.pcpListDel(l, pfn)
			count -= 1 << order
			pcp.count -= 1 << order
			mm.freeOnePage(pfn, order)
		}
	}
}

// rmqueuePcplist takes a block of order and migratetype mt from the per-CPU
// lists (rmqueue_pcplist -> __rmqueue_pcplist), first refilling an empty
// list from the buddy lists with rmqueue_bulk: batch pages at order 0,
// batch >> order (at least 2) blocks above. The block comes back with its
// pages all zero.
func (mm *MM) rmqueuePcplist(order uint, mt MigrateType) (PFN, bool) {
	pcp := &mm.Zone.pcp
	l := &pcp.lists[orderToPindex(mt, order)]
	if l.first == 0 {
		batch := pcp.batch
		if batch > 1 { // scale batch relative to order
			batch = max(batch>>order, 2)
		}
		pcp.count += mm.rmqueueBulk(order, batch, mt, l) << order
		if l.first == 0 {
			return 0, false
		}
	}
	pfn := linkPFN(l.first)
	mm.pcpListDel(l, pfn)
	pcp.count -= 1 << order
	return pfn, true
}

// rmqueueBulk moves up to count blocks of order from the buddy lists of mt
// to the tail of l and returns how many it moved (rmqueue_bulk).
func (mm *MM) rmqueueBulk(order uint, count int, mt MigrateType, l *pcpList) int {
	for i := range count {
		pfn, ok := mm.rmqueueSmallest(order, mt)
		if !ok {
			return i
		}
		mm.pcpListAddTail(l, pfn, order)
	}
	return count
}

// pcpHolds reports whether any per-CPU list of migratetype mt holds a
// block.
func (z *Zone) pcpHolds(mt MigrateType) bool {
	for pindex := int(mt); pindex < nrPcpLists; pindex += NrMigrateTypes {
		if z.pcp.lists[pindex].first != 0 {
			return true
		}
	}
	return false
}

// DrainAllPages returns every page on the per-CPU lists to the buddy
// lists, where they merge (drain_all_pages -> drain_pages_zone on the one
// CPU). Linux drains where the exact free-block state matters
// (alloc_contig_range, memory offline) and before it gives up on an
// allocation; AllocPages does the latter.
func (mm *MM) DrainAllPages() {
	if pcp := &mm.Zone.pcp; pcp.count > 0 {
		mm.freePcppagesBulk(pcp.count, 0)
	}
}

// PcpCount returns the pages on the per-CPU lists (pcp->count).
func (z *Zone) PcpCount() uint64 { return uint64(z.pcp.count) }

// PcpHighBatch returns the per-CPU lists' high mark and batch (pcp->high,
// pcp->batch).
func (z *Zone) PcpHighBatch() (high, batch uint64) {
	return uint64(z.pcp.high), uint64(z.pcp.batch)
}

// nrPcpPagesOf returns the pages on the per-CPU lists of migratetype mt.
func (z *Zone) nrPcpPagesOf(mt MigrateType) uint64 {
	var n uint64
	for pindex := int(mt); pindex < nrPcpLists; pindex += NrMigrateTypes {
		n += z.pcp.lists[pindex].nr << pindexToOrder(pindex)
	}
	return n
}

// onPcpList reports whether the page heads a block on a per-CPU list: free
// (refcount 0), no flags, and linked. Only the allocator links pages that
// are not tails.
func (p *Page) onPcpList() bool {
	return p.lru != [2]uint32{} && p.flags&PGTail == 0 && p.refcount == 0
}

// FreeBlockAt reports whether pfn heads a free block, on the buddy lists
// (PageBuddy) or on a per-CPU list, and its order; the block's other pages
// are free too. A deferred frame (deferred.go) heads the largest aligned
// block its run holds: free, as after page_alloc_init_late.
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (mm *MM) FreeBlockAt(pfn PFN) (order uint, ok bool) {
	mm.Memmap.checkPFN(pfn)
	if mm.uninitialised(pfn) {
		return 0, false // preserved, not restored: not free, and not to be read
	}
	if r, ok := mm.Memmap.deferredAt(pfn); ok {
		return deferredBlock(pfn, r), true // free, its struct page not initialised yet
	}
	if p := &mm.Memmap.pages[pfn]; p.flags == PGBuddy || p.onPcpList() {
		return uint(p.private), true
	}
	return 0, false
}

// PageIsFree reports whether frame pfn is free: inside a block on the
// buddy lists (is_free_buddy_page) or on a per-CPU list.
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (mm *MM) PageIsFree(pfn PFN) bool {
	mm.Memmap.checkPFN(pfn)
	return mm.pageIsFree(pfn)
}

// pageIsFree is PageIsFree for a valid pfn: a free block's head at an
// aligned PFN at or below it whose block reaches it. A candidate head whose
// struct page is uninitialised ends the search unread: no free block holds
// such a frame, and every larger candidate block holds it too.
func (mm *MM) pageIsFree(pfn PFN) bool {
	if mm.Memmap.deferredInit(pfn) {
		return true
	}
	for order := uint(0); order <= MaxPageOrder; order++ {
		hp := pfn &^ (1<<order - 1)
		if mm.uninitialised(hp) {
			return false
		}
		head := &mm.Memmap.pages[hp]
		if (head.flags == PGBuddy || head.onPcpList()) && head.private >= uint64(order) {
			return true
		}
	}
	return false
}
