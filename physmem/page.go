package physmem

import (
	"fmt"
	"strings"
)

// PageFlags are a page's flag bits (enum pageflags in
// include/linux/page-flags.h, plus the page types Linux keeps elsewhere).
// The top byte of Page.flags holds the folio order of a head page, where
// Linux keeps it in the low byte of folio->_flags_1.
type PageFlags uint32

// Page flags. PGBuddy models PageBuddy() (PGTY_buddy, a page type in Linux),
// PGSlab PageSlab() (PGTY_slab) and PGTail models PageTail() (bit 0 of
// page->compound_head).
const (
	PGLocked     PageFlags = 1 << iota // PG_locked
	PGWriteback                        // PG_writeback
	PGReferenced                       // PG_referenced
	PGUptodate                         // PG_uptodate
	PGDirty                            // PG_dirty
	PGLRU                              // PG_lru
	PGHead                             // PG_head: first page of a large folio
	PGActive                           // PG_active
	PGReserved                         // PG_reserved: never given to the buddy allocator
	PGPrivate                          // PG_private: folio->private is in use
	PGSwapBacked                       // PG_swapbacked: shmem/anon, backed by swap not a file
	PGTail                             // PageTail(): a non-first page of a large folio
	PGBuddy                            // PageBuddy(): head of a free block in the buddy allocator
	PGSlab                             // PageSlab(): head of a slab (slab.go)

	nrPageFlags = iota
)

const (
	// allocatorFlags are set and cleared only by the allocator.
	allocatorFlags = PGHead | PGTail | PGBuddy | PGReserved | PGSlab
	// flagsCheckAtFree must be clear when a page is freed
	// (PAGE_FLAGS_CHECK_AT_FREE).
	flagsCheckAtFree = PGLRU | PGLocked | PGPrivate | PGWriteback | PGReserved | PGActive
	// splitCopiedFlags are copied from a large folio onto the folios split
	// from it (__split_folio_to_order; PG_lru by lru_add_split_folio).
	splitCopiedFlags = PGReferenced | PGSwapBacked | PGUptodate | PGActive | PGLocked | PGDirty | PGLRU

	flagsOrderShift = 24
	flagsMask       = 1<<flagsOrderShift - 1
)

var pageFlagNames = [nrPageFlags]string{
	"locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head",
	"active", "reserved", "private", "swapbacked", "tail", "buddy", "slab",
}

