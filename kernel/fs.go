package kernel

import (
	"strings"

	"khosim/errno"
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

// Capabilities generic_permission() consults.
const (
	capDACOverride   = 1
	capDACReadSearch = 2
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

// Open opens path (open(2); the mode of created files is 0644, as a
// 0666 request under the usual umask 022). The new fd is the lowest free
// one; O_CLOEXEC sets its close-on-exec flag. O_CREAT creates a regular
// file under /tmp, owned by the task; O_EXCL fails if the name exists;
// O_TRUNC truncates a regular file (it needs write permission, even with
// O_RDONLY). Devices are opened through their driver; /dev/null accepts
// everything.
//
// Errors, in Linux's order: ENOENT for an empty path and ENAMETOOLONG for
// one of PATH_MAX bytes or more (getname); EMFILE when the fd table is
// full; ENOENT, ENOTDIR, ENAMETOOLONG from path resolution; for a last
// name with a trailing slash that is not a directory, EISDIR with
// O_CREAT, else ENOENT if missing and ENOTDIR if it exists; ENOENT for a
// missing name without O_CREAT; EEXIST with O_CREAT|O_EXCL on an existing name; EACCES
// to create outside /tmp or without permission; EISDIR to create or write
// a directory; ENOSPC when /tmp is full; EPERM for O_TRUNC of a sealed
// file; the driver's errors. Kernel memory: ENOMEM when the fd table must
// grow and cannot, or when the struct file cannot be allocated (which
// path_openat does first, before looking the path up); ENOSPC when the
// inode of a new file cannot (shmem_get_inode).
func (t *Task) Open(path string, flags int) (int, error) {
	t.mustAlive()
	k := t.k
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
	newFile := func(ops FileOps, inode *Inode) *File {
		f := k.newFile(obj, ops, inode, l.path, openFileFlags(flags))
		obj = 0
		return f
	}
	if l.slash && l.kind != lookupDir {
		// open_last_lookups: a trailing slash asks for a directory.
		switch {
		case flags&uapi.O_CREAT != 0:
			return -1, errno.EISDIR
		case l.kind == lookupNone:
			return -1, errno.ENOENT
		default:
			return -1, errno.ENOTDIR // do_open: LOOKUP_DIRECTORY on a non-directory
		}
	}
	if flags&uapi.O_CREAT != 0 && flags&uapi.O_EXCL != 0 && l.kind != lookupNone {
		return -1, errno.EEXIST
	}
	var f *File
	switch l.kind {
	case lookupNone:
		if flags&uapi.O_CREAT == 0 {
			return -1, errno.ENOENT
		}
		if l.parent != "/tmp" {
			return -1, errno.EACCES // / and /dev are not writable in khosim
		}
		info, err := k.shmemGetInode(k.tmp, 0o644, t.Cred.UID)
		if err != nil {
			return -1, err
		}
		info.inode.Nlink = 1
		k.tmpDir[l.name] = info.inode
		f = newFile(tmpfsFops, info.inode)
	case lookupDir:
		if flags&uapi.O_CREAT != 0 || flags&uapi.O_ACCMODE != uapi.O_RDONLY {
			return -1, errno.EISDIR
		}
		f = newFile(dirFops, nil)
	case lookupDevice:
		ops, private, err := k.openDevice(t, l.path, openFileFlags(flags))
		if err != nil {
			return -1, err
		}
		f = newFile(ops, nil)
		f.Private = private
	case lookupTmpFile:
		if err := inodePermission(t, l.inode, accMode(flags)); err != nil {
			return -1, err
		}
		if flags&uapi.O_TRUNC != 0 {
			if err := k.shmemSetattrSize(shmemI(l.inode), 0); err != nil {
				return -1, err
			}
		}
		f = newFile(tmpfsFops, l.inode)
	}
	fd, err := t.InstallFD(f, flags&uapi.O_CLOEXEC != 0)
	if err != nil {
		f.Put()
		return -1, err
	}
	return fd, nil
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
	const capFowner = 3
	if l.inode.UID != t.Cred.UID && !t.Capable(capFowner) {
		return errno.EPERM // sticky directory: only the owner may unlink
	}
	delete(k.tmpDir, l.name)
	l.inode.Unlink()
	return nil
}
