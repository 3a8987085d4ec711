package kexec

import (
	"fmt"
	"iter"
	"math/bits"

	"khosim/fdt"
	"khosim/invariant"
	"khosim/kbuild"
	"khosim/physmem"
)

// radix is the 2026 "stateless" KHO tracker
// (kernel/liveupdate/kexec_handover.c, include/linux/kho/abi/kexec_handover.h):
// root compatible "kho-v2", whose "preserved-memory-map" is the physical
// address of the root of one radix tree of 4 KiB pages that records every
// preserved folio, of every order, as one bit:
//
//	struct kho_radix_node { u64 table[512]; };     // levels 5..1: phys of a lower node, 0 for none
//	struct kho_radix_leaf { u64 bitmap[512]; };    // level 0: 32768 bits
//
// A folio's key (kho_radix_encode_key) is an order bit at 52 - order
// (KHO_ORDER_0_LOG2 - order) or'ed with pa >> (PAGE_SHIFT + order); its
// bits 59:51 index level 5 (the root), 50:42 level 4, ... 23:15 level 1,
// and 14:0 the bit in the leaf. Everything is little endian.
//
// The tree is kept up to date at every preserve (kho_radix_add_page: the
// missing nodes on the path are allocated, and freed again if a later one
// cannot be) and unpreserve (kho_radix_del_page: the bit is cleared, no
// node is ever freed). There is no finalize: the record is always
// complete, and the KHO core lets clients preserve while KHO is active.
// The next kernel walks the tree (kho_radix_walk_tree) from physical
// memory before it allocates outside scratch; the tree's pages are not
// preserved and become free memory at memblock_free_all.
//
// Kernel-side subtrees (kho_add_subtree) carry "preserved-data".
//
// Differs from Linux: kho_init allocates the root at boot (a fs_initcall);
// khosim allocates it at the first preserve or activation, so that a kernel
// that never uses KHO owns no tracker page.
//
// References: the tracker holds the one reference of each node page
// (pages). Nodes are never unlinked (but by add_page's error cleanup), so
// the pages only grow.
type radix struct {
	h       *KHO
	root    physmem.PFN
	hasRoot bool
	pages   metaPages
	rootVal []byte // the root's "preserved-memory-map" in the FDT buffer

	// The last leaf reached and its key >> KHO_BITMAP_SIZE_LOG2: a
	// host-side shortcut of the walk, which nothing invalidates since a
	// linked node is never freed.
	lastPrefix uint64
	lastLeaf   physmem.PFN
	lastOK     bool
}

// The constants of enum kho_radix_consts, for 4 KiB pages.
const (
	// KHOOrder0Log2 is KHO_ORDER_0_LOG2: the order bit of an order-0 key.
	KHOOrder0Log2 = 64 - physmem.PageShift
	// KHOTableSizeLog2 is KHO_TABLE_SIZE_LOG2: 512 entries per node.
	KHOTableSizeLog2 = 9
	// KHOBitmapSizeLog2 is KHO_BITMAP_SIZE_LOG2: 32768 bits per leaf.
	KHOBitmapSizeLog2 = physmem.PageShift + 3
	// KHOTreeMaxDepth is KHO_TREE_MAX_DEPTH: 5 node levels and the leaves.
	KHOTreeMaxDepth = (KHOOrder0Log2-KHOBitmapSizeLog2+KHOTableSizeLog2-1)/KHOTableSizeLog2 + 1
	// KHORadixCompatible is the root compatible of the radix layout.
	KHORadixCompatible = "kho-v2"
)

func init() {
	RegisterTracker(TrackerInfo{Name: kbuild.TrackerRadix, Root: "kho-v2 + " + PreservedMemoryMapProp + " (radix tree)", New: func(h *KHO) Tracker { return &radix{h: h} }})
}

func (t *radix) Name() kbuild.Tracker    { return kbuild.TrackerRadix }
func (t *radix) Compatible() string      { return KHORadixCompatible }
func (t *radix) ClientRecords() bool     { return false }
func (t *radix) Finalizes() bool         { return false }
func (t *radix) SubtreeProperty() string { return "preserved-data" }
func (t *radix) EstimateRoot() uint64    { return 64 }
func (t *radix) Finalize() error         { return nil }
func (t *radix) Unfinalize()             { t.rootVal = nil }

// RadixEncodeKey is kho_radix_encode_key.
func RadixEncodeKey(phys physmem.PhysAddr, order uint) uint64 {
	return 1<<(KHOOrder0Log2-order) | uint64(phys)>>(physmem.PageShift+order)
}

