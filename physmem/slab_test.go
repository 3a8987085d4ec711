package physmem

import (
	"encoding/binary"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
)

// slabMM boots a machine of n frames with a fault injector and checks it.
func slabMM(t testing.TB, n uint64) (*MM, *fault.Injector) {
	t.Helper()
	in := fault.New()
	mm := newTestMM(t, n, in)
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())
	return mm, in
}

// slabBalanced checks that every managed frame is free or slab: the test
// machines allocate nothing else.
func slabBalanced(t tb, mm *MM) {
	t.Helper()
	z := &mm.Zone
	eq(t, z.NrFreePages()+mm.NrSlabFrames(), z.ManagedPages(), "free + slab frames")
}

func TestSlabGeometry(t *testing.T) {
	mm, _ := slabMM(t, 1024)
	for _, tc := range []struct {
		size    uint32
		order   uint
		objects int
	}{
		{8, 0, 512},
		{96, 0, 42},
		{256, 0, 16},
		{576, 1, 14}, // radix_tree_node on one CPU
		{700, 1, 11},
		{1024, 1, 8},
		{4096, 3, 8},
		{8192, 3, 4}, // kmalloc-8k
		{KmemCacheMaxSize, 3, 1},
	} {
		c, err := mm.KmemCacheCreate("test", tc.size)
		noErr(t, err)
		eq(t, c.SlabOrder(), tc.order, "order of a %d-byte cache", tc.size)
		eq(t, c.ObjectsPerSlab(), tc.objects, "objects of a %d-byte cache", tc.size)
	}
	for _, size := range []uint32{0, KmemCacheMaxSize + 1} {
		_, err := mm.KmemCacheCreate("bad", size)
		wantErr(t, err, errno.EINVAL)
	}
	for _, tc := range []struct {
		size uint64
		name string
	}{{1, "kmalloc-8"}, {8, "kmalloc-8"}, {9, "kmalloc-16"}, {65, "kmalloc-96"}, {97, "kmalloc-128"},
		{129, "kmalloc-192"}, {193, "kmalloc-256"}, {1000, "kmalloc-1k"}, {1025, "kmalloc-2k"}, {4097, "kmalloc-8k"}, {8192, "kmalloc-8k"}} {
		eq(t, mm.kmallocCache(tc.size).Name(), tc.name, "kmalloc(%d)", tc.size)
	}
	for _, size := range []uint64{0, KmallocMaxCacheSize + 1} {
		_, err := mm.Kmalloc(size)
		wantErr(t, err, errno.EINVAL)
	}
	_, err := mm.Kvmalloc(0)
	wantErr(t, err, errno.EINVAL)
	eq(t, mm.NrSlabFrames(), uint64(0), "slab frames of caches never used")
}

func TestSlabBeforeMemblockFreeAll(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	isTrue(t, !mm.SlabAvailable(), "slab available before memblock_free_all")
	_, err := mm.KmemCacheCreate("early", 64)
	wantErr(t, err, errno.EINVAL)
	requireViolation(t, invSlabAvailable, func() { _, _ = mm.Kmalloc(64) })
	requireViolation(t, invSlabAvailable, func() { _, _ = mm.Kvmalloc(1 << 20) })
	noErr(t, mm.MemblockFreeAll())
	isTrue(t, mm.SlabAvailable(), "slab not available after memblock_free_all")
}

// TestSlabAllocFree follows one cache through a slab's life: filled, full,
// a second slab, emptied (one empty slab kept), shrunk.
func TestSlabAllocFree(t *testing.T) {
	mm, _ := slabMM(t, 1024)
	c, err := mm.KmemCacheCreate("radix_tree_node", 576)
	noErr(t, err)
	free0 := mm.Zone.NrFreePages()
	var objs []SlabObj
	for range c.ObjectsPerSlab() {
		o, err := c.Alloc()
		noErr(t, err)
		objs = append(objs, o)
	}
	eq(t, mm.NrSlabFrames(), uint64(2), "one order-1 slab")
	eq(t, mm.Zone.NrFreePages(), free0-2, "free frames")
	p := mm.Page(objs[0].PFN())
	isTrue(t, p.Test(PGSlab|PGHead), "slab page flags %v", p.Flags())
	eq(t, c.full.nr, uint64(1), "full slabs")
	noErr(t, mm.CheckInvariants())
	slabBalanced(t, mm)

	o, err := c.Alloc()
	noErr(t, err)
	objs = append(objs, o)
	eq(t, c.NrSlabs(), uint64(2), "a second slab")
	isTrue(t, o.PFN() != objs[0].PFN(), "new object in the full slab")
	noErr(t, mm.CheckInvariants())

	// Free the first slab's objects: it leaves the full list, then
	// empties while the second slab is partial: freed.
	for _, o := range objs[:c.ObjectsPerSlab()] {
		c.Free(o)
		noErr(t, mm.CheckInvariants())
	}
	eq(t, c.NrSlabs(), uint64(1), "the emptied slab went back")
	// The last object: its slab is the only partial one, kept empty.
	c.Free(objs[len(objs)-1])
	eq(t, c.NrSlabs(), uint64(1), "the only partial slab kept empty (min_partial)")
	eq(t, c.Inuse(), uint64(0), "inuse")
	noErr(t, mm.CheckInvariants())
	eq(t, mm.KmemCacheShrink(), uint64(2), "frames shrunk")
	eq(t, mm.NrSlabFrames(), uint64(0), "slab frames after shrink")
	eq(t, mm.Zone.NrFreePages(), free0, "free frames after shrink")
	noErr(t, mm.CheckInvariants())
}

