package kernel

import (
	"strings"

	"khosim/errno"
	"khosim/pagecache"
	"khosim/physmem"
	"khosim/uapi"
)

// memfd limits and flag sets (mm/memfd.c, include/uapi/linux/memfd.h).
const (
	mfdNamePrefix  = "memfd:"
	mfdNameMaxLen  = nameMax - len(mfdNamePrefix) // MFD_NAME_MAX_LEN: 249
	mfdAllFlags    = uapi.MFD_CLOEXEC | uapi.MFD_ALLOW_SEALING | uapi.MFD_HUGETLB | uapi.MFD_NOEXEC_SEAL | uapi.MFD_EXEC
	mfdHugeShift   = 26
	mfdHugeMask    = 0x3f
	fAllSeals      = uapi.F_SEAL_SEAL | uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW | uapi.F_SEAL_WRITE | uapi.F_SEAL_FUTURE_WRITE | uapi.F_SEAL_EXEC
	fDupfdCloexec  = uapi.F_LINUX_SPECIFIC + 6 // F_DUPFD_CLOEXEC
	memfdNoexecOff = 0                         // vm.memfd_noexec: MEMFD_NOEXEC_SCOPE_EXEC
)

// MemfdCreate creates an anonymous shmem file (memfd_create(2)) named
// "memfd:NAME", size 0, open O_RDWR|O_LARGEFILE, at the lowest free fd.
// MFD_CLOEXEC sets close-on-exec; MFD_ALLOW_SEALING allows F_ADD_SEALS
// (otherwise the file starts with F_SEAL_SEAL); MFD_NOEXEC_SEAL clears the
// exec bits, allows sealing and sets F_SEAL_EXEC; without MFD_EXEC or
// MFD_NOEXEC_SEAL the kernel warns and assumes MFD_EXEC (vm.memfd_noexec
// = 0). The name ends at its first NUL, as a C string would.
//
// Errors, in Linux's order: EINVAL for unknown flags, MFD_EXEC with
// MFD_NOEXEC_SEAL, or a name longer than 249 bytes; EMFILE when the fd
// table is full, ENOMEM when it must grow and cannot; EINVAL for
// MFD_HUGETLB (hugetlbfs is not simulated); ENOSPC when the inode cannot
// be allocated (shmem_inode_cache: __shmem_get_inode's -ENOSPC), ENOMEM
// when the file cannot (filp).
func (t *Task) MemfdCreate(name string, flags uint) (int, error) {
	t.mustAlive()
	k := t.k
	// sanitize_flags
	if flags&uapi.MFD_HUGETLB == 0 {
		if flags&^uint(mfdAllFlags) != 0 {
			return -1, errno.EINVAL
		}
	} else if flags&^uint(mfdAllFlags|mfdHugeMask<<mfdHugeShift) != 0 {
		return -1, errno.EINVAL
	}
	if flags&uapi.MFD_EXEC != 0 && flags&uapi.MFD_NOEXEC_SEAL != 0 {
		return -1, errno.EINVAL
	}
	if flags&(uapi.MFD_EXEC|uapi.MFD_NOEXEC_SEAL) == 0 { // check_sysctl_memfd_noexec
		if !k.warnedMemfdNoexec {
			k.warnedMemfdNoexec = true
			k.Printk(LogWarn, "%s[%d]: memfd_create() called without MFD_EXEC or MFD_NOEXEC_SEAL set", t.Name, t.PID)
		}
		flags |= uapi.MFD_EXEC
	}
	// alloc_name
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if len(name) > mfdNameMaxLen {
		return -1, errno.EINVAL
	}
	fd, err := t.getUnusedFD(0)
	if err != nil {
		return -1, err
	}
	if flags&uapi.MFD_HUGETLB != 0 {
		return -1, errno.EINVAL // hugetlb_file_setup: no hugetlbfs in khosim
	}
	f, err := k.shmemFileSetup(mfdNamePrefix+name, 0, t.Cred.UID)
	if err != nil {
		return -1, err
	}
	memfdSetupFile(f, flags)
	t.installFD(fd, f, flags&uapi.MFD_CLOEXEC != 0)
	return fd, nil
}

