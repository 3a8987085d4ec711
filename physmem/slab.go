package physmem

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math/bits"
	"strings"

	"khosim/errno"
	"khosim/fault"
)

// The slab allocator (mm/slub.c at the level that costs frames): caches of
// fixed-size objects carved out of slab pages that come from the buddy
// allocator with GFP_KERNEL, so never from KHO scratch (MIGRATE_CMA takes
// movable allocations only), and go back to it when they empty.
//
// Where the state lives, as in SLUB:
//
//   - a slab is a page (or, for order > 0, a compound page) of type
//     PGSlab (PageSlab(), PGTY_slab in Linux) whose struct page carries the
//     slab's state (struct slab overlays struct page): slab_list in lru
//     (the cache's partial or full list), freelist in index (the address of
//     the first free object, 0 for none), and the counters word
//     in private: inuse in bits 0-15, objects in bits 16-30, and the
//     cache's id in bits 32-47 (Linux keeps a slab_cache pointer in the
//     word beside slab_list; the memmap holds no pointers);
//   - the free list is threaded through the free objects themselves, in the
//     frame's bytes: each free object holds, at the cache's free pointer
//     offset (the middle of the object, as SLUB places it since 5.7), the
//     address of the next free object, little-endian, 0 ending the list.
//     Addresses are what Linux stores: the object's address in the
//     kernel's direct map (__va(phys), PageOffset + phys), never 0. No
//     hardening (CONFIG_SLAB_FREELIST_HARDENED's XOR) and no
//     randomisation: a new slab's list runs in address order;
//   - a cache (struct kmem_cache with its one kmem_cache_node) is a Go
//     value: sizes, the partial and full lists' heads and its counters.
//
// An object is named by a SlabObj handle, pfn<<16 | (slot+1), which the
// Go object owning the metadata stores (a File, an Inode, an xa_node);
// what the object holds may stay in Go. What is real: the frames are
// allocated, counted and freed, and allocation can fail (the slab fault
// site, as failslab, and the page allocation of a new slab, as
// fail_page_alloc).
//
// Not modelled: per-CPU slabs and per-CPU partial lists (cpu_slab, frozen
// slabs): allocation takes the first slab of the node's partial list;
// cache merging (every kmem_cache_create makes a cache); NUMA; debugging
// (red zones, poisoning, tracking), except that the full list, which SLUB
// keeps only for debug caches, is always kept so that every slab is on a
// list the audit can walk; kmem_cache_destroy (caches live as long as
// their kernel).
//
// min_partial: Linux keeps up to min_partial (5 to 10) slabs on a node's
// partial list even when they are empty, so that a cache that empties and
// fills again does not free and reallocate pages. khosim keeps at most
// one: an empty slab stays only if no other slab of its cache is partial
// (Linux's rule with min_partial = 2). KmemCacheShrink (kmem_cache_shrink)
// gives that one back too.

// SlabObj names one slab object: the PFN of its slab's head page shifted
// left 16 bits, or'ed with its slot + 1. The zero SlabObj names nothing
// (NULL).
type SlabObj uint64

// PFN returns the head page of the object's slab.
func (o SlabObj) PFN() PFN { return PFN(o >> 16) }

// Slot returns the object's index in its slab.
func (o SlabObj) Slot() uint { return uint(o&0xffff) - 1 }

func (o SlabObj) String() string {
	if o == 0 {
		return "slab object NULL"
	}
	return fmt.Sprintf("slab object %v slot %d", o.PFN(), o.Slot())
}

func mkSlabObj(pfn PFN, slot uint) SlabObj { return SlabObj(uint64(pfn)<<16 | uint64(slot+1)) }

// Slab geometry (mm/slub.c, include/linux/slab.h).
const (
	// slubMaxOrder is slub_max_order (PAGE_ALLOC_COSTLY_ORDER).
	slubMaxOrder = 3
	// slubMinObjects is slub_min_objects for one CPU:
	// 4 * (fls(nr_cpu_ids) + 1).
	slubMinObjects = 8
	// maxObjsPerSlab is MAX_OBJS_PER_PAGE: objects is a 15-bit field.
	maxObjsPerSlab = 32767
	// KmallocMaxCacheSize is KMALLOC_MAX_CACHE_SIZE: the largest kmalloc
	// size class (two pages). Kmalloc refuses larger sizes; Kvmalloc
	// takes them from vmalloc.
	KmallocMaxCacheSize = 2 * PageSize
	// KmemCacheMaxSize is the largest object a cache can hold: one object
	// per slab of slub_max_order.
	KmemCacheMaxSize = PageSize << slubMaxOrder
	// slabAlign is the alignment of every object (ARCH_SLAB_MINALIGN,
	// sizeof(void *)).
	slabAlign = 8
)

