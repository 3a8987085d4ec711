package pagecache

import (
	"errors"
	"slices"
	"testing"

	"khosim/errno"
	"khosim/fault"
	"khosim/physmem"
)

// chargedMapping returns an empty page cache whose nodes are charged to a
// radix_tree_node cache, and the fault injector of its machine.
func chargedMapping(t *testing.T) (*AddressSpace, *physmem.KmemCache, *fault.Injector, *physmem.MM) {
	t.Helper()
	in := fault.New()
	mm, c := nodeCache(t, in)
	a, err := NewAddressSpace(7)
	if err != nil {
		t.Fatal(err)
	}
	a.SetNodeCache(c)
	return a, c, in, mm
}

func TestNodesCharged(t *testing.T) {
	a, c, _, mm := chargedMapping(t)
	free0 := mm.Zone.NrFreePages()
	for i := range uint64(64 * 64) {
		if err := a.InsertFolio(physmem.PFN(i), i, 0); err != nil {
			t.Fatal(err)
		}
	}
	// 64 leaves and their root, each one 576-byte object: 14 to an
	// order-1 slab.
	if c.Inuse() != 65 || a.iPages.nrNodes != 65 {
		t.Fatalf("%d objects in use, %d nodes; want 65", c.Inuse(), a.iPages.nrNodes)
	}
	if got, want := mm.NrSlabFrames(), uint64((65+13)/14*2); got != want {
		t.Fatalf("slab frames %d, want %d", got, want)
	}
	if err := a.CheckInvariants(nil); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(64 * 64) {
		if err := a.DeleteFolio(physmem.PFN(i), i, 0); err != nil {
			t.Fatal(err)
		}
	}
	if c.Inuse() != 0 || !a.iPages.Empty() {
		t.Fatalf("%d objects in use after the page cache emptied", c.Inuse())
	}
	mm.KmemCacheShrink()
	if mm.Zone.NrFreePages() != free0 || mm.NrSlabFrames() != 0 {
		t.Fatalf("free frames %d -> %d, slab frames %d", free0, mm.Zone.NrFreePages(), mm.NrSlabFrames())
	}
	if err := mm.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// snapshot is what a failed operation must leave unchanged.
type snapshot struct {
	entries []Found
	counts  Counts
	nodes   int
	inuse   uint64
	pages   uint64
}

func snap(a *AddressSpace, c *physmem.KmemCache) snapshot {
	return snapshot{slices.Collect(a.Range(0, ^uint64(0))), a.Counts(), a.iPages.nrNodes, c.Inuse(), a.NrPages()}
}

func (s snapshot) equal(o snapshot) bool {
	return slices.Equal(s.entries, o.entries) && s.counts == o.counts && s.nodes == o.nodes && s.inuse == o.inuse && s.pages == o.pages
}

// TestNodeAllocationFails fails the n-th node allocation of each operation
// that needs nodes: it returns ENOMEM and changes nothing, not even the
// nodes it had allocated before the failing one.
func TestNodeAllocationFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(a *AddressSpace)
		site  fault.Site
		nth   int
		op    func(a *AddressSpace) error
	}{
		{"first folio of an empty page cache needs a root", nil, fault.Slab, 1,
			func(a *AddressSpace) error { return a.InsertFolio(64, 64, 0) }},
		{"a new leaf", func(a *AddressSpace) { fill(a, 0, 64) }, fault.Slab, 1,
			func(a *AddressSpace) error { return a.InsertFolio(1000, 64, 0) }},
		{"a new root and leaf: the second fails", func(a *AddressSpace) { fill(a, 0, 64) }, fault.Slab, 2,
			func(a *AddressSpace) error { return a.InsertFolio(1000, 4096, 0) }},
		{"a new slab page", nil, fault.PageAlloc, 1,
			func(a *AddressSpace) error { return a.InsertFolio(1000, 4096, 0) }},
		{"AddFolio", func(a *AddressSpace) { fill(a, 0, 64) }, fault.Slab, 1,
			func(a *AddressSpace) error { _, err := a.AddFolio(1000, 64, 0); return err }},
		{"AddFolio splitting a large swap entry", func(a *AddressSpace) {
			if _, err := a.iPages.Store(512, ValueEntry(7), 9); err != nil {
				panic(err)
			}
			a.nrValues = 512
		}, fault.Slab, 5, func(a *AddressSpace) error { _, err := a.AddFolio(1000, 515, 0); return err }},
		{"SplitEntry of a PMD folio", func(a *AddressSpace) {
			if err := a.InsertFolio(512, 512, 9); err != nil {
				panic(err)
			}
		}, fault.Slab, 8, func(a *AddressSpace) error { return a.SplitEntry(512, 0) }},
		{"InsertFolio into part of a large reservation", func(a *AddressSpace) {
			if err := a.Reserve(512, 9); err != nil {
				panic(err)
			}
		}, fault.Slab, 3, func(a *AddressSpace) error { return a.InsertFolio(1000, 520, 0) }},
		{"Reserve", func(a *AddressSpace) { fill(a, 0, 64) }, fault.Slab, 1,
			func(a *AddressSpace) error { return a.Reserve(1<<20, 0) }},
		{"XArray.Store", func(a *AddressSpace) { fill(a, 0, 64) }, fault.Slab, 1,
			func(a *AddressSpace) error { _, err := a.iPages.Store(1<<30, ValueEntry(1), 0); return err }},
		{"XArray.Insert", nil, fault.Slab, 1,
			func(a *AddressSpace) error { return a.iPages.Insert(5, ValueEntry(1), 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c, in, _ := chargedMapping(t)
			if tc.setup != nil {
				tc.setup(a)
			}
			before := snap(a, c)
			times := 1
			if tc.site == fault.PageAlloc {
				times = 2 // a slab of the cache's order, then allocate_slab's fallback to s->min
			}
			if err := in.Arm(tc.site, tc.nth, times); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(a); !errors.Is(err, errno.ENOMEM) {
				t.Fatalf("got %v, want ENOMEM", err)
			}
			if in.Fired(tc.site) != times {
				t.Fatalf("the fault did not fire")
			}
			if after := snap(a, c); !before.equal(after) {
				t.Fatalf("a failed operation changed the page cache:\n%+v\n%+v", before, after)
			}
			if err := a.iPages.CheckInvariants(); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(a); err != nil { // the fault is spent
				t.Fatalf("again: %v", err)
			}
			if err := a.iPages.CheckInvariants(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func fill(a *AddressSpace, start, n uint64) {
	for i := start; i < start+n; i++ {
		if err := a.InsertFolio(physmem.PFN(i), i, 0); err != nil {
			panic(err)
		}
	}
}

// TestNeverAllocates runs the operations that must not allocate (they
// replace, erase or shrink) with every node allocation failing.
func TestNeverAllocates(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(a *AddressSpace) error
	}{
		{"DeleteFolio", func(a *AddressSpace) error { return a.DeleteFolio(64, 64, 0) }},
		{"DeleteFolio leaving a swap entry", func(a *AddressSpace) error { return a.DeleteFolio(64, 64, ValueEntry(3)) }},
		{"DeleteFolioReserve and putting it back", func(a *AddressSpace) error {
			if err := a.DeleteFolioReserve(512, 512); err != nil {
				return err
			}
			return a.InsertFolio(1024, 512, 9)
		}},
		{"ReplaceEntry", func(a *AddressSpace) error { return a.ReplaceEntry(70, FolioEntry(70), FolioEntry(2000)) }},
		{"EraseEntry", func(a *AddressSpace) error {
			if err := a.DeleteFolio(64, 64, ValueEntry(3)); err != nil {
				return err
			}
			_, err := a.EraseEntry(64, ValueEntry(3))
			return err
		}},
		{"SplitEntry within a node", func(a *AddressSpace) error { return a.SplitEntry(512, 6) }},
		{"Erase of a reservation", func(a *AddressSpace) error { a.iPages.Erase(4096); return nil }},
		{"Release", func(a *AddressSpace) error { a.Release(4096); return nil }},
		{"store into a reservation", func(a *AddressSpace) error { return a.InsertFolio(3000, 4096, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c, in, _ := chargedMapping(t)
			fill(a, 64, 64)
			if err := a.InsertFolio(512, 512, 9); err != nil {
				t.Fatal(err)
			}
			if err := a.Reserve(4096, 0); err != nil {
				t.Fatal(err)
			}
			inuse := c.Inuse()
			if err := in.Arm(fault.Slab, 1, 1000); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(a); err != nil {
				t.Fatal(err)
			}
			if in.Fired(fault.Slab) != 0 {
				t.Fatalf("allocated a node")
			}
			if c.Inuse() > inuse {
				t.Fatalf("objects in use %d -> %d", inuse, c.Inuse())
			}
			if err := a.CheckInvariants(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReservations(t *testing.T) {
	a, c, _, _ := chargedMapping(t)
	xa := &a.iPages
	if err := a.Reserve(100, 0); err != nil {
		t.Fatal(err)
	}
	if xa.Empty() || !a.Reserved(100) || a.Reserved(101) || a.Counts() != (Counts{Reserved: 1}) {
		t.Fatalf("reserved 100: empty %v reserved %v counts %+v", xa.Empty(), a.Reserved(100), a.Counts())
	}
	if xa.Load(100) != 0 {
		t.Fatal("a reserved index loads non-NULL")
	}
	if _, ok := a.Lookup(100); ok {
		t.Fatal("a reserved index looks up")
	}
	if _, ok := xa.Find(0, ^uint64(0)); ok {
		t.Fatal("Find finds a reservation")
	}
	if n := len(slices.Collect(a.Range(0, ^uint64(0)))); n != 0 {
		t.Fatalf("Range yields %d entries", n)
	}
	if err := a.SetMark(100, PageCacheTagDirty); err != errno.ENOENT {
		t.Fatalf("SetMark on a reservation: %v", err)
	}
	if err := xa.Insert(100, ValueEntry(1), 0); err != errno.EEXIST {
		t.Fatalf("xa_insert into a reservation: %v, want EEXIST (EBUSY)", err)
	}
	if err := a.Reserve(100, 0); err != nil {
		t.Fatalf("reserving again: %v", err)
	}
	nodes := c.Inuse()
	if err := a.InsertFolio(7, 100, 0); err != nil {
		t.Fatal(err)
	}
	if a.Reserved(100) || c.Inuse() != nodes || a.Counts().Reserved != 0 {
		t.Fatalf("InsertFolio did not take the reservation: reserved %v, objects %d -> %d", a.Reserved(100), nodes, c.Inuse())
	}
	if err := a.Reserve(100, 0); err != errno.EEXIST {
		t.Fatalf("reserving a cached index: %v", err)
	}
	if err := a.Reserve(101, 0); err != nil {
		t.Fatal(err)
	}
	a.Release(101)
	a.Release(100) // holds a folio: left alone
	if a.Reserved(101) {
		t.Fatal("released index still reserved")
	}
	if f, ok := a.Lookup(100); !ok || f.Entry != FolioEntry(7) {
		t.Fatalf("Release removed a folio: %+v %v", f, ok)
	}
	if err := a.Reserve(1<<20, 9); err != nil {
		t.Fatal(err)
	}
	if !a.Reserved(1<<20+77) || a.ReleaseAll() != 1 || a.Reserved(1<<20) {
		t.Fatal("ReleaseAll")
	}
	if err := a.Reserve(3, 1); err != errno.EINVAL {
		t.Fatalf("misaligned Reserve: %v", err)
	}
	if err := a.CheckInvariants(nil); err != nil {
		t.Fatal(err)
	}
	// A reservation at index 0 lives in the head, as an entry would.
	b, _, _, _ := chargedMapping(t)
	if err := b.Reserve(0, 0); err != nil {
		t.Fatal(err)
	}
	if b.iPages.head != zeroEntry || b.iPages.Load(0) != 0 || !b.Reserved(0) {
		t.Fatalf("head %v", b.iPages.head)
	}
	if err := b.InsertFolio(9, 0, 0); err != nil || b.iPages.head != FolioEntry(9) {
		t.Fatalf("InsertFolio over the reserved head: %v, head %v", err, b.iPages.head)
	}
	if err := b.CheckInvariants(nil); err != nil {
		t.Fatal(err)
	}
}
