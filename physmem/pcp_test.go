package physmem

import (
	"bytes"
	"slices"
	"testing"

	"khosim/errno"
	"khosim/fault"
)

// pcpListPFNs returns the blocks on per-CPU list pindex, hot end first.
func pcpListPFNs(mm *MM, pindex int) []PFN {
	var pfns []PFN
	for l := mm.Zone.pcp.lists[pindex].first; l != 0 && l != pcpListHead; l = mm.Memmap.pages[linkPFN(l)].lru[0] {
		pfns = append(pfns, linkPFN(l))
	}
	return pfns
}

func TestPcpSizing(t *testing.T) {
	for _, tc := range []struct {
		managed     uint64
		high, batch uint64
	}{
		{1024, 4, 1},        // 4 MiB: batch clamps to 1
		{16384, 12, 3},      // 64 MiB
		{65536, 60, 15},     // 256 MiB
		{1 << 18, 252, 63},  // 1 GiB
		{1 << 24, 252, 63},  // 64 GiB: batch is capped at 1 MiB
		{4096 + 1024, 4, 1}, // 5 MiB
		{1 << 15, 28, 7},    // 128 MiB: rounddown_pow_of_two(8 + 4) - 1
		{PageblockNrPages, 4, 1},
	} {
		batch := uint64(zoneBatchsize(tc.managed))
		eq(t, batch, tc.batch, "zone_batchsize(%d)", tc.managed)
		eq(t, uint64(zoneHighsize(int(batch))), tc.high, "zone_highsize(%d)", tc.managed)
	}
	mm := newTestMM(t, 16384, nil)
	high, batch := mm.Zone.PcpHighBatch()
	eq(t, [2]uint64{high, batch}, [2]uint64{bootPagesetHigh, bootPagesetBatch}, "boot pageset")
	noErr(t, mm.MemblockFreeAll())
	high, batch = mm.Zone.PcpHighBatch()
	eq(t, [2]uint64{high, batch}, [2]uint64{12, 3}, "after memblock_free_all")
}

// TestPcpRefillAndSpill follows the order-0 list of a 64 MiB machine
// (batch 3, high 12) against a model: rmqueue_pcplist takes from the hot
// end and refills an empty list with batch pages; free_unref_page adds at
// the hot end and, once the lists hold high pages, free_pcppages_bulk
// returns the batch coldest to the buddy lists.
func TestPcpRefillAndSpill(t *testing.T) {
	mm := bootedMM(t, 16384)
	const high, batch = 12, 3
	pindex := orderToPindex(MigrateMovable, 0)
	var list []PFN // the model, hot end first

	// rmqueue_bulk splits the 4 MiB block first on the order-10 list (the
	// last one memblock_free_all freed) and takes its frames in order.
	base := linkPFN(mm.Zone.freeArea[MaxPageOrder].freeList[MigrateMovable])
	var pfns []PFN
	for i := range 20 {
		if len(list) == 0 {
			b := base + PFN(i)
			list = []PFN{b, b + 1, b + 2}
		}
		pfn, err := mm.AllocPages(GFPKernel, 0)
		noErr(t, err)
		eq(t, pfn, list[0], "allocation %d", i)
		list = list[1:]
		pfns = append(pfns, pfn)
		eq(t, slices.Equal(pcpListPFNs(mm, pindex), list), true, "list after allocation %d: %v, want %v", i, pcpListPFNs(mm, pindex), list)
		eq(t, mm.Zone.PcpCount(), uint64(len(list)), "pcp->count")
	}
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePages(), uint64(16384-20), "NR_FREE_PAGES counts the per-CPU pages")

	spills := 0
	for _, pfn := range pfns {
		buddyFree := mm.Zone.nrFreeBuddyPagesOf(MigrateMovable)
		mm.FreePages(pfn, 0)
		list = append([]PFN{pfn}, list...)
		if len(list) >= high {
			list = list[:len(list)-batch]
			spills++
			eq(t, mm.Zone.nrFreeBuddyPagesOf(MigrateMovable), buddyFree+batch, "free_pcppages_bulk returned batch pages")
		}
		eq(t, slices.Equal(pcpListPFNs(mm, pindex), list), true, "list after freeing %v: %v, want %v", pfn, pcpListPFNs(mm, pindex), list)
		eq(t, mm.Zone.PcpCount(), uint64(len(list)), "pcp->count")
		isTrue(t, mm.Zone.PcpCount() < high, "pcp->count %d reached high", mm.Zone.PcpCount())
		noErr(t, mm.CheckInvariants())
	}
	eq(t, spills, 4, "spills")
	eq(t, mm.Zone.NrFreePages(), uint64(16384), "all free")
}