// PageOffset is PAGE_OFFSET on x86-64 with 4-level paging: the direct map
// of physical memory starts there, so __va(phys) = PageOffset + phys.
const PageOffset = 0xffff888000000000

// va is __va(): the direct-map address of physical address a.
func va(a PhysAddr) uint64 { return PageOffset + uint64(a) }

// pa is __pa() of a direct-map address (0 for NULL).
func pa(v uint64) PhysAddr { return PhysAddr(v - PageOffset) }

// kmallocSizes are the kmalloc size classes (kmalloc_info[] with
// KMALLOC_MIN_SIZE 8): kmalloc-8 up to kmalloc-8k.
var kmallocSizes = [...]uint32{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}

// Fields of the counters word (struct slab's inuse:16, objects:15) and the
// cache id beside them in Page.private.
const (
	slabInuseMask   = 1<<16 - 1
	slabObjectsMask = 1<<15 - 1
	slabObjShift    = 16
	slabCacheShift  = 32
	slabCacheMask   = 1<<16 - 1
)

// slabList is a list of slabs threaded through their struct pages' lru
// words (slab_list: next in lru[0], prev in lru[1], PFN+1 links, 0 none).
type slabList struct {
	first, last uint32 // links of the first and last slab, 0 if empty
	nr          uint64
}

// KmemCache models struct kmem_cache together with its kmem_cache_node: a
// cache of objects of one size (kmem_cache_create).
//
// Every slab of the cache is on exactly one of its lists: partial (some
// object free: 0 <= inuse < objects) or full (inuse == objects). States of
// a slab:
//
//	(page allocation) --new_slab--> partial, all objects free
//	partial --alloc of its last free object--> full
//	full --free--> partial (at the tail)
//	partial --free of its last object--> freed to the buddy allocator,
//	                 unless no other slab of the cache is partial
//	                 (kept, empty, at most one per cache)
//	partial, empty --KmemCacheShrink--> freed
//
// A KmemCache belongs to one kernel's MM and dies with it.
type KmemCache struct {
	mm         *MM
	name       string
	id         uint16
	objectSize uint32 // s->object_size: what the caller asked for
	size       uint32 // s->size: the object's stride in the slab
	offset     uint32 // s->offset: where a free object keeps the free pointer
	order      uint8  // oo_order(s->oo)
	objects    uint16 // oo_objects(s->oo): objects per slab of that order
	minOrder   uint8  // oo_order(s->min): the fallback when an s->oo slab cannot be had

	partial, full slabList
	nrSlabs       uint64 // node->nr_slabs
	nrPages       uint64 // frames of the cache's slabs (slabs of either order)
	nrObjs        uint64 // objects the slabs hold (node->total_objects)
	inuse         uint64 // objects allocated (the sum of the slabs' inuse)
	allocs, frees uint64 // successful kmem_cache_alloc and kmem_cache_free calls
}

// slabState is the slab allocator of one MM: its caches, the kmalloc size
// classes among them, and the vmalloc areas behind Kvmalloc.
type slabState struct {
	ready    bool         // kmem_cache_init has run (slab_is_available)
	caches   []*KmemCache // by id; caches[0] is nil
	kmalloc  []*KmemCache // kmalloc_caches[KMALLOC_NORMAL], by size class
	vmap     []vmapArea   // by id; vmap[0] unused
	freeVmap []uint32     // ids of unused vmap entries
	vmPages  uint64       // frames held by vmalloc areas
}

// kmallocIndex is the size class of every size up to
// KMALLOC_MAX_CACHE_SIZE: the smallest that holds it (Linux's size_index
// table for sizes up to 192, where the 96 and 192 classes sit between
// powers of two, and fls() above).
var kmallocIndex = func() *[KmallocMaxCacheSize + 1]uint8 {
	var t [KmallocMaxCacheSize + 1]uint8
	i := 0
	for sz := 1; sz < len(t); sz++ {
		if uint32(sz) > kmallocSizes[i] {
			i++
		}
		t[sz] = uint8(i)
	}
	return &t
}()

