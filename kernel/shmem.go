package kernel

import (
	"fmt"
	"math"

	"khosim/errno"
	"khosim/pagecache"
	"khosim/physmem"
	"khosim/uapi"
)

// File types and permission bits of i_mode (include/uapi/linux/stat.h).
const (
	sIFMT  = 0o170000
	sIFREG = 0o100000
	sIFDIR = 0o040000
	sIFCHR = 0o020000
)

// maxLFSFileSize is MAX_LFS_FILESIZE on 64-bit: tmpfs's s_maxbytes.
const maxLFSFileSize = math.MaxInt64

// vmNoreserve is VM_NORESERVE in shmem_inode_info->flags: the inode's
// pages are accounted per page as they are allocated (shmem_acct_blocks)
// rather than for the whole size up front. memfds and tmpfs files are all
// VM_NORESERVE.
const vmNoreserve = 0x00200000

// shmemHuge is a transparent-huge-page policy for shmem
// (SHMEM_HUGE_NEVER ... SHMEM_HUGE_FORCE in mm/shmem.c).
type shmemHuge int

const (
	shmemHugeNever      shmemHuge = 0
	shmemHugeAlways     shmemHuge = 1
	shmemHugeWithinSize shmemHuge = 2
	shmemHugeAdvise     shmemHuge = 3
	shmemHugeDeny       shmemHuge = -1
	shmemHugeForce      shmemHuge = -2
)

// parseShmemHuge is shmem_parse_huge().
func parseShmemHuge(s string) (shmemHuge, bool) {
	switch s {
	case "never":
		return shmemHugeNever, true
	case "always":
		return shmemHugeAlways, true
	case "within_size":
		return shmemHugeWithinSize, true
	case "advise":
		return shmemHugeAdvise, true
	case "deny":
		return shmemHugeDeny, true
	case "force":
		return shmemHugeForce, true
	}
	return 0, false
}

func (h shmemHuge) String() string {
	switch h {
	case shmemHugeNever:
		return "never"
	case shmemHugeAlways:
		return "always"
	case shmemHugeWithinSize:
		return "within_size"
	case shmemHugeAdvise:
		return "advise"
	case shmemHugeDeny:
		return "deny"
	case shmemHugeForce:
		return "force"
	}
	return fmt.Sprintf("shmem_huge(%d)", int(h))
}

// shmemSB models struct shmem_sb_info: one tmpfs superblock. khosim has
// two: the internal shm_mnt (memfds and shmem_file_setup files; no size
// limit, like every SB_KERNMOUNT) and the tmpfs mounted on /tmp (size=50%
// of RAM, the tmpfs default).
type shmemSB struct {
	name       string
	maxBlocks  uint64    // size limit in pages (0: none)
	usedBlocks uint64    // pages accounted to its inodes (used_blocks)
	huge       shmemHuge // huge= mount option
	inodes     int       // live inodes (for statistics)
}

// ShmemInodeInfo models struct shmem_inode_info (SHMEM_I()): the shmem
// part of an inode, with the parts of struct address_space khosim keeps
// beside the page cache (i_mmap, i_mmap_writable).
//
// Each page index of the file is, at any time, in one of these states:
//
//	hole --fallocate--> !uptodate folio (reads as zeros)
//	hole, !uptodate --write, fault, second fallocate--> uptodate folio
//	uptodate folio --MADV_PAGEOUT (shmem_writepage)--> swap entry
//	swap entry --read, write, fault, fallocate, KHO swap-in--> uptodate folio
//	any --truncate, punch hole, failed-fallocate undo (ShmemUndoRange)--> hole
//
// A folio may span 512 indices (a PMD-sized folio) and is split to order 0
// when only part of it must go.
//
// Accounting (shmem_recalc_inode): alloced counts the pages allocated to
// the file, in the page cache or out on swap; swapped the ones on swap. At
// rest alloced == nrpages + swapped, and the superblock's used_blocks is
// the sum of its inodes' alloced.
type ShmemInodeInfo struct {
	inode   *Inode
	sb      *shmemSB
	mapping *pagecache.AddressSpace

	alloced   int64  // data pages alloced to file
	swapped   int64  // subtotal assigned to swap
	fallocend uint64 // highest fallocate endindex
	flags     uint64 // VM_NORESERVE

	// Seals are the F_SEAL_* bits (memfd_file_seals_ptr()). A tmpfs file
	// starts with F_SEAL_SEAL: it cannot be sealed.
	Seals uint32

	// i_mmap: the VMAs mapping the file, and i_mmap_writable: how many of
	// them are shared and may write (positive), or -1 after F_SEAL_WRITE
	// denied writable mappings (mapping_deny_writable()).
	mmaps        map[*VMA]struct{}
	mmapWritable int
	largeFolios  bool // mapping_large_folio_support()

	obj physmem.SlabObj // its shmem_inode_cache object
}

