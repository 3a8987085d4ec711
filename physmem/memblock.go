package physmem

import (
	"iter"
	"math/bits"
	"strings"

	"khosim/errno"
)

// Memblock models the boot-time memory allocator of mm/memblock.c: the
// physical memory the firmware reported (memblock.memory, whose regions may
// carry MEMBLOCK_KHO_SCRATCH) and the ranges taken out of it
// (memblock.reserved, whose regions may carry MEMBLOCK_RSRV_NOINIT).
//
// State machine:
//
//	boot (add/remove memory, reserve, phys_alloc, mark scratch)
//	  --[set_kho_scratch_only]--> scratch-only boot (allocations from scratch only)
//	  --[clear_kho_scratch_only]--> boot
//	  --MM.MemblockFreeAll--> handed over: read-only
//
// Linux discards memblock after boot; the simulator keeps it read-only as
// the record of what boot reserved, so every mutator returns EINVAL once
// memblock_free_all has run. Addresses are bytes and must lie inside
// physical memory [0, limit).
type Memblock struct {
	memory      regionSet
	reserved    regionSet
	limit       PhysAddr
	scratchOnly bool
	handedOver  bool
}

// NewMemblock returns an empty memblock for a machine of limit bytes.
func NewMemblock(limit uint64) *Memblock {
	return &Memblock{
		memory:   newRegionSet("memory"),
		reserved: newRegionSet("reserved"),
		limit:    PhysAddr(limit),
	}
}

// checkRange validates a mutator's range: inside physical memory and
// memblock still open.
func (m *Memblock) checkRange(base PhysAddr, size uint64) (PhysAddr, error) {
	end := base + PhysAddr(size)
	if m.handedOver || end < base || end > m.limit {
		return 0, errno.EINVAL
	}
	return end, nil
}

// Add registers [base, base+size) as memory (memblock_add). Parts already
// present keep their flags. EINVAL beyond physical memory or after
// memblock_free_all; a zero size does nothing.
func (m *Memblock) Add(base PhysAddr, size uint64) error {
	end, err := m.checkRange(base, size)
	if err == nil {
		m.memory.add(base, end, MemblockNone)
	}
	return err
}

// Remove takes [base, base+size) out of memory (memblock_remove).
// Errors as Add.
func (m *Memblock) Remove(base PhysAddr, size uint64) error {
	end, err := m.checkRange(base, size)
	if err == nil {
		m.memory.remove(base, end)
	}
	return err
}

// Reserve marks [base, base+size) reserved (memblock_reserve): never handed
// to the buddy allocator by memblock_free_all. Errors as Add.
func (m *Memblock) Reserve(base PhysAddr, size uint64) error {
	end, err := m.checkRange(base, size)
	if err == nil {
		m.reserved.add(base, end, MemblockNone)
	}
	return err
}

// PhysFree unreserves [base, base+size) (memblock_phys_free). Errors as
// Add.
func (m *Memblock) PhysFree(base PhysAddr, size uint64) error {
	end, err := m.checkRange(base, size)
	if err == nil {
		m.reserved.remove(base, end)
	}
	return err
}

// ReservedMarkNoinit flags the reserved parts of [base, base+size)
// MEMBLOCK_RSRV_NOINIT (memblock_reserved_mark_noinit): memblock_free_all
// will leave their struct pages uninitialised. Errors as Add.
func (m *Memblock) ReservedMarkNoinit(base PhysAddr, size uint64) error {
	end, err := m.checkRange(base, size)
	if err == nil {
		m.reserved.setFlags(base, end, MemblockRsrvNoinit, true)
	}
	return err
}

// MarkKHOScratch flags the memory parts of [base, base+size)
// MEMBLOCK_KHO_SCRATCH (memblock_mark_kho_scratch). The range must be
// pageblock aligned (EINVAL), as KHO sizes scratch in CMA_MIN_ALIGNMENT
// units: scratch pageblocks become MIGRATE_CMA. Otherwise errors as Add.
func (m *Memblock) MarkKHOScratch(base PhysAddr, size uint64) error {
	return m.setScratch(base, size, true)
}

