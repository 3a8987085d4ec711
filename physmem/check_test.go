package physmem

import "testing"

// TestCheckInvariantsFindsCorruption corrupts a healthy model in one way
// at a time; CheckInvariants must name the broken invariant.
func TestCheckInvariantsFindsCorruption(t *testing.T) {
	type fixture struct {
		mm        *MM
		order0    PFN // allocated, order 0
		folio     PFN // allocated, order 2
		freeBlock PFN // head of a free order-10 block
	}
	for _, tc := range []struct {
		name    string
		inv     string
		corrupt func(x fixture)
	}{
		{"free head with a reference", invFreeBlock, func(x fixture) { x.mm.Memmap.pages[x.freeBlock].refcount = 1 }},
		{"free head with a mapping", invFreeBlock, func(x fixture) { x.mm.Memmap.pages[x.freeBlock].mapping = 1 }},
		{"free block misaligned", invFreeBlock, func(x fixture) { x.mm.Memmap.pages[x.freeBlock].private = MaxPageOrder + 1 }},
		{"page inside a free block written", invFreeBlock, func(x fixture) { x.mm.Memmap.pages[x.freeBlock+77].index = 1 }},
		{"free block of the wrong migratetype", invFreeBlock, func(x fixture) {
			x.mm.Zone.pageblockMT[(x.freeBlock>>PageblockOrder)+1] = MigrateCMA
			x.mm.Memblock.memory.setFlags((x.freeBlock + PageblockNrPages).Phys(), (x.freeBlock + 2*PageblockNrPages).Phys(), MemblockKHOScratch, true)
		}},
		{"free buddies not merged", invCoalesced, func(x fixture) {
			x.mm.delFromFreeList(x.freeBlock, MaxPageOrder, MigrateMovable)
			x.mm.addToFreeList(x.freeBlock, MaxPageOrder-1, MigrateMovable)
			x.mm.addToFreeList(x.freeBlock+512, MaxPageOrder-1, MigrateMovable)
		}},
		{"free block missing from its list", invFreeList, func(x fixture) {
			x.mm.delFromFreeList(x.freeBlock, MaxPageOrder, MigrateMovable)
			x.mm.Memmap.pages[x.freeBlock] = Page{flags: PGBuddy, private: MaxPageOrder}
			x.mm.Zone.freeArea[MaxPageOrder].nrFree[MigrateMovable]++
		}},
		{"free list prev link broken", invFreeList, func(x fixture) {
			x.mm.Memmap.pages[x.freeBlock].lru[1] = pfnLink(3)
		}},
		{"free list through an allocated page", invFreeList, func(x fixture) {
			x.mm.Zone.freeArea[0].freeList[MigrateMovable] = pfnLink(x.order0)
		}},
		{"free list into nowhere", invFreeList, func(x fixture) {
			x.mm.Memmap.pages[x.freeBlock].lru[0] = pfnLink(1 << 20)
		}},
		{"nr_free wrong", invFreeCounts, func(x fixture) { x.mm.Zone.freeArea[MaxPageOrder].nrFree[MigrateMovable]++ }},
		{"managed pages wrong", invFreeCounts, func(x fixture) { x.mm.Zone.managed-- }},
		{"allocated page leaked", invFrameState, func(x fixture) { x.mm.Memmap.pages[x.order0] = Page{} }},
		{"page with flags but no state", invFrameState, func(x fixture) {
			x.mm.Memmap.pages[x.order0] = Page{flags: PGDirty}
		}},
		{"reserved outside reserved memory", invFrameState, func(x fixture) {
			x.mm.Memmap.pages[x.order0].flags |= PGReserved
		}},
		{"order-0 page with list links", invFrameState, func(x fixture) { x.mm.Memmap.pages[x.order0].lru[0] = 5 }},
		{"tail without a head", invCompound, func(x fixture) { x.mm.Memmap.pages[x.order0].flags |= PGTail }},
		{"tail of another head", invCompound, func(x fixture) { x.mm.Memmap.pages[x.folio+1].lru[0] = pfnLink(x.order0) }},
		{"tail with a refcount", invCompound, func(x fixture) { x.mm.Memmap.pages[x.folio+3].refcount = 1 }},
		{"head with no references", invCompound, func(x fixture) { x.mm.Memmap.pages[x.folio].refcount = 0 }},
		{"head of a bad order", invCompound, func(x fixture) {
			x.mm.Memmap.pages[x.folio].flags |= 15 << flagsOrderShift
		}},
		{"negative mapcount", invMapcount, func(x fixture) { x.mm.Memmap.pages[x.order0].mapcount = -1 }},
		{"pageblock migratetype", invPageblockMT, func(x fixture) { x.mm.Zone.pageblockMT[0] = MigrateCMA }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := bootedMM(t, 4096)
			order0, err := mm.AllocPages(GFPKernel, 0)
			noErr(t, err)
			folio, err := mm.AllocPages(GFPKernel, 2)
			noErr(t, err)
			freeBlock := linkPFN(mm.Zone.freeArea[MaxPageOrder].freeList[MigrateMovable])
			noErr(t, mm.CheckInvariants())
			tc.corrupt(fixture{mm, order0, folio, freeBlock})
			requireCheckFails(t, mm, tc.inv)
		})
	}
}