// String lists the flags as dump_page does, e.g. "head|uptodate|dirty".
func (f PageFlags) String() string {
	var names []string
	for i, n := range pageFlagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := f &^ (1<<nrPageFlags - 1); rest != 0 {
		names = append(names, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Page models struct page (include/linux/mm_types.h): the memmap holds one
// per frame. It holds no Go pointers and is 40 bytes, so the memmap can
// live in sparsely committed host memory the garbage collector never scans.
//
// States of a page (the memmap starts "uninitialised": all zero if its host
// memory is fresh, the previous kernel's stale bytes if recycled, and in
// neither case to be read):
//
//	uninitialised --memblock_free_all--> free (in the buddy allocator)
//	uninitialised --memblock_free_all--> reserved (PG_reserved, refcount 1)
//	uninitialised --memblock_free_all--> all zero (unusable: part of the
//	                 frame is reserved noinit, part free)
//	uninitialised (reserved noinit) --RestoreFolio--> allocated
//	free --alloc_pages--> allocated (refcount 1) --last put--> free
//	reserved --FreeReservedPages/InitCMAReservedPageblock--> free
//
// A free page is in a block on the buddy lists or on a per-CPU list
// (pcp.go), between which free_pcppages_bulk and rmqueue_bulk move it.
// Within a free block only the head is written (PG_buddy on the buddy
// lists, no flags on a per-CPU list; order in private, list links in lru);
// the other pages stay all zero. Within an allocated large folio the head
// carries PG_head, the order, the refcount and the folio fields; tails
// carry PG_tail, their head PFN and their own mapcount.
type Page struct {
	flags    PageFlags // page->flags; top byte: folio order of a head page
	refcount int32     // page->_refcount
	mapcount int32     // page->_mapcount + 1, so zero means unmapped
	mapping  MappingID // page->mapping
	index    uint64    // page->index: offset in the mapping, in pages
	private  uint64    // page->private; a free block's order (set_buddy_order)
	// lru is the first word pair of struct page's union, encoded as PFN+1
	// with 0 for none. A free block's head threads its free list through it
	// (page->buddy_list or page->pcp_list: next, prev; pcpListHead for a
	// per-CPU list's head); a tail page keeps its head in lru[0]
	// (page->compound_head).
	lru [2]uint32
}

// pagePoisonFlags is page->flags of a poisoned struct page
// (PAGE_POISON_PATTERN, all ones): PagePoisoned(). No initialised page
// has it (it would be every flag and folio order 255).
const pagePoisonFlags = PageFlags(^uint32(0))

// checkPoison panics with "page-poisoned" if the struct page is poisoned
// (PF_POISONED_CHECK: VM_BUG_ON_PGFLAGS(PagePoisoned(page), page)): it
// was never initialised (see Memmap.Page), and whatever it holds is not
// this kernel's to read.
func (p *Page) checkPoison(op string) {
	if p.flags == pagePoisonFlags {
		p.badPoisoned(op)
	}
}

func (p *Page) badPoisoned(op string) {
	bug(invPagePoisoned, p.String(), "%s on a poisoned struct page (never initialised: preserved, not restored)", op)
}

// Flags returns the page's flags (without the folio order).
// Preconditions (as every accessor of Page): the page is not poisoned
// (see Memmap.Page); otherwise panics with "page-poisoned".
func (p *Page) Flags() PageFlags {
	p.checkPoison("page_flags")
	return p.flags & flagsMask
}

// Test reports whether all of flags are set (PageLocked() etc.).
func (p *Page) Test(flags PageFlags) bool {
	p.checkPoison("PageTest")
	return p.flags&flags == flags
}

// Set sets page flags (SetPageDirty() etc.).
// Preconditions:
//   - flags holds none of the allocator's flags (head, tail, buddy,
//     reserved), and the page is not a tail or free page: these are bugs
//     and panic with "page-flag-owner". Folio flags live on the head page;
//     a slab page's struct page belongs to the slab allocator.
func (p *Page) Set(flags PageFlags) {
	p.checkFlagOwner(flags)
	p.flags |= flags
}

// Clear clears page flags (ClearPageDirty() etc.); preconditions as Set.
func (p *Page) Clear(flags PageFlags) {
	p.checkFlagOwner(flags)
	p.flags &^= flags
}

func (p *Page) checkFlagOwner(flags PageFlags) {
	p.checkPoison("set_page_field")
	// Non-zero links: a tail, or a free block's head on a per-CPU list.
	if flags&(^PageFlags(flagsMask)|allocatorFlags) != 0 || p.flags&(PGTail|PGBuddy|PGSlab) != 0 || p.lru[0]|p.lru[1] != 0 {
		p.badFlagOwner(flags)
	}
}

func (p *Page) badFlagOwner(flags PageFlags) {
	bug(invPageFlagOwner, p.String(), "setting/clearing %v on a page with flags %v", flags, p.Flags())
}

// RefCount returns the page's reference count (page_ref_count); 0 for a
// tail page, whose references are counted on its head.
func (p *Page) RefCount() int32 {
	p.checkPoison("page_ref_count")
	return p.refcount
}

// MapCount returns how many page tables map the page (page_mapcount).
func (p *Page) MapCount() int32 {
	p.checkPoison("page_mapcount")
	return p.mapcount
}

// AddMapCount adds delta to the page's mapcount, as the rmap functions
// (folio_add_file_rmap_ptes, folio_remove_rmap_ptes) do per page.
// Preconditions:
//   - the result is not negative; otherwise panics with "mapcount-valid".
func (p *Page) AddMapCount(delta int32) {
	p.checkPoison("page_mapcount_add")
	if p.mapcount+delta < 0 || p.flags&PGBuddy != 0 || p.onPcpList() {
		bug(invMapcount, p.String(), "mapcount %d%+d on a page with flags %v", p.mapcount, delta, p.Flags())
	}
	p.mapcount += delta
}

// Mapping returns the address_space the page belongs to (folio->mapping).
func (p *Page) Mapping() MappingID {
	p.checkPoison("page_mapping")
	return p.mapping
}

// SetMapping sets page->mapping; preconditions as Set.
func (p *Page) SetMapping(m MappingID) {
	p.checkFlagOwner(0)
	p.mapping = m
}

// Index returns the page's offset in its mapping (folio->index).
func (p *Page) Index() uint64 {
	p.checkPoison("page_index")
	return p.index
}

// SetIndex sets page->index; preconditions as Set.
func (p *Page) SetIndex(i uint64) {
	p.checkFlagOwner(0)
	p.index = i
}

// Private returns page->private.
func (p *Page) Private() uint64 {
	p.checkPoison("page_private")
	return p.private
}

// SetPrivate sets page->private (set_page_private); preconditions as Set.
func (p *Page) SetPrivate(v uint64) {
	p.checkFlagOwner(0)
	p.private = v
}

// order returns the folio order of a head page, 0 for any other page.
func (p *Page) order() uint { return uint(p.flags >> flagsOrderShift) }

// CompoundOrder returns the order of the compound page a head page heads
// (compound_order: a large folio or a slab of order > 0), 0 for any other
// page.
func (p *Page) CompoundOrder() uint {
	p.checkPoison("compound_order")
	return p.order()
}

// String dumps the page as dump_page() does.
func (p *Page) String() string {
	if p.flags == pagePoisonFlags {
		return "poisoned (PAGE_POISON_PATTERN: never initialised)"
	}
	s := fmt.Sprintf("refcount:%d mapcount:%d mapping:%d index:%#x private:%#x flags:%v",
		p.refcount, p.mapcount, p.mapping, p.index, p.private, p.Flags())
	if p.flags&PGSlab != 0 {
		s += fmt.Sprintf(" slab cache:%d inuse:%d objects:%d freelist:%#x next:%s prev:%s",
			p.private>>slabCacheShift&slabCacheMask, p.private&slabInuseMask, p.private>>slabObjShift&slabObjectsMask,
			p.index, linkString(p.lru[0]), linkString(p.lru[1]))
	}
	switch {
	case p.flags&PGHead != 0:
		s += fmt.Sprintf(" order:%d", p.order())
	case p.flags&PGTail != 0:
		s += fmt.Sprintf(" head:%#x", p.lru[0]-1)
	case p.flags&PGBuddy != 0:
		s += fmt.Sprintf(" next:%s prev:%s", linkString(p.lru[0]), linkString(p.lru[1]))
	case p.onPcpList():
		s += fmt.Sprintf(" pcp next:%s prev:%s", linkString(p.lru[0]), linkString(p.lru[1]))
	}
	return s
}

// pfnLink and linkPFN encode PFNs in the 32-bit lru words: PFN+1, 0 = none.
func pfnLink(pfn PFN) uint32 { return uint32(pfn) + 1 }
func linkPFN(l uint32) PFN   { return PFN(l - 1) }

func linkString(l uint32) string {
	switch l {
	case 0:
		return "none"
	case pcpListHead:
		return "head"
	}
	return fmt.Sprintf("%#x", l-1)
}

// maxLinkPFN bounds the frames the 32-bit lru links can name: links are
// PFN+1, 0 is none and pcpListHead (2^32-1) a per-CPU list's head, so the
// frames below 2^32-2 (16 TiB less 8 KiB).
const maxLinkPFN = 1<<32 - 2

// maxMemmapPages bounds the machine: 2^32 frames, 16 TiB, the most whose
// PFNs fit the 32-bit fields khosim keeps them in (lru links, KHO's
// incoming ranges, the preservation layer's folio records). Of a machine
// larger than maxLinkPFN frames, the frames from maxLinkPFN on, which no
// link can name, are not memory (NewMM): like a range the firmware
// reserves, they stay PG_reserved and nothing allocates, frees or links
// them. Linux's list_head links are pointers and have no such bound.
const maxMemmapPages = 1 << 32
