package pagecache

import (
	"math/bits"

	"khosim/errno"
	"khosim/physmem"
)

// XArray geometry (include/linux/xarray.h with CONFIG_BASE_SMALL=0).
const (
	XAChunkShift = 6
	XAChunkSize  = 1 << XAChunkShift
	XAChunkMask  = XAChunkSize - 1

	// MaxOrder is the largest order of a multi-index entry: one entry of
	// order 63 covers half of the 64-bit index space.
	MaxOrder = 63

	// xaMaxShift is the shift of the tallest possible node: a node of shift
	// 60 indexes bits 60..63, so only its slots 0..15 are reachable.
	xaMaxShift = 60
	// freedShift marks a node sitting on the free list.
	freedShift = 0xff
)

// xaNode models struct xa_node (include/linux/xarray.h).
//
// A node of shift s has 64 slots, slot i covering the 2^s indices
// [base + i<<s, base + (i+1)<<s) where base is the first index the node
// covers. A slot is NULL, an entry, a sibling entry naming the canonical
// slot of a multi-index entry to its left, or a node entry naming a child
// of shift s-6. count counts non-NULL slots (siblings and children
// included); nrValues counts slots holding value entries or their
// siblings, as node->nr_values does.
//
// Lifecycle: allocated by allocNode (xas_alloc) when a store needs it,
// freed by freeNode (xa_node_free) when it becomes empty
// (xas_delete_node), when the tree shrinks past it (xas_shrink) or when a
// larger entry is stored over its subtree (xas_free_nodes). A freed node
// keeps its arena id, has shift freedShift and waits on the free list
// (XArray.free, chained through parent), so freeing never allocates.
//
// What the node costs: with a node cache (SetNodeCache) every node in the
// tree holds one object of it (a radix_tree_node slab object of 576
// bytes, whose handle XArray.objs keeps by arena id, beside the arena so
// that a walk's cache lines stay as they were); the arena is only the
// host's copy of the node's fields.
type xaNode struct {
	shift    uint8  // bits of the index below this node's slots
	offset   uint8  // slot of this node in its parent
	count    uint8  // non-NULL slots
	nrValues uint8  // value-entry slots (siblings included)
	parent   uint32 // arena id of the parent, 0 for the root; next free node once freed
	id       uint32 // this node's arena id
	marks    [xaMarkCount]uint64
	slots    [XAChunkSize]Entry
}

// Counts is what an XArray holds, as maintained incrementally by every
// store and checked against a full walk by CheckInvariants.
type Counts struct {
	Entries      uint64 // present entries; a multi-index entry counts once
	Indices      uint64 // indices they cover (mod 2^64: 0 if all 2^64 are)
	ValueEntries uint64 // present value entries
	ValueIndices uint64 // indices covered by value entries
	Reserved     uint64 // reservations (Reserve): not present, not in Entries
}

// XArray models struct xarray (lib/xarray.c): a sparse map from uint64
// index to Entry. The zero XArray is empty and ready to use (xa_init()).
//
// States: empty (head NULL, no nodes); a single entry at index 0 of order
// 0 kept in head itself (no nodes); a tree (head is the root node). Store
// moves between them, growing the tree (xas_expand) for an index beyond
// its reach and shrinking it (xas_shrink) when only slot 0 of the root
// remains and can stand in its place.
//
// Nodes cost memory when the array has a node cache (SetNodeCache, the
// kernel's radix_tree_node_cachep): every node in the tree holds a slab
// object, and an operation that needs nodes allocates all of them before
// it changes anything (xas_nomem / xas_split_alloc), failing with ENOMEM
// and leaving the array as it was if it cannot. Without a node cache (unit
// tests, benchmarks of the tree alone) nodes cost nothing and never fail.
type XArray struct {
	head  Entry // xa_head: NULL, the entry at index 0, or the root node
	marks uint8 // XA_FLAGS_MARK(): which marks are set anywhere

	nodes   []xaNode // node arena, indexed by id; nodes[0] is unused
	nrIDs   uint32   // ids handed out so far, 0 included: len(nodes)
	free    uint32   // first freed node, reused first; 0: none
	nrFree  int      // freed nodes, chained through their parent field
	nrNodes int      // nodes in the tree

	// hint is the node the last store or erase ended in, and hintBase the
	// index its slot 0 covers: what an xa_state keeps in xa_node between
	// operations. A folio insert or delete at an index that node holds
	// starts there instead of at the root (insertHinted, eraseHinted), so
	// that adding or removing a file's folios in index order walks the
	// tree once per node, not once per folio. A node in the tree is the
	// only one covering its range at its level, so the hint stays right
	// until its node is freed (freeNode drops it). 0: none.
	hint     uint32
	hintBase uint64

	counts Counts

	// cache is the node cache (radix_tree_node_cachep), nil for none.
	cache *physmem.KmemCache
	// objs holds, by arena id, the radix_tree_node object of each node in
	// the tree (0 for free ids); nil without a node cache.
	objs []physmem.SlabObj
	// preload holds the node objects allocated for the operation in
	// progress, which allocNode takes (xas->xa_alloc): empty between
	// operations.
	preload []physmem.SlabObj
}

