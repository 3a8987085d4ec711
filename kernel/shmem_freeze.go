package kernel

// shmemFMappingFrozen is SHMEM_F_MAPPING_FROZEN in shmem_inode_info->flags
// (include/linux/shmem_fs.h, added for memfd_luo): folios may be neither
// added to nor removed from the file's mapping. It works like F_SEAL_GROW
// | F_SEAL_SHRINK that also forbids hole punching, and unlike a seal it
// can be removed, since a live update can be cancelled.
const shmemFMappingFrozen = 1 << 2

// ShmemFreeze is shmem_freeze(): it sets (freeze) or clears the inode's
// SHMEM_F_MAPPING_FROZEN. While frozen, a size change (ftruncate to
// another size, O_TRUNC) and every fallocate (any mode, hole punching
// included) fail with EPERM, and so does a write that starts at or beyond
// i_size; a write that straddles i_size is cut short at it (the rule of
// live-update-designs.md; Linux checks per write_begin chunk, as for
// F_SEAL_GROW). Writes inside the size, through write/pwrite or a shared
// mapping, still work.
func ShmemFreeze(info *ShmemInodeInfo, freeze bool) {
	if freeze {
		info.flags |= shmemFMappingFrozen
	} else {
		info.flags &^= shmemFMappingFrozen
	}
}

// ShmemFrozen reports whether the inode is frozen (ShmemFreeze).
func ShmemFrozen(info *ShmemInodeInfo) bool { return info.flags&shmemFMappingFrozen != 0 }
