package physmem

import (
	"strings"
	"testing"

	"khosim/errno"
)

// staleBuddy is garbage that reads as a free order-0 block on the buddy
// lists: what a careless reader of an uninitialised struct page would
// take for a buddy to merge with, or a free page.
var staleBuddy = Page{flags: PGBuddy, lru: [2]uint32{0, pfnLink(1)}}

// kexecMM closes mm and boots the next kernel's MM on the same frames, so
// that its memmap is mm's, recycled with its stale bytes. reserve runs
// before memblock_free_all, which kexecMM runs.
func kexecMM(t *testing.T, mm *MM, reserve func(mb *Memblock)) *MM {
	t.Helper()
	noErr(t, mm.Close())
	next, err := NewMM(mm.Frames, nil)
	noErr(t, err)
	t.Cleanup(func() { next.Close() })
	isTrue(t, next.Memmap.stale, "recycled memmap is stale")
	reserve(next.Memblock)
	noErr(t, next.MemblockFreeAll())
	return next
}

// TestKexecStaleNoinit: a kernel writes struct pages (folios with every
// field set, and garbage that looks like free blocks), the next kernel on
// the same frames reserves some of them MEMBLOCK_RSRV_NOINIT.
// memblock_free_all initialises every other struct page and leaves the
// noinit ones as they were; RestoreFolio makes correct folios of them
// whatever they held, only once; nothing reads them before.
func TestKexecStaleNoinit(t *testing.T) {
	frames := newTestFrames(t, 4096)
	mm1, err := NewMM(frames, nil)
	noErr(t, err)
	noErr(t, mm1.MemblockFreeAll())

	// Kernel 1's folios: an order-3 folio and an order-0 page with every
	// field set, a large folio whose tails are mapped.
	f3, err := mm1.FolioAlloc(GFPHighUserMovable, 3)
	noErr(t, err)
	f0, err := mm1.FolioAlloc(GFPHighUserMovable, 0)
	noErr(t, err)
	for _, f := range []Folio{f3, f0} {
		p := mm1.Page(f.PFN())
		p.Set(PGDirty | PGUptodate | PGLRU | PGSwapBacked)
		p.SetMapping(7)
		p.SetIndex(42)
		p.SetPrivate(99)
		p.AddMapCount(2)
		mm1.FolioRefAdd(f, 5)
	}
	for i := uint64(1); i < 8; i++ {
		mm1.FolioPage(f3, i).AddMapCount(1)
	}
	// A range whose struct pages hold garbage that looks free, and a
	// free-looking garbage page right after the folios.
	const garbage = PFN(3000)
	for pfn := garbage; pfn < garbage+16; pfn++ {
		mm1.Memmap.pages[pfn] = staleBuddy
	}

	mm := kexecMM(t, mm1, func(mb *Memblock) {
		noErr(t, mb.Reserve(f3.PFN().Phys(), 8*PageSize))
		noErr(t, mb.ReservedMarkNoinit(f3.PFN().Phys(), 8*PageSize))
		noErr(t, mb.Reserve(f0.PFN().Phys(), PageSize))
		noErr(t, mb.ReservedMarkNoinit(f0.PFN().Phys(), PageSize))
		noErr(t, mb.Reserve(garbage.Phys(), 16*PageSize))
		noErr(t, mb.ReservedMarkNoinit(garbage.Phys(), 16*PageSize))
	})
	isTrue(t, !mm.Memmap.stale, "memblock_free_all initialised the memmap")
	noinit := func(pfn PFN) bool {
		return pfn >= f3.PFN() && pfn < f3.PFN()+8 || pfn == f0.PFN() || pfn >= garbage && pfn < garbage+16
	}
	// Every other struct page is initialised: nothing of kernel 1 is
	// left in it.
	for pfn := range PFN(mm.Memmap.NumPages()) {
		if noinit(pfn) {
			isTrue(t, !mm.PageInitialised(pfn), "noinit %v initialised", pfn)
			continue
		}
		p := mm.Memmap.pages[pfn]
		isTrue(t, mm.PageInitialised(pfn), "%v not initialised", pfn)
		if p.mapping != 0 || p.index != 0 || p.mapcount != 0 || p.flags&(PGDirty|PGHead|PGTail) != 0 {
			t.Fatalf("%v after memblock_free_all holds kernel 1's state: %v", pfn, &p)
		}
	}
	// The noinit ones were left alone (Linux: MEMBLOCK_RSRV_NOINIT).
	isTrue(t, mm.Memmap.pages[f3.PFN()].flags&PGHead != 0, "noinit head rewritten by memblock_free_all")
	eq(t, mm.Memmap.pages[garbage+1], staleBuddy, "noinit garbage rewritten by memblock_free_all")
	isTrue(t, !mm.Restored(f3.PFN(), 8) && !mm.Restored(garbage, 16), "nothing restored yet")
	noErr(t, mm.CheckInvariants())

	// Nothing takes the free-looking garbage for free memory.
	isTrue(t, !mm.PageIsFree(garbage) && !mm.PageIsFree(garbage+5), "garbage taken for a free page")
	_, free := mm.FreeBlockAt(garbage + 3)
	isTrue(t, !free, "garbage taken for a free block")
	requireViolation(t, invPageInit, func() { mm.PageFolio(f3.PFN() + 1) })
	requireViolation(t, invPageInit, func() { mm.FolioPut(Folio(garbage)) })
	wantErr(t, mm.FreeReservedPages(garbage, 16), errno.EINVAL)

	// RestoreFolio writes head and tails whole: nothing stale survives.
	f, err := mm.RestoreFolio(f3.PFN(), 3)
	noErr(t, err)
	eq(t, f, f3, "folio")
	eq(t, *mm.Page(f.PFN()), Page{flags: PGHead | 3<<flagsOrderShift, refcount: 1}, "restored head")
	for i := PFN(1); i < 8; i++ {
		eq(t, *mm.Page(f.PFN() + i), Page{flags: PGTail, lru: [2]uint32{pfnLink(f.PFN()), 0}}, "restored tail %d", i)
		eq(t, mm.PageFolio(f.PFN()+i), f, "page_folio of tail %d", i)
	}
	eq(t, mm.FolioOrder(f), uint(3), "order")
	eq(t, mm.FolioRefCount(f), int32(1), "refcount")
	g, err := mm.RestoreFolio(f0.PFN(), 0)
	noErr(t, err)
	eq(t, *mm.Page(g.PFN()), Page{refcount: 1}, "restored order-0 page")
	isTrue(t, mm.Restored(f3.PFN(), 8) && mm.Restored(f0.PFN(), 1), "restored")
	isTrue(t, mm.PageInitialised(f3.PFN()+7), "restored tail initialised")
	noErr(t, mm.CheckInvariants())

	// Only once: again, a tail of it, and after it is freed.
	_, err = mm.RestoreFolio(f3.PFN(), 3)
	wantErr(t, err, errno.EINVAL)
	_, err = mm.RestoreFolio(f3.PFN()+4, 2)
	wantErr(t, err, errno.EINVAL)
	mm.FolioPut(g)
	mm.DrainAllPages()
	_, err = mm.RestoreFolio(f0.PFN(), 0)
	wantErr(t, err, errno.EINVAL)

	// Restored frames freed next to garbage never merge with it: the
	// buddy of garbage+2 (order 0) is garbage+3, of garbage+2 (order 1)
	// garbage, both stale PG_buddy order-0 look-alikes.
	h, err := mm.RestoreFolio(garbage+2, 0)
	noErr(t, err)
	mm.FolioPut(h)
	mm.DrainAllPages()
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Memmap.pages[garbage+3], staleBuddy, "buddy garbage read as a free block and merged")
	// (The refused FolioPut above got garbage's struct page through the
	// raw pfn_to_page, which poisoned it.)
	eq(t, mm.Memmap.pages[garbage], poisonedPage, "buddy garbage read as a free block and merged")
	order, free := mm.FreeBlockAt(garbage + 2)
	isTrue(t, free && order == 0, "restored and freed frame is an order-0 free block, got %d %v", order, free)
	isTrue(t, mm.PageIsFree(garbage+2) && !mm.PageIsFree(garbage+3), "free frames")
	mm.FolioPut(f)
	noErr(t, mm.CheckInvariants())
}

