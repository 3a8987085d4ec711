package kernel

import (
	"fmt"
	"strings"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// The file system tree khosim has:
//
//	/            rootfs, read-only for everyone
//	/dev         devtmpfs: /dev/null and the nodes drivers register
//	             (RegisterDevice; a node's parent directories exist while
//	             it does, e.g. /dev/fdbox)
//	/tmp         a tmpfs (mode 1777, size=50% of RAM): regular files
//	             created with O_CREAT
//
// Directories can be opened read-only (reading them fails with EISDIR;
// khosim has no getdents). Paths are resolved from / (the working
// directory is /); "." and ".." are understood; symlinks do not exist.

// Limits of include/uapi/linux/limits.h.
const (
	nameMax = 255  // NAME_MAX
	pathMax = 4096 // PATH_MAX, counting the NUL
)

// Permission masks (MAY_EXEC, MAY_WRITE, MAY_READ).
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// Capabilities generic_permission() and inode_owner_or_capable() consult.
const (
	capDACOverride   = 1
	capDACReadSearch = 2
	capFowner        = 3
)

// inodePermission is generic_permission() without groups and ACLs: the
// owner's or the others' bits, then CAP_DAC_OVERRIDE (which grants
// execute only if some execute bit is set) and CAP_DAC_READ_SEARCH.
func inodePermission(t *Task, in *Inode, mask uint32) error {
	mode := in.Mode
	bits := mode & 7
	if t.Cred.UID == in.UID {
		bits = mode >> 6 & 7
	}
	if bits&mask == mask {
		return nil
	}
	if mask&mayExec == 0 || in.Mode&sIFMT == sIFDIR || mode&0o111 != 0 {
		if t.Capable(capDACOverride) {
			return nil
		}
	}
	if mask == mayRead && t.Capable(capDACReadSearch) {
		return nil
	}
	return errno.EACCES
}

// accMode is the MAY_* mask an open asks for (build_open_flags): the
// access mode's read and write, plus write for O_TRUNC.
func accMode(flags int) uint32 {
	var m uint32
	switch flags & uapi.O_ACCMODE {
	case uapi.O_RDONLY:
		m = mayRead
	case uapi.O_WRONLY:
		m = mayWrite
	case uapi.O_RDWR, uapi.O_ACCMODE:
		m = mayRead | mayWrite
	}
	if flags&uapi.O_TRUNC != 0 {
		m |= mayWrite
	}
	return m
}

// dirFileOps is a directory opened read-only (simple_dir_operations):
// reads fail with EISDIR.
type dirFileOps struct{}

var dirFops = &dirFileOps{}

func (*dirFileOps) Kind() string { return "dir" }

func (*dirFileOps) ReadAt(t *Task, f *File, off, n int64, sink DataSink) (int64, error) {
	return 0, errno.EISDIR
}

func (*dirFileOps) WriteAt(t *Task, f *File, off, n int64, src DataSource) (int64, error) {
	return 0, errno.EBADF
}

// Llseek is dcache_dir_lseek(): SEEK_SET and SEEK_CUR within the
// (empty, as far as khosim lists) directory.
func (*dirFileOps) Llseek(f *File, off int64, whence int) (int64, error) {
	switch whence {
	case uapi.SEEK_CUR:
		off += f.Pos
	case uapi.SEEK_SET:
	default:
		return 0, errno.EINVAL
	}
	if off < 0 {
		return 0, errno.EINVAL
	}
	f.Pos = off
	return off, nil
}

// nullFileOps is /dev/null (null_fops, drivers/char/mem.c).
type nullFileOps struct{}

var nullFops = &nullFileOps{}

func (*nullFileOps) Kind() string { return "null" }

// ReadAt is read_null: always end of file.
func (*nullFileOps) ReadAt(t *Task, f *File, off, n int64, sink DataSink) (int64, error) {
	return 0, nil
}

// WriteAt is write_null: everything is accepted and discarded.
func (*nullFileOps) WriteAt(t *Task, f *File, off, n int64, src DataSource) (int64, error) {
	return n, nil
}

// Llseek is null_lseek: the position is always 0.
func (*nullFileOps) Llseek(f *File, off int64, whence int) (int64, error) {
	f.Pos = 0
	return 0, nil
}

// registerDevNull creates /dev/null (chr_dev_init), mode 0666.
func (k *Kernel) registerDevNull() error {
	return k.RegisterDevice(&Device{
		Path: "/dev/null",
		Mode: 0o666,
		Open: func(t *Task, flags int) (FileOps, any, error) { return nullFops, nil, nil },
	})
}

// lookupKind is what a path names.
type lookupKind int

const (
	lookupNone lookupKind = iota
	lookupDir
	lookupDevice
	lookupTmpFile
)

// lookup is what path resolution found: the parent directory and the
// final component, and what that component names.
type lookup struct {
	kind   lookupKind
	path   string // the cleaned absolute path
	parent string // its directory
	name   string // its last component
	dev    *Device
	inode  *Inode // a /tmp file
	// slash: the last component is a name followed by "/" (the
	// trailing slash of nd->last, which asks for a directory).
	slash bool
}

// isDir reports whether the cleaned absolute path p is a directory.
func (k *Kernel) isDir(p string) bool {
	if p == "/" || p == "/dev" || p == "/tmp" {
		return true
	}
	if !strings.HasPrefix(p, "/dev/") {
		return false
	}
	for d := range k.devices {
		if strings.HasPrefix(d, p+"/") {
			return true
		}
	}
	return false
}

// resolve walks path (path_lookupat) as far as its parent; the last
// component may not exist.
//
// Errors: ENOENT for an empty path or a missing directory on the way;
// ENOTDIR when a file is used as a directory; ENAMETOOLONG for a component
// over NAME_MAX or a path over PATH_MAX.
func (k *Kernel) resolve(path string) (lookup, error) {
	if path == "" {
		return lookup{}, errno.ENOENT
	}
	if len(path) >= pathMax {
		return lookup{}, errno.ENAMETOOLONG
	}
	var parts []string
	slash := false
	for _, c := range strings.Split(path, "/") {
		if len(c) > nameMax {
			return lookup{}, errno.ENAMETOOLONG
		}
		if c == "" {
			slash = len(parts) > 0 // a name, then a "/"
			continue
		}
		// Every component before this one, "." and ".." included,
		// must be a directory (link_path_walk: d_can_lookup).
		if cur := "/" + strings.Join(parts, "/"); !k.isDir(cur) {
			if k.exists(cur) {
				return lookup{}, errno.ENOTDIR
			}
			return lookup{}, errno.ENOENT
		}
		slash = false
		switch c {
		case ".":
			continue
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
			continue
		}
		parts = append(parts, c)
	}
	l := lookup{path: "/" + strings.Join(parts, "/"), slash: slash}
	if len(parts) == 0 {
		l.kind, l.parent = lookupDir, "/"
		return l, nil
	}
	l.parent, l.name = "/"+strings.Join(parts[:len(parts)-1], "/"), parts[len(parts)-1]
	if !k.isDir(l.parent) {
		if k.exists(l.parent) {
			return lookup{}, errno.ENOTDIR
		}
		return lookup{}, errno.ENOENT
	}
	switch {
	case k.isDir(l.path):
		l.kind = lookupDir
	case k.devices[l.path] != nil:
		l.kind, l.dev = lookupDevice, k.devices[l.path]
	case l.parent == "/tmp" && k.tmpDir[l.name] != nil:
		l.kind, l.inode = lookupTmpFile, k.tmpDir[l.name]
	}
	return l, nil
}

// exists reports whether p names anything.
func (k *Kernel) exists(p string) bool {
	if k.isDir(p) || k.devices[p] != nil {
		return true
	}
	name, ok := strings.CutPrefix(p, "/tmp/")
	return ok && k.tmpDir[name] != nil
}

// Open flags beyond those in uapi (x86-64 values, include/uapi/asm-generic/fcntl.h).
const (
	oNoctty    = 0o400                 // O_NOCTTY
	oDsync     = 0o10000               // O_DSYNC
	fasync     = 0o20000               // FASYNC
	oDirect    = 0o40000               // O_DIRECT
	oDirectory = 0o200000              // O_DIRECTORY
	oNofollow  = 0o400000              // O_NOFOLLOW
	oNoatime   = 0o1000000             // O_NOATIME
	oSync      = 0o4000000             // __O_SYNC
	oPath      = 0o10000000            // O_PATH
	oTmpfile   = 0o20000000            // __O_TMPFILE
	oTmpfileU  = oTmpfile | oDirectory // O_TMPFILE as userspace spells it

	// validOpenFlags is VALID_OPEN_FLAGS: every flag open(2) knows.
	validOpenFlags = uapi.O_ACCMODE | uapi.O_CREAT | uapi.O_EXCL | oNoctty | uapi.O_TRUNC |
		uapi.O_APPEND | uapi.O_NONBLOCK | oDsync | fasync | oDirect | uapi.O_LARGEFILE |
		oDirectory | oNofollow | oNoatime | uapi.O_CLOEXEC | oSync | oPath | oTmpfile
	// oPathFlags is O_PATH_FLAGS: what O_PATH keeps of the other flags.
	oPathFlags = oDirectory | oNofollow | oPath | uapi.O_CLOEXEC
)

// buildOpenHow is build_open_how() for open(2): unknown flags are
// dropped (open(2), unlike openat2(2), never refuses them), and O_PATH
// drops everything but O_PATH_FLAGS.
func buildOpenHow(flags int) int {
	flags &= validOpenFlags
	if flags&oPath != 0 {
		flags &= oPathFlags
	}
	return flags
}

// buildOpenFlags is the validation of build_open_flags() (fs/open.c), in
// its order, on what buildOpenHow kept. The checks for unknown flags and
// for O_PATH with other flags cannot fire after build_open_how and are
// left out; there is no mode argument to check (khosim creates files
// 0644).
//
// Errors: EINVAL for O_CREAT with O_DIRECTORY, __O_TMPFILE without
// O_DIRECTORY, or O_TMPFILE without write access.
func buildOpenFlags(flags int) error {
	if flags&(oDirectory|uapi.O_CREAT) == oDirectory|uapi.O_CREAT {
		return errno.EINVAL // "Block bugs where O_DIRECTORY | O_CREAT created regular files"
	}
	if flags&oTmpfile != 0 {
		if flags&oDirectory == 0 {
			return errno.EINVAL
		}
		if accMode(flags&^uapi.O_TRUNC)&mayWrite == 0 {
			return errno.EINVAL
		}
	}
	return nil
}

// pathFileOps is an O_PATH file (FMODE_PATH with empty_fops): it names a
// file without opening it. fdget() refuses it (EBADF for read, write,
// lseek, mmap, ioctl, fallocate, ftruncate, FDBox), fcntl() takes only
// check_fcntl_cmd()'s commands, close and dup work.
type pathFileOps struct{}

var pathFops = &pathFileOps{}

func (*pathFileOps) Kind() string { return "path" }

// Open opens path (open(2); the mode of created files is 0644, as a
// 0666 request under the usual umask 022). The new fd is the lowest free
// one; O_CLOEXEC sets its close-on-exec flag. O_CREAT creates a regular
// file under /tmp, owned by the task; O_EXCL fails if the name exists;
// O_TRUNC truncates a regular file (it needs write permission, even with
// O_RDONLY); O_DIRECTORY asks for a directory. O_TMPFILE on /tmp creates
// an unnamed regular file there, freed when its last fd closes. O_PATH
// opens a name without opening the file (see pathFileOps): no
// permission on it is needed, and a device's driver is not called.
// Devices are opened through their driver; /dev/null accepts everything.
// Flags open(2) does not know are ignored, as Linux ignores them.
//
// Errors, in Linux's order (do_sys_openat2): EINVAL from build_open_flags
// (O_CREAT|O_DIRECTORY, __O_TMPFILE without O_DIRECTORY, O_TMPFILE
// read-only); ENOENT for an empty path and ENAMETOOLONG for one of
// PATH_MAX bytes or more (getname); EMFILE when the fd table is full;
// ENOENT, ENOTDIR, ENAMETOOLONG from path resolution; for a last name
// with a trailing slash or O_DIRECTORY that is not a directory, EISDIR
// with O_CREAT, else ENOENT if missing and ENOTDIR if it exists; ENOENT
// for a missing name without O_CREAT; EEXIST with O_CREAT|O_EXCL on an
// existing name; EACCES to create outside /tmp or without permission;
// EISDIR to create or write a directory; EPERM for O_NOATIME on a file
// the task does not own (without CAP_FOWNER); ENOSPC when /tmp is full;
// EPERM for O_TRUNC of a sealed file; the driver's errors. Kernel memory:
// ENOMEM when the fd table must grow and cannot, or when the struct file
// cannot be allocated (which path_openat does first, before looking the
// path up); ENOSPC when the inode of a new file cannot (shmem_get_inode).
func (t *Task) Open(path string, flags int) (int, error) {
	t.mustAlive()
	k := t.k
	flags = buildOpenHow(flags)
	if err := buildOpenFlags(flags); err != nil {
		return -1, err
	}
	// getname() runs before get_unused_fd_flags(): an empty path or one
	// of PATH_MAX bytes or more fails even when the fd table is full.
	if path == "" {
		return -1, errno.ENOENT
	}
	if len(path) >= pathMax {
		return -1, errno.ENAMETOOLONG
	}
	if _, err := t.getUnusedFD(0); err != nil {
		return -1, err
	}
	// path_openat: alloc_empty_file() first. The filp object goes back
	// (fput of the empty file) unless a file is made of it.
	obj, err := k.filpAlloc()
	if err != nil {
		return -1, err
	}
	defer func() {
		if obj != 0 {
			k.caches.filp.Free(obj)
		}
	}()
	l, err := k.resolve(path)
	if err != nil {
		return -1, err
	}
	var f *File
	switch {
	case flags&oTmpfile != 0:
		f, err = t.doTmpfile(&obj, l, flags)
	case flags&oPath != 0:
		f, err = t.doOPath(&obj, l, flags)
	default:
		f, err = t.pathOpenat(&obj, l, flags)
	}
	if err != nil {
		return -1, err
	}
	fd, err := t.InstallFD(f, flags&uapi.O_CLOEXEC != 0)
	if err != nil {
		f.Put()
		return -1, err
	}
	return fd, nil
}

// fileOf makes the opened file of the filp object *obj, which it takes
// (*obj becomes 0: the file owns it).
func (k *Kernel) fileOf(obj *physmem.SlabObj, ops FileOps, inode *Inode, name string, flags int) *File {
	f := k.newFile(*obj, ops, inode, name, flags)
	*obj = 0
	return f
}

// pathOpenat is the open_last_lookups() + do_open() part of
// path_openat() for an ordinary open of what resolve found, into the filp
// object *obj.
func (t *Task) pathOpenat(obj *physmem.SlabObj, l lookup, flags int) (*File, error) {
	k := t.k
	if (l.slash || flags&oDirectory != 0) && l.kind != lookupDir {
		// open_last_lookups: a trailing slash asks for a directory;
		// do_open: LOOKUP_DIRECTORY on a non-directory is ENOTDIR.
		switch {
		case flags&uapi.O_CREAT != 0:
			return nil, errno.EISDIR // only with a trailing slash: O_CREAT|O_DIRECTORY is EINVAL
		case l.kind == lookupNone:
			return nil, errno.ENOENT
		default:
			return nil, errno.ENOTDIR
		}
	}
	if flags&uapi.O_CREAT != 0 && flags&uapi.O_EXCL != 0 && l.kind != lookupNone {
		return nil, errno.EEXIST
	}
	if flags&oNoatime != 0 && l.kind != lookupNone {
		// may_open: O_NOATIME only for the owner (inode_owner_or_capable).
		uid := uint32(0) // directories and device nodes belong to root
		if l.kind == lookupTmpFile {
			uid = l.inode.UID
		}
		if uid != t.Cred.UID && !t.Capable(capFowner) {
			return nil, errno.EPERM
		}
	}
	switch l.kind {
	case lookupNone:
		if flags&uapi.O_CREAT == 0 {
			return nil, errno.ENOENT
		}
		if l.parent != "/tmp" {
			return nil, errno.EACCES // / and /dev are not writable in khosim
		}
		info, err := k.shmemGetInode(k.tmp, 0o644, t.Cred.UID)
		if err != nil {
			return nil, err
		}
		info.inode.Nlink = 1
		k.tmpDir[l.name] = info.inode
		return k.fileOf(obj, tmpfsFops, info.inode, l.path, openFileFlags(flags)), nil
	case lookupDir:
		if flags&uapi.O_CREAT != 0 || flags&uapi.O_ACCMODE != uapi.O_RDONLY {
			return nil, errno.EISDIR
		}
		return k.fileOf(obj, dirFops, nil, l.path, openFileFlags(flags)), nil
	case lookupDevice:
		ops, private, err := k.openDevice(t, l.path, openFileFlags(flags))
		if err != nil {
			return nil, err
		}
		f := k.fileOf(obj, ops, nil, l.path, openFileFlags(flags))
		f.Private = private
		return f, nil
	default: // lookupTmpFile
		if err := inodePermission(t, l.inode, accMode(flags)); err != nil {
			return nil, err
		}
		if flags&uapi.O_TRUNC != 0 {
			if err := k.shmemSetattrSize(shmemI(l.inode), 0); err != nil {
				return nil, err
			}
		}
		return k.fileOf(obj, tmpfsFops, l.inode, l.path, openFileFlags(flags)), nil
	}
}

// doOPath is do_o_path(): path_lookupat() (LOOKUP_DIRECTORY with
// O_DIRECTORY or a trailing slash) and an FMODE_PATH file on what it
// found, without permission checks or the driver's open.
func (t *Task) doOPath(obj *physmem.SlabObj, l lookup, flags int) (*File, error) {
	switch {
	case l.kind == lookupNone:
		return nil, errno.ENOENT
	case (l.slash || flags&oDirectory != 0) && l.kind != lookupDir:
		return nil, errno.ENOTDIR
	}
	return t.k.fileOf(obj, pathFops, l.inode, l.path, openFileFlags(flags)), nil
}

// doTmpfile is do_tmpfile(): path_lookupat() of a directory, then
// vfs_tmpfile(): write and search permission on it, and an unnamed
// regular file (mode 0644, owned by the task) that lives while it is
// open. khosim's / and /dev are not writable.
func (t *Task) doTmpfile(obj *physmem.SlabObj, l lookup, flags int) (*File, error) {
	switch {
	case l.kind == lookupNone:
		return nil, errno.ENOENT
	case l.kind != lookupDir:
		return nil, errno.ENOTDIR
	case l.path != "/tmp":
		return nil, errno.EACCES
	}
	k := t.k
	info, err := k.shmemGetInode(k.tmp, 0o644, t.Cred.UID)
	if err != nil {
		return nil, err
	}
	return k.fileOf(obj, tmpfsFops, info.inode, l.path+"/#"+fmt.Sprint(info.inode.Ino)+" (deleted)",
		openFileFlags(flags)), nil
}

// openFileFlags is what f_flags keeps of the open flags
// (do_dentry_open drops O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC; O_CLOEXEC is
// the fd's; force_o_largefile adds O_LARGEFILE on 64-bit).
func openFileFlags(flags int) int {
	return flags&^(uapi.O_CREAT|uapi.O_EXCL|uapi.O_TRUNC|uapi.O_CLOEXEC|0x100 /* O_NOCTTY */) | uapi.O_LARGEFILE
}

// Unlink removes a name under /tmp (unlink(2)); the file lives on while it
// is open or mapped.
//
// Errors: ENOENT, ENOTDIR, ENAMETOOLONG from resolution or a missing
// name; EISDIR for a directory; ENOTDIR for a file named with a trailing
// slash; EACCES outside /tmp; EPERM for another
// user's file in the sticky /tmp.
func (t *Task) Unlink(path string) error {
	t.mustAlive()
	k := t.k
	l, err := k.resolve(path)
	if err != nil {
		return err
	}
	switch l.kind {
	case lookupNone:
		return errno.ENOENT
	case lookupDir:
		return errno.EISDIR
	}
	if l.slash {
		return errno.ENOTDIR // do_unlinkat: "slashes" on a non-directory
	}
	if l.kind == lookupDevice {
		return errno.EACCES
	}
	if l.inode.UID != t.Cred.UID && !t.Capable(capFowner) {
		return errno.EPERM // sticky directory: only the owner may unlink
	}
	delete(k.tmpDir, l.name)
	l.inode.Unlink()
	return nil
}
