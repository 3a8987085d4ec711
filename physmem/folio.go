package physmem

import "khosim/errno"

// folioPage returns the head page of f, checking that f names a folio:
// a valid frame ("pfn-in-range") whose struct page is initialised
// ("page-initialised"), not a tail ("folio-is-head"), not free
// ("folio-not-free"), not a slab ("folio-not-slab").
func (mm *MM) folioPage(f Folio, op string) *Page {
	m := &mm.Memmap
	var p *Page
	if uint64(f) < uint64(len(m.pages)) && m.open && m.pages[f].flags != pagePoisonFlags {
		p = &m.pages[f]
	} else {
		p = mm.pageSlow(PFN(f), op)
	}
	if p.flags&(PGTail|PGBuddy|PGSlab) != 0 || p.lru[0]|p.lru[1] != 0 { // a tail, a slab, or free (buddy or per-CPU list)
		mm.badFolio(f, op)
	}
	return p
}

// folioPageQuery is folioPage for the queries that a slab, whose pages are
// a folio in Linux too (slab_folio), may answer: folio_order,
// folio_nr_pages, folio_test_large, folio_ref_count.
func (mm *MM) folioPageQuery(f Folio, op string) *Page {
	m := &mm.Memmap
	var p *Page
	if uint64(f) < uint64(len(m.pages)) && m.open && m.pages[f].flags != pagePoisonFlags {
		p = &m.pages[f]
	} else {
		p = mm.pageSlow(PFN(f), op)
	}
	if p.flags&(PGTail|PGBuddy|PGSlab) != 0 || p.lru[0]|p.lru[1] != 0 {
		if p.flags&(PGTail|PGBuddy) != 0 || p.flags&PGSlab == 0 {
			mm.badFolio(f, op)
		}
	}
	return p
}

func (mm *MM) badFolio(f Folio, op string) {
	if mm.Memmap.pages[f].flags&PGTail != 0 {
		bug(invFolioIsHead, mm.dumpPage(PFN(f)), "%s on tail page %v", op, PFN(f))
	}
	if mm.Memmap.pages[f].flags&PGSlab != 0 {
		bug(invFolioNotSlab, mm.dumpPage(PFN(f)), "%s on slab page %v", op, PFN(f))
	}
	bug(invFolioNotFree, mm.dumpPage(PFN(f)), "%s on free page %v", op, PFN(f))
}

// badUninitialised reports an operation on a frame whose struct page was
// never initialised: reserved MEMBLOCK_RSRV_NOINIT and not restored. Linux
// catches such reads of a poisoned memmap with PF_POISONED_CHECK
// (CONFIG_DEBUG_VM_PGFLAGS).
func (mm *MM) badUninitialised(pfn PFN, op string) {
	bug(invPageInit, mm.dumpPage(pfn), "%s on %v, whose struct page is not initialised (preserved, not restored)", op, pfn)
}

// PageFolio returns the folio a page belongs to (page_folio /
// compound_head), in O(1): a tail page records its head.
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range";
//   - its struct page is initialised (see PageInitialised); otherwise
//     panics with "page-initialised".
func (mm *MM) PageFolio(pfn PFN) Folio {
	p := mm.Memmap.Page(pfn)
	if mm.uninitialised(pfn) {
		mm.badUninitialised(pfn, "page_folio")
	}
	if p.flags&PGTail != 0 {
		return Folio(linkPFN(p.lru[0]))
	}
	return Folio(pfn)
}

// FolioPage returns the struct page of the n-th page of f (folio_page).
// Preconditions: as FolioNrPages, and n < FolioNrPages(f) ("pfn-in-range").
// The queries FolioPage, FolioOrder, FolioNrPages, FolioTestLarge and
// FolioRefCount also answer for a slab (a slab's pages are a folio);
// every other folio operation refuses one ("folio-not-slab").
func (mm *MM) FolioPage(f Folio, n uint64) *Page {
	if n >= mm.FolioNrPages(f) {
		bug(invPFNInRange, mm.dumpPage(PFN(f)), "page %d of %v, which has %d", n, f, mm.FolioNrPages(f))
	}
	return &mm.Memmap.pages[PFN(f)+PFN(n)]
}

// FolioOrder returns log2 of the folio's page count (folio_order).
// Preconditions: f names an allocated folio (see folioPage).
func (mm *MM) FolioOrder(f Folio) uint { return mm.folioPageQuery(f, "folio_order").order() }

// FolioNrPages returns the folio's page count (folio_nr_pages).
func (mm *MM) FolioNrPages(f Folio) uint64 { return 1 << mm.FolioOrder(f) }

// FolioTestLarge reports whether the folio has more than one page
// (folio_test_large).
func (mm *MM) FolioTestLarge(f Folio) bool {
	return mm.folioPageQuery(f, "folio_test_large").flags&PGHead != 0
}

// FolioRefCount returns the folio's reference count (folio_ref_count).
func (mm *MM) FolioRefCount(f Folio) int32 { return mm.folioPageQuery(f, "folio_ref_count").refcount }

// FolioGet takes a reference on the folio (folio_get); the caller must put
// it with FolioPut.
// Preconditions: the caller already holds a reference, so the count is
// positive; otherwise panics with "refcount-valid".
func (mm *MM) FolioGet(f Folio) { mm.FolioRefAdd(f, 1) }

