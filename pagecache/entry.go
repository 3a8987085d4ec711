package pagecache

import (
	"fmt"

	"khosim/invariant"
	"khosim/physmem"
)

// Entry is one XArray entry: a pointer-free encoding of what Linux stores
// in an xa_node slot (a void *). The zero Entry is NULL, the empty entry.
//
// Callers create entries with FolioEntry and ValueEntry; internal entries
// (siblings and node pointers, xa_mk_internal) exist only inside the tree
// and are refused by Store.
type Entry uint64

// Vmemmap geometry on x86-64 with 4-level paging: struct page array at
// VMEMMAP_START, 64 bytes per struct page. A folio entry is the address of
// the folio's head struct page, pfn_to_page(pfn).
const (
	VmemmapStart   = 0xffffea0000000000
	StructPageSize = 64

	// MaxFolioPFN is the largest PFN whose struct page address fits in the
	// 64-bit address space above VmemmapStart.
	MaxFolioPFN = physmem.PFN((1<<64-VmemmapStart)/StructPageSize - 1)

	// MaxValue is the largest integer a value entry holds (LONG_MAX, the
	// limit xa_mk_value() warns about).
	MaxValue = 1<<63 - 1
)

// Internal-entry encoding (xa_mk_internal): low bits 10. Values below 256
// are sibling entries (xa_mk_sibling(0..63)); values above 4096 are node
// pointers (xa_is_node), here an arena id biased by nodeEntryBias.
const (
	internalTag   = 2
	nodeEntryBias = 1024
)

// FolioEntry returns the entry for the folio whose head page is pfn: the
// address of its struct page (pfn_to_page()).
//
// Preconditions:
//   - pfn <= MaxFolioPFN (any PFN of a real memmap is).
func FolioEntry(pfn physmem.PFN) Entry {
	if pfn > MaxFolioPFN {
		badFolioPFN(pfn)
	}
	return Entry(VmemmapStart + uint64(pfn)*StructPageSize)
}

func badFolioPFN(pfn physmem.PFN) {
	invariant.Panic("pagecache", "folio-pfn-range", "",
		"FolioEntry(%#x): pfn above MaxFolioPFN %#x", uint64(pfn), uint64(MaxFolioPFN))
}

// ValueEntry returns the value entry holding v (xa_mk_value()).
//
// Preconditions:
//   - v <= MaxValue.
func ValueEntry(v uint64) Entry {
	if v > MaxValue {
		invariant.Panic("pagecache", "value-entry-range", "",
			"ValueEntry(%#x): value above MaxValue", v)
	}
	return Entry(v<<1 | 1)
}

// IsEmpty reports whether e is NULL.
func (e Entry) IsEmpty() bool { return e == 0 }

// IsValue reports whether e is a value entry (xa_is_value()).
func (e Entry) IsValue() bool { return e&1 == 1 }

// IsFolio reports whether e is a folio entry: a struct page address in the
// vmemmap (what !xa_is_value() && !xa_is_internal() means in the page cache).
func (e Entry) IsFolio() bool {
	return e >= VmemmapStart && (e-VmemmapStart)%StructPageSize == 0
}

// Value returns the integer held by a value entry (xa_to_value()).
//
// Preconditions:
//   - e.IsValue().
func (e Entry) Value() uint64 { return uint64(e) >> 1 }

// PFN returns the head PFN of a folio entry (page_to_pfn()).
//
// Preconditions:
//   - e.IsFolio().
func (e Entry) PFN() physmem.PFN {
	return physmem.PFN((uint64(e) - VmemmapStart) / StructPageSize)
}

// valid reports whether e may be stored by a caller: NULL, a value entry
// or a folio entry. Internal entries and stray pointers are refused, as
// xa_store() refuses xa_is_advanced() entries.
func (e Entry) valid() bool { return e == 0 || e.IsValue() || e.IsFolio() }

// isInternal models xa_is_internal().
func (e Entry) isInternal() bool { return e&3 == internalTag }

// isSibling models xa_is_sibling().
func (e Entry) isSibling() bool { return e.isInternal() && e < siblingEntry(XAChunkSize) }

// isNode models xa_is_node().
func (e Entry) isNode() bool { return e.isInternal() && e > 4096 }

// siblingEntry models xa_mk_sibling(): an entry naming canonical slot off.
func siblingEntry(off uint) Entry { return Entry(off<<2 | internalTag) }

// siblingOffset models xa_to_sibling().
func (e Entry) siblingOffset() uint { return uint(e >> 2) }

// nodeEntry models xa_mk_node() for the node with arena id id.
func nodeEntry(id uint32) Entry { return Entry((uint64(id)+nodeEntryBias)<<2 | internalTag) }

// nodeID models xa_to_node(): the arena id of a node entry.
func (e Entry) nodeID() uint32 { return uint32(e>>2 - nodeEntryBias) }

// String renders e for dumps and test failures.
func (e Entry) String() string {
	switch {
	case e == 0:
		return "NULL"
	case e.IsValue():
		return fmt.Sprintf("value(%#x)", e.Value())
	case e.IsFolio():
		return fmt.Sprintf("folio(pfn %#x)", uint64(e.PFN()))
	case e.isSibling():
		return fmt.Sprintf("sibling(%d)", e.siblingOffset())
	case e.isNode():
		return fmt.Sprintf("node(%d)", e.nodeID())
	case e == zeroEntry:
		return "reserved"
	default:
		return fmt.Sprintf("bad(%#x)", uint64(e))
	}
}