// TestCheckInvariantsNoinit: CheckInvariants passes over uninitialised
// struct pages (stale garbage that looks like a free block), and names
// "noinit-reserved" when the allocator covers a preserved frame that was
// not restored.
func TestCheckInvariantsNoinit(t *testing.T) {
	const pre = PFN(2049) // preserved, order 0; 2048 stays free, alone
	boot := func(t *testing.T) *MM {
		frames := newTestFrames(t, 4096)
		mm1, err := NewMM(frames, nil)
		noErr(t, err)
		noErr(t, mm1.MemblockFreeAll())
		mm1.Memmap.pages[pre] = staleBuddy
		mm := kexecMM(t, mm1, func(mb *Memblock) {
			noErr(t, mb.Reserve(pre.Phys(), PageSize))
			noErr(t, mb.ReservedMarkNoinit(pre.Phys(), PageSize))
		})
		noErr(t, mm.CheckInvariants())
		order, free := mm.FreeBlockAt(pre - 1)
		isTrue(t, free && order == 0, "%v: order-0 free block", pre-1)
		return mm
	}
	boot(t)

	for _, tc := range []struct {
		name    string
		corrupt func(mm *MM)
	}{
		{"free block over it", func(mm *MM) {
			mm.delFromFreeList(pre-1, 0, MigrateMovable)
			mm.addToFreeList(pre-1, 1, MigrateMovable)
		}},
		{"per-CPU block over it", func(mm *MM) {
			mm.delFromFreeList(pre-1, 0, MigrateMovable)
			mm.pcpListAdd(&mm.Zone.pcp.lists[orderToPindex(MigrateMovable, 1)], pre-1, 1)
			mm.Zone.pcp.count += 2
		}},
		{"folio over it", func(mm *MM) {
			mm.delFromFreeList(pre-1, 0, MigrateMovable)
			mm.prepNewPage(pre-1, 1, 0)
		}},
		{"free list links to it", func(mm *MM) {
			mm.delFromFreeList(pre-1, 0, MigrateMovable)
			mm.addToFreeList(pre, 0, MigrateMovable)
			mm.Memmap.pages[pre-1] = Page{refcount: 1} // allocated instead
		}},
		{"per-CPU list links to it", func(mm *MM) {
			l := &mm.Zone.pcp.lists[orderToPindex(MigrateMovable, 0)]
			mm.pcpListAdd(l, pre, 0)
			mm.Zone.pcp.count++
		}},
		{"noinit record lost", func(mm *MM) { mm.Memmap.noinit[pre>>6] = 0 }},
		{"uninitialised outside noinit", func(mm *MM) { mm.Memmap.uninit[0] |= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := boot(t)
			tc.corrupt(mm)
			requireCheckFails(t, mm, invNoinitReserved)
		})
	}

	// A restored frame that nobody owns any more is a leak, not an
	// uninitialised page.
	t.Run("restored and leaked", func(t *testing.T) {
		mm := boot(t)
		f, err := mm.RestoreFolio(pre, 0)
		noErr(t, err)
		noErr(t, mm.CheckInvariants())
		mm.Memmap.pages[f] = Page{}
		requireCheckFails(t, mm, invFrameState)
	})
}

