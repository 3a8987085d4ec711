package kernel

import (
	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// The system calls of the scenario contract that are not with their
// subsystem (Open in fs.go, MemfdCreate in memfd.go, Mmap/Munmap/Store/
// Load in mmap.go, Madvise in madvise.go). Each follows its Linux entry
// point's order of checks, so that a call with several problems fails
// with the errno Linux gives.

// maxRWCount is MAX_RW_COUNT: one read or write moves at most this many
// bytes (INT_MAX rounded down to a page); a larger request is a short one.
const maxRWCount = MaxRWCount

// MaxRWCount is MAX_RW_COUNT (INT_MAX & PAGE_MASK), for callers that explain a short read or write.
const MaxRWCount = 0x7ffff000

// seekMax is SEEK_MAX.
const seekMax = uapi.SEEK_HOLE

// Llseeker is implemented by file kinds with their own lseek (->llseek),
// which sets f.Pos itself. Kinds with neither Llseeker nor Seeker cannot
// seek (ESPIPE).
type Llseeker interface {
	Llseek(f *File, off int64, whence int) (int64, error)
}

// fileType returns the S_IFMT bits of a file: its inode's, or a character
// device for files without an inode of ours.
func fileType(f *File) uint32 {
	if f.Inode == nil {
		return sIFCHR
	}
	return f.Inode.Mode & sIFMT
}

// Close closes fd (close(2)). Errors: EBADF.
func (t *Task) Close(fd int) error {
	t.mustAlive()
	return t.CloseFD(fd)
}

// Read reads up to n bytes at the file position, advancing it (read(2)).
// Errors as Pread, without ESPIPE.
func (t *Task) Read(fd int, n int64, sink DataSink) (int64, error) {
	t.mustAlive()
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	got, err := t.vfsRead(f, f.Pos, n, sink)
	if got > 0 {
		f.Pos += got
	}
	return got, err
}

// Pread reads up to n bytes at offset off (pread64(2)), handing them to
// sink (nil: discard). A request beyond MAX_RW_COUNT is cut to it.
//
// Errors, in Linux's order: EINVAL for a negative offset; EBADF for a bad
// fd or one not open for reading; EINVAL for a file kind without read;
// EFAULT for a negative n (no user buffer that large passes access_ok);
// EINVAL if off+n overflows; then the file's own errors (EISDIR for a
// directory).
func (t *Task) Pread(fd int, off, n int64, sink DataSink) (int64, error) {
	t.mustAlive()
	if off < 0 {
		return 0, errno.EINVAL
	}
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	return t.vfsRead(f, off, n, sink)
}

// vfsRead is vfs_read().
func (t *Task) vfsRead(f *File, pos, n int64, sink DataSink) (int64, error) {
	if !f.Readable() {
		return 0, errno.EBADF
	}
	rw, ok := f.Ops.(ReadWriter)
	if !ok {
		return 0, errno.EINVAL
	}
	if n < 0 {
		return 0, errno.EFAULT
	}
	if err := rwVerifyArea(pos, n); err != nil {
		return 0, err
	}
	n = min(n, maxRWCount)
	if n == 0 {
		return 0, nil
	}
	return rw.ReadAt(t, f, pos, n, sink)
}

// rwVerifyArea is rw_verify_area(): a negative position or one whose end
// overflows is EINVAL.
func rwVerifyArea(pos, n int64) error {
	if pos < 0 || pos+n < 0 {
		return errno.EINVAL
	}
	return nil
}

// Write writes n bytes at the file position (at the end with O_APPEND),
// advancing it (write(2)). Errors as Pwrite, without ESPIPE.
func (t *Task) Write(fd int, n int64, src DataSource) (int64, error) {
	t.mustAlive()
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	pos := f.Pos
	done, err := t.vfsWrite(f, &pos, n, src)
	if done > 0 {
		f.Pos = pos
	}
	return done, err
}

// Pwrite writes n bytes at offset off (pwrite64(2)); src fills them (nil:
// zeros). As in Linux, a file opened O_APPEND is written at its end even
// so. A request beyond MAX_RW_COUNT is cut to it.
//
// Errors, in Linux's order: EINVAL for a negative offset; EBADF for a bad
// fd or one not open for writing; EINVAL for a file kind without write;
// EFAULT for a negative n; EINVAL if off+n overflows; then the file's own
// (EPERM for seals, ENOSPC, ENOMEM, EFBIG).
func (t *Task) Pwrite(fd int, off, n int64, src DataSource) (int64, error) {
	t.mustAlive()
	if off < 0 {
		return 0, errno.EINVAL
	}
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	return t.vfsWrite(f, &off, n, src)
}

// vfsWrite is vfs_write() with generic_write_checks(): *pos advances past
// what was written.
func (t *Task) vfsWrite(f *File, pos *int64, n int64, src DataSource) (int64, error) {
	if !f.Writable() {
		return 0, errno.EBADF
	}
	rw, ok := f.Ops.(ReadWriter)
	if !ok {
		return 0, errno.EINVAL
	}
	if n < 0 {
		return 0, errno.EFAULT
	}
	if err := rwVerifyArea(*pos, n); err != nil {
		return 0, err
	}
	n = min(n, maxRWCount)
	if fileType(f) == sIFREG {
		if n == 0 {
			return 0, nil
		}
		if f.Flags&uapi.O_APPEND != 0 {
			*pos = f.Inode.Size
		}
		if *pos >= maxLFSFileSize {
			return 0, errno.EFBIG
		}
	}
	done, err := rw.WriteAt(t, f, *pos, n, src)
	*pos += done
	return done, err
}

// Lseek sets the file position (lseek(2)): SEEK_SET, SEEK_CUR, SEEK_END,
// and for shmem files SEEK_DATA and SEEK_HOLE. /dev/null always seeks to
// 0, as null_lseek does.
//
// Errors: EBADF; EINVAL for an unknown whence or a resulting negative
// position; ENXIO for SEEK_DATA/SEEK_HOLE at or beyond the end (or with no
// data after); ESPIPE for files that cannot seek.
func (t *Task) Lseek(fd int, off int64, whence int) (int64, error) {
	t.mustAlive()
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	if whence < 0 || whence > seekMax {
		return 0, errno.EINVAL
	}
	if l, ok := f.Ops.(Llseeker); ok {
		return l.Llseek(f, off, whence)
	}
	if info := ShmemInode(f); info != nil && (whence == uapi.SEEK_DATA || whence == uapi.SEEK_HOLE) {
		pos, err := t.k.shmemSeekHoleData(info, off, whence == uapi.SEEK_DATA)
		if err != nil {
			return 0, err
		}
		return vfsSetpos(f, pos)
	}
	s, ok := f.Ops.(Seeker)
	if !ok {
		return 0, errNoOp("lseek")
	}
	return genericFileLlseekSize(f, off, whence, s.Size(f))
}

// genericFileLlseekSize is generic_file_llseek_size() with maxsize
// MAX_LFS_FILESIZE.
func genericFileLlseekSize(f *File, off int64, whence int, eof int64) (int64, error) {
	switch whence {
	case uapi.SEEK_END:
		off += eof
	case uapi.SEEK_CUR:
		if off == 0 {
			return f.Pos, nil
		}
		off += f.Pos
	case uapi.SEEK_DATA:
		if uint64(off) >= uint64(eof) {
			return 0, errno.ENXIO
		}
	case uapi.SEEK_HOLE:
		if uint64(off) >= uint64(eof) {
			return 0, errno.ENXIO
		}
		off = eof
	}
	return vfsSetpos(f, off)
}

// vfsSetpos is vfs_setpos().
func vfsSetpos(f *File, off int64) (int64, error) {
	if off < 0 {
		return 0, errno.EINVAL
	}
	f.Pos = off
	return off, nil
}

// Ftruncate sets the size of the file at fd (ftruncate(2)); see
// shmemSetattrSize for what shrinking does.
//
// Errors, in Linux's order: EINVAL for a negative length; EBADF; EINVAL
// for a file that is not regular or not open for writing; EPERM when
// F_SEAL_SHRINK or F_SEAL_GROW forbids the change.
func (t *Task) Ftruncate(fd int, length int64) error {
	t.mustAlive()
	if length < 0 {
		return errno.EINVAL
	}
	f, err := t.fdget(fd)
	if err != nil {
		return err
	}
	info := ShmemInode(f)
	if fileType(f) != sIFREG || !f.Writable() || info == nil {
		return errno.EINVAL
	}
	return t.k.shmemSetattrSize(info, length)
}

// FALLOC_FL_* modes beyond those in uapi (include/uapi/linux/falloc.h).
const (
	fallocFlCollapseRange = 0x08
	fallocFlZeroRange     = 0x10
	fallocFlInsertRange   = 0x20
	fallocFlUnshareRange  = 0x40
	fallocFlModeMask      = uapi.FALLOC_FL_PUNCH_HOLE | fallocFlCollapseRange | fallocFlZeroRange |
		fallocFlInsertRange | fallocFlUnshareRange
)

// Fallocate allocates or punches space in the file at fd
// (fallocate(2)): mode 0, FALLOC_FL_KEEP_SIZE, or
// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE (see shmemFallocate).
//
// Errors, in Linux's order: EBADF for a bad fd; EINVAL for a negative
// offset or a length <= 0; EOPNOTSUPP for unknown mode bits, a mode
// combination vfs_fallocate refuses (PUNCH_HOLE without KEEP_SIZE), or a
// mode shmem lacks (ZERO_RANGE, COLLAPSE_RANGE, INSERT_RANGE,
// UNSHARE_RANGE); EBADF if not open for writing; EISDIR for a directory;
// ENODEV for a file that is not regular; EFBIG if off+len overflows; then
// shmem's (EPERM for seals, ENOSPC, ENOMEM).
func (t *Task) Fallocate(fd int, mode int, off, length int64) error {
	t.mustAlive()
	f, err := t.fdget(fd)
	if err != nil {
		return err
	}
	return t.vfsFallocate(f, mode, off, length)
}

// vfsFallocate is vfs_fallocate().
func (t *Task) vfsFallocate(f *File, mode int, off, length int64) error {
	if off < 0 || length <= 0 {
		return errno.EINVAL
	}
	if mode&^(fallocFlModeMask|uapi.FALLOC_FL_KEEP_SIZE) != 0 {
		return errno.EOPNOTSUPP
	}
	switch mode & fallocFlModeMask {
	case 0, fallocFlUnshareRange, fallocFlZeroRange:
	case uapi.FALLOC_FL_PUNCH_HOLE:
		if mode&uapi.FALLOC_FL_KEEP_SIZE == 0 {
			return errno.EOPNOTSUPP
		}
	case fallocFlCollapseRange, fallocFlInsertRange:
		if mode&uapi.FALLOC_FL_KEEP_SIZE != 0 {
			return errno.EOPNOTSUPP
		}
	default:
		return errno.EOPNOTSUPP
	}
	if !f.Writable() {
		return errno.EBADF
	}
	switch fileType(f) {
	case sIFDIR:
		return errno.EISDIR
	case sIFREG:
	default:
		return errno.ENODEV
	}
	if off+length < 0 {
		return errno.EFBIG
	}
	info := ShmemInode(f)
	if info == nil {
		return errno.EOPNOTSUPP // no ->fallocate
	}
	return t.k.shmemFallocate(info, mode, off, length)
}

// Fcntl manipulates fd (fcntl(2)): F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD,
// F_SETFD, F_GETFL, F_SETFL (O_APPEND and O_NONBLOCK change), and the
// memfd seals F_ADD_SEALS / F_GET_SEALS.
//
// Errors: EBADF, also for a command other than F_DUPFD*, F_GETFD, F_SETFD
// and F_GETFL on an O_PATH file; EINVAL for an unknown command, F_DUPFD beyond
// RLIMIT_NOFILE, or seals on a file that is not shmem; EMFILE when
// F_DUPFD finds no free fd; the seal errors of memfd_add_seals (EPERM,
// EINVAL, EBUSY).
func (t *Task) Fcntl(fd int, cmd int, arg uint64) (int64, error) {
	t.mustAlive()
	f, err := t.FD(fd) // fdget_raw
	if err != nil {
		return 0, err
	}
	if f.Ops == pathFops && !checkFcntlCmd(cmd) {
		return 0, errno.EBADF
	}
	switch cmd {
	case uapi.F_DUPFD, fDupfdCloexec:
		if arg >= uint64(t.NoFile) {
			return 0, errno.EINVAL
		}
		nfd, err := t.getUnusedFD(int(arg))
		if err != nil {
			return 0, err
		}
		t.installFD(nfd, f.Get(), cmd == fDupfdCloexec)
		return int64(nfd), nil
	case uapi.F_GETFD:
		if t.cloexec[fd] {
			return uapi.FD_CLOEXEC, nil
		}
		return 0, nil
	case uapi.F_SETFD:
		t.cloexec[fd] = arg&uapi.FD_CLOEXEC != 0
		return 0, nil
	case uapi.F_GETFL:
		return int64(f.Flags), nil
	case uapi.F_SETFL:
		const setflMask = uapi.O_APPEND | uapi.O_NONBLOCK | 0x4000 /* O_DIRECT */ | 0x40000 /* O_NOATIME */
		f.Flags = int(arg)&setflMask | f.Flags&^setflMask
		return 0, nil
	case uapi.F_ADD_SEALS, uapi.F_GET_SEALS:
		return memfdFcntl(f, cmd, arg)
	}
	return 0, errno.EINVAL
}

// checkFcntlCmd is check_fcntl_cmd(): the commands an O_PATH file takes.
func checkFcntlCmd(cmd int) bool {
	switch cmd {
	case uapi.F_DUPFD, fDupfdCloexec, uapi.F_GETFD, uapi.F_SETFD, uapi.F_GETFL:
		return true
	}
	return false
}

// Generic ioctls do_vfs_ioctl() handles for every file.
const (
	fioclex  = 0x5451 // FIOCLEX
	fionclex = 0x5450 // FIONCLEX
)

// Ioctl sends cmd to the file at fd (ioctl(2)): FIOCLEX and FIONCLEX set
// and clear close-on-exec; every other command goes to the file kind's
// Ioctler. arg is the UAPI structure the command takes.
//
// Errors: EBADF; ENOTTY for a file kind without ioctls; the driver's.
func (t *Task) Ioctl(fd int, cmd uint32, arg any) (int64, error) {
	t.mustAlive()
	f, err := t.fdget(fd)
	if err != nil {
		return 0, err
	}
	switch cmd {
	case fioclex:
		t.cloexec[fd] = true
		return 0, nil
	case fionclex:
		t.cloexec[fd] = false
		return 0, nil
	}
	ioc, ok := f.Ops.(Ioctler)
	if !ok {
		return 0, errNoOp("ioctl")
	}
	// fdget of a single-threaded task borrows the fd table's reference.
	return ioc.Ioctl(t, f, cmd, arg)
}

// FolioAt returns the folio caching page index of the file (what the
// scenario functions refcount() and mapcount() read): its head PFN, its
// reference count and its mapcount (folio_mapcount: PTEs mapping any of
// its pages). ok is false if no folio caches that page (a hole, or a page
// out on swap).
func (k *Kernel) FolioAt(f *File, index uint64) (pfn physmem.PFN, refcount, mapcount int, ok bool) {
	info := ShmemInode(f)
	if info == nil {
		return 0, 0, 0, false
	}
	e, found := info.mapping.Lookup(index)
	if !found || e.Entry.IsValue() {
		return 0, 0, 0, false
	}
	folio := physmem.Folio(e.Entry.PFN())
	return folio.PFN(), int(k.MM.FolioRefCount(folio)), k.FolioMapcount(folio), true
}
