// Package physmem models a machine's physical memory and one kernel's view
// of it: the frames (the bytes, which are all that survives kexec), the
// memmap (one struct page per frame, rebuilt at every boot), memblock, and
// the buddy page allocator.
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