// ClearKHOScratch clears MEMBLOCK_KHO_SCRATCH from the memory in
// [base, base+size) (memblock_clear_kho_scratch). Errors as MarkKHOScratch.
func (m *Memblock) ClearKHOScratch(base PhysAddr, size uint64) error {
	return m.setScratch(base, size, false)
}

func (m *Memblock) setScratch(base PhysAddr, size uint64, set bool) error {
	const align = PageblockNrPages * PageSize
	end, err := m.checkRange(base, size)
	if err != nil {
		return err
	}
	if uint64(base)%align != 0 || size%align != 0 {
		return errno.EINVAL
	}
	m.memory.setFlags(base, end, MemblockKHOScratch, set)
	return nil
}

// SetKHOScratchOnly restricts allocations to KHO scratch memory
// (memblock_set_kho_scratch_only): a kernel booted by kexec with KHO runs
// so until it has reserved everything the previous kernel preserved.
func (m *Memblock) SetKHOScratchOnly() { m.scratchOnly = true }

// ClearKHOScratchOnly lifts the restriction (memblock_clear_kho_scratch_only).
func (m *Memblock) ClearKHOScratchOnly() { m.scratchOnly = false }

// KHOScratchOnly reports whether allocations come only from scratch.
func (m *Memblock) KHOScratchOnly() bool { return m.scratchOnly }

// HandedOver reports whether memblock_free_all has run.
func (m *Memblock) HandedOver() bool { return m.handedOver }

// PhysAlloc allocates and reserves size bytes aligned to align, from the top
// of memory down (memblock_phys_alloc, top-down as memblock_find_in_range_node),
// from scratch regions only in scratch-only mode. Like Linux it never
// returns the first page, so 0 is never a valid result. The memory is not
// zeroed.
//
// The page_alloc fault site does not cover memblock: Linux's
// fail_page_alloc hooks the buddy allocator only, and a boot-time memblock
// failure is a panic, not an errno a scenario could expect.
//
// Errors: EINVAL for a zero size, an align that is not a power of two, or
// after memblock_free_all; ENOMEM when no free range fits.
func (m *Memblock) PhysAlloc(size, align uint64) (PhysAddr, error) {
	if size == 0 || align == 0 || bits.OnesCount64(align) != 1 || m.handedOver {
		return 0, errno.EINVAL
	}
	var found PhysAddr
	ok := false
	m.memory.tree.Descend(func(mr MemblockRegion) bool {
		if m.scratchOnly && mr.Flags&MemblockKHOScratch == 0 {
			return true
		}
		for r := range m.freeInRegionRev(mr) {
			start := max(r.Base, PageSize) // avoid allocating the first page
			if r.End() < start || uint64(r.End()-start) < size {
				continue
			}
			cand := (r.End() - PhysAddr(size)) &^ PhysAddr(align-1)
			if cand >= start {
				found, ok = cand, true
				return false
			}
		}
		return true
	})
	if !ok {
		return 0, errno.ENOMEM
	}
	m.reserved.add(found, found+PhysAddr(size), MemblockNone)
	return found, nil
}

// freeInRegionRev yields the unreserved parts of memory region mr, highest
// first (the inner loop of __next_mem_range_rev).
func (m *Memblock) freeInRegionRev(mr MemblockRegion) iter.Seq[MemblockRegion] {
	return func(yield func(MemblockRegion) bool) {
		hi := mr.End()
		stopped := false
		m.reserved.tree.DescendLessOrEqual(MemblockRegion{Base: mr.End()}, func(r MemblockRegion) bool {
			if r.End() <= mr.Base {
				return false
			}
			if lo := max(r.End(), mr.Base); lo < hi {
				if !yield(MemblockRegion{Base: lo, Size: uint64(hi - lo), Flags: mr.Flags}) {
					stopped = true
					return false
				}
			}
			hi = min(hi, r.Base)
			return hi > mr.Base
		})
		if !stopped && hi > mr.Base {
			yield(MemblockRegion{Base: mr.Base, Size: uint64(hi - mr.Base), Flags: mr.Flags})
		}
	}
}

