package pagecache

import (
	"errors"
	"slices"

	"khosim/errno"
	"khosim/fault"
	"khosim/physmem"
)

// xaModel is the reference the XArray is tested against: a map from base
// index to (entry, order, marks), with the semantics Store documents
// written out the obvious way.
type xaModel struct {
	m map[uint64]modelEntry
}

type modelEntry struct {
	e     Entry
	order uint
	marks uint8
}

func newModel() *xaModel { return &xaModel{m: make(map[uint64]modelEntry)} }

func span(order uint) uint64 { return uint64(1) << order }

// lookup returns the entry covering i; a reservation is no entry.
func (md *xaModel) lookup(i uint64) (uint64, modelEntry, bool) {
	b, me, ok := md.lookupAny(i)
	if !ok || me.e == zeroEntry {
		return 0, modelEntry{}, false
	}
	return b, me, true
}

// lookupAny returns the entry or reservation covering i.
func (md *xaModel) lookupAny(i uint64) (uint64, modelEntry, bool) {
	for o := uint(0); o <= MaxOrder; o++ {
		b := i &^ (span(o) - 1)
		if me, ok := md.m[b]; ok && i-b < span(me.order) {
			return b, me, true
		}
	}
	return 0, modelEntry{}, false
}

func (md *xaModel) load(i uint64) Entry {
	_, me, _ := md.lookup(i)
	return me.e
}

func (md *xaModel) store(index uint64, e Entry, order uint) (Entry, error) {
	if order > MaxOrder || index%span(order) != 0 || !e.valid() {
		return 0, errno.EINVAL
	}
	return md.storeMarks(index, e, order, 0), nil
}

func (md *xaModel) storeMarks(index uint64, e Entry, order uint, add uint8) Entry {
	old := md.load(index)
	if b, me, ok := md.lookupAny(index); ok && me.order > order {
		if e == 0 {
			delete(md.m, b)
		} else {
			me.e = e
			me.marks |= add
			md.m[b] = me
		}
		return old
	}
	last := index + (span(order) - 1)
	marks := add
	for b, me := range md.m {
		if b >= index && b <= last {
			marks |= me.marks
			delete(md.m, b)
		}
	}
	if e != 0 {
		md.m[index] = modelEntry{e: e, order: order, marks: marks}
	}
	return old
}

func (md *xaModel) insert(index uint64, e Entry, order uint) error {
	if order > MaxOrder || index%span(order) != 0 || e == 0 || !e.valid() {
		return errno.EINVAL
	}
	last := index + (span(order) - 1)
	if len(md.overlapping(index, last, filterPresent)) > 0 || len(md.overlapping(index, last, filterReserved)) > 0 {
		return errno.EEXIST
	}
	md.storeMarks(index, e, order, 0)
	return nil
}

// reserve is XArray.Reserve's contract.
func (md *xaModel) reserve(index uint64, order uint) error {
	if order > MaxOrder || index%span(order) != 0 {
		return errno.EINVAL
	}
	if len(md.overlapping(index, index+(span(order)-1), filterPresent)) > 0 {
		return errno.EEXIST
	}
	if _, me, ok := md.lookupAny(index); ok && me.e == zeroEntry && me.order >= order {
		return nil
	}
	md.storeMarks(index, zeroEntry, order, 0)
	return nil
}

// release is XArray.Release's contract.
func (md *xaModel) release(index uint64) {
	if b, me, ok := md.lookupAny(index); ok && me.e == zeroEntry {
		delete(md.m, b)
	}
}

func (md *xaModel) split(index uint64, order uint) error {
	b, me, ok := md.lookup(index)
	switch {
	case !ok:
		return errno.ENOENT
	case order > me.order:
		return errno.EINVAL
	case order == me.order:
		return nil
	case order-order%6+12 <= me.order:
		return errno.ENOMEM
	}
	delete(md.m, b)
	for i := uint64(0); i < span(me.order-order); i++ {
		md.m[b+i*span(order)] = modelEntry{e: me.e, order: order, marks: me.marks}
	}
	return nil
}

func (md *xaModel) setMark(index uint64, m Mark, set bool) error {
	b, me, ok := md.lookup(index)
	if !ok {
		return errno.ENOENT
	}
	if set {
		me.marks |= 1 << m.m
	} else {
		me.marks &^= 1 << m.m
	}
	md.m[b] = me
	return nil
}

func (md *xaModel) getMark(index uint64, m Mark) bool {
	_, me, ok := md.lookup(index)
	return ok && me.marks&(1<<m.m) != 0
}