// maxIndex models max_index()/node_maxindex(): the last index a node of
// the given shift can reach. For shift 60, 64<<60 wraps to 0 and the result
// is the last 64-bit index, as in Linux.
func maxIndex(shift uint) uint64 { return uint64(XAChunkSize)<<shift - 1 }

// offsetOf models get_offset(): the slot of n that index falls in.
func (n *xaNode) offsetOf(index uint64) uint {
	return uint(index>>n.shift) & XAChunkMask
}

// siblingsAfter counts the sibling slots that follow canonical slot c: a
// multi-index entry of n occupies slots [c, c+siblingsAfter(c)].
func (n *xaNode) siblingsAfter(c uint) uint {
	sib := siblingEntry(c)
	k := uint(0)
	for s := c + 1; s < XAChunkSize && n.slots[s] == sib; s++ {
		k++
	}
	return k
}

// entryOrder models xas_get_order() for the canonical slot c of n.
func (n *xaNode) entryOrder(c uint) uint {
	return uint(n.shift) + uint(bits.Len(n.siblingsAfter(c)))
}

// at returns the node with arena id id.
//
// The arena is one slice, so that a walk down the tree costs one indexed
// load per level (Load is the page cache's hottest path). Growing it may
// move every node: a *xaNode obtained before allocNode is stale after it,
// so code that allocates holds node ids across the call and looks nodes
// up again.
func (xa *XArray) at(id uint32) *xaNode { return &xa.nodes[id] }

// node returns the node a node entry names.
func (xa *XArray) node(e Entry) *xaNode { return xa.at(e.nodeID()) }

// root returns the root node. Preconditions: xa.head.isNode().
func (xa *XArray) root() *xaNode { return xa.at(xa.head.nodeID()) }

// parentOf returns n's parent, nil for the root.
func (xa *XArray) parentOf(n *xaNode) *xaNode {
	if n.parent == 0 {
		return nil
	}
	return xa.at(n.parent)
}

// allocNode models xas_alloc(): a zeroed node of the given shift, to be
// hung from slot off of node parent (0: none) by the caller. It reuses a
// freed node first. The arena may move (see at).
func (xa *XArray) allocNode(shift uint, parent uint32, off uint) *xaNode {
	var id uint32
	if xa.free != 0 {
		id = xa.free
		xa.free = xa.at(id).parent
		xa.nrFree--
	} else {
		if len(xa.nodes) == 0 {
			xa.nodes = append(xa.nodes, xaNode{shift: freedShift}) // id 0 stays unused
		}
		id = uint32(len(xa.nodes))
		if len(xa.nodes) == cap(xa.nodes) {
			xa.growArena()
		}
		xa.nodes = xa.nodes[:id+1]
		xa.nrIDs = uint32(len(xa.nodes))
	}
	n := xa.at(id)
	*n = xaNode{id: id, shift: uint8(shift), parent: parent, offset: uint8(off)}
	if xa.cache != nil {
		k := len(xa.preload) - 1
		if k < 0 {
			xa.badPreload("a store needs a node it did not allocate first")
		}
		for int(id) >= len(xa.objs) {
			xa.objs = append(xa.objs, 0)
		}
		xa.objs[id] = xa.preload[k]
		xa.preload = xa.preload[:k]
	}
	xa.nrNodes++
	return n
}

// growArena doubles the node arena's capacity. append's own policy grows
// a large slice by only 1.25x, which for a page cache filled in one go
// (a restore inserts a million folios) copies the arena about twenty
// times; doubling copies it at most once per size class. The spare
// capacity costs no host memory until used: fresh large allocations come
// zeroed from the OS.
func (xa *XArray) growArena() {
	nodes := make([]xaNode, len(xa.nodes), max(2*cap(xa.nodes), 8))
	copy(nodes, xa.nodes)
	xa.nodes = nodes
}