// vmapArea is one vmalloc area (struct vm_struct / vmap_area): the order-0
// pages vmalloc allocated for it. Linux maps them at a virtual address;
// khosim only keeps them.
type vmapArea struct {
	pages []PFN
	size  uint64
}

// kmemCacheInit creates the kmalloc caches (kmem_cache_init ->
// create_kmalloc_caches), which Linux runs from mm_core_init right after
// memblock_free_all: slab is available from then on (slab_is_available).
// It allocates no frames: a cache gets slabs on its first allocation.
func (mm *MM) kmemCacheInit() {
	s := &mm.slab
	s.ready = true
	for _, size := range kmallocSizes {
		name := fmt.Sprintf("kmalloc-%d", size)
		if size >= 1024 {
			name = fmt.Sprintf("kmalloc-%dk", size/1024)
		}
		s.kmalloc = append(s.kmalloc, mm.newKmemCache(name, size))
	}
}

// SlabAvailable reports whether the slab allocator is up
// (slab_is_available): from MemblockFreeAll on. Before, kernel metadata
// comes from memblock.
func (mm *MM) SlabAvailable() bool { return mm.slab.ready }

// KmemCacheCreate creates a cache of objects of size bytes
// (kmem_cache_create with no constructor and no flags). The objects are
// aligned to 8 bytes; the slab order is chosen as calculate_order() does
// for one CPU (at least 8 objects per slab where an order up to 3 allows
// it, and at most 1/16 of the slab wasted where possible). name is for
// SlabInfo and dumps; names need not be unique.
//
// Errors: EINVAL for a size of 0 or above KmemCacheMaxSize, or before
// MemblockFreeAll (kmem_cache_create needs slab_is_available); ENOSPC when
// 65535 caches exist.
func (mm *MM) KmemCacheCreate(name string, size uint32) (*KmemCache, error) {
	if !mm.slab.ready || size == 0 || size > KmemCacheMaxSize {
		return nil, errno.EINVAL
	}
	if len(mm.slab.caches) > slabCacheMask {
		return nil, errno.ENOSPC
	}
	return mm.newKmemCache(name, size), nil
}

func (mm *MM) newKmemCache(name string, objectSize uint32) *KmemCache {
	s := &mm.slab
	if len(s.caches) == 0 {
		s.caches = append(s.caches, nil) // id 0 names no cache
	}
	size := (objectSize + slabAlign - 1) &^ (slabAlign - 1)
	order := calculateOrder(size)
	c := &KmemCache{
		mm:         mm,
		name:       name,
		id:         uint16(len(s.caches)),
		objectSize: objectSize,
		size:       size,
		offset:     objectSize / 2 &^ (slabAlign - 1),
		order:      uint8(order),
		objects:    uint16(min((PageSize<<order)/uint64(size), maxObjsPerSlab)),
		minOrder:   uint8(getOrder(uint64(size))),
	}
	s.caches = append(s.caches, c)
	return c
}

// calculateOrder is calculate_order() with calc_slab_order() for one CPU:
// the smallest order holding slub_min_objects objects (fewer if even an
// order-3 slab cannot) whose leftover is at most 1/16 of the slab, then
// 1/8, 1/4, 1/2.
func calculateOrder(size uint32) uint {
	orderObjects := func(order uint) uint64 { return (PageSize << order) / uint64(size) }
	minObjects := min(uint64(slubMinObjects), orderObjects(slubMaxOrder))
	minOrder := getOrder(minObjects * uint64(size))
	if orderObjects(minOrder) > maxObjsPerSlab {
		return getOrder(uint64(size)*maxObjsPerSlab) - 1
	}
	for fraction := uint64(16); fraction > 1; fraction /= 2 {
		for order := minOrder; order <= slubMaxOrder; order++ {
			slabSize := uint64(PageSize) << order
			if slabSize%uint64(size) <= slabSize/fraction {
				return order
			}
		}
	}
	return max(minOrder, getOrder(uint64(size)))
}

// getOrder is get_order(): the smallest order whose block holds n bytes.
func getOrder(n uint64) uint {
	if n <= PageSize {
		return 0
	}
	return uint(bits.Len64((n - 1) >> PageShift))
}

// Name returns the cache's name.
func (c *KmemCache) Name() string { return c.name }

