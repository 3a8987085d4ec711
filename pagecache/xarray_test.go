package pagecache

import (
	"errors"
	"slices"
	"testing"
	"unsafe"

	"khosim/errno"
	"khosim/invariant"
	"khosim/physmem"
)

func folio(pfn uint64) Entry { return FolioEntry(physmem.PFN(pfn)) }

func mustCheck(t *testing.T, xa *XArray) {
	t.Helper()
	if err := xa.CheckInvariants(); err != nil {
		t.Fatalf("%v\n%s", err, xa.Dump())
	}
}

func mustStore(t *testing.T, xa *XArray, index uint64, e Entry, order uint) Entry {
	t.Helper()
	old, err := xa.Store(index, e, order)
	if err != nil {
		t.Fatalf("Store(%#x, %v, %d): %v", index, e, order, err)
	}
	mustCheck(t, xa)
	return old
}

func TestEntryEncoding(t *testing.T) {
	for _, pfn := range []physmem.PFN{0, 1, 0x12345, MaxFolioPFN} {
		e := FolioEntry(pfn)
		if e.IsEmpty() || !e.IsFolio() || e.IsValue() || e.isInternal() || e.PFN() != pfn || !e.valid() {
			t.Errorf("FolioEntry(%#x) = %#x: folio %v value %v pfn %#x", uint64(pfn), uint64(e), e.IsFolio(), e.IsValue(), uint64(e.PFN()))
		}
		if uint64(e)&3 != 0 {
			t.Errorf("FolioEntry(%#x) = %#x is not pointer-aligned", uint64(pfn), uint64(e))
		}
	}
	for _, v := range []uint64{0, 1, 0xdead, MaxValue} {
		e := ValueEntry(v)
		if e.IsEmpty() || !e.IsValue() || e.IsFolio() || e.Value() != v || !e.valid() {
			t.Errorf("ValueEntry(%#x) = %#x", v, uint64(e))
		}
	}
	var null Entry
	if !null.IsEmpty() || null.IsValue() || null.IsFolio() || !null.valid() {
		t.Error("NULL entry misclassified")
	}
	for _, e := range []Entry{siblingEntry(0), siblingEntry(62), nodeEntry(1), nodeEntry(1 << 20), 8, VmemmapStart + 4} {
		if e.valid() || e.IsFolio() || e.IsValue() {
			t.Errorf("%#x (%v) accepted as a caller entry", uint64(e), e)
		}
	}
	if !siblingEntry(5).isSibling() || siblingEntry(5).isNode() || siblingEntry(5).siblingOffset() != 5 {
		t.Error("sibling encoding")
	}
	if !nodeEntry(7).isNode() || nodeEntry(7).isSibling() || nodeEntry(7).nodeID() != 7 {
		t.Error("node encoding")
	}
	for _, c := range []struct {
		e    Entry
		want string
	}{{0, "NULL"}, {ValueEntry(16), "value(0x10)"}, {folio(0x20), "folio(pfn 0x20)"}, {siblingEntry(3), "sibling(3)"}, {nodeEntry(9), "node(9)"}} {
		if got := c.e.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
	for name, f := range map[string]func(){
		"FolioEntry": func() { FolioEntry(MaxFolioPFN + 1) },
		"ValueEntry": func() { ValueEntry(MaxValue + 1) },
	} {
		func() {
			defer func() {
				if _, ok := recover().(*invariant.Violation); !ok {
					t.Errorf("%s out of range did not panic with a Violation", name)
				}
			}()
			f()
		}()
	}
}

func TestStoreErrors(t *testing.T) {
	cases := []struct {
		name  string
		index uint64
		e     Entry
		order uint
		want  error
	}{
		{"misaligned order 1", 1, folio(1), 1, errno.EINVAL},
		{"misaligned order 9", 512 + 64, folio(1), 9, errno.EINVAL},
		{"misaligned order 6", 65, folio(1), 6, errno.EINVAL},
		{"order 64", 0, folio(1), 64, errno.EINVAL},
		{"sibling entry", 0, siblingEntry(1), 0, errno.EINVAL},
		{"node entry", 0, nodeEntry(3), 0, errno.EINVAL},
		{"stray pointer", 0, 8, 0, errno.EINVAL},
		{"aligned order 63", 1 << 63, folio(1), 63, nil},
		{"aligned order 9", 512, ValueEntry(3), 9, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var xa XArray
			_, err := xa.Store(c.index, c.e, c.order)
			if !sameErr(err, c.want) {
				t.Fatalf("Store = %v, want %v", err, c.want)
			}
			if ierr := xa.Insert(c.index, c.e, c.order); c.want != nil && !sameErr(ierr, c.want) {
				t.Fatalf("Insert = %v, want %v", ierr, c.want)
			}
			if c.want != nil && !xa.Empty() {
				t.Fatalf("failed store changed the array:\n%s", xa.Dump())
			}
			mustCheck(t, &xa)
		})
	}
	var xa XArray
	if err := xa.Insert(0, 0, 0); err != errno.EINVAL {
		t.Errorf("Insert(NULL) = %v, want EINVAL", err)
	}
}

