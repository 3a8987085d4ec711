package physmem

import "khosim/invariant"

// pkg names this package in invariant violations.
const pkg = "physmem"

// The invariants this package checks, by the name a Violation carries.
// Operations that find one broken panic (a kernel bug, like Linux's
// VM_BUG_ON_PAGE or bad_page); CheckInvariants returns them.
const (
	// A PFN names a frame of the machine (pfn_valid).
	invPFNInRange = "pfn-in-range"
	// folio_put/put_page/__free_pages drop a reference that exists: the
	// refcount is positive. Freeing twice breaks this one.
	invPutZeroRef = "put-zero-refcount"
	// References are only taken on a folio somebody holds (folio_get on a
	// free page), and counts never go negative or to zero outside a put.
	invRefCount = "refcount-valid"
	// Folio operations are given a head page, never a tail page.
	invFolioIsHead = "folio-is-head"
	// Folio operations are never given a page that is free in the buddy
	// allocator.
	invFolioNotFree = "folio-not-free"
	// __free_pages(page, order) is given the order the page was allocated
	// with.
	invFreeOrder = "free-order-matches"
	// A page being freed is clean: unmapped, no mapping, none of the flags
	// Linux checks at free (free_page_is_bad, PAGE_FLAGS_CHECK_AT_FREE).
	invFreePageClean = "free-page-clean"
	// Page flags owned by the allocator (head, tail, buddy, reserved) are
	// only changed by the allocator; folio flags are set on head pages.
	invPageFlagOwner = "page-flag-owner"
	// Folio operations are never given a slab page: its struct page is
	// the slab allocator's (a slab is freed by the slab allocator only).
	invFolioNotSlab = "folio-not-slab"
	// A slab page's struct page agrees with its frame and its cache: the
	// cache it names exists and has its order and objects per slab, inuse
	// is at most objects, and the free list threaded through the free
	// objects' bytes holds exactly objects-inuse distinct objects of the
	// slab and ends.
	invSlabPage = "slab-page"
	// A cache's counters (slabs, objects in use) equal what its slabs
	// hold; its partial and full lists are well-formed, hold exactly its
	// slabs, partial ones on the partial list and full ones on the full
	// list; at most one of them is empty; the vmalloc areas hold allocated
	// order-0 pages.
	invSlabCache = "slab-cache"
	// kmem_cache_free/kfree/kvfree are given a live object of the cache
	// (cache_from_obj), not freed twice.
	invSlabFree = "slab-free"
	// No slab allocation before memblock_free_all: early boot allocates
	// from memblock (slab_is_available).
	invSlabAvailable = "slab-available"
	// A page's mapcount never goes negative.
	invMapcount = "mapcount-valid"
	// Every frame is in exactly one state: free in the buddy allocator,
	// allocated, reserved, or (reserved noinit) not yet initialised.
	invFrameState = "frame-state"
	// No operation reads the struct page of a frame that is not
	// initialised: wholly inside MEMBLOCK_RSRV_NOINIT reserved memory and
	// not yet restored by RestoreFolio (Linux: PF_POISONED_CHECK).
	invPageInit = "page-initialised"
	// No accessor reads a poisoned struct page: one Memmap.Page poisoned
	// because it was never initialised (PF_POISONED_CHECK).
	invPagePoisoned = "page-poisoned"
	// Frames wholly inside MEMBLOCK_RSRV_NOINIT reserved memory stay out
	// of the allocator until RestoreFolio initialises their struct pages:
	// no free block (buddy or per-CPU) and no allocated folio covers one
	// that is not restored, no list links to one, and the record of them
	// (and of what RestoreFolio restored) agrees with memblock.
	invNoinitReserved = "noinit-reserved"
	// The record of deferred frames (CONFIG_DEFERRED_STRUCT_PAGE_INIT:
	// free memory whose struct pages are not initialised yet) is sorted,
	// disjoint, inside free memory outside KHO scratch, and counted
	// exactly; no free list, per-CPU list or folio holds a deferred
	// frame.
	invDeferred = "deferred-init"
	// Free blocks: PG_buddy head with its order in private, aligned to its
	// order, inside the zone, of the pageblocks' migratetype, interior pages
	// untouched.
	invFreeBlock = "free-block"
	// No two free buddies of the same order are left unmerged.
	invCoalesced = "free-buddies-coalesced"
	// Free lists are well-formed doubly linked lists of their order and
	// migratetype, and hold every free block exactly once.
	invFreeList = "free-list"
	// Blocks on the per-CPU lists: head with refcount 0, no flags, a cached
	// order (pcp_allowed_order) in private, aligned to it, inside the zone,
	// interior pages untouched.
	invPcpBlock = "pcp-block"
	// Per-CPU lists are well-formed circular lists of their order and
	// pageblock migratetype, hold every per-CPU block exactly once, and
	// pcp->batch is at least 1.
	invPcpList = "pcp-list"
	// free_area nr_free, pcp->count and managed_pages match the memmap.
	invFreeCounts = "free-counts"
	// A compound page's tails point to their head and carry only PG_tail.
	invCompound = "compound-page"
	// Pageblocks are MIGRATE_CMA exactly where they overlap KHO scratch.
	invPageblockMT = "pageblock-migratetype"
	// memblock region arrays are sorted, non-empty, disjoint, merged, and
	// inside physical memory.
	invMemblockRegions = "memblock-regions"
)

func bug(name, dump, detail string, args ...any) {
	invariant.Panic(pkg, name, dump, detail, args...)
}
