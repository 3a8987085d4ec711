package pagecache

import (
	"errors"
	"slices"
	"testing"

	"khosim/errno"
	"khosim/fault"
	"khosim/invariant"
	"khosim/physmem"

	"pgregory.net/rapid"
)

// fakeMemmap is the FolioOwner of the tests: what each head page says
// about its mapping, index and order.
type fakeMemmap map[physmem.PFN]struct {
	mapping physmem.MappingID
	index   uint64
	order   uint
}

func (m fakeMemmap) FolioMapping(pfn physmem.PFN) (physmem.MappingID, uint64, uint, bool) {
	p, ok := m[pfn]
	return p.mapping, p.index, p.order, ok
}

func (m fakeMemmap) set(pfn physmem.PFN, mapping physmem.MappingID, index uint64, order uint) {
	m[pfn] = struct {
		mapping physmem.MappingID
		index   uint64
		order   uint
	}{mapping, index, order}
}

func newMapping(t *testing.T) *AddressSpace {
	t.Helper()
	a, err := NewAddressSpace(7)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func checkMapping(t *testing.T, a *AddressSpace, mm fakeMemmap, pages, values uint64) {
	t.Helper()
	if err := a.CheckInvariants(mm); err != nil {
		t.Fatal(err)
	}
	if a.NrPages() != pages || a.NrValues() != values {
		t.Fatalf("nrpages %d nr_values %d, want %d and %d", a.NrPages(), a.NrValues(), pages, values)
	}
}

func TestNewAddressSpace(t *testing.T) {
	if _, err := NewAddressSpace(0); err != errno.EINVAL {
		t.Errorf("NewAddressSpace(0) = %v", err)
	}
	if a := newMapping(t); a.ID() != 7 || a.NrPages() != 0 || a.Counts() != (Counts{}) {
		t.Errorf("new mapping %+v", a)
	}
}

func TestAddFolioErrors(t *testing.T) {
	a := newMapping(t)
	mm := fakeMemmap{}
	if _, err := a.AddFolio(512, 512, 9); err != nil {
		t.Fatal(err)
	}
	mm.set(512, 7, 512, 9)
	for _, c := range []struct {
		name       string
		pfn        physmem.PFN
		index      uint64
		order      uint
		want       error
		nrpagesNow uint64
	}{
		{"misaligned index", 4096, 4097, 1, errno.EINVAL, 512},
		{"misaligned pfn", 4097, 4096, 1, errno.EINVAL, 512},
		{"order above MAX_PAGE_ORDER", 0, 0, physmem.MaxPageOrder + 1, errno.EINVAL, 512},
		{"pfn beyond the vmemmap", MaxFolioPFN + 1, 0, 0, errno.EINVAL, 512},
		{"inside a folio", 1, 600, 0, errno.EEXIST, 512},
		{"around a folio", 0, 0, 10, errno.EEXIST, 512},
		{"next to it", 2048, 1024, 9, nil, 1024},
	} {
		_, err := a.AddFolio(c.pfn, c.index, c.order)
		if !sameErr(err, c.want) || a.NrPages() != c.nrpagesNow {
			t.Errorf("%s: AddFolio = %v (nrpages %d), want %v (%d)", c.name, err, a.NrPages(), c.want, c.nrpagesNow)
		}
	}
	mm.set(2048, 7, 1024, 9)
	checkMapping(t, a, mm, 1024, 0)
}

// TestSwapCycle walks a large shmem folio out to swap and back in pieces:
// delete with a swap entry as shadow, swap one page in (which splits the
// large swap entry), free the remaining swap.
func TestSwapCycle(t *testing.T) {
	a := newMapping(t)
	mm := fakeMemmap{}
	if _, err := a.AddFolio(1024, 0, 9); err != nil {
		t.Fatal(err)
	}
	mm.set(1024, 7, 0, 9)
	a.SetMark(3, PageCacheTagDirty)
	checkMapping(t, a, mm, 512, 0)

	swap := ValueEntry(0x77)
	if err := a.DeleteFolio(1024, 5, swap); err != errno.ENOENT {
		t.Errorf("DeleteFolio at a non-base index = %v", err)
	}
	if err := a.DeleteFolio(1024, 0, folio(3)); err != errno.EINVAL {
		t.Errorf("DeleteFolio with a folio as shadow = %v", err)
	}
	if err := a.DeleteFolio(1024, 0, swap); err != nil {
		t.Fatal(err)
	}
	delete(mm, 1024)
	if a.Tagged(PageCacheTagDirty) {
		t.Error("DeleteFolio kept the dirty tag on the shadow")
	}
	checkMapping(t, a, mm, 0, 512)

	shadow, err := a.AddFolio(9, 5, 0)
	if err != nil || shadow != swap {
		t.Fatalf("AddFolio over the swap entry = %v, %v", shadow, err)
	}
	mm.set(9, 7, 5, 0)
	checkMapping(t, a, mm, 1, 511)
	if f, _ := a.Lookup(4); f != (Found{Index: 4, Entry: swap, Order: 0}) {
		t.Errorf("Lookup(4) after the split = %+v", f)
	}
	// xas_split() is uniform: the order-9 swap entry became 512 order-0 ones.
	if f, _ := a.Lookup(300); f != (Found{Index: 300, Entry: swap, Order: 0}) {
		t.Errorf("Lookup(300) after the split = %+v", f)
	}
	if c := a.Counts(); c.ValueEntries != 511 || c.Entries != 512 {
		t.Errorf("Counts after the split = %+v", c)
	}

	if _, err := a.EraseEntry(300, ValueEntry(1)); err != errno.ENOENT {
		t.Errorf("EraseEntry with the wrong expected = %v", err)
	}
	if f, err := a.EraseEntry(300, swap); err != nil || f.Index != 300 || f.Order != 0 {
		t.Errorf("EraseEntry = %+v, %v", f, err)
	}
	checkMapping(t, a, mm, 1, 510)

	// Swap the order-0 folio back out with ReplaceEntry.
	if err := a.ReplaceEntry(5, folio(10), swap); err != errno.ENOENT {
		t.Errorf("ReplaceEntry with the wrong expected = %v", err)
	}
	if err := a.ReplaceEntry(5, folio(9), 0); err != errno.EINVAL {
		t.Errorf("ReplaceEntry to NULL = %v", err)
	}
	if err := a.ReplaceEntry(5, folio(9), ValueEntry(0x99)); err != nil {
		t.Fatal(err)
	}
	delete(mm, 9)
	checkMapping(t, a, mm, 0, 511)
}

// TestFolioSplit follows __split_unmapped_folio(): split the entry, then
// store each new folio over its index.
func TestFolioSplit(t *testing.T) {
	a := newMapping(t)
	mm := fakeMemmap{}
	const base, pfn = 4096, 8192
	a.AddFolio(pfn, base, 9)
	mm.set(pfn, 7, base, 9)
	a.SetMark(base+7, PageCacheTagDirty)
	if err := a.SplitEntry(base, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckInvariants(mm); err == nil {
		t.Fatal("half-split folio passed the backlink check")
	}
	for i := uint64(0); i < 512; i++ {
		if err := a.ReplaceEntry(base+i, FolioEntry(pfn), FolioEntry(pfn+physmem.PFN(i))); err != nil {
			t.Fatal(err)
		}
		mm.set(pfn+physmem.PFN(i), 7, base+i, 0)
	}
	checkMapping(t, a, mm, 512, 0)
	if !a.GetMark(base+300, PageCacheTagDirty) {
		t.Error("the split folios lost the dirty tag")
	}
}

func TestFindLockEntriesAndTags(t *testing.T) {
	a := newMapping(t)
	a.AddFolio(512, 0, 4) // 0..15
	a.AddFolio(1, 16, 0)  // 16
	a.AddFolio(64, 32, 5) // 32..63
	a.AddFolio(2, 64, 0)  // 64
	a.DeleteFolio(2, 64, ValueEntry(3))
	var b Batch
	a.FindGetEntries(8, 40, &b)
	if got := indices(b.Entries()); !slices.Equal(got, []uint64{0, 16, 32}) {
		t.Errorf("FindGetEntries(8, 40) = %v", got)
	}
	b.Reinit()
	a.FindLockEntries(8, 40, &b)
	if got := indices(b.Entries()); !slices.Equal(got, []uint64{16}) {
		t.Errorf("FindLockEntries(8, 40) = %v", got)
	}
	b.Reinit()
	a.FindLockEntries(0, 64, &b)
	if got := indices(b.Entries()); !slices.Equal(got, []uint64{0, 16, 32, 64}) {
		t.Errorf("FindLockEntries(0, 64) = %v", got)
	}

	for _, i := range []uint64{3, 40} {
		if err := a.SetMark(i, PageCacheTagDirty); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetMark(20, PageCacheTagDirty); err != errno.ENOENT {
		t.Errorf("SetMark on a hole = %v", err)
	}
	if n := a.TagPagesForWriteback(0, 20); n != 1 || !a.GetMark(3, PageCacheTagTowrite) || a.GetMark(40, PageCacheTagTowrite) {
		t.Errorf("TagPagesForWriteback(0, 20) tagged %d", n)
	}
	a.TagPagesForWriteback(0, ^uint64(0))
	b.Reinit()
	a.GetFoliosTag(0, ^uint64(0), PageCacheTagTowrite, &b)
	if got := indices(b.Entries()); !slices.Equal(got, []uint64{0, 32}) {
		t.Errorf("GetFoliosTag(TOWRITE) = %v", got)
	}
	if err := a.ClearMark(0, PageCacheTagTowrite); err != nil || a.GetMark(5, PageCacheTagTowrite) {
		t.Errorf("ClearMark: %v", err)
	}
	if err := a.CheckInvariants(nil); err != nil {
		t.Fatal(err)
	}
}

func indices(fs []Found) []uint64 {
	var out []uint64
	for _, f := range fs {
		out = append(out, f.Index)
	}
	return out
}

func TestMappingCheckDetects(t *testing.T) {
	for _, c := range []struct {
		name    string
		corrupt func(a *AddressSpace, mm fakeMemmap)
		want    string
	}{
		{"foreign mapping", func(a *AddressSpace, mm fakeMemmap) { mm.set(100, 8, 0, 2) }, "folio-backlink"},
		{"wrong index", func(a *AddressSpace, mm fakeMemmap) { mm.set(100, 7, 1, 2) }, "folio-backlink"},
		{"wrong order", func(a *AddressSpace, mm fakeMemmap) { mm.set(100, 7, 0, 0) }, "folio-backlink"},
		{"not in memmap", func(a *AddressSpace, mm fakeMemmap) { delete(mm, 100) }, "folio-backlink"},
		{"nrpages", func(a *AddressSpace, mm fakeMemmap) { a.nrpages++ }, "mapping-nrpages"},
		{"nr_values", func(a *AddressSpace, mm fakeMemmap) { a.nrValues-- }, "mapping-nrpages"},
		{"xarray", func(a *AddressSpace, mm fakeMemmap) { a.iPages.counts.Entries++ }, "xa-counts"},
	} {
		a := newMapping(t)
		mm := fakeMemmap{}
		a.AddFolio(100, 0, 2)
		mm.set(100, 7, 0, 2)
		a.AddFolio(5, 9, 0)
		a.DeleteFolio(5, 9, ValueEntry(1))
		checkMapping(t, a, mm, 4, 1)
		c.corrupt(a, mm)
		var v *invariant.Violation
		if err := a.CheckInvariants(mm); !errors.As(err, &v) || v.Invariant != c.want {
			t.Errorf("%s: CheckInvariants = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestAddressSpaceModel runs random page-cache operations and checks the
// mapping's counts and backlinks after each.
func TestAddressSpaceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, _ := NewAddressSpace(3)
		in := fault.New()
		_, cache := nodeCache(t, in)
		a.SetNodeCache(cache)
		// reserved: ranges a folio was taken out of with DeleteFolioReserve.
		type rsv struct {
			index uint64
			order uint
		}
		var reserved []rsv
		nomem := func(t *rapid.T, op string, err error, before Counts) bool {
			if !errors.Is(err, errno.ENOMEM) {
				return false
			}
			if a.Counts() != before {
				t.Fatalf("%s failed with ENOMEM but changed the counts: %+v -> %+v", op, before, a.Counts())
			}
			return true
		}
		mm := fakeMemmap{}
		nextPFN := physmem.PFN(1 << 20)
		index := func(order uint) uint64 {
			return rapid.Uint64Range(0, 1<<12).Draw(t, "index") &^ (span(order) - 1)
		}
		var cursor uint64 // where the sequential actions go on: the xarray's hint at work
		t.Repeat(map[string]func(*rapid.T){
			"insert": func(t *rapid.T) {
				o := rapid.SampledFrom([]uint{0, 0, 3, 9}).Draw(t, "order")
				i := index(o)
				_, occupied := a.iPages.Find(i, i+span(o)-1)
				pfn := nextPFN
				nextPFN += 1 << physmem.MaxPageOrder
				before, values := a.NrPages(), a.NrValues()
				counts := a.Counts()
				err := a.InsertFolio(pfn, i, o)
				if nomem(t, "InsertFolio", err, counts) {
					return
				}
				switch {
				case occupied && err != errno.EEXIST, !occupied && err != nil:
					t.Fatalf("InsertFolio(%#x, order %d) with the range occupied=%v: %v", i, o, occupied, err)
				case err == nil:
					mm.set(pfn, 3, i, o)
					if a.NrPages() != before+span(o) {
						t.Fatalf("InsertFolio order %d: nrpages %d -> %d", o, before, a.NrPages())
					}
				case a.NrPages() != before || a.NrValues() != values:
					t.Fatalf("failed InsertFolio changed the counts")
				}
			},
			"add-next": func(t *rapid.T) {
				o := rapid.SampledFrom([]uint{0, 0, 0, 1, 6, 9}).Draw(t, "order")
				cursor = (cursor + span(o) - 1) &^ (span(o) - 1) % (1 << 12)
				pfn := nextPFN
				nextPFN += 1 << physmem.MaxPageOrder
				counts := a.Counts()
				if _, err := a.AddFolio(pfn, cursor, o); err == nil {
					mm.set(pfn, 3, cursor, o)
				} else if err != errno.EEXIST && !nomem(t, "AddFolio", err, counts) {
					t.Fatalf("AddFolio: %v", err)
				}
				cursor += span(o)
			},
			"delete-next": func(t *rapid.T) {
				f, ok := a.iPages.Find(cursor%(1<<12), 1<<13)
				if !ok || !f.Entry.IsFolio() {
					cursor = 0
					return
				}
				if err := a.DeleteFolio(f.Entry.PFN(), f.Index, 0); err != nil {
					t.Fatalf("DeleteFolio(%+v): %v", f, err)
				}
				delete(mm, f.Entry.PFN())
				cursor = f.Index + f.NrIndices()
			},
			"mark": func(t *rapid.T) {
				if f, ok := a.Lookup(index(0)); ok {
					_ = a.SetMark(f.Index, PageCacheTagDirty)
				}
			},
			"add": func(t *rapid.T) {
				o := rapid.SampledFrom([]uint{0, 0, 2, 4, 9}).Draw(t, "order")
				i := index(o)
				pfn := nextPFN
				nextPFN += 1 << physmem.MaxPageOrder
				before := a.NrPages()
				counts := a.Counts()
				if _, err := a.AddFolio(pfn, i, o); err == nil {
					mm.set(pfn, 3, i, o)
					if a.NrPages() != before+span(o) {
						t.Fatalf("AddFolio order %d: nrpages %d -> %d", o, before, a.NrPages())
					}
				} else if err != errno.EEXIST && !nomem(t, "AddFolio", err, counts) {
					t.Fatalf("AddFolio: %v", err)
				}
			},
			"delete-reserve": func(t *rapid.T) {
				f, ok := a.Lookup(index(0))
				if !ok || !f.Entry.IsFolio() {
					return
				}
				if err := a.DeleteFolioReserve(f.Entry.PFN(), f.Index); err != nil {
					t.Fatalf("DeleteFolioReserve(%+v): %v", f, err)
				}
				delete(mm, f.Entry.PFN())
				if _, ok := a.Lookup(f.Index); ok || !a.Reserved(f.Index) {
					t.Fatalf("DeleteFolioReserve(%+v): the index is not reserved and empty", f)
				}
				reserved = append(reserved, rsv{f.Index, uint(f.Order)})
			},
			"put-back": func(t *rapid.T) {
				// Putting a folio back where one was taken out with
				// DeleteFolioReserve allocates nothing: it succeeds with
				// every node allocation failing.
				if len(reserved) == 0 {
					return
				}
				k := rapid.IntRange(0, len(reserved)-1).Draw(t, "reservation")
				r := reserved[k]
				reserved = slices.Delete(reserved, k, k+1)
				n, c, ok := a.iPages.locateAny(r.index)
				if !ok || a.iPages.slotEntry(n, c) != zeroEntry || (n != nil && n.entryOrder(c) != r.order) {
					return // since taken by another store, or released
				}
				if err := in.Arm(fault.Slab, 1, 1000); err != nil {
					t.Fatal(err)
				}
				pfn := nextPFN
				nextPFN += 1 << physmem.MaxPageOrder
				err := a.InsertFolio(pfn, r.index, r.order)
				fired := in.Fired(fault.Slab)
				_ = in.Arm(fault.Slab, 1<<30, 1) // disarm
				if err != nil || in.Fired(fault.Slab) != fired {
					t.Fatalf("putting a folio of order %d back at reserved %#x: %v", r.order, r.index, err)
				}
				mm.set(pfn, 3, r.index, r.order)
			},
			"reserve": func(t *rapid.T) {
				o := rapid.SampledFrom([]uint{0, 3, 9}).Draw(t, "order")
				i := index(o)
				counts := a.Counts()
				err := a.Reserve(i, o)
				if nomem(t, "Reserve", err, counts) || err == errno.EEXIST {
					return
				}
				if err != nil || !a.Reserved(i) {
					t.Fatalf("Reserve(%#x, %d): %v", i, o, err)
				}
				reserved = append(reserved, rsv{i, o})
			},
			"release": func(t *rapid.T) { a.Release(index(0)) },
			"fault": func(t *rapid.T) {
				if err := in.Arm(fault.Slab, rapid.IntRange(1, 3).Draw(t, "nth"), 1); err != nil {
					t.Fatal(err)
				}
			},
			"delete": func(t *rapid.T) {
				f, ok := a.Lookup(index(0))
				if !ok || !f.Entry.IsFolio() {
					return
				}
				var shadow Entry
				if rapid.Bool().Draw(t, "swap") {
					shadow = ValueEntry(uint64(f.Entry.PFN()))
				}
				if err := a.DeleteFolio(f.Entry.PFN(), f.Index, shadow); err != nil {
					t.Fatalf("DeleteFolio(%+v): %v", f, err)
				}
				delete(mm, f.Entry.PFN())
			},
			"free-swap": func(t *rapid.T) {
				f, ok := a.Lookup(index(0))
				if !ok || !f.Entry.IsValue() {
					return
				}
				before := a.NrValues()
				i := f.Index + rapid.Uint64Range(0, f.NrIndices()-1).Draw(t, "in")
				if got, err := a.EraseEntry(i, f.Entry); err != nil || got != f || a.NrValues() != before-f.NrIndices() {
					t.Fatalf("EraseEntry(%#x) of %+v = %+v, %v; nr_values %d -> %d", i, f, got, err, before, a.NrValues())
				}
			},
			"split": func(t *rapid.T) {
				f, ok := a.Lookup(index(0))
				if !ok || f.Order == 0 {
					return
				}
				to := uint(rapid.IntRange(0, int(f.Order)-1).Draw(t, "to"))
				counts := a.Counts()
				if err := a.SplitEntry(f.Index, to); nomem(t, "SplitEntry", err, counts) {
					return
				} else if err != nil {
					t.Fatal(err)
				}
				if !f.Entry.IsFolio() {
					return
				}
				// Finish the folio split: each new entry gets its own folio.
				delete(mm, f.Entry.PFN())
				for k := uint64(0); k < span(uint(f.Order)-to); k++ {
					pfn := f.Entry.PFN() + physmem.PFN(k<<to)
					if err := a.ReplaceEntry(f.Index+k<<to, f.Entry, FolioEntry(pfn)); err != nil {
						t.Fatal(err)
					}
					mm.set(pfn, 3, f.Index+k<<to, to)
				}
			},
			"": func(t *rapid.T) {
				if err := a.CheckInvariants(mm); err != nil {
					t.Fatal(err)
				}
				if cache.Inuse() != uint64(a.iPages.nrNodes) {
					t.Fatalf("%d radix_tree_node objects for %d nodes", cache.Inuse(), a.iPages.nrNodes)
				}
			},
		})
		// Truncate everything: the nodes and their objects go.
		for f := range a.Range(0, ^uint64(0)) {
			a.iPages.Erase(f.Index)
		}
		a.ReleaseAll()
		if !a.iPages.Empty() || cache.Inuse() != 0 {
			t.Fatalf("emptied page cache: empty %v, %d node objects in use", a.iPages.Empty(), cache.Inuse())
		}
	})
}

// TestDeleteFolioReserveHinted: taking a run of folios out in index order
// (the stash's detach) goes through the hint, clears the folios' marks
// with their propagation, and leaves reservations the same as the walk
// from the root does; putting the folios back allocates nothing.
func TestDeleteFolioReserveHinted(t *testing.T) {
	a := newMapping(t)
	for i := uint64(0); i < 300; i++ {
		if err := a.InsertFolio(physmem.PFN(1000+i), i, 0); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := a.SetMark(i, XAMark0); err != nil {
				t.Fatal(err)
			}
		}
	}
	nodes := a.Counts()
	for i := uint64(0); i < 300; i++ {
		if err := a.DeleteFolioReserve(physmem.PFN(1000+i), i); err != nil {
			t.Fatal(err)
		}
		if !a.Reserved(i) {
			t.Fatalf("index %d not reserved", i)
		}
	}
	if a.NrPages() != 0 || a.iPages.Marked(XAMark0) {
		t.Fatalf("nrpages %d, mark 0 still set on the array: %v", a.NrPages(), a.iPages.Marked(XAMark0))
	}
	if err := a.iPages.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if c := a.Counts(); c.Reserved != 300 || c.Entries != 0 || nodes.Entries != 300 {
		t.Fatalf("counts %+v (before %+v)", c, nodes)
	}
	for i := uint64(0); i < 300; i++ {
		if err := a.InsertFolio(physmem.PFN(1000+i), i, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.iPages.CheckInvariants(); err != nil || a.NrPages() != 300 {
		t.Fatalf("%v, nrpages %d", err, a.NrPages())
	}
}