// ReserveNodes makes room in the node arena for n more nodes, so that the
// next n allocations neither grow nor copy it. It changes nothing a
// caller can observe: the tree, its counts and every walk stay as they
// were. Like filling a slab cache ahead of a known burst of
// allocations, it is for a caller about to store many entries in one
// go, which can size the burst with NodesFor.
func (xa *XArray) ReserveNodes(n int) {
	if n <= 0 || cap(xa.nodes)-len(xa.nodes) >= n {
		return
	}
	nodes := make([]xaNode, len(xa.nodes), max(len(xa.nodes), 1)+n)
	copy(nodes, xa.nodes)
	xa.nodes = nodes
}

// NodesFor returns how many nodes a tree needs to hold entries of the
// given order at every aligned index of [0, span): one leaf per 64 slots
// at the lowest level the order is stored at, and the levels above them.
func NodesFor(span uint64, order uint) int {
	if span == 0 {
		return 0
	}
	// An entry of order o lives in a node of shift o rounded down to a
	// multiple of XAChunkShift.
	shift := order / XAChunkShift * XAChunkShift
	nodes := 0
	for {
		n := (span-1)>>(shift+XAChunkShift) + 1
		nodes += int(n)
		if n == 1 {
			return nodes
		}
		shift += XAChunkShift
	}
}

// freeNode models xa_node_free(): the node is wiped and put on the free
// list; the caller has already unhooked it.
func (xa *XArray) freeNode(n *xaNode) {
	if n.id == xa.hint {
		xa.hint = 0
	}
	if xa.cache != nil {
		xa.cache.Free(xa.objs[n.id]) // radix_tree_node_rcu_free
		xa.objs[n.id] = 0
	}
	*n = xaNode{id: n.id, shift: freedShift}
	n.parent = xa.free
	xa.free = n.id
	xa.nrFree++
	xa.nrNodes--
}

// account adds (add) or removes an entry of the given order from the counts.
func (xa *XArray) account(e Entry, order uint, add bool) {
	if e == zeroEntry {
		if add {
			xa.counts.Reserved++
		} else {
			xa.counts.Reserved--
		}
		return
	}
	n := uint64(1) << order
	if !add {
		xa.counts.Entries--
		xa.counts.Indices -= n
		if e.IsValue() {
			xa.counts.ValueEntries--
			xa.counts.ValueIndices -= n
		}
		return
	}
	xa.counts.Entries++
	xa.counts.Indices += n
	if e.IsValue() {
		xa.counts.ValueEntries++
		xa.counts.ValueIndices += n
	}
}

// freeSubtree models xas_free_nodes(): frees n and everything below it,
// uncounting the entries it held. The caller unhooks n.
func (xa *XArray) freeSubtree(n *xaNode) {
	for s := uint(0); s < XAChunkSize; s++ {
		e := n.slots[s]
		switch {
		case e == 0 || e.isSibling():
		case e.isNode():
			xa.freeSubtree(xa.node(e))
		default:
			xa.account(e, n.entryOrder(s), false)
		}
	}
	xa.freeNode(n)
}

// checkRange validates an (index, order) pair: the order must be at most
// MaxOrder and the index aligned to it.
func checkRange(index uint64, order uint) error {
	if order > MaxOrder || index&(uint64(1)<<order-1) != 0 {
		return errno.EINVAL
	}
	return nil
}

// Counts returns how many entries and indices the array holds.
func (xa *XArray) Counts() Counts { return xa.counts }

// Empty models xa_empty(): nothing stored and nothing reserved.
func (xa *XArray) Empty() bool { return xa.head == 0 }

// Load models xa_load(): the entry covering index, NULL if none (a
// reserved index loads NULL).
func (xa *XArray) Load(index uint64) Entry {
	e := xa.head
	if !e.isNode() {
		if index == 0 && e != zeroEntry {
			return e
		}
		return 0
	}
	n := xa.at(e.nodeID())
	if index > maxIndex(uint(n.shift)) {
		return 0
	}
	return xa.loadFrom(n, index)
}

// loadFrom models xas_descend() repeated from n down to the entry. The
// shift of each child is its parent's minus XA_CHUNK_SHIFT, so only n's
// own header is read: each level costs one cache line, the slot's.
func (xa *XArray) loadFrom(n *xaNode, index uint64) Entry {
	shift := uint(n.shift)
	for {
		e := n.slots[(index>>shift)&XAChunkMask]
		if e&3 != internalTag {
			return e
		}
		if !e.isNode() {
			return loadSpecial(n, e)
		}
		n = xa.at(e.nodeID())
		shift -= XAChunkShift
	}
}

// loadSpecial is what loadFrom finds in an internal entry of n that is no
// node: a sibling (the entry of its canonical slot) or a reservation
// (NULL). Out of line, so that the walk down stays one test per level.
func loadSpecial(n *xaNode, e Entry) Entry {
	if e.isSibling() {
		e = n.slots[e.siblingOffset()]
	}
	if e == zeroEntry {
		return 0
	}
	return e
}