// TestPcpHighOrders: orders up to PAGE_ALLOC_COSTLY_ORDER have lists of
// their own, refilled with max(batch >> order, 2) blocks.
func TestPcpHighOrders(t *testing.T) {
	mm := bootedMM(t, 16384) // batch 3, high 12
	for _, order := range []uint{1, 2, 3} {
		pindex := orderToPindex(MigrateMovable, order)
		f, err := mm.FolioAlloc(GFPHighUserMovable, order)
		noErr(t, err)
		eq(t, mm.FolioOrder(f), order, "folio order")
		left := pcpListPFNs(mm, pindex)
		eq(t, len(left), 1, "order-%d list after the refill of 2 and one allocation", order)
		eq(t, mm.Zone.PcpCount(), uint64(1)<<order, "pcp->count")
		noErr(t, mm.CheckInvariants())

		// Once the free reaches high, free_pcppages_bulk empties this list
		// from its cold end first: the block left from the refill goes.
		mm.FolioPut(f)
		want := []PFN{PFN(f), left[0]}
		if 2<<order >= 12 {
			want = want[:1]
		}
		eq(t, slices.Equal(pcpListPFNs(mm, pindex), want), true, "order-%d list %v after the free, want %v", order, pcpListPFNs(mm, pindex), want)
		eq(t, mm.Zone.PcpCount(), uint64(len(want))<<order, "pcp->count")
		noErr(t, mm.CheckInvariants())
		mm.DrainAllPages()
	}
	for _, order := range []uint{4, HPageOrder} { // not cached: the buddy lists
		f, err := mm.FolioAlloc(GFPKernel, order)
		noErr(t, err)
		eq(t, mm.Zone.PcpCount(), uint64(0), "order %d allocation used the per-CPU lists", order)
		mm.FolioPut(f)
		eq(t, mm.Zone.PcpCount(), uint64(0), "order %d free used the per-CPU lists", order)
		isTrue(t, mm.PageIsFree(PFN(f)), "order-%d block not free", order)
	}
}

// TestPcpDrain: drain_all_pages returns everything and the buddy lists end
// as they began.
func TestPcpDrain(t *testing.T) {
	mm := bootedMM(t, 16384)
	before := mm.Zone.String()
	var fs []Folio
	for i := range 200 {
		f, err := mm.FolioAlloc(GFPKernel, uint(i%4))
		noErr(t, err)
		fs = append(fs, f)
	}
	for i := range fs {
		mm.FolioPut(fs[(i*37)%len(fs)])
	}
	isTrue(t, mm.Zone.PcpCount() > 0, "nothing on the per-CPU lists")
	noErr(t, mm.CheckInvariants())
	mm.DrainAllPages()
	eq(t, mm.Zone.PcpCount(), uint64(0), "pcp->count after drain")
	for pindex := range nrPcpLists {
		eq(t, len(pcpListPFNs(mm, pindex)), 0, "list %d after drain", pindex)
	}
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.String(), before, "free lists after drain")
	mm.DrainAllPages() // nothing to do
	eq(t, mm.Zone.String(), before, "second drain")
}