// RadixDecodeKey is kho_radix_decode_key: the address and order of key.
func RadixDecodeKey(key uint64) (physmem.PhysAddr, uint) {
	order := uint(KHOOrder0Log2 - bits.Len64(key) + 1)
	return physmem.PhysAddr(key << (physmem.PageShift + order)), order
}

// radixTableIndex is kho_radix_get_table_index.
func radixTableIndex(key uint64, level uint) int {
	return int(key >> ((level-1)*KHOTableSizeLog2 + KHOBitmapSizeLog2) & (1<<KHOTableSizeLog2 - 1))
}

// radixBitmapIndex is kho_radix_get_bitmap_index.
func radixBitmapIndex(key uint64) uint64 { return key & (1<<KHOBitmapSizeLog2 - 1) }

// ensureRoot allocates the root node (kho_init's kzalloc(PAGE_SIZE)).
func (t *radix) ensureRoot() error {
	if t.hasRoot {
		return nil
	}
	pfn, err := allocMetaPage(t.h, &t.pages)
	if err != nil {
		return err
	}
	t.root, t.hasRoot = pfn, true
	return nil
}

// Preserve implements Tracker: kho_radix_add_page. When a node cannot be
// allocated, the nodes this call allocated are freed and the link to the
// first of them cleared: nothing is recorded.
func (t *radix) Preserve(pfn physmem.PFN, order uint) error {
	if err := t.ensureRoot(); err != nil {
		return err
	}
	key := RadixEncodeKey(pfn.Phys(), order)
	frames := t.h.mm.Frames
	prefix := key >> KHOBitmapSizeLog2
	if !t.lastOK || t.lastPrefix != prefix {
		var fresh [KHOTreeMaxDepth]physmem.PFN
		var anchor []byte
		anchorIdx := 0
		node := t.root
		for i := uint(KHOTreeMaxDepth - 1); i > 0; i-- {
			table := frames.Frame(node)
			idx := radixTableIndex(key, i)
			if next := le64(table, 8*idx); next != 0 {
				node = physmem.PhysAddr(next).PFN()
				continue
			}
			nn, err := allocMetaPage(t.h, &t.pages)
			if err != nil {
				for _, p := range fresh {
					if p != 0 {
						freeMetaPage(t.h, &t.pages, p-1)
					}
				}
				if anchor != nil {
					putLE64(anchor, 8*anchorIdx, 0)
				}
				return err
			}
			putLE64(table, 8*idx, uint64(nn.Phys()))
			if anchor == nil {
				anchor, anchorIdx = table, idx
			}
			fresh[i] = nn + 1
			node = nn
		}
		t.lastPrefix, t.lastLeaf, t.lastOK = prefix, node, true
	}
	b := radixBitmapIndex(key)
	frames.Frame(t.lastLeaf)[b>>3] |= 1 << (b & 7)
	return nil
}

// leafOf returns the leaf of key, if the tree has one.
func (t *radix) leafOf(key uint64) (physmem.PFN, bool) {
	prefix := key >> KHOBitmapSizeLog2
	if t.lastOK && t.lastPrefix == prefix {
		return t.lastLeaf, true
	}
	if !t.hasRoot {
		return 0, false
	}
	node := t.root
	for i := uint(KHOTreeMaxDepth - 1); i > 0; i-- {
		next := le64(t.h.mm.Frames.Frame(node), 8*radixTableIndex(key, i))
		if next == 0 {
			return 0, false
		}
		node = physmem.PhysAddr(next).PFN()
	}
	t.lastPrefix, t.lastLeaf, t.lastOK = prefix, node, true
	return node, true
}

// Unpreserve implements Tracker: kho_radix_del_page clears the bit and
// frees no node.
func (t *radix) Unpreserve(pfn physmem.PFN, order uint) {
	key := RadixEncodeKey(pfn.Phys(), order)
	leaf, ok := t.leafOf(key)
	if !ok {
		invariant.Panic("kexec", "radix-record", t.Dump(), "unpreserving %v order %d, which has no leaf", pfn, order)
	}
	b := radixBitmapIndex(key)
	t.h.mm.Frames.Frame(leaf)[b>>3] &^= 1 << (b & 7)
}

// WriteRoot implements Tracker: "preserved-memory-map" holds the root's
// address from the start (kho_out_fdt_setup). The root is allocated now if
// nothing was preserved yet, which may fail.
func (t *radix) WriteRoot(w *fdt.Writer) error {
	if err := t.ensureRoot(); err != nil {
		return err
	}
	b, err := w.PropertyPlaceholder(PreservedMemoryMapProp, 8)
	if err != nil {
		return err
	}
	putLE64(b, 0, uint64(t.root.Phys()))
	t.rootVal = b
	return nil
}

