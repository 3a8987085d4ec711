package pagecache

import (
	"iter"
	"math/bits"
)

// Found is one entry as a lookup or search returns it: the entry, the
// first index it covers and its order (what find_get_entries() returns
// through its indices[] array and folio_order()/xas_get_order()).
type Found struct {
	Index uint64 // base index: the first index the entry covers
	Entry Entry
	Order uint8
}

// NrIndices returns how many indices the entry covers (folio_nr_pages()).
func (f Found) NrIndices() uint64 { return uint64(1) << f.Order }

// Last returns the last index the entry covers.
func (f Found) Last() uint64 { return f.Index + (f.NrIndices() - 1) }

// BatchSize is PAGEVEC_SIZE, the capacity of a folio_batch.
const BatchSize = 31

// Batch models struct folio_batch (include/linux/pagevec.h) together with
// the indices[] array find_get_entries() fills beside it: up to BatchSize
// entries, each with its base index and order. The zero Batch is empty
// (folio_batch_init()). Searches append to it until it is full.
type Batch struct {
	nr      int
	entries [BatchSize]Found
}

// Len models folio_batch_count().
func (b *Batch) Len() int { return b.nr }

// Space models folio_batch_space().
func (b *Batch) Space() int { return BatchSize - b.nr }

// At returns entry i. Preconditions: 0 <= i < b.Len().
func (b *Batch) At(i int) Found { return b.entries[:b.nr][i] }

// Entries returns the batch's entries; the slice aliases the batch.
func (b *Batch) Entries() []Found { return b.entries[:b.nr] }

// Reinit models folio_batch_reinit(): empties the batch.
func (b *Batch) Reinit() { b.nr = 0 }

// Search filters besides the marks (0..2): filterPresent is XA_PRESENT,
// any entry (reservations are not entries); filterReserved finds
// reservations only.
const (
	filterPresent  = -1
	filterReserved = -2
)

// xaState models the part of struct xa_state a forward search keeps: the
// node being walked (nil once the search is over), the index its slot 0
// covers and the next slot to look at.
type xaState struct {
	node *xaNode
	base uint64
	off  uint
}

// matches reports whether canonical slot c of n (a node slot: anything
// below it) may pass filter.
func matches(n *xaNode, c uint, filter int) bool {
	return filter < 0 || n.marks[filter]&(1<<c) != 0
}

// entryMatches reports whether entry e (not NULL, not internal but
// perhaps a reservation) passes filter, its slot having passed matches.
func entryMatches(e Entry, filter int) bool {
	switch filter {
	case filterReserved:
		return e == zeroEntry
	case filterPresent:
		return e != zeroEntry
	}
	return true // a mark: reservations carry none
}

// found builds the Found for canonical slot c of st.node and moves st
// past the entry's slots.
func (st *xaState) found(c uint) Found {
	n := st.node
	k := n.siblingsAfter(c)
	st.off = c + k + 1
	return Found{
		Index: st.base + uint64(c)<<n.shift,
		Entry: n.slots[c],
		Order: n.shift + uint8(bits.Len(k)),
	}
}

// findFirst models xas_find()/xas_find_marked() from a fresh xa_state: the
// first entry passing filter that covers an index of [start, max] — which
// may begin before start. It leaves st ready to continue after it.
func (xa *XArray) findFirst(st *xaState, start, max uint64, filter int) (Found, bool) {
	*st = xaState{}
	head := xa.head
	switch {
	case head == 0 || start > max:
		return Found{}, false
	case !head.isNode():
		ok := start == 0 && entryMatches(head, filter) && (filter < 0 || xa.marks&(1<<filter) != 0)
		return Found{Entry: head}, ok
	}
	n := xa.root()
	if start > maxIndex(uint(n.shift)) {
		return Found{}, false
	}
	st.node = n
	for {
		off := n.offsetOf(start)
		e := n.slots[off]
		c := off
		if e.isSibling() {
			c = e.siblingOffset()
			e = n.slots[c]
		}
		switch {
		case e == 0 || !matches(n, c, filter):
			st.off = off + 1
			return xa.findNext(st, max, filter)
		case e.isNode():
			st.base += uint64(off) << n.shift
			n = xa.node(e)
			st.node = n
		case (e == zeroEntry) != (filter == filterReserved): // see entryMatches
			st.off = off + 1
			return xa.findNext(st, max, filter)
		default:
			return st.found(c), true
		}
	}
}