// ObjectSize returns the size the cache was created with (s->object_size).
func (c *KmemCache) ObjectSize() uint32 { return c.objectSize }

// ObjectsPerSlab returns how many objects a slab holds (oo_objects).
func (c *KmemCache) ObjectsPerSlab() int { return int(c.objects) }

// SlabOrder returns the order of the cache's slabs (oo_order).
func (c *KmemCache) SlabOrder() uint { return uint(c.order) }

// Inuse returns how many objects are allocated.
func (c *KmemCache) Inuse() uint64 { return c.inuse }

// NrSlabs returns how many slabs the cache holds.
func (c *KmemCache) NrSlabs() uint64 { return c.nrSlabs }

func (c *KmemCache) String() string {
	return fmt.Sprintf("kmem_cache %s (id %d): object %d size %d offset %d order %d objects %d; slabs %d (partial %d full %d) inuse %d",
		c.name, c.id, c.objectSize, c.size, c.offset, c.order, c.objects, c.nrSlabs, c.partial.nr, c.full.nr, c.inuse)
}

// Alloc allocates an object (kmem_cache_alloc(s, GFP_KERNEL)): from the
// first slab on the cache's partial list, or from a new slab whose pages
// come from the buddy allocator (GFP_KERNEL: never KHO scratch). The
// object's bytes are not initialised. The caller owns the object and
// frees it with Free or MM.Kfree.
//
// Errors: what the fault.Slab site injects (failslab, checked first);
// ENOMEM, or what the fault.PageAlloc site injects, when a new slab's
// pages cannot be allocated. Nothing changes on failure.
func (c *KmemCache) Alloc() (SlabObj, error) {
	mm := c.mm
	if mm.faults != nil {
		if err := mm.faults.Hit(fault.Slab); err != nil {
			return 0, err
		}
	}
	if c.partial.first == 0 {
		if err := c.newSlab(); err != nil {
			return 0, err
		}
	}
	pfn := linkPFN(c.partial.first)
	p := &mm.Memmap.pages[pfn]
	if p.index == 0 {
		mm.badSlab(pfn, "slab on the partial list of %s has no free object", c.name)
	}
	obj := pa(p.index)
	p.index = c.getFreePointer(obj)
	p.private++ // inuse
	c.inuse++
	c.allocs++
	if uint16(p.private&slabInuseMask) == slabObjects(p) {
		c.listDel(&c.partial, pfn)
		c.listAdd(&c.full, pfn, false)
	}
	return mkSlabObj(pfn, uint(uint64(obj-pfn.Phys())/uint64(c.size))), nil
}

// getFreePointer reads the free pointer of the free object at physical
// address obj (get_freepointer): the next free object's address, 0 for
// none.
func (c *KmemCache) getFreePointer(obj PhysAddr) uint64 {
	a := uint64(obj) + uint64(c.offset)
	return binary.LittleEndian.Uint64(c.mm.Frames.mem[a : a+8])
}

// setFreePointer writes the free pointer of the object at physical address
// obj (set_freepointer): next is an object's address or 0.
func (c *KmemCache) setFreePointer(obj PhysAddr, next uint64) {
	a := uint64(obj) + uint64(c.offset)
	binary.LittleEndian.PutUint64(c.mm.Frames.mem[a:a+8], next)
}

// newSlab allocates a slab's pages and puts the slab, all of it free, at
// the head of the partial list (new_slab + add_partial).
//
// It is allocate_slab(): a slab of the cache's order (s->oo) first; when
// the buddy allocator has no such block (memory fragmented, or a
// page_alloc fault), one of the smallest order that holds an object
// (s->min), as Linux retries with oo = s->min. Each try is one page
// allocation, so an armed page_alloc fault fails only the first.
func (c *KmemCache) newSlab() error {
	mm := c.mm
	order := uint(c.order)
	pfn, err := mm.AllocPages(GFPKernel, order)
	if err != nil && c.minOrder < c.order {
		order = uint(c.minOrder)
		pfn, err = mm.AllocPages(GFPKernel, order)
	}
	if err != nil {
		return err
	}
	objects := c.objectsOf(order)
	base := pfn.Phys()
	for i := uint64(0); i < uint64(objects); i++ {
		obj := base + PhysAddr(i*uint64(c.size))
		next := uint64(0)
		if i+1 < uint64(objects) {
			next = va(obj + PhysAddr(c.size))
		}
		c.setFreePointer(obj, next)
	}
	p := &mm.Memmap.pages[pfn]
	p.flags |= PGSlab
	p.index = va(base)
	p.private = uint64(objects)<<slabObjShift | uint64(c.id)<<slabCacheShift
	c.listAdd(&c.partial, pfn, true)
	c.nrSlabs++
	c.nrPages += 1 << order
	c.nrObjs += uint64(objects)
	return nil
}

