package kernel

import "khosim/pagecache"

// InodeOps is the behaviour of a kind of inode (the parts of
// super_operations and inode_operations khosim needs).
type InodeOps interface {
	// Evict frees the inode's data once it has no name and no open file
	// (->evict_inode, called from iput_final()).
	Evict(in *Inode)
}

// Inode is an in-memory inode (struct inode). The inode lives while it has
// a name in a filesystem namespace (Nlink > 0) or an open file; the last
// iput evicts it.
type Inode struct {
	k   *Kernel
	Ino uint64
	Ops InodeOps

	// Mode is i_mode: the file type (S_IFREG, S_IFDIR, S_IFCHR) and the
	// permission bits. Zero, as for an anonymous inode, is no type.
	Mode uint32
	// UID owns the inode (i_uid).
	UID uint32
	// Size is i_size.
	Size int64
	// Nlink counts names (a tmpfs file under /tmp has one; a memfd none).
	Nlink int
	// Mapping is the page cache (i_mapping), or nil.
	Mapping *pagecache.AddressSpace
	// Private is the filesystem's per-inode state (for shmem:
	// *ShmemInodeInfo, SHMEM_I()).
	Private any

	openFiles int
	evicted   bool
}

// NewInode allocates an inode with the next inode number. The struct
// inode is part of its filesystem's inode object (struct shmem_inode_info
// embeds it), so the filesystem charges it: shmem allocates its inodes
// from shmem_inode_cache; an inode of a filesystem without a cache (test
// file kinds) costs no frames.
func (k *Kernel) NewInode(ops InodeOps) *Inode {
	k.mustAlive()
	k.nextIno++
	in := &Inode{k: k, Ino: k.nextIno, Ops: ops}
	k.inodes[in] = struct{}{}
	return in
}

// OpenFiles returns how many files are open on the inode.
func (in *Inode) OpenFiles() int { return in.openFiles }

// Kernel returns the inode's kernel.
func (in *Inode) Kernel() *Kernel { return in.k }

// Unlink drops one name (drop_nlink) and evicts the inode if it was the
// last reference.
func (in *Inode) Unlink() {
	in.Nlink--
	in.iput()
}

// iput evicts the inode when nothing references it any more (iput_final).
func (in *Inode) iput() {
	if in.evicted || in.Nlink > 0 || in.openFiles > 0 {
		return
	}
	in.evicted = true
	if in.Ops != nil {
		in.Ops.Evict(in)
	}
	delete(in.k.inodes, in)
}