// TestFreshMemmapNoinit: with a fresh (all-zero) memmap the noinit frames
// read zero but are uninitialised all the same: skipped, restorable once.
func TestFreshMemmapNoinit(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	isTrue(t, !mm.Memmap.stale, "fresh memmap")
	noErr(t, mm.Memblock.Reserve(512*PageSize, 4*PageSize))
	noErr(t, mm.Memblock.ReservedMarkNoinit(512*PageSize, 4*PageSize))
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())
	isTrue(t, !mm.PageInitialised(512) && mm.PageInitialised(511), "noinit uninitialised")
	f, err := mm.RestoreFolio(512, 2)
	noErr(t, err)
	_, err = mm.RestoreFolio(512, 2)
	wantErr(t, err, errno.EINVAL)
	mm.FolioPut(f)
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePages(), uint64(1024), "all memory free")
}

// TestNoinitHoleAndDump: a noinit reservation over a hole in memory gives
// RestoreFolio nothing (a hole is no preserved memory), and a dump of an
// unrestored noinit page shows none of the previous kernel's bytes.
func TestNoinitHoleAndDump(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	mb := mm.Memblock
	noErr(t, mb.Remove(PFN(512).Phys(), 4*PageSize))
	noErr(t, mb.Reserve(PFN(512).Phys(), 4*PageSize))
	noErr(t, mb.ReservedMarkNoinit(PFN(512).Phys(), 4*PageSize))
	noErr(t, mm.MemblockFreeAll())
	if _, err := mm.RestoreFolio(512, 2); err != errno.EINVAL {
		t.Fatalf("RestoreFolio of a hole under a noinit reservation: %v, want EINVAL", err)
	}
	isTrue(t, mm.PageInitialised(512), "a hole's struct page is initialised (PG_reserved)")
	noErr(t, mm.CheckInvariants())

	// Kernel 1 leaves a page with a mapping and an index; kernel 2
	// reserves it noinit: a dump says "uninitialised", nothing more.
	f, err := mm.FolioAlloc(GFPHighUserMovable, 0)
	noErr(t, err)
	p := mm.Page(f.PFN())
	p.SetMapping(0x1234)
	p.SetIndex(0xdead)
	next := kexecMM(t, mm, func(mb *Memblock) {
		noErr(t, mb.Reserve(f.PFN().Phys(), PageSize))
		noErr(t, mb.ReservedMarkNoinit(f.PFN().Phys(), PageSize))
	})
	d := next.dumpPage(f.PFN())
	isTrue(t, strings.Contains(d, "uninitialised") && !strings.Contains(d, "0xdead") && !strings.Contains(d, "4660"),
		"dump of an unrestored noinit page: %s", d)
}