// objectsOf is oo_objects of a slab of that order (order_objects).
func (c *KmemCache) objectsOf(order uint) uint16 {
	if order == uint(c.order) {
		return c.objects
	}
	return uint16(min((PageSize<<order)/uint64(c.size), maxObjsPerSlab))
}

// slabObjects is slab->objects: how many objects the slab whose head page
// is p holds.
func slabObjects(p *Page) uint16 { return uint16(p.private >> slabObjShift & slabObjectsMask) }

// slabOrder is the order of the slab whose head page is p (folio_order).
func slabOrder(p *Page) uint {
	if p.flags&PGHead == 0 {
		return 0
	}
	return p.order()
}

// listAdd puts the slab at pfn on l, first or last.
func (c *KmemCache) listAdd(l *slabList, pfn PFN, head bool) {
	pages := c.mm.Memmap.pages
	p := &pages[pfn]
	link := pfnLink(pfn)
	switch {
	case l.first == 0:
		p.lru = [2]uint32{}
		l.first, l.last = link, link
	case head:
		p.lru = [2]uint32{l.first, 0}
		pages[linkPFN(l.first)].lru[1] = link
		l.first = link
	default:
		p.lru = [2]uint32{0, l.last}
		pages[linkPFN(l.last)].lru[0] = link
		l.last = link
	}
	l.nr++
}

// listDel takes the slab at pfn off l.
func (c *KmemCache) listDel(l *slabList, pfn PFN) {
	pages := c.mm.Memmap.pages
	p := &pages[pfn]
	next, prev := p.lru[0], p.lru[1]
	if prev != 0 {
		pages[linkPFN(prev)].lru[0] = next
	} else {
		l.first = next
	}
	if next != 0 {
		pages[linkPFN(next)].lru[1] = prev
	} else {
		l.last = prev
	}
	p.lru = [2]uint32{}
	l.nr--
}

// Free frees an object of this cache (kmem_cache_free): it goes to the
// head of its slab's free list. A slab that was full goes to the tail of
// the partial list; one left empty is given back to the buddy allocator
// unless it is the cache's only partial slab (see min_partial above).
//
// Preconditions (bugs, which panic with "slab-free"): obj names an
// allocated object of this cache: its page is a slab of this cache
// (cache_from_obj), its slot exists, and it is not the first free object
// of its slab (the double free SLUB's hardened free list catches). A
// double free the cheap test misses breaks the slab's free list, which
// CheckInvariants reports ("slab-page").
func (c *KmemCache) Free(obj SlabObj) {
	pfn, p := c.mm.slabOf(obj, "kmem_cache_free")
	if id := uint16(p.private >> slabCacheShift & slabCacheMask); id != c.id {
		c.mm.badSlabFree(obj, "kmem_cache_free(%s, %v) of an object of cache %d", c.name, obj, id)
	}
	c.free(pfn, p, obj)
}

// free is __slab_free for an object slabOf has validated.
func (c *KmemCache) free(pfn PFN, p *Page, obj SlabObj) {
	mm := c.mm
	addr := pfn.Phys() + PhysAddr(uint64(obj.Slot())*uint64(c.size))
	if p.index == va(addr) {
		mm.badSlabFree(obj, "double free of %v in %s: it is already the first free object of its slab", obj, c.name)
	}
	inuse := uint16(p.private & slabInuseMask)
	if inuse == 0 {
		mm.badSlabFree(obj, "free of %v in %s: its slab has no object in use", obj, c.name)
	}
	wasFull := inuse == slabObjects(p)
	c.setFreePointer(addr, p.index)
	p.index = va(addr)
	p.private--
	inuse--
	c.inuse--
	c.frees++
	if wasFull {
		c.listDel(&c.full, pfn)
		c.listAdd(&c.partial, pfn, false)
	}
	if inuse == 0 && c.partial.nr > 1 {
		c.discardSlab(pfn)
	}
}