// Lookup models xas_load() followed by xas_get_order(): the entry covering
// index with its base index and order.
func (xa *XArray) Lookup(index uint64) (Found, bool) {
	n, c, ok := xa.locate(index)
	switch {
	case !ok:
		return Found{}, false
	case n == nil:
		return Found{Index: 0, Entry: xa.head}, true
	}
	order := n.entryOrder(c)
	return Found{Index: index &^ (uint64(1)<<order - 1), Entry: n.slots[c], Order: uint8(order)}, true
}

// locate finds the canonical slot of the entry covering index: (nil, 0,
// true) for an entry kept in head, ok false when there is none or index
// is reserved.
func (xa *XArray) locate(index uint64) (n *xaNode, c uint, ok bool) {
	n, c, ok = xa.locateAny(index)
	if ok && xa.slotEntry(n, c) == zeroEntry {
		return nil, 0, false
	}
	return n, c, ok
}

// slotEntry returns canonical slot c of n, or the head entry when n is nil.
func (xa *XArray) slotEntry(n *xaNode, c uint) Entry {
	if n == nil {
		return xa.head
	}
	return n.slots[c]
}

// locateAny is locate that also finds reservations.
func (xa *XArray) locateAny(index uint64) (n *xaNode, c uint, ok bool) {
	e := xa.head
	if !e.isNode() {
		return nil, 0, e != 0 && index == 0
	}
	n = xa.node(e)
	if index > maxIndex(uint(n.shift)) {
		return nil, 0, false
	}
	for {
		c = n.offsetOf(index)
		e = n.slots[c]
		switch {
		case e == 0:
			return nil, 0, false
		case e.isSibling():
			return n, e.siblingOffset(), true
		case e.isNode():
			n = xa.node(e)
		default:
			return n, c, true
		}
	}
}

// Store models xa_store() with xas_set_order(): afterwards every index of
// [index, index+2^order) holds entry, and Store returns what Load(index)
// returned before.
//
// What was in the range goes: smaller entries inside it are replaced
// (their marks carry over to entry, as xas_squash_marks() does) and a
// larger multi-index entry covering the range is replaced at every index
// it covers, keeping its order and marks, as storing into one index of a
// multi-index entry does in Linux. Storing NULL erases, and erasing any
// index of a multi-index entry erases all of it ("dissolves the tie").
//
// A reservation (Reserve) in the range is replaced like an entry; storing
// NULL erases reservations too (xa_erase of a reserved index).
//
// Errors: errno.EINVAL if order > MaxOrder, index is not a multiple of
// 2^order, or entry is not NULL, a value entry or a folio entry;
// errno.ENOMEM (or the injected slab or page_alloc fault) if the nodes the
// store needs cannot be allocated: nothing changes.
func (xa *XArray) Store(index uint64, entry Entry, order uint) (Entry, error) {
	if err := checkRange(index, order); err != nil {
		return 0, err
	}
	if !entry.valid() {
		return 0, errno.EINVAL
	}
	var old Entry
	if entry == 0 {
		old = xa.store(index, 0, order, 0)
	} else {
		var err error
		if old, err = xa.storeNew(index, entry, order); err != nil {
			return 0, err
		}
	}
	if old == zeroEntry {
		old = 0
	}
	return old, nil
}

// Insert models xa_insert() of a multi-index entry: Store, but only if no
// index of [index, index+2^order) holds an entry or is reserved.
//
// Errors: errno.EINVAL as for Store, and for a NULL entry (Reserve
// reserves); errno.EEXIST if any index of the range is occupied or
// reserved (Linux: EBUSY); errno.ENOMEM as for Store.
func (xa *XArray) Insert(index uint64, entry Entry, order uint) error {
	if err := checkRange(index, order); err != nil {
		return err
	}
	if entry == 0 || !entry.valid() {
		return errno.EINVAL
	}
	last := index + (uint64(1)<<order - 1)
	if _, ok := xa.Find(index, last); ok {
		return errno.EEXIST
	}
	if _, ok := xa.findReserved(index, last); ok {
		return errno.EEXIST
	}
	_, err := xa.storeNew(index, entry, order)
	return err
}

// Erase models xa_erase(): removes the entry covering index — all of it,
// if it is a multi-index entry — and returns it. A reservation covering
// index goes too (Erase then returns NULL). Erasing never allocates.
func (xa *XArray) Erase(index uint64) Entry {
	old := xa.store(index, 0, 0, 0)
	if old == zeroEntry {
		old = 0
	}
	return old
}

