package pagecache

import (
	"fmt"
	"math/bits"
	"strings"

	"khosim/invariant"
)

// CheckInvariants verifies the structure of the tree, in the spirit of
// xa_dump() and the XA_NODE_BUG_ON() checks of lib/xarray.c:
//
//   - head: NULL with nothing else, an order-0 entry standing alone, or the
//     root node, which has no parent and is not shrinkable (xas_shrink()
//     would have replaced it by its only slot);
//   - every node: a multiple-of-6 shift, one level below its parent, parent
//     id and offset naming the slot that points at it, not on the free
//     list, never empty, count and nrValues matching its slots, nothing in
//     slots beyond the 64-bit index space;
//   - multi-index entries: a canonical slot followed by a power-of-two
//     number of slots of which all but the first are siblings naming it,
//     aligned to that number; no stray sibling;
//   - marks only on canonical or node slots, a node slot's mark set exactly
//     when the child has that mark anywhere, head marks summarising the
//     root;
//   - reservations (XA_ZERO_ENTRY) canonical like entries, never marked;
//   - Counts and the node census matching a full walk; with a node cache,
//     every node in the tree holding a slab object (none without), and no
//     object left preloaded between operations.
//
// It returns nil or an *invariant.Violation whose dump shows the path to
// the offending node and the node itself.
func (xa *XArray) CheckInvariants() error {
	c := xaChecker{xa: xa, seen: make(map[uint32]bool)}
	if v := c.check(); v != nil {
		return v
	}
	return nil
}

type xaChecker struct {
	xa     *XArray
	seen   map[uint32]bool
	counts Counts
}

func (c *xaChecker) fail(n *xaNode, name, detail string, args ...any) *invariant.Violation {
	dump := c.xa.dumpHead()
	if n != nil {
		dump += c.xa.dumpPath(n)
	}
	return invariant.New("pagecache", name, dump, detail, args...)
}

func (c *xaChecker) check() *invariant.Violation {
	xa := c.xa
	head := xa.head
	switch {
	case head == 0:
		if xa.marks != 0 {
			return c.fail(nil, "xa-head-marks", "empty array has marks %03b", xa.marks)
		}
	case head == zeroEntry:
		if xa.marks != 0 {
			return c.fail(nil, "xa-marks", "reserved head has marks %03b", xa.marks)
		}
		c.counts = Counts{Reserved: 1}
	case !head.isNode():
		if !head.valid() {
			return c.fail(nil, "xa-entry-encoding", "head holds %v", head)
		}
		c.counts = Counts{Entries: 1, Indices: 1}
		if head.IsValue() {
			c.counts.ValueEntries, c.counts.ValueIndices = 1, 1
		}
	default:
		id := head.nodeID()
		if id == 0 || id >= xa.nrIDs {
			return c.fail(nil, "xa-node-arena", "head names node %d outside the arena", id)
		}
		root := xa.at(id)
		if root.parent != 0 || root.offset != 0 {
			return c.fail(root, "xa-node-parent", "root has parent %d offset %d", root.parent, root.offset)
		}
		if v := c.walk(root, 0); v != nil {
			return v
		}
		e := root.slots[0]
		if root.count == 1 && e != 0 && (e.isNode() || root.shift == 0) {
			return c.fail(root, "xa-root-shrink", "root's only slot 0 holds %v: the tree should have shrunk", e)
		}
		for m := range xaMarkCount {
			if (root.marks[m] != 0) != (xa.marks&(1<<m) != 0) {
				return c.fail(root, "xa-head-marks", "head mark %d is %v but the root's bitmap is %#x",
					m, xa.marks&(1<<m) != 0, root.marks[m])
			}
		}
	}
	if c.counts != xa.counts {
		return c.fail(nil, "xa-counts", "counts %+v, walk found %+v", xa.counts, c.counts)
	}
	if len(xa.preload) != 0 {
		return c.fail(nil, "xa-preload", "%d node objects preloaded between operations", len(xa.preload))
	}
	if xa.nrNodes != len(c.seen) {
		return c.fail(nil, "xa-node-arena", "nrNodes %d, walk found %d", xa.nrNodes, len(c.seen))
	}
	if xa.nrIDs > 0 && int(xa.nrIDs) != 1+xa.nrNodes+xa.nrFree {
		return c.fail(nil, "xa-node-arena", "arena of %d ids holds %d nodes in the tree and %d free",
			xa.nrIDs-1, xa.nrNodes, xa.nrFree)
	}
	free := 0
	for id := xa.free; id != 0; id = xa.at(id).parent {
		if id >= xa.nrIDs || c.seen[id] || xa.at(id).shift != freedShift || free == xa.nrFree {
			return c.fail(nil, "xa-node-arena", "free list entry %d (after %d) is out of the arena, in the tree, not wiped or one too many",
				id, free)
		}
		c.seen[id] = true // a cycle then shows as "in the tree"
		free++
	}
	if free != xa.nrFree {
		return c.fail(nil, "xa-node-arena", "nrFree %d, free list holds %d", xa.nrFree, free)
	}
	return nil
}