// discardSlab takes an empty slab off the partial list and frees its
// pages (remove_partial + discard_slab -> __free_slab).
func (c *KmemCache) discardSlab(pfn PFN) {
	mm := c.mm
	c.listDel(&c.partial, pfn)
	p := &mm.Memmap.pages[pfn]
	c.nrSlabs--
	c.nrPages -= 1 << slabOrder(p)
	c.nrObjs -= uint64(slabObjects(p))
	p.flags &^= PGSlab // __folio_clear_slab
	p.index, p.private = 0, 0
	mm.putRefs(Folio(pfn), p, 1)
}

// Shrink gives every empty slab of the cache back to the buddy allocator
// (kmem_cache_shrink). It returns how many frames it freed.
func (c *KmemCache) Shrink() uint64 {
	var freed uint64
	for l := c.partial.first; l != 0; {
		pfn := linkPFN(l)
		p := &c.mm.Memmap.pages[pfn]
		l = p.lru[0]
		if p.private&slabInuseMask == 0 {
			freed += 1 << slabOrder(p)
			c.discardSlab(pfn)
		}
	}
	return freed
}

// KmemCacheShrink shrinks every cache (kmem_cache_shrink on each, as
// writing 1 to every /sys/kernel/slab/*/shrink does). It returns how many
// frames it freed.
func (mm *MM) KmemCacheShrink() uint64 {
	var freed uint64
	for _, c := range mm.slab.caches {
		if c != nil {
			freed += c.Shrink()
		}
	}
	return freed
}

// slabOf validates obj and returns its slab's head page (virt_to_slab).
func (mm *MM) slabOf(obj SlabObj, op string) (PFN, *Page) {
	pfn := obj.PFN()
	if obj == 0 || uint64(pfn) >= uint64(len(mm.Memmap.pages)) || mm.uninitialised(pfn) {
		mm.badSlabFree(obj, "%s of %v: not a slab object", op, obj)
	}
	p := &mm.Memmap.pages[pfn]
	if p.flags&PGSlab == 0 {
		mm.badSlabFree(obj, "%s of %v: %v is not a slab page", op, obj, pfn)
	}
	if obj.Slot() >= uint(p.private>>slabObjShift&slabObjectsMask) {
		mm.badSlabFree(obj, "%s of %v: its slab has %d objects", op, obj, p.private>>slabObjShift&slabObjectsMask)
	}
	return pfn, p
}

// cacheOfPage returns the cache a slab page records, or nil.
func (mm *MM) cacheOfPage(p *Page) *KmemCache {
	id := int(p.private >> slabCacheShift & slabCacheMask)
	if id == 0 || id >= len(mm.slab.caches) {
		return nil
	}
	return mm.slab.caches[id]
}

func (mm *MM) badSlabFree(obj SlabObj, detail string, args ...any) {
	dump := "no such frame"
	if pfn := obj.PFN(); uint64(pfn) < uint64(len(mm.Memmap.pages)) {
		dump = mm.dumpPage(pfn)
		if c := mm.cacheOfPage(&mm.Memmap.pages[pfn]); c != nil && mm.Memmap.pages[pfn].flags&PGSlab != 0 {
			dump += "\n" + c.String()
		}
	}
	bug(invSlabFree, dump, detail, args...)
}

func (mm *MM) badSlab(pfn PFN, detail string, args ...any) {
	bug(invSlabPage, mm.dumpPage(pfn), detail, args...)
}

// kmallocCache returns the kmalloc cache for size bytes
// (kmalloc_slab), or nil above KmallocMaxCacheSize.
func (mm *MM) kmallocCache(size uint64) *KmemCache {
	if size == 0 || size > KmallocMaxCacheSize {
		return nil
	}
	return mm.slab.kmalloc[kmallocIndex[size]]
}

// Kmalloc allocates size bytes of kernel memory (kmalloc(size,
// GFP_KERNEL)) from the smallest kmalloc size class that holds them:
// kmalloc-8 ... kmalloc-8k. Free it with Kfree.
//
// Errors: EINVAL for a size of 0 or above KmallocMaxCacheSize (Linux's
// kmalloc_large is not modelled: large kernel arrays go to Kvmalloc);
// those of KmemCache.Alloc.
// Preconditions: the slab allocator is up (MemblockFreeAll has run);
// otherwise panics with "slab-available" (before it, kernel data comes
// from memblock).
func (mm *MM) Kmalloc(size uint64) (SlabObj, error) {
	if !mm.slab.ready {
		mm.badSlabAvailable("kmalloc", size)
	}
	c := mm.kmallocCache(size)
	if c == nil {
		return 0, errno.EINVAL
	}
	return c.Alloc()
}