// TestPcpDrainAndRetry: free pages stuck on the per-CPU lists still serve
// a larger request; ENOMEM comes only when no aligned run is free.
func TestPcpDrainAndRetry(t *testing.T) {
	in := fault.New()
	mm := newTestMM(t, 1024, in) // batch 1, high 4
	noErr(t, mm.MemblockFreeAll())
	for range 1024 {
		_, err := mm.AllocPages(GFPKernel, 0)
		noErr(t, err)
	}
	mm.FreePages(6, 0)
	mm.FreePages(7, 0)
	mm.FreePages(9, 0)
	eq(t, mm.Zone.PcpCount(), uint64(3), "pages on the per-CPU lists")
	eq(t, mm.Zone.NrFree(0)+mm.Zone.NrFree(1), uint64(0), "buddy lists empty")

	noErr(t, in.Arm(fault.PageAlloc, 1, 1)) // an injected failure comes first and drains nothing
	_, err := mm.AllocPages(GFPKernel, 1)
	wantErr(t, err, errno.ENOMEM)
	eq(t, mm.Zone.PcpCount(), uint64(3), "injected failure drained")

	pfn, err := mm.AllocPages(GFPKernel, 1)
	noErr(t, err)
	eq(t, pfn, PFN(6), "6 and 7 merged once drained")
	eq(t, mm.Zone.PcpCount(), uint64(0), "drained")
	noErr(t, mm.CheckInvariants())

	mm.FreePages(11, 0)
	_, err = mm.AllocPages(GFPKernel, 1) // 9 and 11 are not buddies
	wantErr(t, err, errno.ENOMEM)
	eq(t, mm.Zone.NrFreePages(), uint64(2), "free pages after ENOMEM")
	_, err = mm.AllocPages(GFPKernel, MaxPageOrder)
	wantErr(t, err, errno.ENOMEM)
	for range 2 {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		noErr(t, err)
		isTrue(t, pfn == 9 || pfn == 11, "order-0 allocation got %v", pfn)
	}
	_, err = mm.AllocPages(GFPHighUserMovable, 0)
	wantErr(t, err, errno.ENOMEM)
	noErr(t, mm.CheckInvariants())
}

// TestPcpMigratetypes: scratch pages sit on MIGRATE_CMA lists of their
// own, so an unmovable allocation never gets one, and a movable one still
// prefers normal memory.
func TestPcpMigratetypes(t *testing.T) {
	mm := newTestMM(t, 2048, nil)
	noErr(t, mm.Memblock.MarkKHOScratch(0, 2*pbBytes)) // first 1024 frames
	noErr(t, mm.MemblockFreeAll())
	inScratch := func(pfn PFN) bool { return pfn < 1024 }
	var normal []PFN
	for {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			wantErr(t, err, errno.ENOMEM)
			break
		}
		isTrue(t, !inScratch(pfn), "GFP_KERNEL got scratch %v", pfn)
		normal = append(normal, pfn)
	}
	eq(t, len(normal), 1024, "normal pages")

	s, err := mm.AllocPages(GFPHighUserMovable, 0)
	noErr(t, err)
	isTrue(t, inScratch(s), "movable fallback to scratch")
	mm.FreePages(s, 0)
	eq(t, pcpListPFNs(mm, orderToPindex(MigrateCMA, 0))[0], s, "scratch page on the CMA list")
	eq(t, len(pcpListPFNs(mm, orderToPindex(MigrateMovable, 0))), 0, "movable list")
	eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), uint64(1024), "NR_FREE_CMA_PAGES counts it")
	_, err = mm.AllocPages(GFPKernel, 0)
	wantErr(t, err, errno.ENOMEM) // not the scratch page on the per-CPU list
	isTrue(t, mm.PageIsFree(s), "scratch page still free")
	noErr(t, mm.CheckInvariants())

	mm.FreePages(normal[5], 0)
	pfn, err := mm.AllocPages(GFPHighUserMovable, 0)
	noErr(t, err)
	eq(t, pfn, normal[5], "movable prefers the normal page")
	pfn, err = mm.AllocPages(GFPHighUserMovable, 0)
	noErr(t, err)
	eq(t, pfn, s, "then the scratch page on the CMA list")
	mm.FreePages(normal[7], 0)
	pfn, err = mm.AllocPages(GFPKernel, 0)
	noErr(t, err)
	eq(t, pfn, normal[7], "GFP_KERNEL takes the normal page")
	noErr(t, mm.CheckInvariants())
}

