package pagecache

import (
	"khosim/errno"
	"khosim/invariant"
	"khosim/physmem"
)

// Node allocation that can fail, and reservations.
//
// In Linux a store that needs nodes allocates them as it walks down
// (xas_create -> xas_alloc); when an allocation fails under the lock,
// xas_nomem() allocates a node with the caller's GFP flags and the store
// starts over, and a split allocates every node it needs before it starts
// (xas_split_alloc). The outcome the caller sees is all or nothing: the
// entry is stored, or -ENOMEM and nothing is. khosim gets the same outcome
// without retries: an operation counts the nodes it will allocate
// (nodesFor, splitNodes), allocates all of them (nomem) and only then
// changes the tree, whose allocNode takes them (the xas->xa_alloc list).
// Operations that only replace, erase or shrink allocate nothing.

// SetNodeCache makes the array's nodes cost memory: each node in the tree
// holds an object of c (the kernel's radix_tree_node_cachep, 576-byte
// objects), allocated when the node is and freed with it.
// Preconditions: the array is empty; otherwise panics with "xa-preload".
func (xa *XArray) SetNodeCache(c *physmem.KmemCache) {
	if xa.nrNodes != 0 || xa.cache != nil {
		xa.badPreload("SetNodeCache on an array that has nodes or a cache")
	}
	xa.cache = c
}

// NodeCache returns the array's node cache, nil for none.
func (xa *XArray) NodeCache() *physmem.KmemCache { return xa.cache }

// nomem allocates the n node objects the next operation will use, all or
// none (xas_nomem / xas_split_alloc).
//
// Errors: ENOMEM, or the injected slab or page_alloc fault; no object is
// left allocated.
func (xa *XArray) nomem(n int) error {
	if xa.cache == nil || n == 0 {
		return nil
	}
	for range n {
		obj, err := xa.cache.Alloc()
		if err != nil {
			for _, o := range xa.preload {
				xa.cache.Free(o)
			}
			xa.preload = xa.preload[:0]
			return errno.ENOMEM
		}
		xa.preload = append(xa.preload, obj)
	}
	return nil
}

// preloadDone ends an operation that called nomem: it used every node it
// allocated (the counts are exact).
func (xa *XArray) preloadDone() {
	if len(xa.preload) != 0 {
		xa.badPreload("an operation allocated more nodes than it used")
	}
}

func (xa *XArray) badPreload(what string) {
	invariant.Panic("pagecache", "xa-preload", xa.dumpHead(), "%s (%d preloaded)", what, len(xa.preload))
}

// storeNew stores a non-NULL entry, allocating the nodes the store needs
// first. When it needs none, the store goes on from where the count's walk
// stopped, so that replacing an entry walks the tree once.
//
// Errors: ENOMEM (or the injected fault), changing nothing.
func (xa *XArray) storeNew(index uint64, entry Entry, order uint) (Entry, error) {
	if xa.cache == nil {
		return xa.store(index, entry, order, 0), nil
	}
	need, n, level := xa.nodesFor(index, order)
	if need == 0 && n != nil {
		return xa.storeFrom(n, level, index, entry, order, 0), nil
	}
	if err := xa.nomem(need); err != nil {
		return 0, err
	}
	old := xa.store(index, entry, order, 0)
	xa.preloadDone()
	return old, nil
}

// nodesFor returns how many nodes store(index, e, order) allocates for an
// entry e that is not NULL: what xas_expand adds above the root and what
// xas_create adds on the way down to the node of the entry's shift. It
// mirrors store() and expand() without changing anything. When the store
// needs no node and goes through the tree, n and level are where its walk
// down would stop (storeFrom may start there); n is nil otherwise.
func (xa *XArray) nodesFor(index uint64, order uint) (nodes int, n *xaNode, level uint) {
	shift := order - order%XAChunkShift
	last := index + (uint64(1)<<order - 1)
	head := xa.head
	var old uint // shift of the tree's top node before expand
	switch {
	case !head.isNode() && index == 0 && order == 0:
		return 0, nil, 0 // a lone entry at index 0 lives in the head
	case head == 0:
		s := shift
		for maxIndex(s) < last {
			s += XAChunkShift
		}
		return 1 + int((s-shift)/XAChunkShift), nil, 0 // the root, then a node per level down
	case !head.isNode():
		nodes, old = 1, 0 // the entry in head moves to slot 0 of a new shift-0 node
	default:
		n = xa.root()
		old = uint(n.shift)
	}
	top := old
	for top < shift || maxIndex(top) < last {
		top += XAChunkShift
		nodes++
	}
	for level = top; level > shift; level -= XAChunkShift {
		off := uint(index>>level) & XAChunkMask
		if level > old {
			// A new root: the old tree hangs from its slot 0.
			if off != 0 {
				return nodes + int((level-shift)/XAChunkShift), nil, 0
			}
			continue // (for an entry moved out of the head, the loop ends at the new shift-0 node)
		}
		switch e := n.slots[off]; {
		case e == 0:
			return nodes + int((level-shift)/XAChunkShift), nil, 0
		case e.isNode():
			n = xa.node(e)
		default:
			// An entry (or its sibling) covers the range: replaced in
			// place.
			return nodes, n, level
		}
	}
	if nodes != 0 {
		return nodes, nil, 0
	}
	return 0, n, level
}