// Split models xas_split(): the multi-index entry covering index becomes
// 2^(old order - order) entries of the given order over the same range,
// each holding the same entry and marks. A large folio being split then
// stores each new folio over its part (Store or AddressSpace.ReplaceEntry).
//
// Errors: errno.ENOENT if no entry covers index; errno.EINVAL if order is
// above the entry's order; errno.ENOMEM if the new entries would sit two
// or more levels below the old one (order - order%6 + 12 <= old order),
// a split xas_split_alloc() refuses ("no support for splitting really
// large entries yet"), or if the nodes the split needs (one per slot of
// the old entry when the new ones sit a level below it) cannot be
// allocated (xas_split_alloc), or the injected slab or page_alloc fault:
// nothing changes then. Splitting to the entry's own order does nothing.
func (xa *XArray) Split(index uint64, order uint) error {
	if _, ok := xa.Lookup(index); !ok {
		return errno.ENOENT
	}
	return xa.split(index, order)
}

// split is Split of the entry or reservation covering index, allocating
// the nodes it needs first.
func (xa *XArray) split(index uint64, order uint) error {
	n, c, ok := xa.locateAny(index)
	if !ok {
		return errno.ENOENT
	}
	if n == nil {
		// The head holds an order-0 entry: nothing to split.
		if order > 0 {
			return errno.EINVAL
		}
		return nil
	}
	fOrder := n.entryOrder(c)
	switch {
	case order > fOrder:
		return errno.EINVAL
	case order == fOrder:
		return nil
	case order-order%XAChunkShift+2*XAChunkShift <= fOrder:
		return errno.ENOMEM
	}
	if err := xa.nomem(splitNodes(n, c, order)); err != nil {
		return err
	}
	fEntry := n.slots[c]
	f := Found{Index: index &^ (uint64(1)<<fOrder - 1), Entry: fEntry, Order: uint8(fOrder)}
	// Detach the entry from its slots, leaving its node in place (possibly
	// empty for a moment) and its ancestors' marks set; the stores below
	// refill the range and re-propagate the marks.
	k := n.siblingsAfter(c)
	var marks uint8
	for m := range xaMarkCount {
		if n.marks[m]&(1<<c) != 0 {
			marks |= 1 << m
			n.marks[m] &^= 1 << c
		}
	}
	for s := c; s <= c+k; s++ {
		n.slots[s] = 0
	}
	n.count -= uint8(k + 1)
	if f.Entry.IsValue() {
		n.nrValues -= uint8(k + 1)
	}
	xa.account(f.Entry, uint(f.Order), false)
	step := uint64(1) << order
	for i := uint64(0); i < uint64(1)<<(uint(f.Order)-order); i++ {
		xa.store(f.Index+i*step, f.Entry, order, marks)
	}
	// An entry at slot 0 of the root may now sit in a child that can
	// replace the root. Linux leaves such a tree until the next deletion;
	// shrinking here keeps the height minimal at all times.
	xa.shrink()
	xa.preloadDone()
	return nil
}

// store is xas_store() after validation; addMarks are set on the stored
// entry in addition to those it inherits.
func (xa *XArray) store(index uint64, entry Entry, order uint, addMarks uint8) Entry {
	shift := order - order%XAChunkShift       // xas->xa_shift
	sibs := uint(1)<<(order%XAChunkShift) - 1 // xas->xa_sibs
	last := index + (uint64(1)<<order - 1)    // xas_max()
	if entry == 0 {
		return xa.erase(index, shift, sibs)
	}
	if !xa.head.isNode() && index == 0 && order == 0 {
		// A lone entry at index 0 lives in the head (xas_create with
		// allow_root).
		old := xa.head
		if old != 0 {
			xa.account(old, 0, false)
		}
		xa.account(entry, 0, true)
		xa.head = entry
		xa.marks |= addMarks
		return old
	}
	xa.expand(last, shift)
	n := xa.root()
	return xa.storeFrom(n, uint(n.shift), index, entry, order, addMarks)
}