// MetadataPages implements Tracker.
func (t *radix) MetadataPages() iter.Seq[Mem] { return t.pages.seq() }

// MetadataFrames implements Tracker.
func (t *radix) MetadataFrames() uint64 { return uint64(t.pages.len()) }

// radixWalker walks a tree (__kho_radix_walk_tree). read returns the page
// at phys, which entry idx of the level-(level+1) node at parent links as
// a node of the given level (0: a leaf) covering the keys from key; leaf
// receives each leaf with its first key and returns false to stop.
type radixWalker struct {
	read func(phys uint64, level uint, key uint64, parent uint64, idx int) ([]byte, error)
	leaf func(key uint64, bm []byte) bool
}

// table walks the node of the given level at phys, whose keys start at
// start. It reports whether the walk went on to the end.
func (w *radixWalker) table(node []byte, phys uint64, level uint, start uint64) (bool, error) {
	shift := (level-1)*KHOTableSizeLog2 + KHOBitmapSizeLog2
	for i := range 1 << KHOTableSizeLog2 {
		child := le64(node, 8*i)
		if child == 0 {
			continue
		}
		key := start | uint64(i)<<shift
		page, err := w.read(child, level-1, key, phys, i)
		if err != nil {
			return false, err
		}
		if level == 1 {
			if !w.leaf(key, page) {
				return false, nil
			}
			continue
		}
		if ok, err := w.table(page, child, level-1, key); !ok || err != nil {
			return ok, err
		}
	}
	return true, nil
}

// Check implements Tracker: every preserved folio's bit is set and no
// other bit is (radix-record); the tree reaches every page the tracker
// owns, each once, and nothing else; while KHO is active the root's
// "preserved-memory-map" holds the root's address (radix-root).
func (t *radix) Check(preserved iter.Seq2[physmem.Folio, uint]) error {
	h := t.h
	frames := h.mm.Frames
	var n uint64
	for f, order := range preserved {
		key := RadixEncodeKey(f.PFN().Phys(), order)
		leaf, ok := t.leafOf(key)
		b := radixBitmapIndex(key)
		if !ok || frames.Frame(leaf)[b>>3]&(1<<(b&7)) == 0 {
			return h.violation("radix-record", "preserved %v (order %d) is not set in the tree", f, order)
		}
		n++
	}
	if !t.hasRoot {
		if n != 0 || t.pages.len() != 0 {
			return h.violation("radix-record", "no root, %d pages, %d folios preserved", t.pages.len(), n)
		}
		return nil
	}
	seen := map[physmem.PFN]bool{t.root: true}
	var set uint64
	w := radixWalker{
		read: func(phys uint64, level uint, key, parent uint64, idx int) ([]byte, error) {
			p := physmem.PhysAddr(phys)
			if !p.PageAligned() || !frames.Valid(p.PFN()) || !t.pages.has(p.PFN()) || seen[p.PFN()] {
				return nil, fmt.Errorf("node %#x entry %d links %#x: not a page of the tracker, or linked twice", parent, idx, phys)
			}
			seen[p.PFN()] = true
			return frames.Frame(p.PFN()), nil
		},
		leaf: func(_ uint64, bm []byte) bool { set += popcount(bm); return true },
	}
	if _, err := w.table(frames.Frame(t.root), uint64(t.root.Phys()), KHOTreeMaxDepth-1, 0); err != nil {
		return h.violation("radix-record", "%v", err)
	}
	if len(seen) != t.pages.len() {
		return h.violation("radix-record", "the tree reaches %d pages, the tracker owns %d", len(seen), t.pages.len())
	}
	if set != n {
		return h.violation("radix-record", "the tree has %d bits set for %d preserved folios", set, n)
	}
	if h.state == Active && !h.fdtTampered && t.rootVal != nil && le64(t.rootVal, 0) != uint64(t.root.Phys()) {
		return h.violation("radix-root", "the root's %s is %#x, the root is at %#x", PreservedMemoryMapProp, le64(t.rootVal, 0), uint64(t.root.Phys()))
	}
	return nil
}

// Dump implements Tracker.
func (t *radix) Dump() string {
	if !t.hasRoot {
		return "radix (kho-v2): no root yet"
	}
	return fmt.Sprintf("radix (kho-v2): root %#x, %d node pages", uint64(t.root.Phys()), t.pages.len())
}