// TestPcpGFPZero: a page reused hot from a per-CPU list keeps its bytes
// unless __GFP_ZERO asks otherwise.
func TestPcpGFPZero(t *testing.T) {
	mm := bootedMM(t, 16384) // high 12
	for _, order := range []uint{0, 3, HPageOrder} {
		pfn, err := mm.AllocPages(GFPKernel, order)
		noErr(t, err)
		mm.Frames.Fill(pfn, 1<<order, 0xdeadbeef)
		mm.FreePages(pfn, order)
		if order == HPageOrder { // not cached: it went back to the buddy lists
			continue
		}
		again, err := mm.AllocPages(GFPKernel, order)
		noErr(t, err)
		eq(t, again, pfn, "hot page reused")
		isTrue(t, !bytes.Equal(mm.Frames.Span(pfn, 1<<order), make([]byte, PageSize<<order)), "contents kept")
		mm.FreePages(pfn, order)
		again, err = mm.AllocPages(GFPKernel|GFPZero, order)
		noErr(t, err)
		eq(t, again, pfn, "hot page reused")
		isTrue(t, bytes.Equal(mm.Frames.Span(pfn, 1<<order), make([]byte, PageSize<<order)), "order %d not zeroed", order)
	}
}

// TestPcpPagesAreFree: FreeBlockAt and PageIsFree see blocks on the
// per-CPU lists as free, and folio operations reject them.
func TestPcpPagesAreFree(t *testing.T) {
	mm := bootedMM(t, 16384)
	p, err := mm.AllocPages(GFPKernel, 0)
	noErr(t, err)
	b, err := mm.AllocPages(GFPKernel, 3)
	noErr(t, err)
	order, ok := mm.FreeBlockAt(p)
	isTrue(t, !ok, "allocated page is a free block (order %d)", order)
	isTrue(t, !mm.PageIsFree(b+1), "allocated tail is free")
	mm.FreePages(p, 0)
	mm.FreePages(b, 3)
	order, ok = mm.FreeBlockAt(p)
	eq(t, [2]any{order, ok}, [2]any{uint(0), true}, "FreeBlockAt order-0 per-CPU page")
	order, ok = mm.FreeBlockAt(b)
	eq(t, [2]any{order, ok}, [2]any{uint(3), true}, "FreeBlockAt order-3 per-CPU block")
	_, ok = mm.FreeBlockAt(b + 1)
	isTrue(t, !ok, "interior page heads a block")
	for i := range PFN(8) {
		isTrue(t, mm.PageIsFree(b+i), "page %d of the per-CPU block not free", i)
	}
	buddy := linkPFN(mm.Zone.freeArea[MaxPageOrder].freeList[MigrateMovable])
	order, ok = mm.FreeBlockAt(buddy)
	eq(t, [2]any{order, ok}, [2]any{uint(MaxPageOrder), true}, "FreeBlockAt buddy block")
	isTrue(t, mm.PageIsFree(buddy+700), "inside a buddy block")
	eq(t, mm.Page(p).Flags(), PageFlags(0), "per-CPU page flags")

	requireViolation(t, invFolioNotFree, func() { mm.FolioGet(Folio(p)) })
	requireViolation(t, invFolioNotFree, func() { mm.FreePages(b, 3) })
	requireViolation(t, invPageFlagOwner, func() { mm.Page(p).Set(PGDirty) })
	requireViolation(t, invMapcount, func() { mm.Page(p).AddMapCount(1) })
	requireViolation(t, invPFNInRange, func() { mm.PageIsFree(16384) })
}