// storeFrom is store() of a non-NULL entry from node n of shift level on
// the way down (the root, or where nodesFor's walk stopped).
func (xa *XArray) storeFrom(n *xaNode, level uint, index uint64, entry Entry, order uint, addMarks uint8) Entry {
	shift := order - order%XAChunkShift       // xas->xa_shift
	sibs := uint(1)<<(order%XAChunkShift) - 1 // xas->xa_sibs

	// xas_create(): walk down to the node of the entry's shift, allocating
	// missing nodes, unless a larger entry covers the range on the way.
	// As in loadFrom, the level's shift is tracked rather than read from
	// each node.
	for level > shift {
		off := uint(index>>level) & XAChunkMask
		e := n.slots[off]
		switch {
		case e == 0:
			pid := n.id
			child := xa.allocNode(level-XAChunkShift, pid, off)
			n = xa.at(pid)
			n.slots[off] = nodeEntry(child.id)
			n.count++
			n = child
		case e.isSibling():
			return xa.replaceCovering(n, level, e.siblingOffset(), entry, addMarks)
		case e.isNode():
			n = xa.node(e)
		default:
			return xa.replaceCovering(n, level, off, entry, addMarks)
		}
		level -= XAChunkShift
	}
	off := uint(index>>level) & XAChunkMask
	e := n.slots[off]
	if e.isSibling() {
		return xa.replaceCovering(n, level, e.siblingOffset(), entry, addMarks)
	}
	if e != 0 && !e.isNode() && n.siblingsAfter(off) >= sibs {
		// The entry there covers the range or is exactly it: replace it
		// in place, keeping its marks (what the squash would give).
		return xa.replaceCovering(n, level, off, entry, addMarks)
	}

	old := e
	if e.isNode() {
		old = xa.loadFrom(xa.node(e), index)
	}
	marks := addMarks | xa.clearSlots(n, off, sibs)
	n.slots[off] = entry
	for s := off + 1; s <= off+sibs; s++ {
		n.slots[s] = siblingEntry(off)
	}
	n.count += uint8(sibs + 1)
	if entry.IsValue() {
		n.nrValues += uint8(sibs + 1)
	}
	xa.account(entry, order, true)
	for m := range xaMarkCount {
		if marks&(1<<m) != 0 {
			n.marks[m] |= 1 << off
			xa.propagateSet(n, m)
		}
	}
	xa.hint, xa.hintBase = n.id, index&^maxIndex(level)
	return old
}

// hinted returns the hint node if it is the node of the given shift that
// holds index, nil otherwise.
func (xa *XArray) hinted(index uint64, shift uint) *xaNode {
	if xa.hint == 0 {
		return nil
	}
	n := xa.at(xa.hint)
	if uint(n.shift) != shift || (index^xa.hintBase)>>shift >= XAChunkSize {
		return nil
	}
	return n
}

// insertHinted stores entry (not NULL) at [index, index+2^order) if the
// hint node holds that range and all of it is empty, and reports whether
// it did; otherwise nothing changes and the caller takes the general
// path. It is store() of an empty range without the walk from the root:
// no larger entry can cover the range while a node holds it.
// Preconditions: index is aligned to order.
func (xa *XArray) insertHinted(index uint64, entry Entry, order uint) bool {
	shift := order - order%XAChunkShift
	n := xa.hinted(index, shift)
	if n == nil {
		return false
	}
	sibs := uint(1)<<(order%XAChunkShift) - 1
	off := uint(index>>shift) & XAChunkMask
	for s := off; s <= off+sibs; s++ {
		if n.slots[s] != 0 {
			return false
		}
	}
	n.slots[off] = entry
	for s := off + 1; s <= off+sibs; s++ {
		n.slots[s] = siblingEntry(off)
	}
	n.count += uint8(sibs + 1)
	if entry.IsValue() {
		n.nrValues += uint8(sibs + 1)
	}
	xa.account(entry, order, true)
	return true
}

// eraseHinted erases the entry whose base index is index if it is
// expected and sits in the hint node, and reports whether it did (with
// the entry erased); otherwise nothing changes. It is erase() without the
// walk from the root.
func (xa *XArray) eraseHinted(index uint64, expected Entry) (Found, bool) {
	n, level, c, ok := xa.hintedSlot(index, expected)
	if !ok {
		return Found{}, false
	}
	f := Found{Index: index, Entry: expected, Order: uint8(n.entryOrder(c))}
	xa.eraseCovering(n, level, c)
	xa.setHint(n, index)
	return f, true
}

// hintedSlot returns the hint's node, its shift and the canonical slot of
// index in it when that slot holds expected (an entry starting at index);
// ok is false when there is no hint or it does not cover index.
func (xa *XArray) hintedSlot(index uint64, expected Entry) (n *xaNode, level, c uint, ok bool) {
	if xa.hint == 0 {
		return nil, 0, 0, false
	}
	n = xa.at(xa.hint)
	level = uint(n.shift)
	if (index^xa.hintBase)>>level >= XAChunkSize || index&(uint64(1)<<level-1) != 0 {
		return nil, 0, 0, false
	}
	c = uint(index>>level) & XAChunkMask
	if n.slots[c] != expected {
		return nil, 0, 0, false
	}
	return n, level, c, true
}