// Inode returns the VFS inode.
func (info *ShmemInodeInfo) Inode() *Inode { return info.inode }

// Mapping returns the page cache (inode->i_mapping).
func (info *ShmemInodeInfo) Mapping() *pagecache.AddressSpace { return info.mapping }

// Alloced returns info->alloced: pages allocated to the file.
func (info *ShmemInodeInfo) Alloced() int64 { return info.alloced }

// Swapped returns info->swapped: pages of the file out on swap.
func (info *ShmemInodeInfo) Swapped() int64 { return info.swapped }

// Fallocend returns info->fallocend: the end index of the furthest
// fallocate.
func (info *ShmemInodeInfo) Fallocend() uint64 { return info.fallocend }

// SetFallocend restores info->fallocend. Added for KHO (kexec/fdbox
// memfd_kho.go): shmem_undo_range() resets fallocend when KHO takes a
// frozen memfd's folios out of its page cache, and deactivating KHO must
// put the file back exactly as it was.
func (info *ShmemInodeInfo) SetFallocend(end uint64) { info.fallocend = end }

func (info *ShmemInodeInfo) String() string {
	return fmt.Sprintf("shmem inode %d (%s): size %d alloced %d swapped %d nrpages %d fallocend %d seals %#x",
		info.inode.Ino, info.sb.name, info.inode.Size, info.alloced, info.swapped,
		info.mapping.NrPages(), info.fallocend, info.Seals)
}

// SHMEM_I returns the shmem part of an inode, or nil for other inodes.
func shmemI(in *Inode) *ShmemInodeInfo {
	if in == nil {
		return nil
	}
	info, _ := in.Private.(*ShmemInodeInfo)
	return info
}

// ShmemInode returns the shmem inode of a shmem file (SHMEM_I(file_inode())),
// or nil if f is not a shmem file.
func ShmemInode(f *File) *ShmemInodeInfo {
	if !IsShmemFile(f) {
		return nil
	}
	return shmemI(f.Inode)
}

// shmemFileOps is shmem_file_operations. Three values of it exist so that
// a file's Ops says what it is: a tmpfs file under /tmp, a bare shmem file
// (shmem_file_setup), or a memfd (memfd_setup_file sets memfdFops, as the
// RFC sets f_fdbox_op for memfds).
type shmemFileOps struct{ kind string }

var (
	tmpfsFops = &shmemFileOps{"tmpfs"}
	shmemFops = &shmemFileOps{"shmem"}
	memfdFops = &shmemFileOps{"memfd"}
)

// Kind implements FileOps.
func (o *shmemFileOps) Kind() string { return o.kind }

// IsMemfd reports whether f is a memfd (by its Ops, as FDBox recognises
// preservable files).
func IsMemfd(f *File) bool { return f.Ops == memfdFops }

// IsShmemFile reports whether f is a shmem or tmpfs file (shmem_file()).
func IsShmemFile(f *File) bool {
	_, ok := f.Ops.(*shmemFileOps)
	return ok && shmemI(f.Inode) != nil
}

// shmemInodeOps is shmem's super_operations: eviction.
type shmemInodeOps struct{}

// Evict frees a shmem inode's pages and swap once it has no name and no
// open file (shmem_evict_inode: shmem_truncate_range(inode, 0, -1)),
// then the inode itself (shmem_free_in_core_inode: its shmem_inode_cache
// object). Reservations left in the page cache (pagecache.Reserve, which
// KHO uses) are released first: the XArray must be empty (Linux's
// clear_inode() checks mapping_empty()), and its last nodes go with them.
func (shmemInodeOps) Evict(in *Inode) {
	info := shmemI(in)
	k := in.k
	in.Size = 0
	shmemTruncateRange(info, 0, -1)
	info.mapping.ReleaseAll()
	if info.alloced != 0 || info.swapped != 0 || info.mapping.NrPages() != 0 || len(info.mmaps) != 0 ||
		info.mapping.Counts() != (pagecache.Counts{}) {
		panicViolation("shmem-evict-empty", info.String(), "inode %d still holds pages, entries or mappings at eviction", in.Ino)
	}
	info.sb.inodes--
	k.freeMappingID(info.mapping.ID())
	k.caches.shmemInode.Free(info.obj)
	info.obj = 0
}

