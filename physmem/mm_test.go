package physmem

import (
	"testing"
	"unsafe"

	"khosim/errno"
)

func TestPageIs40Bytes(t *testing.T) {
	eq(t, unsafe.Sizeof(Page{}), uintptr(40), "sizeof(struct page)")
}

func TestNewMMErrors(t *testing.T) {
	_, err := NewMM(nil, nil)
	wantErr(t, err, errno.EINVAL)
	f, err := NewFrames(PageSize)
	noErr(t, err)
	noErr(t, f.Close())
	_, err = NewMM(f, nil)
	wantErr(t, err, errno.EINVAL)

	mm, err := NewMM(newTestFrames(t, 8), nil)
	noErr(t, err)
	noErr(t, mm.Close())
	wantErr(t, mm.Close(), errno.EBADF)
}

func TestNewMMStartsUninitialised(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	eq(t, regions(mm.Memblock.Memory()), "0x0+0x400000", "memory is the whole machine")
	noErr(t, mm.CheckInvariants())
	_, err := mm.AllocPages(GFPKernel, 0)
	wantErr(t, err, errno.ENOMEM)
	// Before memblock_free_all no struct page is this kernel's to read.
	requireViolation(t, invPageInit, func() { mm.Page(5) })
	requireViolation(t, invPageInit, func() { mm.Memmap.Page(5) })
	mm.Memmap.pages[5].refcount = 1
	requireCheckFails(t, mm, invFrameState)
}

// TestMemblockFreeAll boots a 16 MiB machine with a hole, reserved ranges
// (one not page aligned), a noinit range and a scratch range.
func TestMemblockFreeAll(t *testing.T) {
	mm := newTestMM(t, 4096, nil)
	mb := mm.Memblock
	noErr(t, mb.Remove(12*mib, 2*mib))                 // hole: pages 3072..3583
	noErr(t, mb.Reserve(0x1800, 0x2000))               // pages 1..3, partially
	noErr(t, mb.Reserve(8*mib, 4*PageSize))            // pages 2048..2051
	noErr(t, mb.ReservedMarkNoinit(8*mib, 2*PageSize)) // 2048, 2049 stay uninitialised
	noErr(t, mb.MarkKHOScratch(4*mib, 4*mib))          // pageblocks 2, 3
	noErr(t, mb.Reserve(5*mib, PageSize))              // page 1280, in scratch
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())

	reserved := map[PFN]bool{1: true, 2: true, 3: true, 2050: true, 2051: true, 1280: true}
	for pfn := PFN(3072); pfn < 3584; pfn++ {
		reserved[pfn] = true
	}
	for pfn := range reserved {
		p := mm.Page(pfn)
		isTrue(t, p.Test(PGReserved) && p.RefCount() == 1, "%v: %v, want PG_reserved refcount 1", pfn, p)
	}
	for _, pfn := range []PFN{2048, 2049} {
		requireViolation(t, invPageInit, func() { mm.Page(pfn) })
		eq(t, *mm.Memmap.Page(pfn), poisonedPage, "noinit %v, through the raw pfn_to_page", pfn)
		requireViolation(t, invPagePoisoned, func() { mm.Memmap.Page(pfn).Flags() })
	}
	free := uint64(4096 - len(reserved) - 2)
	eq(t, mm.Zone.NrFreePages(), free, "NR_FREE_PAGES")
	eq(t, mm.Zone.ManagedPages(), free, "managed pages")
	eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), uint64(1024-1), "free scratch pages")
	for pb, want := range []MigrateType{MigrateMovable, MigrateMovable, MigrateCMA, MigrateCMA, MigrateMovable} {
		eq(t, mm.Zone.PageblockMigratetype(PFN(pb)*PageblockNrPages), want, "pageblock %d", pb)
	}
	// Page 1280 splits scratch: only pageblock 3 is free whole.
	eq(t, mm.Zone.NrFreeList(MaxPageOrder, MigrateCMA), uint64(0), "scratch has a reserved page in each 4 MiB")
	eq(t, mm.Zone.NrFreeList(PageblockOrder, MigrateCMA), uint64(1), "one whole free scratch pageblock")
}

// TestFreeAllSplitsAcrossMigratetypes frees a 4 MiB range that is half
// scratch: it must land as two pageblocks on different lists.
func TestFreeAllSplitsAcrossMigratetypes(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	noErr(t, mm.Memblock.MarkKHOScratch(pbBytes, pbBytes))
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFree(MaxPageOrder), uint64(0), "order-10 blocks")
	eq(t, mm.Zone.NrFreeList(PageblockOrder, MigrateMovable), uint64(1), "movable pageblocks")
	eq(t, mm.Zone.NrFreeList(PageblockOrder, MigrateCMA), uint64(1), "CMA pageblocks")
}