// splitNodes returns how many nodes splitting the entry at canonical slot
// c of n to order allocates: none if the new entries stay in n, else one
// child per slot the entry takes (xas_split_alloc).
func splitNodes(n *xaNode, c uint, order uint) int {
	if order-order%XAChunkShift == uint(n.shift) {
		return 0
	}
	return int(n.siblingsAfter(c)) + 1
}

// zeroEntry is XA_ZERO_ENTRY (xa_mk_internal(257)): a reserved slot. It
// occupies the slot, so the nodes above it stay, and loads, lookups and
// searches treat it as NULL.
const zeroEntry = Entry(257<<2 | internalTag)

// Reserve models xa_reserve() for the range [index, index+2^order): it
// stores a reservation there, allocating the nodes a later store of an
// entry of that order at index needs, so that that store cannot fail. The
// range loads NULL until something is stored in it; Release gives the
// reservation (and any node it alone kept) back. Reserving a range already
// reserved as a whole does nothing.
//
// Errors: errno.EINVAL as for Store; errno.EEXIST if an index of the
// range holds an entry (Linux's xa_reserve leaves an occupied index
// alone and returns 0; khosim's callers want to know); errno.ENOMEM (or
// the injected slab or page_alloc fault) if the nodes cannot be
// allocated: nothing changes.
func (xa *XArray) Reserve(index uint64, order uint) error {
	if err := checkRange(index, order); err != nil {
		return err
	}
	if _, ok := xa.Find(index, index+(uint64(1)<<order-1)); ok {
		return errno.EEXIST
	}
	if n, c, ok := xa.locateAny(index); ok && xa.slotEntry(n, c) == zeroEntry && (n == nil && order == 0 || n != nil && n.entryOrder(c) >= order) {
		return nil
	}
	_, err := xa.storeNew(index, zeroEntry, order)
	return err
}

// Reserved reports whether index is reserved (xa_load() would return NULL
// for it, but a store there needs no node).
func (xa *XArray) Reserved(index uint64) bool {
	n, c, ok := xa.locateAny(index)
	return ok && xa.slotEntry(n, c) == zeroEntry
}

// Release models xa_release(): the reservation covering index, if any,
// goes (all of it, for a multi-index one), and with it the nodes only it
// kept. An index that holds an entry, or nothing, is left alone.
func (xa *XArray) Release(index uint64) {
	if xa.Reserved(index) {
		xa.store(index, 0, 0, 0)
	}
}

// ReleaseAll releases every reservation (what xa_destroy() does to the
// reserved slots of an array whose entries are gone). It returns how many
// it released.
func (xa *XArray) ReleaseAll() int {
	n := 0
	for {
		f, ok := xa.findReserved(0, ^uint64(0))
		if !ok {
			return n
		}
		xa.store(f.Index, 0, uint(f.Order), 0)
		n++
	}
}

// findReserved returns the first reservation covering an index of
// [start, max].
func (xa *XArray) findReserved(start, max uint64) (Found, bool) {
	var st xaState
	return xa.findFirst(&st, start, max, filterReserved)
}

// storeCharged stores a non-NULL entry at [index, index+2^order) as
// AddFolio and InsertFolio need it: a larger value entry or reservation
// covering the range is first split to order (xas_split), and the nodes
// the split or the store needs are allocated first.
//
// Errors: errno.ENOMEM (or the injected fault) if the nodes cannot be
// allocated, changing nothing.
func (xa *XArray) storeCharged(index uint64, entry Entry, order uint) error {
	if n, c, ok := xa.locateAny(index); ok && n != nil && n.entryOrder(c) > order {
		// A larger entry covers the range: the caller has made sure it is
		// a value entry or a reservation. After the split, the store
		// replaces an entry of its own order in place, allocating nothing.
		big := n.entryOrder(c)
		if order-order%XAChunkShift+2*XAChunkShift <= big {
			invariant.Panic("pagecache", "add-folio-split", xa.Dump(),
				"splitting the entry at %#x of order %d to order %d: too large to split", index, big, order)
		}
		if err := xa.split(index, order); err != nil {
			return err
		}
		xa.store(index, entry, order, 0)
		xa.preloadDone()
		return nil
	}
	_, err := xa.storeNew(index, entry, order)
	return err
}