// walk checks node n, whose slot 0 covers index base, and its subtree.
func (c *xaChecker) walk(n *xaNode, base uint64) *invariant.Violation {
	xa := c.xa
	if c.seen[n.id] {
		return c.fail(n, "xa-node-arena", "node %d reached twice", n.id)
	}
	c.seen[n.id] = true
	if n.shift == freedShift {
		return c.fail(n, "xa-node-arena", "node %d is in the tree but freed", n.id)
	}
	if n.shift%XAChunkShift != 0 || n.shift > xaMaxShift {
		return c.fail(n, "xa-node-shift", "shift %d", n.shift)
	}
	if n.count == 0 {
		return c.fail(n, "xa-empty-node", "node %d has no entries", n.id)
	}
	if xa.cache != nil && (int(n.id) >= len(xa.objs) || xa.objs[n.id] == 0) {
		return c.fail(n, "xa-node-charged", "node %d holds no radix_tree_node object", n.id)
	}
	reach := uint(XAChunkSize)
	if n.shift == xaMaxShift {
		reach = 1 << (64 - xaMaxShift) // slots 0..15
	}
	var count, values uint
	for s := uint(0); s < XAChunkSize; s++ {
		e := n.slots[s]
		if e == 0 {
			if v := c.checkMarkless(n, s, "an empty"); v != nil {
				return v
			}
			continue
		}
		count++
		if s >= reach {
			return c.fail(n, "xa-slot-range", "slot %d holds %v beyond the index space", s, e)
		}
		switch {
		case e.isSibling():
			return c.fail(n, "xa-sibling", "slot %d holds %v with no canonical entry before it", s, e)
		case e.isNode():
			id := e.nodeID()
			if id >= xa.nrIDs || id == 0 {
				return c.fail(n, "xa-node-arena", "slot %d names node %d outside the arena", s, id)
			}
			child := xa.at(id)
			if child.shift == freedShift {
				return c.fail(child, "xa-node-arena", "slot %d names node %d, which is free", s, id)
			}
			if child.parent != n.id || uint(child.offset) != s {
				return c.fail(child, "xa-node-parent", "node %d in slot %d of node %d records parent %d offset %d",
					id, s, n.id, child.parent, child.offset)
			}
			if child.shift+XAChunkShift != n.shift {
				return c.fail(child, "xa-node-shift", "node of shift %d under a node of shift %d", child.shift, n.shift)
			}
			for m := range xaMarkCount {
				if (n.marks[m]&(1<<s) != 0) != (child.marks[m] != 0) {
					return c.fail(child, "xa-marks", "slot %d mark %d is %v but the child's bitmap is %#x",
						s, m, n.marks[m]&(1<<s) != 0, child.marks[m])
				}
			}
			if v := c.walk(child, base+uint64(s)<<n.shift); v != nil {
				return v
			}
		case !e.valid() && e != zeroEntry:
			return c.fail(n, "xa-entry-encoding", "slot %d holds %v", s, e)
		default:
			k := n.siblingsAfter(s)
			if (k+1)&k != 0 || s%(k+1) != 0 {
				return c.fail(n, "xa-multi-index-aligned", "entry at slot %d has %d siblings", s, k)
			}
			for t := s + 1; t <= s+k; t++ {
				if v := c.checkMarkless(n, t, "a sibling"); v != nil {
					return v
				}
			}
			order := uint(n.shift) + uint(bits.Len(k))
			count += k
			s += k
			if e == zeroEntry {
				if v := c.checkMarkless(n, s-k, "a reserved"); v != nil {
					return v
				}
				c.counts.Reserved++
				continue
			}
			c.counts.Entries++
			c.counts.Indices += uint64(1) << order
			if e.IsValue() {
				c.counts.ValueEntries++
				c.counts.ValueIndices += uint64(1) << order
				values += k + 1
			}
		}
	}
	if count != uint(n.count) || values != uint(n.nrValues) {
		return c.fail(n, "xa-node-count", "count %d nr_values %d, slots hold %d and %d",
			n.count, n.nrValues, count, values)
	}
	return nil
}