// overlapping returns the entries passing filter that cover an index of
// [start, max], in index order.
func (md *xaModel) overlapping(start, max uint64, filter int) []Found {
	var out []Found
	for b, me := range md.m {
		if (filter == filterReserved) != (me.e == zeroEntry) || filter >= 0 && me.marks&(1<<filter) == 0 {
			continue
		}
		if b <= max && b+(span(me.order)-1) >= start {
			out = append(out, Found{Index: b, Entry: me.e, Order: uint8(me.order)})
		}
	}
	slices.SortFunc(out, func(a, b Found) int {
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	return out
}

// extract is the model of XArray.extract into an empty batch.
func (md *xaModel) extract(start, max uint64, filter int, whole bool) ([]Found, uint64, bool) {
	if start > max {
		return nil, max + 1, false
	}
	var out []Found
	for _, f := range md.overlapping(start, max, filter) {
		if !whole || (f.Index >= start && f.Last() <= max) {
			out = append(out, f)
		}
		if f.Last() >= max {
			break
		}
		if len(out) == BatchSize {
			return out, f.Last() + 1, true
		}
	}
	return out, max + 1, false
}

func (md *xaModel) counts() Counts {
	var c Counts
	for _, me := range md.m {
		if me.e == zeroEntry {
			c.Reserved++
			continue
		}
		c.Entries++
		c.Indices += span(me.order)
		if me.e.IsValue() {
			c.ValueEntries++
			c.ValueIndices += span(me.order)
		}
	}
	return c
}

// tb is what the harness needs of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// harness applies each operation to an XArray and the model and fails
// the test as soon as they disagree. Its XArray's nodes are charged to a
// radix_tree_node cache of a small machine, with fault injection: an
// operation that fails with ENOMEM must leave the array as the model is,
// unchanged.
type harness struct {
	xa     XArray
	md     *xaModel
	mm     *physmem.MM
	faults *fault.Injector
}

// cleanupTB is what newHarness needs of *testing.T and *rapid.T.
type cleanupTB interface {
	tb
	Cleanup(func())
}

func newHarness(t cleanupTB) *harness {
	t.Helper()
	h := &harness{md: newModel(), faults: fault.New()}
	var cache *physmem.KmemCache
	h.mm, cache = nodeCache(t, h.faults)
	h.xa.SetNodeCache(cache)
	return h
}

// nodeCache boots a 64 MiB machine with faults and returns its memory and
// a radix_tree_node cache on it; closed when the test ends.
func nodeCache(t cleanupTB, faults *fault.Injector) (*physmem.MM, *physmem.KmemCache) {
	t.Helper()
	size := uint64(64 << 20)
	if _, ok := t.(*benchTB); ok {
		size = 1 << 30
	}
	frames, err := physmem.NewFrames(size)
	if err != nil {
		t.Fatalf("NewFrames: %v", err)
	}
	mm, err := physmem.NewMM(frames, faults)
	if err != nil {
		t.Fatalf("NewMM: %v", err)
	}
	t.Cleanup(func() { _ = mm.Close(); _ = frames.Close() })
	if err := mm.MemblockFreeAll(); err != nil {
		t.Fatalf("MemblockFreeAll: %v", err)
	}
	c, err := mm.KmemCacheCreate("radix_tree_node", 576)
	if err != nil {
		t.Fatalf("KmemCacheCreate: %v", err)
	}
	return mm, c
}

func sameErr(a, b error) bool { return errors.Is(a, b) || (a == nil && b == nil) }

// nomem reports whether err is the ENOMEM of a node allocation that
// failed: the XArray changed nothing, so the model must not change either.
func (h *harness) nomem(err error) bool { return errors.Is(err, errno.ENOMEM) }

func (h *harness) store(t tb, index uint64, e Entry, order uint) {
	t.Helper()
	got, err := h.xa.Store(index, e, order)
	if h.nomem(err) && e != 0 {
		return
	}
	want, werr := h.md.store(index, e, order)
	if got != want || !sameErr(err, werr) {
		t.Fatalf("Store(%#x, %v, %d) = %v, %v; model %v, %v", index, e, order, got, err, want, werr)
	}
}

func (h *harness) insert(t tb, index uint64, e Entry, order uint) {
	t.Helper()
	err := h.xa.Insert(index, e, order)
	if h.nomem(err) {
		return
	}
	werr := h.md.insert(index, e, order)
	if !sameErr(err, werr) {
		t.Fatalf("Insert(%#x, %v, %d) = %v; model %v", index, e, order, err, werr)
	}
}

func (h *harness) reserve(t tb, index uint64, order uint) {
	t.Helper()
	err := h.xa.Reserve(index, order)
	if h.nomem(err) {
		return
	}
	if werr := h.md.reserve(index, order); !sameErr(err, werr) {
		t.Fatalf("Reserve(%#x, %d) = %v; model %v", index, order, err, werr)
	}
	if err == nil && !h.xa.Reserved(index) {
		t.Fatalf("Reserve(%#x, %d): not reserved", index, order)
	}
}

func (h *harness) release(t tb, index uint64) {
	t.Helper()
	h.xa.Release(index)
	h.md.release(index)
	if h.xa.Reserved(index) {
		t.Fatalf("Release(%#x): still reserved", index)
	}
}

// fault arms the slab fault site: the nth node allocation from now fails.
func (h *harness) fault(t tb, nth int) {
	t.Helper()
	if err := h.faults.Arm(fault.Slab, nth, 1); err != nil {
		t.Fatalf("Arm: %v", err)
	}
}

func (h *harness) erase(t tb, index uint64) {
	t.Helper()
	got := h.xa.Erase(index)
	want, _ := h.md.store(index, 0, 0)
	if got != want {
		t.Fatalf("Erase(%#x) = %v; model %v", index, got, want)
	}
}

func (h *harness) split(t tb, index uint64, order uint) {
	t.Helper()
	err := h.xa.Split(index, order)
	if h.nomem(err) {
		if _, me, ok := h.md.lookup(index); ok && order < me.order && order-order%6+12 > me.order {
			return // a split the model allows: its node allocation failed, nothing changed
		}
	}
	werr := h.md.split(index, order)
	if !sameErr(err, werr) {
		t.Fatalf("Split(%#x, %d) = %v; model %v", index, order, err, werr)
	}
}

func (h *harness) load(t tb, index uint64) {
	t.Helper()
	if got, want := h.xa.Load(index), h.md.load(index); got != want {
		t.Fatalf("Load(%#x) = %v; model %v", index, got, want)
	}
	f, ok := h.xa.Lookup(index)
	b, me, wok := h.md.lookup(index)
	if ok != wok || (ok && (f.Index != b || f.Entry != me.e || uint(f.Order) != me.order)) {
		t.Fatalf("Lookup(%#x) = %+v %v; model base %#x %+v %v", index, f, ok, b, me, wok)
	}
}

func (h *harness) mark(t tb, index uint64, m Mark, op int) {
	t.Helper()
	var err, werr error
	switch op {
	case 0:
		err, werr = h.xa.SetMark(index, m), h.md.setMark(index, m, true)
	case 1:
		err, werr = h.xa.ClearMark(index, m), h.md.setMark(index, m, false)
	default:
		if got, want := h.xa.GetMark(index, m), h.md.getMark(index, m); got != want {
			t.Fatalf("GetMark(%#x, %v) = %v; model %v", index, m, got, want)
		}
		return
	}
	if !sameErr(err, werr) {
		t.Fatalf("mark op %d (%#x, %v) = %v; model %v", op, index, m, err, werr)
	}
}

func (h *harness) extract(t tb, start, max uint64, filter int, whole bool) {
	t.Helper()
	var b Batch
	next, more := h.xa.extract(start, max, filter, whole, &b)
	want, wnext, wmore := h.md.extract(start, max, filter, whole)
	if !slices.Equal(b.Entries(), want) || next != wnext || more != wmore {
		t.Fatalf("extract(%#x, %#x, filter %d, whole %v) = %v next %#x more %v;\nmodel %v next %#x more %v",
			start, max, filter, whole, b.Entries(), next, more, want, wnext, wmore)
	}
	var f Found
	var ok bool
	switch filter {
	case filterPresent:
		f, ok = h.xa.Find(start, max)
	case filterReserved:
		f, ok = h.xa.findReserved(start, max)
	default:
		f, ok = h.xa.FindMarked(start, max, Mark{uint8(filter)})
	}
	all := h.md.overlapping(start, max, filter)
	if ok != (len(all) > 0) || (ok && f != all[0]) {
		t.Fatalf("Find(%#x, %#x, filter %d) = %+v %v; model %v", start, max, filter, f, ok, all)
	}
}

// check runs the invariant checks and compares the whole content.
func (h *harness) check(t tb) {
	t.Helper()
	if err := h.xa.CheckInvariants(); err != nil {
		t.Fatalf("%v\n%s", err, h.xa.Dump())
	}
	if got, want := h.xa.Counts(), h.md.counts(); got != want {
		t.Fatalf("Counts() = %+v; model %+v", got, want)
	}
	if c := h.xa.NodeCache(); c != nil && c.Inuse() != uint64(h.xa.nrNodes) {
		t.Fatalf("%d radix_tree_node objects in use for %d nodes", c.Inuse(), h.xa.nrNodes)
	}
	want := h.md.overlapping(0, ^uint64(0), filterPresent)
	got := slices.Collect(h.xa.All())
	if !slices.Equal(got, want) {
		t.Fatalf("All() = %v;\nmodel %v\n%s", got, want, h.xa.Dump())
	}
	for _, f := range want {
		me := h.md.m[f.Index]
		for m := range xaMarkCount {
			if h.xa.GetMark(f.Index, Mark{uint8(m)}) != (me.marks&(1<<m) != 0) {
				t.Fatalf("mark %d of %#x: model %03b\n%s", m, f.Index, me.marks, h.xa.Dump())
			}
		}
	}
}
