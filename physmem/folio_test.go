package physmem

import (
	"testing"

	"khosim/errno"
)

func TestFolioReferences(t *testing.T) {
	mm := bootedMM(t, 1024)
	f, err := mm.FolioAlloc(GFPHighUserMovable, 2)
	noErr(t, err)
	free := mm.Zone.NrFreePages()

	mm.FolioGet(f)
	mm.FolioRefAdd(f, 4) // the page cache's folio_nr_pages() references
	mm.GetPage(PFN(f) + 3)
	eq(t, mm.FolioRefCount(f), int32(7), "refcount")
	eq(t, mm.Page(PFN(f)+3).RefCount(), int32(0), "tails hold no references")
	mm.FolioRefSub(f, 4)
	mm.PutPage(PFN(f) + 1)
	mm.FolioPut(f)
	eq(t, mm.FolioRefCount(f), int32(1), "refcount")
	eq(t, mm.Zone.NrFreePages(), free, "freed while referenced")
	noErr(t, mm.CheckInvariants())

	mm.FolioRefAdd(f, 2)
	mm.FolioPutRefs(f, 3)
	eq(t, mm.Zone.NrFreePages(), free+4, "last reference frees the folio")
	noErr(t, mm.CheckInvariants())
}

func TestFolioPage(t *testing.T) {
	mm := bootedMM(t, 1024)
	f, err := mm.FolioAlloc(GFPKernel, 3)
	noErr(t, err)
	eq(t, mm.FolioPage(f, 5), mm.Page(PFN(f)+5), "folio_page")
	requireViolation(t, invPFNInRange, func() { mm.FolioPage(f, 8) })
}

func TestSplitFolio(t *testing.T) {
	mm := bootedMM(t, 1024)
	f, err := mm.FolioAlloc(GFPHighUserMovable, 3)
	noErr(t, err)
	head := mm.Page(PFN(f))
	head.Set(PGUptodate | PGDirty | PGSwapBacked | PGLRU | PGLocked | PGReferenced)
	head.SetMapping(7)
	head.SetIndex(40)
	mm.Page(PFN(f) + 2).AddMapCount(1)
	mm.FolioRefAdd(f, 8) // page cache

	noErr(t, mm.SplitFolio(f, 3, 2)) // page cache 1 + caller 1 + a mapping
	for i := PFN(0); i < 8; i++ {
		pfn := PFN(f) + i
		p := mm.Page(pfn)
		eq(t, mm.PageFolio(pfn), Folio(pfn), "page %d is its own folio", i)
		eq(t, mm.FolioOrder(Folio(pfn)), uint(0), "order")
		eq(t, p.Flags(), PGUptodate|PGDirty|PGSwapBacked|PGLRU|PGLocked|PGReferenced, "flags of page %d", i)
		eq(t, p.Mapping(), MappingID(7), "mapping of page %d", i)
		eq(t, p.Index(), 40+uint64(i), "index of page %d", i)
		want := int32(2)
		if i == 0 {
			want = 3
		}
		eq(t, p.RefCount(), want, "refcount of page %d", i)
	}
	eq(t, mm.Page(PFN(f)+2).MapCount(), int32(1), "mapcount kept")
	noErr(t, mm.CheckInvariants())

	// Tear down as the page cache would, then everything merges back.
	for i := PFN(0); i < 8; i++ {
		p := mm.Page(PFN(f) + i)
		p.Clear(PGLRU | PGLocked)
		p.SetMapping(0)
		if p.MapCount() > 0 {
			p.AddMapCount(-1)
		}
		mm.FolioPutRefs(Folio(PFN(f)+i), p.RefCount())
	}
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.NrFreePages(), uint64(1024), "all free")
}

func TestSplitFolioErrors(t *testing.T) {
	mm := bootedMM(t, 1024)
	small, err := mm.FolioAlloc(GFPKernel, 0)
	noErr(t, err)
	wantErr(t, mm.SplitFolio(small, 1, 1), errno.EINVAL)
	f, err := mm.FolioAlloc(GFPKernel, 2)
	noErr(t, err)
	wantErr(t, mm.SplitFolio(f, 0, 1), errno.EINVAL)
	wantErr(t, mm.SplitFolio(f, 1, 0), errno.EINVAL)
	for _, flag := range []PageFlags{PGWriteback, PGPrivate} {
		mm.Page(PFN(f)).Set(flag)
		wantErr(t, mm.SplitFolio(f, 1, 1), errno.EBUSY)
		mm.Page(PFN(f)).Clear(flag)
	}
	eq(t, mm.FolioOrder(f), uint(2), "failed split changed the folio")
	noErr(t, mm.CheckInvariants())
}