// reserveHinted is eraseHinted for a reservation (DeleteFolioReserve):
// when the hint's node holds expected at index, the entry is replaced in
// place by XA_ZERO_ENTRY, its marks cleared (and their propagation), the
// node kept — the work of xas_store(XA_ZERO_ENTRY) without a walk from the
// root. A truncation of a whole file moves through the file in order, so
// the hint is nearly always right.
func (xa *XArray) reserveHinted(index uint64, expected Entry) (Found, bool) {
	n, level, c, ok := xa.hintedSlot(index, expected)
	if !ok {
		return Found{}, false
	}
	f := Found{Index: index, Entry: expected, Order: uint8(n.entryOrder(c))}
	xa.replaceCovering(n, level, c, zeroEntry, 0)
	for m := range xaMarkCount {
		if n.marks[m]&(1<<c) != 0 {
			n.marks[m] &^= 1 << c
			xa.propagateClear(n, m)
		}
	}
	xa.setHint(n, index)
	return f, true
}

// hintAt makes the node holding index the hint (after an operation that
// walked from the root and left no hint), so that the next hinted
// operation nearby needs no walk.
func (xa *XArray) hintAt(index uint64) {
	if n, _, ok := xa.locateAny(index); ok && n != nil {
		xa.setHint(n, index)
	}
}

// clearSlots empties slots [off, off+sibs] of n, which hold only entries
// contained in that range (and subtrees): their entries are uncounted,
// subtrees freed and mark bits cleared without propagation. It returns the
// marks that were set on any of them (xas_squash_marks()).
func (xa *XArray) clearSlots(n *xaNode, off, sibs uint) uint8 {
	var marks uint8
	mask := (uint64(2)<<sibs - 1) << off
	for m := range xaMarkCount {
		if n.marks[m]&mask != 0 {
			marks |= 1 << m
			n.marks[m] &^= mask
		}
	}
	isValue := false // whether the canonical entry of the current run is one
	for s := off; s <= off+sibs; s++ {
		e := n.slots[s]
		switch {
		case e == 0:
			continue
		case e.isSibling():
			if isValue {
				n.nrValues--
			}
		case e.isNode():
			xa.freeSubtree(xa.node(e))
		default:
			xa.account(e, n.entryOrder(s), false)
			isValue = e.IsValue()
			if isValue {
				n.nrValues--
			}
		}
		n.slots[s] = 0
		n.count--
	}
	return marks
}

// replaceCovering stores entry into the entry at canonical slot c of n,
// which covers the whole range being stored or is exactly it: the entry
// keeps its range and marks (xas_store() on a slot found through a
// sibling, or over an entry of the same order).
//
// level is n's shift, passed down so that replacing an entry in place
// touches only the cache line of its slots.
func (xa *XArray) replaceCovering(n *xaNode, level, c uint, entry Entry, addMarks uint8) Entry {
	old := n.slots[c]
	k := n.siblingsAfter(c)
	order := level + uint(bits.Len(k))
	xa.account(old, order, false)
	xa.account(entry, order, true)
	if old.IsValue() != entry.IsValue() {
		if entry.IsValue() {
			n.nrValues += uint8(k + 1)
		} else {
			n.nrValues -= uint8(k + 1)
		}
	}
	n.slots[c] = entry
	for m := range xaMarkCount {
		if addMarks&(1<<m) != 0 && n.marks[m]&(1<<c) == 0 {
			n.marks[m] |= 1 << c
			xa.propagateSet(n, m)
		}
	}
	return old
}

// erase is xas_store(NULL) for the range of (shift, sibs) at index.
func (xa *XArray) erase(index uint64, shift, sibs uint) Entry {
	head := xa.head
	if head == 0 {
		return 0
	}
	if !head.isNode() {
		if index != 0 {
			return 0
		}
		xa.account(head, 0, false)
		xa.head = 0
		xa.marks = 0
		return head
	}
	n := xa.root()
	if index > maxIndex(uint(n.shift)) {
		return 0
	}
	if uint(n.shift) < shift {
		// The aligned range is larger than the whole tree and starts at
		// 0: everything goes.
		old := xa.Load(0)
		xa.freeSubtree(n)
		xa.head = 0
		xa.marks = 0
		return old
	}
	level := uint(n.shift)
	covering := func(c uint) Entry {
		old := xa.eraseCovering(n, level, c)
		xa.setHint(n, index)
		return old
	}
	for level > shift {
		off := uint(index>>level) & XAChunkMask
		e := n.slots[off]
		switch {
		case e == 0:
			return 0
		case e.isSibling():
			return covering(e.siblingOffset())
		case e.isNode():
			n = xa.node(e)
		default:
			return covering(off)
		}
		level -= XAChunkShift
	}
	off := uint(index>>level) & XAChunkMask
	e := n.slots[off]
	if e.isSibling() {
		return covering(e.siblingOffset())
	}
	if e != 0 && !e.isNode() && n.siblingsAfter(off) >= sibs {
		return covering(off)
	}
	old := e
	if e.isNode() {
		old = xa.loadFrom(xa.node(e), index)
	}
	marks := xa.clearSlots(n, off, sibs)
	for m := range xaMarkCount {
		if marks&(1<<m) != 0 {
			xa.propagateClear(n, m)
		}
	}
	xa.deleteNode(n)
	xa.setHint(n, index)
	return old
}