func (mm *MM) badSlabAvailable(op string, size uint64) {
	bug(invSlabAvailable, mm.Memblock.String(), "%s(%d) before memblock_free_all: early boot allocates from memblock", op, size)
}

// Kfree frees any slab object, of a kmalloc cache or another (kfree, which
// finds the cache from the slab: slab->slab_cache). Kfree(0) does nothing.
// Preconditions: as KmemCache.Free.
func (mm *MM) Kfree(obj SlabObj) {
	if obj == 0 {
		return
	}
	pfn, p := mm.slabOf(obj, "kfree")
	c := mm.cacheOfPage(p)
	if c == nil {
		mm.badSlabFree(obj, "kfree(%v): its slab names no cache", obj)
	}
	c.free(pfn, p, obj)
}

// ObjectBytes returns the bytes of an allocated object in the frames
// (what the pointer kmem_cache_alloc returns points at): object_size
// bytes. They must not be used after the object is freed.
// Preconditions: as KmemCache.Free.
func (mm *MM) ObjectBytes(obj SlabObj) []byte {
	pfn, p := mm.slabOf(obj, "object bytes")
	c := mm.cacheOfPage(p)
	if c == nil {
		mm.badSlabFree(obj, "%v: its slab names no cache", obj)
	}
	a := uint64(pfn.Phys()) + uint64(obj.Slot())*uint64(c.size)
	return mm.Frames.mem[a : a+uint64(c.objectSize) : a+uint64(c.objectSize)]
}

// Kvbuf names a Kvmalloc'd buffer (the pointer kvmalloc returns): a
// kmalloc object for sizes up to KmallocMaxCacheSize, else a vmalloc area.
// The zero Kvbuf names nothing.
type Kvbuf struct {
	obj  SlabObj
	area uint32 // vmalloc area id, 0 for none
}

// IsZero reports whether b names nothing.
func (b Kvbuf) IsZero() bool { return b == Kvbuf{} }

// Kvmalloc allocates size bytes of kernel memory for an array
// (kvmalloc(size, GFP_KERNEL)): kmalloc for sizes up to
// KmallocMaxCacheSize, else vmalloc: ceil(size/PageSize) order-0 pages,
// GFP_KERNEL, each its own allocation (__vmalloc_area_node). Linux tries
// kmalloc for larger sizes too (a high-order allocation without retries)
// before vmalloc; khosim goes to vmalloc directly. Its frames count as
// slab (NrSlabFrames). Free it with Kvfree.
//
// Errors: EINVAL for a size of 0; what the fault.Slab site injects (for
// vmalloc: the kmalloc attempt kvmalloc makes first); those of the page
// allocations (ENOMEM, the page_alloc fault). Nothing stays allocated on
// failure.
// Preconditions: as Kmalloc.
func (mm *MM) Kvmalloc(size uint64) (Kvbuf, error) {
	if !mm.slab.ready {
		mm.badSlabAvailable("kvmalloc", size)
	}
	if size == 0 {
		return Kvbuf{}, errno.EINVAL
	}
	if size <= KmallocMaxCacheSize {
		obj, err := mm.Kmalloc(size)
		return Kvbuf{obj: obj}, err
	}
	if mm.faults != nil {
		if err := mm.faults.Hit(fault.Slab); err != nil {
			return Kvbuf{}, err
		}
	}
	n := (size + PageSize - 1) >> PageShift
	pages := make([]PFN, 0, n)
	for range n {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			for _, q := range pages {
				mm.FreePages(q, 0)
			}
			return Kvbuf{}, err
		}
		pages = append(pages, pfn)
	}
	s := &mm.slab
	var id uint32
	if k := len(s.freeVmap); k > 0 {
		id, s.freeVmap = s.freeVmap[k-1], s.freeVmap[:k-1]
	} else {
		if len(s.vmap) == 0 {
			s.vmap = append(s.vmap, vmapArea{})
		}
		id = uint32(len(s.vmap))
		s.vmap = append(s.vmap, vmapArea{})
	}
	s.vmap[id] = vmapArea{pages: pages, size: size}
	s.vmPages += n
	return Kvbuf{area: id}, nil
}