// TestIndexZeroHead covers the head states: empty, a lone entry at index 0
// kept in the head with its marks, growth into a node and shrinking back.
func TestIndexZeroHead(t *testing.T) {
	var xa XArray
	mustStore(t, &xa, 0, folio(7), 0)
	if xa.nrNodes != 0 || xa.head != folio(7) {
		t.Fatalf("lone entry at 0 should live in the head:\n%s", xa.Dump())
	}
	if err := xa.SetMark(0, XAMark1); err != nil || !xa.GetMark(0, XAMark1) || !xa.Marked(XAMark1) {
		t.Fatalf("head mark: %v", err)
	}
	mustStore(t, &xa, 1, folio(8), 0)
	if xa.nrNodes != 1 || !xa.GetMark(0, XAMark1) || xa.GetMark(1, XAMark1) {
		t.Fatalf("growth lost the head marks:\n%s", xa.Dump())
	}
	if got := xa.Erase(1); got != folio(8) {
		t.Fatalf("Erase(1) = %v", got)
	}
	mustCheck(t, &xa)
	if xa.nrNodes != 0 || xa.head != folio(7) || !xa.GetMark(0, XAMark1) {
		t.Fatalf("did not shrink back to the head:\n%s", xa.Dump())
	}
	if got := xa.Erase(0); got != folio(7) || !xa.Empty() || xa.Marked(XAMark1) {
		t.Fatalf("Erase(0) = %v, left:\n%s", got, xa.Dump())
	}
	// An order-1 entry at 0 needs a node even though it starts at 0.
	mustStore(t, &xa, 0, ValueEntry(1), 1)
	if xa.nrNodes != 1 || xa.Load(1) != ValueEntry(1) || xa.Load(2) != 0 {
		t.Fatalf("order 1 at 0:\n%s", xa.Dump())
	}
	mustStore(t, &xa, 0, folio(1), 0) // replaces all of it
	if xa.Load(1) != folio(1) {
		t.Fatalf("store into index 0 of an order-1 entry:\n%s", xa.Dump())
	}
}

func TestHugeIndices(t *testing.T) {
	var xa XArray
	top := ^uint64(0)
	mustStore(t, &xa, 1<<40, folio(1), 0)
	mustStore(t, &xa, top, folio(2), 0)
	mustStore(t, &xa, 0, folio(3), 0)
	if s := xa.root().shift; s != xaMaxShift {
		t.Fatalf("root shift %d for index 2^64-1, want %d", s, xaMaxShift)
	}
	for i, want := range map[uint64]Entry{0: folio(3), 1 << 40: folio(1), top: folio(2), top - 1: 0, 1<<40 + 1: 0} {
		if got := xa.Load(i); got != want {
			t.Errorf("Load(%#x) = %v, want %v", i, got, want)
		}
	}
	var b Batch
	next, more := xa.Extract(1, top, &b)
	if more || next != 0 || !slices.Equal(b.Entries(), []Found{{Index: 1 << 40, Entry: folio(1)}, {Index: top, Entry: folio(2)}}) {
		t.Fatalf("Extract(1, max) = %v next %#x more %v", b.Entries(), next, more)
	}
	// Order 63 entries: half the index space each.
	mustStore(t, &xa, 1<<63, ValueEntry(9), 63)
	if xa.Load(top) != ValueEntry(9) || xa.Load(1<<63) != ValueEntry(9) || xa.Load(1<<40) != folio(1) {
		t.Fatalf("order 63:\n%s", xa.Dump())
	}
	if c := xa.Counts(); c.Entries != 3 || c.Indices != 1<<63+2 || c.ValueIndices != 1<<63 {
		t.Fatalf("Counts = %+v", c)
	}
	xa.Erase(1<<63 + 12345)
	xa.Erase(1 << 40)
	mustCheck(t, &xa)
	if xa.nrNodes != 0 || xa.head != folio(3) {
		t.Fatalf("did not shrink to the head:\n%s", xa.Dump())
	}
	// A store of a range larger than the whole tree, at 0, erases it all.
	mustStore(t, &xa, 5, folio(4), 0)
	if old := mustStore(t, &xa, 0, 0, 40); old != folio(3) || !xa.Empty() {
		t.Fatalf("Store(0, NULL, 40) = %v, left:\n%s", old, xa.Dump())
	}
}