func (c *xaChecker) checkMarkless(n *xaNode, s uint, what string) *invariant.Violation {
	for m := range xaMarkCount {
		if n.marks[m]&(1<<s) != 0 {
			return c.fail(n, "xa-marks", "mark %d set on %s slot %d", m, what, s)
		}
	}
	return nil
}

// dumpHead renders the array's head and counters.
func (xa *XArray) dumpHead() string {
	return fmt.Sprintf("xarray head=%v marks=%03b nodes=%d free=%d counts=%+v\n",
		xa.head, xa.marks, xa.nrNodes, xa.nrFree, xa.counts)
}

// dumpPath renders the chain of nodes from the root down to n, then n.
func (xa *XArray) dumpPath(n *xaNode) string {
	var path []*xaNode
	for p := n; p != nil; p = xa.parentOf(p) {
		path = append(path, p)
		if len(path) > 12 {
			break // a parent cycle; the dump says enough
		}
	}
	var b strings.Builder
	for i := len(path) - 1; i > 0; i-- {
		p := path[i]
		fmt.Fprintf(&b, "  node %d shift %d offset %d count %d -> slot %d\n",
			p.id, p.shift, p.offset, p.count, path[i-1].offset)
	}
	b.WriteString(dumpNode(n))
	return b.String()
}

// dumpNode renders one node the way xa_dump_node() does, with its
// non-empty slots.
func dumpNode(n *xaNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  node %d: shift %d offset %d parent %d count %d nr_values %d marks %#x %#x %#x\n",
		n.id, n.shift, n.offset, n.parent, n.count, n.nrValues, n.marks[0], n.marks[1], n.marks[2])
	for s, e := range n.slots {
		if e != 0 {
			fmt.Fprintf(&b, "    [%2d] %v\n", s, e)
		}
	}
	return b.String()
}

// Dump renders the whole tree (xa_dump()), for debugging and test failures.
func (xa *XArray) Dump() string {
	var b strings.Builder
	b.WriteString(xa.dumpHead())
	var rec func(n *xaNode, depth int)
	rec = func(n *xaNode, depth int) {
		for _, line := range strings.Split(strings.TrimRight(dumpNode(n), "\n"), "\n") {
			b.WriteString(strings.Repeat("  ", depth) + line + "\n")
		}
		for _, e := range n.slots {
			if e.isNode() && depth < 12 {
				rec(xa.node(e), depth+1)
			}
		}
	}
	if xa.head.isNode() {
		rec(xa.root(), 0)
	}
	return b.String()
}