// TestSlabObjectsInFrames checks that an object's bytes are its own: the
// free list lives in free objects only, and a freed object's free pointer
// names the previous first free object by physical address.
func TestSlabObjectsInFrames(t *testing.T) {
	mm, _ := slabMM(t, 1024)
	a, err := mm.Kmalloc(64)
	noErr(t, err)
	b, err := mm.Kmalloc(64)
	noErr(t, err)
	eq(t, len(mm.ObjectBytes(a)), 64, "object size")
	for i := range mm.ObjectBytes(a) {
		mm.ObjectBytes(a)[i] = 0xaa
		mm.ObjectBytes(b)[i] = 0xbb
	}
	c, err := mm.Kmalloc(64)
	noErr(t, err)
	isTrue(t, slices.Equal(mm.ObjectBytes(a), slices.Repeat([]byte{0xaa}, 64)), "object a clobbered")
	isTrue(t, slices.Equal(mm.ObjectBytes(b), slices.Repeat([]byte{0xbb}, 64)), "object b clobbered")
	head := mm.Page(a.PFN()).index
	mm.Kfree(b)
	// b's free pointer (at offset 32 of a 64-byte object) is the old head.
	got := binary.LittleEndian.Uint64(mm.Frames.Frame(b.PFN())[b.Slot()*64+32:])
	eq(t, got, head, "free pointer of the freed object")
	eq(t, mm.Page(b.PFN()).index, PageOffset+uint64(b.PFN().Phys())+uint64(b.Slot())*64, "freelist head")
	mm.Kfree(a)
	mm.Kfree(c)
	mm.Kfree(0) // kfree(NULL)
	noErr(t, mm.CheckInvariants())
}

// TestSlabNeverInScratch fills normal memory and checks that slab pages
// never come from KHO scratch (MIGRATE_CMA), which movable folios may use.
func TestSlabNeverInScratch(t *testing.T) {
	mm := newTestMM(t, 4*PageblockNrPages, nil)
	noErr(t, mm.Memblock.MarkKHOScratch(2*PageblockNrPages*PageSize, 2*PageblockNrPages*PageSize))
	noErr(t, mm.MemblockFreeAll())
	c, err := mm.KmemCacheCreate("filp", 256)
	noErr(t, err)
	var objs []SlabObj
	for {
		o, err := c.Alloc()
		if err != nil {
			wantErr(t, err, errno.ENOMEM)
			break
		}
		objs = append(objs, o)
		eq(t, mm.Zone.PageblockMigratetype(o.PFN()), MigrateMovable, "slab page %v", o.PFN())
	}
	isTrue(t, mm.Zone.NrFreePagesOf(MigrateCMA) == 2*PageblockNrPages, "scratch untouched")
	_, err = mm.FolioAlloc(GFPHighUserMovable, 0)
	noErr(t, err) // movable data still fits, in scratch
	_, err = mm.Kvmalloc(2 * KmallocMaxCacheSize)
	wantErr(t, err, errno.ENOMEM)
	noErr(t, mm.CheckInvariants())
	for _, o := range objs {
		c.Free(o)
	}
	noErr(t, mm.CheckInvariants())
}

func TestSlabFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		site  fault.Site
		alloc func(mm *MM, c *KmemCache) error
	}{
		{"kmem_cache_alloc failslab", fault.Slab, func(mm *MM, c *KmemCache) error { _, err := c.Alloc(); return err }},
		{"kmem_cache_alloc new slab page", fault.PageAlloc, func(mm *MM, c *KmemCache) error { _, err := c.Alloc(); return err }},
		{"kmalloc failslab", fault.Slab, func(mm *MM, c *KmemCache) error { _, err := mm.Kmalloc(100); return err }},
		{"kvmalloc failslab", fault.Slab, func(mm *MM, c *KmemCache) error { _, err := mm.Kvmalloc(64 << 10); return err }},
		{"kvmalloc page", fault.PageAlloc, func(mm *MM, c *KmemCache) error { _, err := mm.Kvmalloc(64 << 10); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm, in := slabMM(t, 1024)
			c, err := mm.KmemCacheCreate("test", 128)
			noErr(t, err)
			nth := 1
			if tc.site == fault.PageAlloc && tc.name == "kvmalloc page" {
				nth = 5 // the fifth of 16 pages: the first four are given back
			}
			noErr(t, in.Arm(tc.site, nth, 1))
			free := mm.Zone.NrFreePages()
			wantErr(t, tc.alloc(mm, c), errno.ENOMEM)
			eq(t, in.Fired(tc.site), 1, "fired")
			eq(t, mm.Zone.NrFreePages(), free, "free frames after the failure")
			eq(t, mm.NrSlabFrames(), uint64(0), "slab frames after the failure")
			noErr(t, mm.CheckInvariants())
			noErr(t, tc.alloc(mm, c)) // the fault was spent
			noErr(t, mm.CheckInvariants())
		})
	}
}

func TestSlabFreeBugs(t *testing.T) {
	mm, _ := slabMM(t, 1024)
	c, err := mm.KmemCacheCreate("a", 64)
	noErr(t, err)
	d, err := mm.KmemCacheCreate("b", 64)
	noErr(t, err)
	o, err := c.Alloc()
	noErr(t, err)
	o2, err := c.Alloc()
	noErr(t, err)
	requireViolation(t, invSlabFree, func() { d.Free(o) })
	requireViolation(t, invSlabFree, func() { c.Free(0) })
	requireViolation(t, invSlabFree, func() { c.Free(mkSlabObj(o.PFN(), 9999)) })
	f, err := mm.FolioAlloc(GFPKernel, 0)
	noErr(t, err)
	requireViolation(t, invSlabFree, func() { mm.Kfree(mkSlabObj(f.PFN(), 0)) })
	requireViolation(t, invFolioNotSlab, func() { mm.FolioPut(Folio(o.PFN())) })
	requireViolation(t, invFolioNotSlab, func() { mm.FolioGet(Folio(o.PFN())) })
	eq(t, mm.FolioOrder(Folio(o.PFN())), uint(0), "folio_order of a slab")
	eq(t, mm.FolioRefCount(Folio(o.PFN())), int32(1), "folio_ref_count of a slab")
	requireViolation(t, invPageFlagOwner, func() { mm.Page(o.PFN()).Set(PGDirty) })
	c.Free(o)
	requireViolation(t, invSlabFree, func() { c.Free(o) }) // double free
	c.Free(o2)
	b, err := mm.Kvmalloc(3 * PageSize)
	noErr(t, err)
	eq(t, mm.KvbufFrames(b), uint64(3), "vmalloc frames")
	mm.Kvfree(b)
	requireViolation(t, invSlabFree, func() { mm.Kvfree(b) })
	mm.FolioPut(f)
	noErr(t, mm.CheckInvariants())
}

func TestSlabCheckFinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(mm *MM, c *KmemCache, o SlabObj)
		want   string
	}{
		{"free pointer out of the slab", func(mm *MM, c *KmemCache, o SlabObj) {
			c.setFreePointer(pa(mm.Page(o.PFN()).index), va(8))
		}, invSlabPage},
		{"free list loop", func(mm *MM, c *KmemCache, o SlabObj) {
			head := mm.Page(o.PFN()).index
			c.setFreePointer(pa(head), head)
		}, invSlabPage},
		{"inuse disagrees with the free list", func(mm *MM, c *KmemCache, o SlabObj) {
			mm.Memmap.pages[o.PFN()].private++
		}, invSlabPage},
		{"cache counter", func(mm *MM, c *KmemCache, o SlabObj) { c.inuse++ }, invSlabCache},
		{"slab leaked off its list", func(mm *MM, c *KmemCache, o SlabObj) { c.listDel(&c.partial, o.PFN()) }, invSlabCache},
		{"slab on the wrong list", func(mm *MM, c *KmemCache, o SlabObj) {
			c.listDel(&c.partial, o.PFN())
			c.listAdd(&c.full, o.PFN(), true)
		}, invSlabCache},
		{"vmalloc count", func(mm *MM, c *KmemCache, o SlabObj) { mm.slab.vmPages++ }, invSlabCache},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm, _ := slabMM(t, 1024)
			c, err := mm.KmemCacheCreate("test", 64)
			noErr(t, err)
			o, err := c.Alloc()
			noErr(t, err)
			noErr(t, mm.CheckInvariants())
			tc.break_(mm, c, o)
			requireCheckFails(t, mm, tc.want)
		})
	}
}