// TestBadInputIsABug: misuse that Linux would catch with VM_BUG_ON_PAGE or
// bad_page panics with a Violation naming the invariant.
func TestBadInputIsABug(t *testing.T) {
	for _, tc := range []struct {
		name string
		inv  string
		op   func(mm *MM, order0, order2 PFN)
	}{
		{"free out-of-range pfn", invPFNInRange, func(mm *MM, _, _ PFN) { mm.FreePages(1024, 0) }},
		{"page out of range", invPFNInRange, func(mm *MM, _, _ PFN) { mm.Page(1 << 40) }},
		{"page_folio out of range", invPFNInRange, func(mm *MM, _, _ PFN) { mm.PageFolio(1024) }},
		{"double free", invFolioNotFree, func(mm *MM, p, _ PFN) {
			mm.FreePages(p, 0)
			mm.FreePages(p, 0)
		}},
		{"double free after merging", invPutZeroRef, func(mm *MM, _, f PFN) {
			mm.FreePages(f, 2)
			mm.FreePages(f+1, 0) // a page inside a free block
		}},
		{"put of a zero refcount", invPutZeroRef, func(mm *MM, _, f PFN) {
			mm.FolioPutRefs(Folio(f), 2)
		}},
		{"put of zero references", invPutZeroRef, func(mm *MM, _, f PFN) { mm.FolioPutRefs(Folio(f), 0) }},
		{"free a tail page", invFolioIsHead, func(mm *MM, _, f PFN) { mm.FreePages(f+1, 0) }},
		{"folio_put on a tail", invFolioIsHead, func(mm *MM, _, f PFN) { mm.FolioPut(Folio(f + 3)) }},
		{"free with a smaller order", invFreeOrder, func(mm *MM, _, f PFN) { mm.FreePages(f, 1) }},
		{"free with a larger order", invFreeOrder, func(mm *MM, p, _ PFN) { mm.FreePages(p, 1) }},
		{"get on a free page", invFolioNotFree, func(mm *MM, p, _ PFN) {
			mm.FreePages(p, 0)
			mm.FolioGet(Folio(p))
		}},
		{"get on a page nobody holds", invRefCount, func(mm *MM, _, f PFN) {
			mm.FreePages(f, 2)
			mm.GetPage(f + 1)
		}},
		{"ref_sub of the last reference", invRefCount, func(mm *MM, p, _ PFN) { mm.FolioRefSub(Folio(p), 1) }},
		{"ref_add of nothing", invRefCount, func(mm *MM, p, _ PFN) { mm.FolioRefAdd(Folio(p), 0) }},
		{"free a mapped page", invFreePageClean, func(mm *MM, p, _ PFN) {
			mm.Page(p).AddMapCount(1)
			mm.FreePages(p, 0)
		}},
		{"free a page still in a mapping", invFreePageClean, func(mm *MM, p, _ PFN) {
			mm.Page(p).SetMapping(3)
			mm.FreePages(p, 0)
		}},
		{"free a locked page", invFreePageClean, func(mm *MM, p, _ PFN) {
			mm.Page(p).Set(PGLocked)
			mm.FreePages(p, 0)
		}},
		{"free a page on the LRU", invFreePageClean, func(mm *MM, _, f PFN) {
			mm.Page(f).Set(PGLRU)
			mm.FolioPut(Folio(f))
		}},
		{"free a reserved page", invFreePageClean, func(mm *MM, _, _ PFN) { mm.PutPage(0) }},
		{"free with a mapped tail", invCompound, func(mm *MM, _, f PFN) {
			mm.Page(f + 2).AddMapCount(1)
			mm.FolioPut(Folio(f))
		}},
		{"set PG_head", invPageFlagOwner, func(mm *MM, p, _ PFN) { mm.Page(p).Set(PGHead) }},
		{"clear PG_reserved", invPageFlagOwner, func(mm *MM, _, _ PFN) { mm.Page(0).Clear(PGReserved) }},
		{"set PG_buddy", invPageFlagOwner, func(mm *MM, p, _ PFN) { mm.Page(p).Set(PGBuddy) }},
		{"set a flag on a tail", invPageFlagOwner, func(mm *MM, _, f PFN) { mm.Page(f + 1).Set(PGDirty) }},
		{"set mapping of a free page", invPageFlagOwner, func(mm *MM, p, _ PFN) {
			mm.FreePages(p, 0)
			mm.Page(p).SetMapping(1)
		}},
		{"flag bits beyond the flags", invPageFlagOwner, func(mm *MM, p, _ PFN) { mm.Page(p).Set(1 << 30) }},
		{"mapcount underflow", invMapcount, func(mm *MM, p, _ PFN) { mm.Page(p).AddMapCount(-1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := newTestMM(t, 1024, nil)
			noErr(t, mm.Memblock.Reserve(0, PageSize))
			noErr(t, mm.MemblockFreeAll())
			p, err := mm.AllocPages(GFPKernel, 0)
			noErr(t, err)
			mm.AllocPages(GFPKernel, 0) // keep p's buddy busy
			f, err := mm.AllocPages(GFPKernel, 2)
			noErr(t, err)
			requireViolation(t, tc.inv, func() { tc.op(mm, p, f) })
		})
	}
}
