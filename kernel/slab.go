package kernel

import (
	"math/bits"

	"khosim/errno"
	"khosim/physmem"
)

// Kernel metadata in simulated RAM.
//
// Linux keeps its per-object metadata in slab caches (mm/slub.c), whose
// pages come from the buddy allocator, and allocating one can fail. So
// does khosim's kernel, with physmem's slab allocator: each object below
// costs its share of a slab page and its allocation goes through the slab
// fault site (failslab) and, for a new slab, the page_alloc one. The Go
// object keeps the metadata itself and the handle of its slab object.
//
//	cache              object size  charged for                       freed
//	radix_tree_node    576          every page-cache XArray node      with the node
//	shmem_inode_cache  768          every shmem/tmpfs inode           at eviction
//	filp               256          every struct file                 at the last fput
//	vm_area_struct     184          every mapping                     at munmap/exit
//	kmalloc, kvmalloc  56 + 8/fd    fd tables beyond 64 fds           when replaced, at exit
//	kvmalloc           1 byte/slot  the swap map (swapon)             never (no swapoff)
//
// The sizes are those of x86-64 builds of Linux 6.x (sizeof of the
// structure, rounded as its cache rounds it), up to a few bytes.
// Not charged: tasks (task_struct, mm_struct, files_struct with its
// embedded 64-fd table, cred), page tables, dentries and char devices:
// NewTask cannot fail, and none of them is per-page metadata.
//
// Nothing charges slab before memblock_free_all: the caches are created
// right after it (kmem_cache_init and the subsystems' cache setup in
// mm_core_init and vfs_caches_init), and what early boot allocates comes
// from memblock (the memmap, in KHO scratch on a kexec boot).
//
// frames(slab) counts the frames of every slab and vmalloc area (the
// kernel registers physmem's NrSlabFrames as the "slab" frame counter),
// and the reference audit counts them owned by "slab".

// kernelCaches are the kernel's slab caches.
type kernelCaches struct {
	radixTreeNode *physmem.KmemCache // radix_tree_node_cachep (radix_tree_init)
	shmemInode    *physmem.KmemCache // shmem_inode_cachep (shmem_init_inodecache)
	filp          *physmem.KmemCache // filp_cachep (files_init)
	vmArea        *physmem.KmemCache // vm_area_cachep (proc_caches_init)
}

// Object sizes of the kernel's caches (x86-64, Linux 6.x).
const (
	xaNodeSize     = 576 // sizeof(struct xa_node)
	shmemInodeSize = 768 // sizeof(struct shmem_inode_info), VFS inode included
	filpSize       = 256 // sizeof(struct file), SLAB_HWCACHE_ALIGN
	vmAreaSize     = 184 // sizeof(struct vm_area_struct)
)

// kmemCachesInit creates the kernel's caches, right after
// memblock_free_all brought the slab allocator up. They allocate no
// frames until their first object.
func (k *Kernel) kmemCachesInit() error {
	for _, c := range []struct {
		p    **physmem.KmemCache
		name string
		size uint32
	}{
		{&k.caches.radixTreeNode, "radix_tree_node", xaNodeSize},
		{&k.caches.shmemInode, "shmem_inode_cache", shmemInodeSize},
		{&k.caches.filp, "filp", filpSize},
		{&k.caches.vmArea, "vm_area_struct", vmAreaSize},
	} {
		cache, err := k.MM.KmemCacheCreate(c.name, c.size)
		if err != nil {
			return err
		}
		*c.p = cache
	}
	return nil
}

// registerSlab makes the slab allocator's frames visible: the "slab"
// frame counter (frames(slab)) and the reference audit's owner "slab".
func (k *Kernel) registerSlab() {
	mm := k.MM
	k.RegisterFrameCounter("slab", mm.NrSlabFrames)
	k.RegisterRefOwner("slab", func(v RefVisitor) {
		for r := range mm.SlabFrames() {
			v.Frames(r.PFN, r.Pages, r.Owner)
		}
	})
}

// SlabInfo returns /proc/slabinfo: every cache of this kernel.
func (k *Kernel) SlabInfo() []physmem.SlabInfo {
	k.mustAlive()
	return k.MM.SlabInfo()
}

// Fd tables (fs/file.c). A task's files_struct embeds a table of
// NR_OPEN_DEFAULT fds; beyond, expand_files allocates a larger fdtable:
// the struct itself (kmalloc), the fd array and the bitmaps (kvmalloc),
// and frees the previous one.
const (
	nrOpenDefault = 64      // NR_OPEN_DEFAULT (BITS_PER_LONG)
	fdtableSize   = 56      // sizeof(struct fdtable)
	sysctlNrOpen  = 1 << 20 // fs.nr_open
)

// fdtable is the charged part of an fd table larger than the embedded
// one; the zero fdtable is the embedded table of NR_OPEN_DEFAULT fds.
type fdtable struct {
	maxFDs int             // fdt->max_fds
	obj    physmem.SlabObj // the struct fdtable
	fd     physmem.Kvbuf   // fdt->fd: the array of struct file pointers
	bits   physmem.Kvbuf   // open_fds, close_on_exec, full_fds_bits
}

// maxFDs returns the fds the table holds.
func (t *Task) maxFDs() int {
	if t.fdt.maxFDs == 0 {
		return nrOpenDefault
	}
	return t.fdt.maxFDs
}

// expandFiles makes the fd table hold fd (expand_files ->
// expand_fdtable -> alloc_fdtable): a table of the next size up, rounded
// as alloc_fdtable() rounds it (a power of two of 1 KiB fd arrays, at
// least 128 fds), replaces the old one, which is freed.
//
// Errors: EMFILE beyond fs.nr_open; ENOMEM (or the injected slab or
// page_alloc fault) when the new table cannot be allocated: the old one
// stays.
func (t *Task) expandFiles(fd int) error {
	if fd < t.maxFDs() {
		return nil
	}
	if fd >= sysctlNrOpen {
		return errno.EMFILE
	}
	const perKiB = 1024 / 8 // struct file pointers in 1 KiB
	nr := (fd + 1) / perKiB
	nr = 1 << bits.Len(uint(nr)) // roundup_pow_of_two(nr + 1)
	nr *= perKiB
	nr = min(nr, sysctlNrOpen)
	mm := t.k.MM
	obj, err := mm.Kmalloc(fdtableSize)
	if err != nil {
		return errno.ENOMEM
	}
	fds, err := mm.Kvmalloc(uint64(nr) * 8)
	if err != nil {
		mm.Kfree(obj)
		return errno.ENOMEM
	}
	// 2 * nr / BITS_PER_BYTE + BITBIT_SIZE(nr), at least a cache line.
	bitmaps, err := mm.Kvmalloc(max(uint64(2*nr/8+(nr+64*64-1)/(64*64)*8), 64))
	if err != nil {
		mm.Kvfree(fds)
		mm.Kfree(obj)
		return errno.ENOMEM
	}
	t.freeFdtable()
	t.fdt = fdtable{maxFDs: nr, obj: obj, fd: fds, bits: bitmaps}
	return nil
}

// freeFdtable frees a table larger than the embedded one (__free_fdtable).
func (t *Task) freeFdtable() {
	if t.fdt.maxFDs == 0 {
		return
	}
	mm := t.k.MM
	mm.Kvfree(t.fdt.bits)
	mm.Kvfree(t.fdt.fd)
	mm.Kfree(t.fdt.obj)
	t.fdt = fdtable{}
}