// slabModel is the slab allocator's contract: which objects are live, in
// which cache, and what each holds; frames are bounded by the objects.
type slabModel struct {
	caches []*KmemCache
	live   map[SlabObj]modelObj
	order  []SlabObj // live objects in allocation order, for drawing
	bufs   []Kvbuf
}

type modelObj struct {
	cache *KmemCache // nil: kmalloc'd
	tag   byte
}

func TestSlabModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := fault.New()
		f, err := NewFrames(512 * PageSize) // 2 MiB: large kvmallocs run out
		noErr(t, err)
		defer f.Close()
		mm, err := NewMM(f, in)
		noErr(t, err)
		defer mm.Close()
		noErr(t, mm.MemblockFreeAll())
		m := &slabModel{live: map[SlabObj]modelObj{}}
		for i := range rapid.IntRange(1, 3).Draw(t, "caches") {
			size := rapid.SampledFrom([]uint32{8, 24, 64, 200, 576, 1000, 3000, 8192}).Draw(t, "size")
			c, err := mm.KmemCacheCreate("c"+string(rune('0'+i)), size)
			noErr(t, err)
			m.caches = append(m.caches, c)
		}
		tag := byte(0)
		// alloc runs one allocation and checks what a failure leaves.
		alloc := func(t *rapid.T, c *KmemCache, fn func() (SlabObj, error)) {
			free, slab := mm.Zone.NrFreePages(), mm.NrSlabFrames()
			o, err := fn()
			if err != nil {
				wantErr(t, err, errno.ENOMEM)
				eq(t, mm.Zone.NrFreePages(), free, "free frames after a failed allocation")
				eq(t, mm.NrSlabFrames(), slab, "slab frames after a failed allocation")
				return
			}
			if _, dup := m.live[o]; dup {
				t.Fatalf("%v handed out twice", o)
			}
			tag++
			b := mm.ObjectBytes(o)
			for i := range b {
				b[i] = tag
			}
			m.live[o] = modelObj{cache: c, tag: tag}
			m.order = append(m.order, o)
		}
		t.Repeat(map[string]func(*rapid.T){
			"alloc": func(t *rapid.T) {
				c := rapid.SampledFrom(m.caches).Draw(t, "cache")
				alloc(t, c, c.Alloc)
			},
			"kmalloc": func(t *rapid.T) {
				size := rapid.Uint64Range(1, KmallocMaxCacheSize).Draw(t, "size")
				alloc(t, nil, func() (SlabObj, error) { return mm.Kmalloc(size) })
			},
			"free": func(t *rapid.T) {
				if len(m.order) == 0 {
					t.Skip("nothing live")
				}
				i := rapid.IntRange(0, len(m.order)-1).Draw(t, "object")
				o := m.order[i]
				mo := m.live[o]
				for _, b := range mm.ObjectBytes(o) {
					if b != mo.tag {
						t.Fatalf("%v: byte %#x, wrote %#x: a live object was clobbered", o, b, mo.tag)
					}
				}
				if mo.cache != nil && rapid.Bool().Draw(t, "kmem_cache_free") {
					mo.cache.Free(o)
				} else {
					mm.Kfree(o)
				}
				delete(m.live, o)
				m.order = slices.Delete(m.order, i, i+1)
			},
			"kvmalloc": func(t *rapid.T) {
				size := rapid.Uint64Range(1, 1<<20).Draw(t, "size")
				free, slab := mm.Zone.NrFreePages(), mm.NrSlabFrames()
				b, err := mm.Kvmalloc(size)
				if err != nil {
					wantErr(t, err, errno.ENOMEM)
					eq(t, mm.Zone.NrFreePages(), free, "free frames after a failed kvmalloc")
					eq(t, mm.NrSlabFrames(), slab, "slab frames after a failed kvmalloc")
					return
				}
				if size > KmallocMaxCacheSize {
					eq(t, mm.KvbufFrames(b), (size+PageSize-1)/PageSize, "vmalloc frames")
				}
				m.bufs = append(m.bufs, b)
			},
			"kvfree": func(t *rapid.T) {
				if len(m.bufs) == 0 {
					t.Skip("no buffer")
				}
				i := rapid.IntRange(0, len(m.bufs)-1).Draw(t, "buffer")
				mm.Kvfree(m.bufs[i])
				m.bufs = slices.Delete(m.bufs, i, i+1)
			},
			"shrink": func(t *rapid.T) {
				slab := mm.NrSlabFrames()
				freed := mm.KmemCacheShrink()
				eq(t, mm.NrSlabFrames(), slab-freed, "slab frames after shrink")
			},
			"fault": func(t *rapid.T) {
				site := rapid.SampledFrom([]fault.Site{fault.Slab, fault.PageAlloc}).Draw(t, "site")
				noErr(t, in.Arm(site, rapid.IntRange(1, 3).Draw(t, "nth"), 1))
			},
			"": func(t *rapid.T) {
				noErr(t, mm.CheckInvariants())
				slabBalanced(t, mm)
				var inuse uint64
				for _, c := range mm.slab.caches {
					if c == nil {
						continue
					}
					inuse += c.inuse
					isTrue(t, c.nrSlabs*uint64(c.objects) >= c.inuse, "%v: more objects in use than its slabs hold", c)
					// Every slab but one empty one holds an object.
					isTrue(t, c.nrSlabs <= c.inuse+1, "%v: more slabs than objects", c)
				}
				kmallocd := 0
				for _, b := range m.bufs {
					if b.area == 0 {
						kmallocd++
					}
				}
				eq(t, inuse, uint64(len(m.live)+kmallocd), "objects in use")
			},
		})
		// Everything freed and shrunk: no frame stays with the slab.
		for _, o := range m.order {
			mm.Kfree(o)
		}
		for _, b := range m.bufs {
			mm.Kvfree(b)
		}
		mm.KmemCacheShrink()
		eq(t, mm.NrSlabFrames(), uint64(0), "slab frames once all is freed and shrunk")
		eq(t, mm.Zone.NrFreePages(), mm.Zone.ManagedPages(), "free frames once all is freed")
		noErr(t, mm.CheckInvariants())
	})
}