func TestRestoreFolio(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	base := PFN(512)
	noErr(t, mm.Memblock.Reserve(base.Phys(), 16*PageSize))
	noErr(t, mm.Memblock.ReservedMarkNoinit(base.Phys(), 16*PageSize))
	_, err := mm.RestoreFolio(base, 2)
	wantErr(t, err, errno.EINVAL) // before memblock_free_all
	noErr(t, mm.MemblockFreeAll())
	managed := mm.Zone.ManagedPages()

	for _, tc := range []struct {
		name  string
		pfn   PFN
		order uint
	}{
		{"misaligned", base + 1, 1},
		{"order too big", base, MaxPageOrder + 1},
		{"beyond memory", 1024, 0},
		{"not preserved", base - 4, 2},
		{"partly preserved", base + 8, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mm.RestoreFolio(tc.pfn, tc.order)
			wantErr(t, err, errno.EINVAL)
		})
	}

	f, err := mm.RestoreFolio(base, 2)
	noErr(t, err)
	eq(t, f, Folio(base), "folio")
	eq(t, mm.FolioRefCount(f), int32(1), "refcount")
	eq(t, mm.FolioOrder(f), uint(2), "order")
	eq(t, mm.PageFolio(base+3), f, "page_folio of a tail")
	eq(t, mm.Zone.ManagedPages(), managed+4, "managed pages")
	noErr(t, mm.CheckInvariants())
	_, err = mm.RestoreFolio(base, 2)
	wantErr(t, err, errno.EINVAL) // twice
	_, err = mm.RestoreFolio(base+2, 0)
	wantErr(t, err, errno.EINVAL) // a tail of it

	// Restored folios freed go to the allocator (here the per-CPU lists),
	// and what is free there cannot be restored again.
	a, err := mm.RestoreFolio(base+4, 0)
	noErr(t, err)
	b, err := mm.RestoreFolio(base+5, 0)
	noErr(t, err)
	mm.FolioPut(a)
	mm.FolioPut(b)
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Page(base+5).Flags(), PageFlags(0), "free, not PG_buddy, on a per-CPU list")
	_, err = mm.RestoreFolio(base+5, 0)
	wantErr(t, err, errno.EINVAL)
	mm.DrainAllPages() // base+4 and base+5 merge: base+5 is inside a free block
	eq(t, *mm.Page(base + 5), Page{}, "merged into base+4's block")
	_, err = mm.RestoreFolio(base+5, 0)
	wantErr(t, err, errno.EINVAL)
	mm.FolioPut(f)
	noErr(t, mm.CheckInvariants())
}

func TestFreeReservedPages(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	noErr(t, mm.Memblock.Reserve(0, 8*PageSize))
	noErr(t, mm.MemblockFreeAll())
	free := mm.Zone.NrFreePages()

	wantErr(t, mm.FreeReservedPages(6, 4), errno.EINVAL) // 8, 9 not reserved
	wantErr(t, mm.FreeReservedPages(1020, 8), errno.EINVAL)
	eq(t, mm.Zone.NrFreePages(), free, "failed call freed pages")
	mm.GetPage(3)
	wantErr(t, mm.FreeReservedPages(0, 8), errno.EINVAL) // page 3 is in use
	mm.PutPage(3)

	noErr(t, mm.FreeReservedPages(0, 8))
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePages(), uint64(1024), "all memory free")
	eq(t, mm.Zone.NrFree(MaxPageOrder), uint64(1), "merged into one block")
}

// TestInitCMAReservedPageblock is the first kernel's scratch: reserved at
// boot, released as MIGRATE_CMA afterwards.
func TestInitCMAReservedPageblock(t *testing.T) {
	mm := newTestMM(t, 2048, nil)
	a, err := mm.Memblock.PhysAlloc(pbBytes, pbBytes)
	noErr(t, err)
	noErr(t, mm.Memblock.MarkKHOScratch(a, pbBytes))
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), uint64(0), "scratch still reserved")

	wantErr(t, mm.InitCMAReservedPageblock(a.PFN()+1), errno.EINVAL)
	wantErr(t, mm.InitCMAReservedPageblock(0), errno.EINVAL) // not scratch
	wantErr(t, mm.InitCMAReservedPageblock(2048), errno.EINVAL)
	noErr(t, mm.InitCMAReservedPageblock(a.PFN()))
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), uint64(PageblockNrPages), "scratch released")
	wantErr(t, mm.InitCMAReservedPageblock(a.PFN()), errno.EINVAL) // twice
}
