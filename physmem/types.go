// Package physmem models a machine's physical memory and one kernel's view
// of it: the frames (the bytes, which are all that survives kexec), the
// memmap (one struct page per frame, rebuilt at every boot), memblock, and
// the buddy page allocator.
//
//	Frames    the machine's RAM, sparse host memory (frames.go)
//	Memblock  mm/memblock.c: memory, reserved, KHO scratch (memblock.go)
//	Memmap    struct page per frame, 40 bytes, sparse (page.go, memmap.go)
//	Zone      mm/page_alloc.c free_area lists and counters (buddy.go),
//	          per-CPU page lists of the one simulated CPU (pcp.go)
//	MM        one kernel: boot, folios, allocator, checks (mm.go, folio.go, check.go)
//
// A broken invariant panics with an *invariant.Violation naming it (the
// list is in invariants.go); errors a caller can cause are errno values.
// Nothing here is safe for concurrent use.
package physmem

import "fmt"

// Page geometry, as on x86-64.
const (
	PageShift = 12
	PageSize  = 1 << PageShift
	PageMask  = ^uint64(PageSize - 1)

	// MaxPageOrder is the largest buddy order (MAX_PAGE_ORDER): 4 MiB blocks.
	MaxPageOrder = 10
	// HPageOrder is the order of a PMD-sized (2 MiB) folio (HPAGE_PMD_ORDER).
	HPageOrder = 9
)

// PFN is a page frame number: a physical address >> PageShift.
type PFN uint64

// PhysAddr is a physical address (phys_addr_t).
type PhysAddr uint64

// Phys returns the physical address of the first byte of the frame (PFN_PHYS).
func (p PFN) Phys() PhysAddr { return PhysAddr(uint64(p) << PageShift) }

// PFN returns the frame holding the address (PHYS_PFN).
func (a PhysAddr) PFN() PFN { return PFN(uint64(a) >> PageShift) }

// PageAligned reports whether a is a multiple of PageSize (PAGE_ALIGNED).
func (a PhysAddr) PageAligned() bool { return uint64(a)&(PageSize-1) == 0 }

func (p PFN) String() string      { return fmt.Sprintf("pfn %#x", uint64(p)) }
func (a PhysAddr) String() string { return fmt.Sprintf("%#x", uint64(a)) }

// MappingID names the address_space a page-cache page belongs to. The
// memmap stores this small handle instead of a pointer (struct page's
// ->mapping) so that the memmap holds no Go pointers: the garbage collector
// never scans it and it can live in sparsely committed memory. Each kernel
// resolves IDs through its own table; 0 means no mapping.
type MappingID uint32

// PageblockOrder is the order of a pageblock, the unit the allocator tags
// with a migratetype (pageblock_order: HPAGE_PMD_ORDER on x86-64).
const PageblockOrder = HPageOrder

// PageblockNrPages is the number of frames in a pageblock
// (pageblock_nr_pages).
const PageblockNrPages = 1 << PageblockOrder

// PFNUp returns the first frame starting at or after a (PFN_UP).
func (a PhysAddr) PFNUp() PFN { return PFN((uint64(a) + PageSize - 1) >> PageShift) }

// Folio names a folio (struct folio) by the PFN of its head page. A Folio
// value always refers to a head page (or an order-0 page), never to a tail
// page: use MM.PageFolio to go from any page to its folio, as page_folio()
// does.
//
// A folio's references live on its head page's refcount. The allocation
// returns it with one, owned by the caller. Linux's page cache holds
// folio_nr_pages() references per cached folio (MM.FolioRefAdd), each
// mapping of a page one, and every temporary user one (MM.FolioGet). The
// folio goes back to the buddy allocator when the last is dropped
// (MM.FolioPut).
type Folio PFN

// PFN returns the frame of the folio's head page (folio_pfn).
func (f Folio) PFN() PFN { return PFN(f) }

func (f Folio) String() string { return fmt.Sprintf("folio %#x", uint64(f)) }