// findNext models xas_find()/xas_find_marked() continuing from st: the
// next entry passing filter whose base index is at most max. Marked
// searches jump over unmarked slots, and so over unmarked subtrees,
// through the node mark bitmaps.
func (xa *XArray) findNext(st *xaState, max uint64, filter int) (Found, bool) {
	n, base, off := st.node, st.base, st.off
	if n == nil {
		return Found{}, false
	}
	for {
		last := uint((max - base) >> n.shift)
		if last > XAChunkMask {
			last = XAChunkMask
		}
		if off <= last && filter >= 0 {
			if bm := n.marks[filter] >> off; bm != 0 {
				off += uint(bits.TrailingZeros64(bm))
			} else {
				off = XAChunkSize
			}
		}
		if off > last {
			p := xa.parentOf(n)
			if p == nil {
				st.node = nil
				return Found{}, false
			}
			base -= uint64(n.offset) << p.shift
			off = uint(n.offset) + 1
			n = p
			continue
		}
		switch e := n.slots[off]; {
		case e == 0 || e.isSibling():
			off++
		case e.isNode():
			base += uint64(off) << n.shift
			n = xa.node(e)
			off = 0
		case (e == zeroEntry) != (filter == filterReserved): // see entryMatches
			off++
		default:
			st.node, st.base = n, base
			return st.found(off), true
		}
	}
}

// Find models xa_find() with XA_PRESENT: the first entry covering an index
// of [start, max], which may begin before start.
func (xa *XArray) Find(start, max uint64) (Found, bool) {
	var st xaState
	return xa.findFirst(&st, start, max, filterPresent)
}

// FindMarked models xa_find() with a mark as filter.
func (xa *XArray) FindMarked(start, max uint64, mark Mark) (Found, bool) {
	var st xaState
	return xa.findFirst(&st, start, max, int(mark.m))
}

// Extract appends to b the entries covering indices of [start, max] in
// index order, each multi-index entry once with its base index and order,
// until b is full: xa_extract() into a folio_batch, the walk under
// find_get_entries(). An entry that begins before start is included.
//
// It returns more = true when b filled up before the search reached max;
// the caller then continues from next, the index after the last entry
// returned (find_get_entries() updating *start). When more is false next
// is max+1.
func (xa *XArray) Extract(start, max uint64, b *Batch) (next uint64, more bool) {
	return xa.extract(start, max, filterPresent, false, b)
}

// ExtractMarked is Extract of the entries that have mark (xa_extract()
// with a mark filter, the walk under filemap_get_folios_tag()).
func (xa *XArray) ExtractMarked(start, max uint64, mark Mark, b *Batch) (next uint64, more bool) {
	return xa.extract(start, max, int(mark.m), false, b)
}

// extract implements Extract; whole omits entries that do not lie wholly
// inside [start, max], as find_lock_entries() does.
func (xa *XArray) extract(start, max uint64, filter int, whole bool, b *Batch) (uint64, bool) {
	if start > max {
		return max + 1, false
	}
	if b.Space() == 0 {
		return start, true
	}
	var st xaState
	f, ok := xa.findFirst(&st, start, max, filter)
	for ok {
		end := f.Last()
		if !whole || (f.Index >= start && end <= max) {
			b.entries[b.nr] = f
			b.nr++
		}
		if end >= max {
			break
		}
		if b.Space() == 0 {
			return end + 1, true
		}
		f, ok = xa.findNext(&st, max, filter)
	}
	return max + 1, false
}

// All iterates over every entry in index order (xa_for_each()).
func (xa *XArray) All() iter.Seq[Found] { return xa.Range(0, ^uint64(0)) }

// Range models xa_for_each_range(): each entry covering an index of
// [start, max], in index order. Like the Linux iterator it looks each
// entry up afresh (xa_find_after()), so the loop body may modify the array.
func (xa *XArray) Range(start, max uint64) iter.Seq[Found] {
	return xa.rangeFilter(start, max, filterPresent)
}

// RangeMarked models xa_for_each_marked().
func (xa *XArray) RangeMarked(start, max uint64, mark Mark) iter.Seq[Found] {
	return xa.rangeFilter(start, max, int(mark.m))
}

func (xa *XArray) rangeFilter(start, max uint64, filter int) iter.Seq[Found] {
	return func(yield func(Found) bool) {
		for start <= max {
			var st xaState
			f, ok := xa.findFirst(&st, start, max, filter)
			if !ok || !yield(f) {
				return
			}
			end := f.Last()
			if end >= max {
				return
			}
			start = end + 1
		}
	}
}
