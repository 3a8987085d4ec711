package pagecache

import "khosim/errno"

// xaMarkCount is the number of search marks (XA_MARK_MAX + 1).
const xaMarkCount = 3

// Mark is one of the XArray's search marks (xa_mark_t). Its field is
// unexported so that only the three real marks exist: the zero Mark is
// XAMark0.
type Mark struct{ m uint8 }

// The XArray marks (include/linux/xarray.h) and the page-cache tags they
// carry (include/linux/fs.h).
var (
	XAMark0 = Mark{0}
	XAMark1 = Mark{1}
	XAMark2 = Mark{2}

	PageCacheTagDirty     = XAMark0 // PAGECACHE_TAG_DIRTY
	PageCacheTagWriteback = XAMark1 // PAGECACHE_TAG_WRITEBACK
	PageCacheTagTowrite   = XAMark2 // PAGECACHE_TAG_TOWRITE
)

// String names the mark as Linux does.
func (m Mark) String() string { return [...]string{"XA_MARK_0", "XA_MARK_1", "XA_MARK_2"}[m.m] }

// propagateSet carries mark m, just set on a slot of n, up to the root
// and the head flags, stopping at the first ancestor that already has it
// (the loop in xas_set_mark()).
func (xa *XArray) propagateSet(n *xaNode, m int) {
	for {
		p := xa.parentOf(n)
		if p == nil {
			xa.marks |= 1 << m
			return
		}
		bit := uint64(1) << n.offset
		if p.marks[m]&bit != 0 {
			return
		}
		p.marks[m] |= bit
		n = p
	}
}

// propagateClear carries the clearing of mark m on a slot of n upwards
// while the node it left has no slot with m any more (xas_clear_mark()).
func (xa *XArray) propagateClear(n *xaNode, m int) {
	for n.marks[m] == 0 {
		p := xa.parentOf(n)
		if p == nil {
			xa.marks &^= 1 << m
			return
		}
		p.marks[m] &^= 1 << n.offset
		n = p
	}
}

// SetMark models xa_set_mark(): marks the entry covering index (its
// canonical slot, for a multi-index entry).
//
// Errors: errno.ENOENT if no entry covers index (Linux silently does
// nothing).
func (xa *XArray) SetMark(index uint64, mark Mark) error {
	n, c, ok := xa.locate(index)
	switch {
	case !ok:
		return errno.ENOENT
	case n == nil:
		xa.marks |= 1 << mark.m
	case n.marks[mark.m]&(1<<c) == 0:
		n.marks[mark.m] |= 1 << c
		xa.propagateSet(n, int(mark.m))
	}
	return nil
}

// ClearMark models xa_clear_mark().
//
// Errors: errno.ENOENT if no entry covers index.
func (xa *XArray) ClearMark(index uint64, mark Mark) error {
	n, c, ok := xa.locate(index)
	switch {
	case !ok:
		return errno.ENOENT
	case n == nil:
		xa.marks &^= 1 << mark.m
	case n.marks[mark.m]&(1<<c) != 0:
		n.marks[mark.m] &^= 1 << c
		xa.propagateClear(n, int(mark.m))
	}
	return nil
}

// GetMark models xa_get_mark(): whether the entry covering index has mark.
func (xa *XArray) GetMark(index uint64, mark Mark) bool {
	n, c, ok := xa.locate(index)
	switch {
	case !ok:
		return false
	case n == nil:
		return xa.marks&(1<<mark.m) != 0
	}
	return n.marks[mark.m]&(1<<c) != 0
}

// Marked models xa_marked(): whether any entry has mark.
func (xa *XArray) Marked(mark Mark) bool { return xa.marks&(1<<mark.m) != 0 }

// entryMarks returns the marks of the entry at canonical slot c of n (of
// the head entry when n is nil) as a bitmask.
func (xa *XArray) entryMarks(n *xaNode, c uint) uint8 {
	if n == nil {
		return xa.marks
	}
	var marks uint8
	for m := range xaMarkCount {
		if n.marks[m]&(1<<c) != 0 {
			marks |= 1 << m
		}
	}
	return marks
}