// FolioRefAdd takes refs references at once (folio_ref_add), as the page
// cache does for each page of a folio it inserts. The caller must drop them
// (FolioRefSub, FolioPutRefs).
// Preconditions: refs > 0 and the count is positive ("refcount-valid").
func (mm *MM) FolioRefAdd(f Folio, refs int32) {
	p := mm.folioPage(f, "folio_ref_add")
	if refs <= 0 || p.refcount <= 0 || p.refcount+refs < p.refcount {
		mm.badRef(f, "folio_ref_add", refs)
	}
	p.refcount += refs
}

// badRef reports a broken refcount precondition (kept out of line so that
// the reference helpers stay small enough to inline).
func (mm *MM) badRef(f Folio, op string, refs int32) {
	bug(invRefCount, mm.dumpPage(PFN(f)), "%s(%v, %d) on refcount %d", op, f, refs, mm.Memmap.pages[f].refcount)
}

// FolioRefSub drops refs references that are known not to be the last
// (folio_ref_sub).
// Preconditions: 0 < refs < count; otherwise panics with "refcount-valid".
func (mm *MM) FolioRefSub(f Folio, refs int32) {
	p := mm.folioPage(f, "folio_ref_sub")
	if refs <= 0 || p.refcount <= refs {
		mm.badRef(f, "folio_ref_sub", refs)
	}
	p.refcount -= refs
}

// FolioPut drops one reference (folio_put); at zero the folio is freed to
// the buddy allocator.
// Preconditions (bugs, which panic with the invariant named):
//   - f names an allocated folio ("pfn-in-range", "folio-is-head",
//     "folio-not-free");
//   - the count is positive ("put-zero-refcount");
//   - at zero the folio is clean: unmapped, mapping cleared, not locked,
//     on the LRU, under writeback or reserved ("free-page-clean").
func (mm *MM) FolioPut(f Folio) { mm.putRefs(f, mm.folioPage(f, "folio_put"), 1) }

// FolioPutRefs drops refs references (folio_put_refs); as FolioPut.
func (mm *MM) FolioPutRefs(f Folio, refs int32) {
	mm.putRefs(f, mm.folioPage(f, "folio_put_refs"), refs)
}

// GetPage takes a reference on the folio holding page pfn (get_page).
func (mm *MM) GetPage(pfn PFN) { mm.FolioGet(mm.PageFolio(pfn)) }

// PutPage drops a reference on the folio holding page pfn (put_page).
func (mm *MM) PutPage(pfn PFN) { mm.FolioPut(mm.PageFolio(pfn)) }

func (mm *MM) putRefs(f Folio, p *Page, refs int32) {
	if refs <= 0 || p.refcount < refs {
		mm.badPut(f, refs)
	}
	p.refcount -= refs
	if p.refcount == 0 {
		mm.freeFolio(PFN(f))
	}
}

func (mm *MM) badPut(f Folio, refs int32) {
	bug(invPutZeroRef, mm.dumpPage(PFN(f)), "dropping %d references of %v, which has %d",
		refs, f, mm.Memmap.pages[f].refcount)
}

// freeFolio frees a folio whose last reference is gone (__folio_put ->
// free_frozen_pages): onto the per-CPU lists for the orders they cache
// (free_unref_page), else to the buddy lists (__free_pages_ok).
func (mm *MM) freeFolio(pfn PFN) {
	order := mm.freePagesPrepare(pfn)
	if pcpAllowedOrder(order) {
		mm.freeUnrefPage(pfn, order)
		return
	}
	mm.freePages(pfn, order)
}

// SplitFolio splits a large folio into order-0 folios
// (split_huge_page_to_list_to_order(page, NULL, 0) / __split_huge_page).
// Every new folio keeps the flags Linux carries over (uptodate, dirty,
// swapbacked, lru, locked, referenced, active), the mapping, and index =
// head index + i; per-page mapcounts are unchanged. References: the caller
// states what each new folio ends with, headRefs for the first page and
// tailRefs for each other one, because only it knows who holds them (the
// page cache one per page, each mapping one, the caller its own, usually on
// the head).
//
// Errors: EINVAL if the folio is not large or a count is below 1; EBUSY,
// changing nothing, if it is under writeback or has private data (Linux
// requires both gone first).
// Preconditions: f names an allocated folio (see FolioPut).
func (mm *MM) SplitFolio(f Folio, headRefs, tailRefs int32) error {
	head := mm.folioPage(f, "split_huge_page")
	order := head.order()
	if order == 0 || headRefs < 1 || tailRefs < 1 {
		return errno.EINVAL
	}
	if head.flags&(PGWriteback|PGPrivate) != 0 {
		return errno.EBUSY
	}
	copied := head.flags & splitCopiedFlags
	pages := mm.Memmap.pages
	for i := PFN(1); i < 1<<order; i++ {
		t := &pages[PFN(f)+i]
		*t = Page{
			flags:    copied,
			refcount: tailRefs,
			mapcount: t.mapcount,
			mapping:  head.mapping,
			index:    head.index + uint64(i),
		}
	}
	head.flags &^= PGHead | ^PageFlags(flagsMask)
	head.refcount = headRefs
	return nil
}