// setHint makes n, in which an operation at index ended, the hint, unless
// the operation freed it.
func (xa *XArray) setHint(n *xaNode, index uint64) {
	if n.shift != freedShift {
		xa.hint, xa.hintBase = n.id, index&^maxIndex(uint(n.shift))
	}
}

// eraseCovering erases the whole multi-index entry at canonical slot c of n.
// level is n's shift.
func (xa *XArray) eraseCovering(n *xaNode, level, c uint) Entry {
	old := n.slots[c]
	k := n.siblingsAfter(c)
	xa.account(old, level+uint(bits.Len(k)), false)
	for s := c; s <= c+k; s++ {
		n.slots[s] = 0
	}
	n.count -= uint8(k + 1)
	if old.IsValue() {
		n.nrValues -= uint8(k + 1)
	}
	for m := range xaMarkCount {
		if n.marks[m]&(1<<c) != 0 {
			n.marks[m] &^= 1 << c
			xa.propagateClear(n, m)
		}
	}
	xa.deleteNode(n)
	return old
}

// expand models xas_expand(): grows the tree until the root node's shift
// is at least shift and it reaches index last. An entry kept in head moves
// to slot 0 of a new shift-0 node first.
func (xa *XArray) expand(last uint64, shift uint) {
	switch head := xa.head; {
	case head == 0:
		s := shift
		for maxIndex(s) < last {
			s += XAChunkShift
		}
		xa.head = nodeEntry(xa.allocNode(s, 0, 0).id)
		return
	case !head.isNode():
		n := xa.allocNode(0, 0, 0)
		n.slots[0] = head
		n.count = 1
		if head.IsValue() {
			n.nrValues = 1
		}
		for m := range xaMarkCount {
			if xa.marks&(1<<m) != 0 {
				n.marks[m] = 1
			}
		}
		xa.head = nodeEntry(n.id)
	}
	for {
		root := xa.root()
		if uint(root.shift) >= shift && maxIndex(uint(root.shift)) >= last {
			return
		}
		rootID, rootShift := root.id, uint(root.shift)
		n := xa.allocNode(rootShift+XAChunkShift, 0, 0)
		root = xa.at(rootID)
		n.slots[0] = nodeEntry(rootID)
		n.count = 1
		for m := range xaMarkCount {
			if root.marks[m] != 0 {
				n.marks[m] = 1
			}
		}
		root.parent = n.id
		root.offset = 0
		xa.head = nodeEntry(n.id)
	}
}

// deleteNode models xas_delete_node(): frees n and every ancestor left
// empty by its removal, then shrinks the tree (xas_shrink()).
func (xa *XArray) deleteNode(n *xaNode) {
	if n.count != 0 && n.parent != 0 {
		// Nothing to free, and n is not the root: the tree above is as
		// it was, and was shrunk already.
		return
	}
	for n.count == 0 {
		p := xa.parentOf(n)
		if p == nil {
			xa.freeNode(n)
			xa.head = 0
			xa.marks = 0
			return
		}
		off := uint(n.offset)
		p.slots[off] = 0
		p.count--
		for m := range xaMarkCount {
			if p.marks[m]&(1<<off) != 0 {
				p.marks[m] &^= 1 << off
				xa.propagateClear(p, m)
			}
		}
		xa.freeNode(n)
		n = p
	}
	xa.shrink()
}

// shrink models xas_shrink(): while the root has a single entry in slot 0
// that can stand for it — a child node, or an order-0 entry of a shift-0
// root — that entry becomes the head. The head marks (XA_FLAGS_MARK) stay:
// they already summarise that one slot.
func (xa *XArray) shrink() {
	for xa.head.isNode() {
		n := xa.root()
		e := n.slots[0]
		if n.count != 1 || e == 0 || (!e.isNode() && n.shift != 0) {
			return
		}
		if e.isNode() {
			child := xa.node(e)
			child.parent = 0
			child.offset = 0
		}
		xa.head = e
		xa.freeNode(n)
	}
}