// Recognise implements Tracker: "kho-v2" with an 8-byte
// "preserved-memory-map". A kho-v1 root (arrays or bitmaps) is refused.
func (t *radix) Recognise(f *fdt.FDT) string {
	if ok, err := f.NodeCheckCompatible(f.Root(), KHORadixCompatible); err != nil || !ok {
		if ok, err := f.NodeCheckCompatible(f.Root(), KHOCompatible); err == nil && ok {
			return fmt.Sprintf("root node is %q (KHO v4's arrays or mainline's bitmaps), not the %q radix tree this kernel reads",
				KHOCompatible, KHORadixCompatible)
		}
		return fmt.Sprintf("root node is not compatible with %q", KHORadixCompatible)
	}
	if _, err := f.GetPropLE64(f.Root(), PreservedMemoryMapProp); err != nil {
		return fmt.Sprintf("root has no u64 %q: %v", PreservedMemoryMapProp, err)
	}
	return ""
}

// radixKeyRanges returns, for each order up to MAX_PAGE_ORDER, the keys
// [lo, hi) of the folios memory of nframes frames can hold.
func radixKeyRanges(nframes uint64) (lo, hi [physmem.MaxPageOrder + 1]uint64) {
	for o := range lo {
		lo[o] = 1 << (KHOOrder0Log2 - o)
		hi[o] = lo[o] + (nframes-1)>>o + 1
	}
	return lo, hi
}

// inRadixLimit bounds the pages of a valid tree of memory of nframes
// frames: the root and, for each order and level, the nodes that cover
// its keys.
func inRadixLimit(nframes uint64) uint64 {
	lo, hi := radixKeyRanges(nframes)
	n := uint64(1)
	for level := uint(0); level < KHOTreeMaxDepth-1; level++ {
		shift := level*KHOTableSizeLog2 + KHOBitmapSizeLog2
		for o := range lo {
			n += (hi[o]-1)>>shift - lo[o]>>shift + 1
		}
	}
	return n
}

// walkIn walks the incoming tree, checking its structure as it goes: the
// root and every node pass inMetaCheck (inside memory, outside scratch, the
// FDT and this kernel's boot reservations, linked once, at most
// inRadixLimit pages), and every link covers keys of some folio of memory:
// an order up to MAX_PAGE_ORDER, an address inside memory. The first error
// ends the walk. kho_radix_walk_tree checks none of it.
func (t *radix) walkIn(f *fdt.FDT, leaf func(key uint64, bm []byte) bool) error {
	phys, err := f.GetPropLE64(f.Root(), PreservedMemoryMapProp)
	if err != nil {
		return err
	}
	if phys == 0 {
		return fmt.Errorf("the root's %s is 0: no tree (kho_mem_retrieve: -EINVAL)", PreservedMemoryMapProp)
	}
	nframes := t.h.mm.Frames.NumFrames()
	check := newInMetaCheck(t.h, inRadixLimit(nframes))
	lo, hi := radixKeyRanges(nframes)
	root, err := check.page(phys, "radix root", func() string { return "the root's " + PreservedMemoryMapProp })
	if err != nil {
		return err
	}
	w := radixWalker{
		read: func(phys uint64, level uint, key, parent uint64, idx int) ([]byte, error) {
			end := key + 1<<(level*KHOTableSizeLog2+KHOBitmapSizeLog2)
			valid := false
			for o := range lo {
				valid = valid || (key < hi[o] && lo[o] < end)
			}
			if !valid {
				return nil, fmt.Errorf("level-%d node %#x entry %d covers keys %#x-%#x, of no folio of memory (order beyond MAX_PAGE_ORDER or address beyond memory)",
					level+1, parent, idx, key, end-1)
			}
			what := "node"
			if level == 0 {
				what = "leaf"
			}
			return check.page(phys, what, func() string { return fmt.Sprintf("level-%d node %#x entry %d", level+1, parent, idx) })
		},
		leaf: leaf,
	}
	_, err = w.table(root, phys, KHOTreeMaxDepth-1, 0)
	return err
}

// Validate implements Tracker: the whole tree walks without error.
func (t *radix) Validate(f *fdt.FDT) error {
	return t.walkIn(f, func(uint64, []byte) bool { return true })
}

// Collect implements Tracker: kho_radix_walk_tree with
// kho_preserved_memory_reserve's ranges, in key order (by order, largest
// first, then by address). Every key of a leaf has the leaf's order.
func (t *radix) Collect(f *fdt.FDT, bad func(string, error)) iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		err := t.walkIn(f, func(key uint64, bm []byte) bool {
			base, order := RadixDecodeKey(key)
			return yieldBits(bm, uint64(base), order, yield)
		})
		if err != nil {
			bad("/"+PreservedMemoryMapProp, err)
		}
	}
}