// Kvfree frees a Kvmalloc'd buffer (kvfree); the zero Kvbuf is ignored.
// Preconditions: b is live; a vmalloc area freed twice panics with
// "slab-free", a kmalloc object as Kfree.
func (mm *MM) Kvfree(b Kvbuf) {
	if b.area == 0 {
		mm.Kfree(b.obj)
		return
	}
	s := &mm.slab
	if int(b.area) >= len(s.vmap) || s.vmap[b.area].pages == nil {
		bug(invSlabFree, "", "kvfree of vmalloc area %d, which is not allocated", b.area)
	}
	a := &s.vmap[b.area]
	for _, pfn := range a.pages {
		mm.FreePages(pfn, 0)
	}
	s.vmPages -= uint64(len(a.pages))
	*a = vmapArea{}
	s.freeVmap = append(s.freeVmap, b.area)
}

// KvbufFrames returns how many frames b holds: its share of a slab is
// not one, so a kmalloc'd buffer reports 0.
func (mm *MM) KvbufFrames(b Kvbuf) uint64 {
	if b.area == 0 || int(b.area) >= len(mm.slab.vmap) {
		return 0
	}
	return uint64(len(mm.slab.vmap[b.area].pages))
}

// NrSlabFrames returns the frames holding kernel metadata: every slab's
// pages and every vmalloc area's (the kernel's frames(slab); Linux's
// NR_SLAB_UNRECLAIMABLE_B plus the vmalloc'd part of NR_VMALLOC).
func (mm *MM) NrSlabFrames() uint64 {
	n := mm.slab.vmPages
	for _, c := range mm.slab.caches {
		if c != nil {
			n += c.nrPages
		}
	}
	return n
}

// SlabRange is a run of frames the slab allocator holds.
type SlabRange struct {
	PFN   PFN
	Pages uint64
	Owner string // "slab kmalloc-64", "vmalloc"
}

// SlabFrames yields every run of frames the slab allocator holds: each
// slab (in cache order, partial list first, then full) and each vmalloc
// area's pages. The kernel reports them to its reference audit, which
// counts them owned.
func (mm *MM) SlabFrames() iter.Seq[SlabRange] {
	return func(yield func(SlabRange) bool) {
		pages := mm.Memmap.pages
		for _, c := range mm.slab.caches {
			if c == nil {
				continue
			}
			owner := "slab " + c.name
			for _, l := range []*slabList{&c.partial, &c.full} {
				for link := l.first; link != 0; link = pages[linkPFN(link)].lru[0] {
					if !yield(SlabRange{linkPFN(link), 1 << slabOrder(&pages[linkPFN(link)]), owner}) {
						return
					}
				}
			}
		}
		for _, a := range mm.slab.vmap {
			for _, pfn := range a.pages {
				if !yield(SlabRange{pfn, 1, "vmalloc"}) {
					return
				}
			}
		}
	}
}

// SlabInfo is one line of /proc/slabinfo.
type SlabInfo struct {
	Name         string
	ActiveObjs   uint64 // objects in use
	NumObjs      uint64 // objects the slabs hold
	ObjSize      uint32 // s->size
	ObjPerSlab   int
	PagesPerSlab int
	NumSlabs     uint64
	Allocs       uint64 // successful allocations so far
	Frees        uint64
}

// SlabInfo returns /proc/slabinfo: every cache, in creation order.
func (mm *MM) SlabInfo() []SlabInfo {
	var out []SlabInfo
	for _, c := range mm.slab.caches {
		if c == nil {
			continue
		}
		out = append(out, SlabInfo{
			Name: c.name, ActiveObjs: c.inuse, NumObjs: c.nrObjs, ObjSize: c.size,
			ObjPerSlab: int(c.objects), PagesPerSlab: 1 << c.order, NumSlabs: c.nrSlabs,
			Allocs: c.allocs, Frees: c.frees,
		})
	}
	return out
}

// slabString dumps the caches for a violation.
func (mm *MM) slabString() string {
	var b strings.Builder
	for _, c := range mm.slab.caches {
		if c != nil {
			b.WriteString(c.String() + "\n")
		}
	}
	fmt.Fprintf(&b, "vmalloc: %d frames", mm.slab.vmPages)
	return b.String()
}