// memfdSetupFile is the RFC's memfd_setup_file(): makes a shmem file a
// memfd (O_LARGEFILE, the memfd Ops) and applies the sealing flags.
func memfdSetupFile(f *File, flags uint) {
	f.Flags |= uapi.O_LARGEFILE
	info := shmemI(f.Inode)
	if flags&uapi.MFD_NOEXEC_SEAL != 0 {
		f.Inode.Mode &^= 0o111
		info.Seals &^= uapi.F_SEAL_SEAL
		info.Seals |= uapi.F_SEAL_EXEC
	} else if flags&uapi.MFD_ALLOW_SEALING != 0 {
		info.Seals &^= uapi.F_SEAL_SEAL
	}
	f.Ops = memfdFops
}

// MemfdSetupFile is memfd_setup_file() for the KHO restore path: turns a
// file from ShmemFileSetup into a memfd, as memfd_create would with flags
// (MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL; others are ignored here).
//
// Errors: EINVAL if f is not a shmem file.
func MemfdSetupFile(f *File, flags uint) error {
	if !IsShmemFile(f) {
		return errno.EINVAL
	}
	f.k.mustAlive()
	memfdSetupFile(f, flags)
	return nil
}

// memfdFcntl is memfd_fcntl(): F_ADD_SEALS and F_GET_SEALS.
func memfdFcntl(f *File, cmd int, arg uint64) (int64, error) {
	switch cmd {
	case uapi.F_ADD_SEALS:
		return 0, memfdAddSeals(f, arg)
	case uapi.F_GET_SEALS:
		info := ShmemInode(f)
		if info == nil { // memfd_file_seals_ptr() is NULL
			return 0, errno.EINVAL
		}
		return int64(info.Seals), nil
	}
	return 0, errno.EINVAL
}

// memfdAddSeals is memfd_add_seals(). Sealing is for shmem files only and
// only when memfd_create allowed it (no F_SEAL_SEAL). F_SEAL_WRITE denies
// writable shared mappings (mapping_deny_writable), so it fails with
// EBUSY while one exists, or while a page has references beyond its page
// cache and mappings (memfd_wait_for_pins: nothing can drop such a pin
// while a single-threaded kernel waits). F_SEAL_FUTURE_WRITE checks
// neither: existing mappings keep writing. F_SEAL_EXEC on a file with exec
// bits implies the write seals.
//
// Errors: EPERM if the file is not open for writing, or F_SEAL_SEAL is
// set; EINVAL for unknown seal bits or a file that is not shmem; EBUSY as
// above.
func memfdAddSeals(f *File, seals uint64) error {
	if !f.Writable() {
		return errno.EPERM
	}
	if seals&^uint64(fAllSeals) != 0 {
		return errno.EINVAL
	}
	info := ShmemInode(f)
	if info == nil {
		return errno.EINVAL
	}
	if info.Seals&uapi.F_SEAL_SEAL != 0 {
		return errno.EPERM
	}
	s := uint32(seals)
	// F_SEAL_EXEC implies the write seals, making W^X from the start.
	if s&uapi.F_SEAL_EXEC != 0 && f.Inode.Mode&0o111 != 0 {
		s |= uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW | uapi.F_SEAL_WRITE | uapi.F_SEAL_FUTURE_WRITE
	}
	if s&uapi.F_SEAL_WRITE != 0 && info.Seals&uapi.F_SEAL_WRITE == 0 {
		if info.mmapWritable > 0 { // mapping_deny_writable
			return errno.EBUSY
		}
		if err := f.k.memfdWaitForPins(info); err != nil {
			return err
		}
		info.mmapWritable = -1
	}
	info.Seals |= s
	return nil
}

// mappingWritablyMapped is mapping_writably_mapped().
func (info *ShmemInodeInfo) mappingWritablyMapped() bool { return info.mmapWritable > 0 }

// memfdWaitForPins is memfd_wait_for_pins(): EBUSY if any folio of the
// file has references beyond the page cache's and its mappings'
// (folio_ref_count - folio_mapcount != folio_nr_pages), which would let a
// writer through after sealing.
func (k *Kernel) memfdWaitForPins(info *ShmemInodeInfo) error {
	for e := range info.mapping.Range(0, ^uint64(0)) {
		if e.Entry.IsValue() {
			continue
		}
		f := physmem.Folio(pagecache.Entry(e.Entry).PFN())
		if int64(k.MM.FolioRefCount(f))-int64(k.FolioMapcount(f)) != int64(k.folioNrPages(f)) {
			return errno.EBUSY
		}
	}
	return nil
}