// newMappingID hands out the lowest free MappingID and records its owner.
func (k *Kernel) newMappingID(info *ShmemInodeInfo) physmem.MappingID {
	if n := len(k.freeIDs); n > 0 {
		id := k.freeIDs[n-1]
		k.freeIDs = k.freeIDs[:n-1]
		k.mappings[id] = info
		return id
	}
	if len(k.mappings) == 0 {
		k.mappings = append(k.mappings, nil) // ID 0: no mapping
	}
	if len(k.mappings) > math.MaxUint32 {
		panic("kernel: out of mapping IDs")
	}
	k.mappings = append(k.mappings, info)
	return physmem.MappingID(len(k.mappings) - 1)
}

func (k *Kernel) freeMappingID(id physmem.MappingID) {
	k.mappings[id] = nil
	k.freeIDs = append(k.freeIDs, id)
}

// mappingOwner returns the shmem inode owning mapping id, or nil.
func (k *Kernel) mappingOwner(id physmem.MappingID) *ShmemInodeInfo {
	if int(id) >= len(k.mappings) {
		return nil
	}
	return k.mappings[id]
}

// shmemGetInode is shmem_get_inode() for a regular file: a new inode on
// sb with the given mode and owner, an empty page cache whose nodes are
// charged to radix_tree_node, F_SEAL_SEAL (a file cannot be sealed unless
// memfd_create allows it), VM_NORESERVE. The inode is a shmem_inode_cache
// object.
//
// Errors: ENOSPC (or the injected slab or page_alloc fault, as ENOSPC)
// when the inode cannot be allocated: __shmem_get_inode() turns a failed
// new_inode() into -ENOSPC.
func (k *Kernel) shmemGetInode(sb *shmemSB, mode, uid uint32) (*ShmemInodeInfo, error) {
	obj, err := k.caches.shmemInode.Alloc() // alloc_inode -> shmem_alloc_inode
	if err != nil {
		return nil, errno.ENOSPC
	}
	in := k.NewInode(shmemInodeOps{})
	in.Mode = sIFREG | mode&0o7777
	in.UID = uid
	info := &ShmemInodeInfo{
		inode:       in,
		sb:          sb,
		flags:       vmNoreserve,
		Seals:       uapi.F_SEAL_SEAL,
		mmaps:       map[*VMA]struct{}{},
		largeFolios: sb.huge != shmemHugeNever && sb.huge != shmemHugeDeny,
		obj:         obj,
	}
	as, err := pagecache.NewAddressSpace(k.newMappingID(info))
	if err != nil {
		panic(err) // IDs start at 1
	}
	as.SetNodeCache(k.caches.radixTreeNode)
	info.mapping = as
	in.Mapping = as
	in.Private = info
	sb.inodes++
	return info, nil
}

// shmemFileSetup is __shmem_file_setup() on shm_mnt: an unlinked shmem
// inode of the given size and an O_RDWR file on it, owned by uid.
//
// Errors: EINVAL for a bad size; ENOSPC when the inode cannot be
// allocated; ENOMEM when the file cannot (alloc_file_pseudo), the inode
// then going again (iput).
func (k *Kernel) shmemFileSetup(name string, size int64, uid uint32) (*File, error) {
	if size < 0 || size > maxLFSFileSize {
		return nil, errno.EINVAL
	}
	info, err := k.shmemGetInode(k.shm, 0o777, uid) // S_IFREG | S_IRWXUGO
	if err != nil {
		return nil, err
	}
	info.inode.Size = size
	f, err := k.AllocFile(shmemFops, info.inode, name, uapi.O_RDWR)
	if err != nil {
		info.inode.iput()
		return nil, err
	}
	return f, nil
}

// ShmemFileSetup creates an unlinked shmem file of size bytes on the
// internal mount, as the RFC's shmem_fdbox_kho_recover() does with
// shmem_file_setup(name, 0, VM_NORESERVE): O_RDWR, no seals allowed yet
// (F_SEAL_SEAL), owned by root. The caller owns the file's one reference;
// MemfdSetupFile turns it into a memfd.
//
// Errors: EINVAL for a negative size; ENOSPC when the inode cannot be
// allocated (shmem_inode_cache), ENOMEM when the file cannot (filp): the
// slab fault site, or no memory.
func (k *Kernel) ShmemFileSetup(name string, size int64) (*File, error) {
	k.mustAlive()
	return k.shmemFileSetup(name, size, 0)
}

// mappingLargeFolioSupport is mapping_large_folio_support().
func (info *ShmemInodeInfo) mappingLargeFolioSupport() bool { return info.largeFolios }

// mappingMaxFolioSize is mapping_max_folio_size(): the chunk
// generic_perform_write() writes per write_begin.
func (info *ShmemInodeInfo) mappingMaxFolioSize() int64 {
	if info.largeFolios {
		return physmem.PageSize << physmem.HPageOrder
	}
	return physmem.PageSize
}