// FreeRanges yields, in address order, memory not reserved, each range
// carrying the flags of its memory region (for_each_free_mem_range).
func (m *Memblock) FreeRanges() iter.Seq[MemblockRegion] {
	return func(yield func(MemblockRegion) bool) {
		for mr := range m.memory.all() {
			cur := mr.Base
			stopped := false
			m.reserved.tree.AscendGreaterOrEqual(MemblockRegion{Base: m.firstReservedBase(mr.Base)}, func(r MemblockRegion) bool {
				if r.Base >= mr.End() {
					return false
				}
				if r.Base > cur && !yield(MemblockRegion{Base: cur, Size: uint64(r.Base - cur), Flags: mr.Flags}) {
					stopped = true
					return false
				}
				cur = max(cur, r.End())
				return cur < mr.End()
			})
			if stopped {
				return
			}
			if cur < mr.End() && !yield(MemblockRegion{Base: cur, Size: uint64(mr.End() - cur), Flags: mr.Flags}) {
				return
			}
		}
	}
}

// firstReservedBase returns the base of the reserved region that may
// overlap an address, or the address itself.
func (m *Memblock) firstReservedBase(a PhysAddr) PhysAddr {
	m.reserved.tree.DescendLessOrEqual(MemblockRegion{Base: a}, func(r MemblockRegion) bool {
		a = r.Base
		return false
	})
	return a
}

// Memory yields the memory regions in address order (for_each_mem_region).
func (m *Memblock) Memory() iter.Seq[MemblockRegion] { return m.memory.all() }

// Reserved yields the reserved regions in address order
// (for_each_reserved_mem_region).
func (m *Memblock) Reserved() iter.Seq[MemblockRegion] { return m.reserved.all() }

// IsRegionMemory reports whether [base, base+size) lies wholly in memory
// (memblock_is_region_memory).
func (m *Memblock) IsRegionMemory(base PhysAddr, size uint64) bool {
	return size > 0 && m.memory.covers(base, base+PhysAddr(size), MemblockNone)
}

// IsRegionReserved reports whether any byte of [base, base+size) is
// reserved (memblock_is_region_reserved: an overlap test, as in Linux).
func (m *Memblock) IsRegionReserved(base PhysAddr, size uint64) bool {
	return m.reserved.overlaps(base, base+PhysAddr(size))
}

// IsKHOScratch reports whether [base, base+size) lies wholly in memory
// flagged MEMBLOCK_KHO_SCRATCH.
func (m *Memblock) IsKHOScratch(base PhysAddr, size uint64) bool {
	return size > 0 && m.memory.covers(base, base+PhysAddr(size), MemblockKHOScratch)
}

// IsReservedNoinit reports whether [base, base+size) lies wholly in
// reserved regions flagged MEMBLOCK_RSRV_NOINIT.
func (m *Memblock) IsReservedNoinit(base PhysAddr, size uint64) bool {
	return size > 0 && m.reserved.covers(base, base+PhysAddr(size), MemblockRsrvNoinit)
}

// PhysMemSize returns the bytes of memory (memblock_phys_mem_size).
func (m *Memblock) PhysMemSize() uint64 { return m.memory.total }

// ReservedSize returns the bytes reserved (memblock_reserved_size).
func (m *Memblock) ReservedSize() uint64 { return m.reserved.total }

// String dumps both region types as memblock_dump_all() does.
func (m *Memblock) String() string {
	var b strings.Builder
	b.WriteString("MEMBLOCK configuration:\n")
	m.memory.dump(&b)
	m.reserved.dump(&b)
	return b.String()
}

// check verifies both region sets.
func (m *Memblock) check() error {
	if err := m.memory.check(m.limit); err != nil {
		return err
	}
	return m.reserved.check(m.limit)
}