// TestShrinkToEmptyReusesNodes fills a dense range, erases it in a
// scrambled order and checks the tree vanishes, then refills it from the
// free list without growing the arena.
func TestShrinkToEmptyReusesNodes(t *testing.T) {
	var xa XArray
	const n = 1 << 13
	for i := uint64(0); i < n; i++ {
		if _, err := xa.Store(i, folio(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, &xa)
	nodes, arena := xa.nrNodes, int(xa.nrIDs)
	if nodes != 1+2+128 { // shift 12 root, two shift-6 nodes, 128 leaves
		t.Fatalf("%d nodes for %d dense entries", nodes, n)
	}
	for i := uint64(0); i < n; i++ {
		j := (i * 4099) % n // 4099 is odd: a permutation
		if got := xa.Erase(j); got != folio(j) {
			t.Fatalf("Erase(%#x) = %v", j, got)
		}
	}
	mustCheck(t, &xa)
	if !xa.Empty() || xa.nrNodes != 0 || xa.nrFree != nodes {
		t.Fatalf("after erasing all: empty %v nodes %d free %d", xa.Empty(), xa.nrNodes, xa.nrFree)
	}
	for i := uint64(0); i < n; i++ {
		xa.Store(i, folio(i), 0)
	}
	mustCheck(t, &xa)
	if int(xa.nrIDs) != arena {
		t.Fatalf("refill grew the arena from %d to %d ids", arena, int(xa.nrIDs))
	}
}

func TestMultiIndex(t *testing.T) {
	var xa XArray
	big := folio(0x200)
	mustStore(t, &xa, 512, big, 9)
	if err := xa.SetMark(700, PageCacheTagDirty); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{512, 513, 600, 1023} {
		f, ok := xa.Lookup(i)
		if !ok || f != (Found{Index: 512, Entry: big, Order: 9}) || !xa.GetMark(i, PageCacheTagDirty) {
			t.Errorf("Lookup(%d) = %+v %v", i, f, ok)
		}
	}
	for _, i := range []uint64{511, 1024} {
		if xa.Load(i) != 0 {
			t.Errorf("Load(%d) outside the entry = %v", i, xa.Load(i))
		}
	}
	// Insert conflicts: inside, around, overlapping.
	for _, c := range []struct {
		index uint64
		order uint
		want  error
	}{{600, 0, errno.EEXIST}, {768, 8, errno.EEXIST}, {0, 10, errno.EEXIST}, {1023, 0, errno.EEXIST}, {256, 8, nil}, {1024, 0, nil}} {
		if err := xa.Insert(c.index, ValueEntry(c.index), c.order); !sameErr(err, c.want) {
			t.Errorf("Insert(%d, order %d) = %v, want %v", c.index, c.order, err, c.want)
		}
		mustCheck(t, &xa)
	}
	// Storing into one index replaces the whole entry, keeping order and marks.
	if old := mustStore(t, &xa, 700, folio(1), 0); old != big {
		t.Errorf("Store into the entry returned %v", old)
	}
	if f, _ := xa.Lookup(513); f != (Found{Index: 512, Entry: folio(1), Order: 9}) || !xa.GetMark(513, PageCacheTagDirty) {
		t.Errorf("after store into a multi-index entry: %+v", f)
	}
	// Erasing a sibling index erases all of it.
	if got := xa.Erase(1000); got != folio(1) {
		t.Errorf("Erase(sibling index) = %v", got)
	}
	mustCheck(t, &xa)
	for i := uint64(512); i < 1024; i++ {
		if xa.Load(i) != 0 {
			t.Fatalf("Load(%d) = %v after erase", i, xa.Load(i))
		}
	}
	if xa.Marked(PageCacheTagDirty) {
		t.Errorf("dirty mark survived the erase")
	}
	// A larger store swallows smaller entries and squashes their marks.
	mustStore(t, &xa, 64, folio(2), 0)
	mustStore(t, &xa, 66, folio(3), 1)
	xa.SetMark(66, PageCacheTagTowrite)
	if old := mustStore(t, &xa, 64, ValueEntry(5), 6); old != folio(2) {
		t.Errorf("order-6 store returned %v", old)
	}
	if c := xa.Counts(); c.Entries != 3 || !xa.GetMark(127, PageCacheTagTowrite) || xa.GetMark(127, PageCacheTagDirty) {
		t.Errorf("after squash: %+v\n%s", c, xa.Dump())
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		from, to uint
		base     uint64
	}{{9, 0, 512}, {9, 3, 1 << 30}, {9, 6, 0}, {11, 0, 1 << 13}, {13, 7, 0}, {13, 6, 1 << 13}, {6, 0, 64}, {3, 1, 8}, {12, 6, 4096}, {17, 6, 0}} {
		var xa XArray
		mustStore(t, &xa, c.base, folio(1), c.from)
		xa.SetMark(c.base, XAMark2)
		if err := xa.Split(c.base+1, c.to); err != nil {
			t.Fatalf("Split %d->%d: %v", c.from, c.to, err)
		}
		mustCheck(t, &xa)
		var got []Found
		for f := range xa.All() {
			got = append(got, f)
			if !xa.GetMark(f.Index, XAMark2) {
				t.Errorf("split %d->%d: %#x lost its mark", c.from, c.to, f.Index)
			}
		}
		if len(got) != 1<<(c.from-c.to) {
			t.Fatalf("split %d->%d gave %d entries", c.from, c.to, len(got))
		}
		for k, f := range got {
			if f != (Found{Index: c.base + uint64(k)<<c.to, Entry: folio(1), Order: uint8(c.to)}) {
				t.Fatalf("split %d->%d: entry %d is %+v", c.from, c.to, k, f)
			}
		}
	}
	var xa XArray
	mustStore(t, &xa, 8, folio(1), 3)
	for _, c := range []struct {
		index uint64
		order uint
		want  error
	}{{0, 0, errno.ENOENT}, {8, 4, errno.EINVAL}, {9, 3, nil}, {9, 64, errno.EINVAL}} {
		if err := xa.Split(c.index, c.order); !sameErr(err, c.want) {
			t.Errorf("Split(%d, %d) = %v, want %v", c.index, c.order, err, c.want)
		}
	}
	mustCheck(t, &xa)
	// Too far for one xas_split(): order 12 to 0, order 18 to 5.
	mustStore(t, &xa, 1<<12, folio(2), 12)
	mustStore(t, &xa, 1<<18, folio(3), 18)
	for _, c := range []struct {
		index uint64
		order uint
	}{{1 << 12, 0}, {1 << 18, 5}} {
		if err := xa.Split(c.index, c.order); err != errno.ENOMEM {
			t.Errorf("Split(%#x, %d) = %v, want ENOMEM", c.index, c.order, err)
		}
	}
	mustCheck(t, &xa)
}

func TestMarksPropagate(t *testing.T) {
	var xa XArray
	for i := uint64(0); i < 1<<14; i += 3 {
		xa.Store(i<<20, folio(i), 0)
	}
	target := uint64(4242*3) << 20
	if err := xa.SetMark(target, XAMark0); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, &xa)
	if f, ok := xa.FindMarked(0, ^uint64(0), XAMark0); !ok || f.Index != target {
		t.Fatalf("FindMarked = %+v %v", f, ok)
	}
	if _, ok := xa.FindMarked(target+1, ^uint64(0), XAMark0); ok {
		t.Fatal("FindMarked past the only mark found one")
	}
	if err := xa.ClearMark(target, XAMark0); err != nil || xa.Marked(XAMark0) {
		t.Fatalf("ClearMark: %v, still marked %v", err, xa.Marked(XAMark0))
	}
	mustCheck(t, &xa)
	if err := xa.SetMark(1, XAMark0); err != errno.ENOENT {
		t.Errorf("SetMark on a hole = %v", err)
	}
	if err := xa.ClearMark(1, XAMark0); err != errno.ENOENT {
		t.Errorf("ClearMark on a hole = %v", err)
	}
}

func TestBatchBoundaries(t *testing.T) {
	var xa XArray
	for i := uint64(0); i < 62; i++ {
		xa.Store(i, folio(i), 0)
	}
	xa.Store(64, ValueEntry(1), 6) // 64..127, one entry
	xa.Store(256, folio(9), 8)     // 256..511
	all := slices.Collect(xa.All())
	cases := []struct {
		name       string
		start, max uint64
		want       []Found
		next       uint64
		more       bool
	}{
		{"exactly full at max", 0, 30, all[:31], 31, false},
		{"one more than a batch", 0, 31, all[:31], 31, true},
		{"batch filled short of max", 31, 63, all[31:62], 62, true},
		{"rest after a full batch", 62, 63, nil, 64, false},
		{"start inside a multi-index entry", 100, 200, all[62:63], 201, false},
		{"multi-index entry ending past max", 300, 400, all[63:64], 401, false},
		{"hole", 128, 255, nil, 256, false},
		{"start above max", 10, 9, nil, 10, false},
		{"everything, from the top", 61, ^uint64(0), all[61:], 0, false},
	}
	for _, c := range cases {
		var b Batch
		next, more := xa.Extract(c.start, c.max, &b)
		if !slices.Equal(b.Entries(), c.want) || next != c.next || more != c.more {
			t.Errorf("%s: Extract(%d, %d) = %v next %d more %v; want %v next %d more %v",
				c.name, c.start, c.max, b.Entries(), next, more, c.want, c.next, c.more)
		}
	}
	// Appending: a batch with room for 1 takes 1.
	var b Batch
	b.nr = BatchSize - 1
	if next, more := xa.Extract(5, 10, &b); b.Len() != BatchSize || next != 6 || !more || b.At(BatchSize-1).Index != 5 {
		t.Errorf("appending to a nearly full batch: len %d next %d more %v", b.Len(), next, more)
	}
	if next, more := xa.Extract(6, 10, &b); next != 6 || !more {
		t.Errorf("Extract into a full batch = %d %v", next, more)
	}
	b.Reinit()
	if b.Len() != 0 || b.Space() != BatchSize {
		t.Error("Reinit")
	}
}

// TestRangeModify erases entries while ranging over them, as truncate
// loops do with xa_for_each().
func TestRangeModify(t *testing.T) {
	var xa XArray
	for i := uint64(0); i < 300; i++ {
		xa.Store(i*5, folio(i), 0)
	}
	seen := 0
	for f := range xa.Range(0, ^uint64(0)) {
		seen++
		xa.Erase(f.Index)
		xa.Erase(f.Index + 5) // the next one: must not be visited
	}
	if seen != 150 || !xa.Empty() {
		t.Fatalf("visited %d, empty %v", seen, xa.Empty())
	}
	mustCheck(t, &xa)
}

// TestCheckDetectsCorruption breaks the tree in the ways the checker
// promises to notice.
func TestCheckDetectsCorruption(t *testing.T) {
	build := func() *XArray {
		xa := &XArray{}
		for i := uint64(0); i < 200; i++ {
			xa.Store(i, folio(i), 0)
		}
		xa.Store(512, ValueEntry(1), 3)
		xa.Store(1<<20, folio(1), 7)
		xa.SetMark(5, XAMark0)
		return xa
	}
	leaf := func(xa *XArray, index uint64) *xaNode {
		n, _, _ := xa.locate(index)
		return n
	}
	cases := []struct {
		name    string
		corrupt func(xa *XArray)
		want    string
	}{
		{"count", func(xa *XArray) { leaf(xa, 5).count-- }, "xa-node-count"},
		{"nr_values", func(xa *XArray) { leaf(xa, 512).nrValues++ }, "xa-node-count"},
		{"stray sibling", func(xa *XArray) { n := leaf(xa, 5); n.slots[5] = siblingEntry(3) }, "xa-sibling"},
		{"misaligned multi-index", func(xa *XArray) {
			n := leaf(xa, 512)
			n.slots[n.offsetOf(512)+3] = 0 // 2 siblings: an order-2.6 entry
			n.count--
			n.nrValues--
		}, "xa-multi-index-aligned"},
		{"mark on a sibling", func(xa *XArray) { n := leaf(xa, 512); n.marks[1] |= 1 << (n.offsetOf(512) + 1) }, "xa-marks"},
		{"mark not propagated", func(xa *XArray) { n := leaf(xa, 5); xa.parentOf(n).marks[0] = 0 }, "xa-marks"},
		{"head marks", func(xa *XArray) { xa.marks |= 4 }, "xa-head-marks"},
		{"parent offset", func(xa *XArray) { leaf(xa, 100).offset = 9 }, "xa-node-parent"},
		{"shift", func(xa *XArray) { leaf(xa, 5).shift = 6 }, "xa-node-shift"},
		{"counts", func(xa *XArray) { xa.counts.Indices++ }, "xa-counts"},
		{"bad entry", func(xa *XArray) { leaf(xa, 5).slots[6] = 12 }, "xa-entry-encoding"},
		{"empty node", func(xa *XArray) {
			n := leaf(xa, 1<<20)
			c := n.offsetOf(1 << 20)
			for s := c; s < c+2; s++ {
				n.slots[s] = 0
			}
			n.count = 0
			xa.counts = Counts{Entries: 201, Indices: 208, ValueEntries: 1, ValueIndices: 8}
		}, "xa-empty-node"},
		{"freed node in tree", func(xa *XArray) { leaf(xa, 5).shift = freedShift }, "xa-node-arena"},
		{"free list", func(xa *XArray) { xa.Erase(1 << 20); xa.nrFree++ }, "xa-node-arena"},
		{"free list cycle", func(xa *XArray) {
			xa.Erase(1 << 20)
			xa.at(xa.free).parent = xa.free
		}, "xa-node-arena"},
		{"unshrunk root", func(xa *XArray) {
			n := xa.allocNode(uint(xa.root().shift)+XAChunkShift, 0, 0)
			n.slots[0], n.count = xa.head, 1
			n.marks[0] = 1
			xa.root().parent = n.id
			xa.head = nodeEntry(n.id)
		}, "xa-root-shrink"},
	}
	for _, c := range cases {
		xa := build()
		mustCheck(t, xa)
		c.corrupt(xa)
		err := xa.CheckInvariants()
		var v *invariant.Violation
		if !errors.As(err, &v) || v.Invariant != c.want || v.Dump == "" {
			t.Errorf("%s: CheckInvariants() = %v, want violation %q", c.name, err, c.want)
		}
	}
}

// TestNodesForAndReserve checks that NodesFor counts exactly the nodes a
// dense file needs, and that ReserveNodes sizes the arena so that filling
// it neither grows nor moves the arena, leaving the tree as it would be.
func TestNodesForAndReserve(t *testing.T) {
	for _, tc := range []struct {
		span  uint64
		order uint
	}{
		{1, 0}, {64, 0}, {65, 0}, {4096, 0}, {4097, 0}, {300000, 0},
		{512, 9}, {4096, 9}, {1 << 20, 9}, {64, 6}, {8192, 6},
	} {
		var plain, reserved AddressSpace
		plain.id, reserved.id = 1, 1
		want := NodesFor(tc.span, tc.order)
		reserved.ReserveNodes(tc.span, tc.order)
		nodes := reserved.iPages.nodes
		for index := uint64(0); index < tc.span; index += 1 << tc.order {
			pfn := physmem.PFN(index + 1<<tc.order)
			if err := plain.InsertFolio(pfn, index, tc.order); err != nil {
				t.Fatal(err)
			}
			if err := reserved.InsertFolio(pfn, index, tc.order); err != nil {
				t.Fatal(err)
			}
		}
		got := plain.iPages.nrNodes
		if tc.span <= 1 && tc.order == 0 {
			want = 0 // a lone entry at index 0 lives in the head
		}
		if got != want {
			t.Errorf("span %d order %d: the tree has %d nodes, NodesFor says %d", tc.span, tc.order, got, want)
		}
		if want > 0 && unsafe.SliceData(reserved.iPages.nodes) != unsafe.SliceData(nodes) {
			t.Errorf("span %d order %d: the arena moved after ReserveNodes", tc.span, tc.order)
		}
		if plain.iPages.Counts() != reserved.iPages.Counts() || plain.iPages.nrNodes != reserved.iPages.nrNodes {
			t.Errorf("span %d order %d: reserving changed the tree", tc.span, tc.order)
		}
		if err := reserved.iPages.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}