// TestCheckInvariantsFindsPcpCorruption corrupts the per-CPU lists of a
// healthy model one way at a time.
func TestCheckInvariantsFindsPcpCorruption(t *testing.T) {
	type fixture struct {
		mm     *MM
		order0 PFN // allocated, order 0
		pcp0   PFN // first on the order-0 list, which holds two
		pcp3   PFN // on the order-3 list, alone
	}
	l0 := orderToPindex(MigrateMovable, 0)
	for _, tc := range []struct {
		name    string
		inv     string
		corrupt func(x fixture)
	}{
		{"per-CPU page with a reference", invFrameState, func(x fixture) { x.mm.Memmap.pages[x.pcp0].refcount = 1 }},
		{"per-CPU page with a flag", invPcpBlock, func(x fixture) { x.mm.Memmap.pages[x.pcp0].flags = PGDirty }},
		{"per-CPU page with a mapping", invPcpBlock, func(x fixture) { x.mm.Memmap.pages[x.pcp0].mapping = 1 }},
		{"per-CPU block of an uncached order", invPcpBlock, func(x fixture) { x.mm.Memmap.pages[x.pcp3].private = 5 }},
		{"per-CPU block misaligned", invPcpBlock, func(x fixture) { x.mm.Memmap.pages[x.pcp0|1].private = 1 }},
		{"page inside a per-CPU block written", invPcpBlock, func(x fixture) { x.mm.Memmap.pages[x.pcp3+3].index = 1 }},
		{"per-CPU list holding a block of another order", invPcpList, func(x fixture) {
			l := &x.mm.Zone.pcp.lists[orderToPindex(MigrateMovable, 1)]
			l.first, l.last, l.nr = pfnLink(x.pcp0), pfnLink(x.pcp0), 1
		}},
		{"per-CPU page missing from its list", invPcpList, func(x fixture) {
			l := &x.mm.Zone.pcp.lists[l0]
			x.mm.pcpListDel(l, x.pcp0)
			x.mm.Memmap.pages[x.pcp0].lru = [2]uint32{pcpListHead, pcpListHead}
			l.nr++
		}},
		{"per-CPU list prev link broken", invPcpList, func(x fixture) {
			second := pcpListPFNs(x.mm, l0)[1]
			x.mm.Memmap.pages[second].lru[1] = pfnLink(3)
		}},
		{"per-CPU list through an allocated page", invPcpList, func(x fixture) {
			x.mm.Zone.pcp.lists[l0].first = pfnLink(x.order0)
		}},
		{"per-CPU list into nowhere", invPcpList, func(x fixture) {
			x.mm.Memmap.pages[x.pcp0].lru[0] = pfnLink(1 << 20)
		}},
		{"per-CPU list last wrong", invPcpList, func(x fixture) {
			l := &x.mm.Zone.pcp.lists[l0]
			l.last = l.first
		}},
		{"per-CPU list half empty", invPcpList, func(x fixture) { x.mm.Zone.pcp.lists[l0].last = 0 }},
		{"pcp->batch zero", invPcpList, func(x fixture) { x.mm.Zone.pcp.batch = 0 }},
		{"pcp->count wrong", invFreeCounts, func(x fixture) { x.mm.Zone.pcp.count++ }},
		{"per-CPU list count wrong", invFreeCounts, func(x fixture) { x.mm.Zone.pcp.lists[l0].nr++ }},
		{"per-CPU page lost", invFrameState, func(x fixture) {
			x.mm.pcpListDel(&x.mm.Zone.pcp.lists[l0], x.pcp0)
			x.mm.Zone.pcp.count--
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := bootedMM(t, 16384) // batch 3
			order0, err := mm.AllocPages(GFPKernel, 0)
			noErr(t, err)
			b, err := mm.AllocPages(GFPKernel, 3)
			noErr(t, err)
			_, err = mm.AllocPages(GFPKernel, 3) // the order-3 list's second block
			noErr(t, err)
			mm.FreePages(b, 3)
			list := pcpListPFNs(mm, l0)
			eq(t, len(list), 2, "order-0 list")
			eq(t, len(pcpListPFNs(mm, orderToPindex(MigrateMovable, 3))), 1, "order-3 list")
			noErr(t, mm.CheckInvariants())
			tc.corrupt(fixture{mm, order0, list[0], b})
			requireCheckFails(t, mm, tc.inv)
		})
	}
}