// TestSlabFallsBackToMinOrder: a cache whose slabs are of order > 0 gets
// an order-0 slab when no block of its order can be had (allocate_slab
// retrying with s->min): one failed page allocation does not fail the
// object, two do. The fallback slab holds what an order-0 slab holds, and
// frees like any other.
func TestSlabFallsBackToMinOrder(t *testing.T) {
	mm, in := slabMM(t, 1024)
	c, err := mm.KmemCacheCreate("big", 1024)
	noErr(t, err)
	order := c.SlabOrder()
	if order == 0 {
		t.Fatalf("a 1 KiB cache of order 0: %v", c)
	}
	noErr(t, in.Arm(fault.PageAlloc, 1, 1))
	obj, err := c.Alloc()
	noErr(t, err)
	eq(t, in.Fired(fault.PageAlloc), 1, "the first try failed")
	eq(t, mm.NrSlabFrames(), uint64(1), "an order-0 slab")
	info := mm.SlabInfo()[len(mm.SlabInfo())-1]
	eq(t, info.NumObjs, uint64(4), "objects of an order-0 slab of 1 KiB objects")
	noErr(t, mm.CheckInvariants())
	var objs []SlabObj
	for range 4 { // three more fill the small slab, the fourth takes a full-order one
		o, err := c.Alloc()
		noErr(t, err)
		objs = append(objs, o)
	}
	eq(t, mm.NrSlabFrames(), uint64(1+1<<order), "the small slab and one of the cache's order")
	noErr(t, mm.CheckInvariants())
	c.Free(obj)
	for _, o := range objs {
		c.Free(o)
	}
	noErr(t, mm.CheckInvariants())
	c.Shrink()
	eq(t, mm.NrSlabFrames(), uint64(0), "every slab freed")
	slabBalanced(t, mm)

	noErr(t, in.Arm(fault.PageAlloc, 1, 2))
	_, err = c.Alloc()
	wantErr(t, err, errno.ENOMEM)
	eq(t, in.Fired(fault.PageAlloc), 3, "both tries failed")
	noErr(t, mm.CheckInvariants())
}
