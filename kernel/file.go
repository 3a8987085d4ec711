package kernel

import (
	"fmt"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// FileOps is the behaviour of a kind of file (struct file_operations). The
// value itself identifies the kind: code that must recognise a file kind
// (FDBox asks "is this a memfd?") compares or type-asserts a file's Ops,
// which is how Brauner asked FDBox to recognise preservable files instead
// of adding a field to struct file.
//
// A FileOps implements the optional interfaces below for the system calls
// its kind supports; a call the kind does not support fails with the errno
// Linux gives for a missing operation.
type FileOps interface {
	// Kind names the file kind in messages ("memfd", "tmpfs", "fdbox-ctl").
	Kind() string
}

// Releaser is implemented by file kinds that free state when the last
// reference to a file goes away (->release, called from __fput()).
type Releaser interface {
	Release(f *File)
}

// Ioctler is implemented by file kinds with ioctls (->unlocked_ioctl). arg
// is the UAPI structure the command takes (for example *uapi.FdboxPutFD),
// or nil for commands without one.
type Ioctler interface {
	Ioctl(t *Task, f *File, cmd uint32, arg any) (int64, error)
}

// DataSource produces the bytes of a write: it fills dst with the bytes
// that belong at file offset off. Scenario data generators are
// DataSources, so gigabytes move without a user buffer.
type DataSource func(dst []byte, off int64)

// DataSink consumes the bytes of a read: src holds the file's bytes at
// offset off. It may stop the read by returning an error.
type DataSink func(src []byte, off int64) error

// ReadWriter is implemented by file kinds with data (->read_iter and
// ->write_iter). Offsets are explicit; the system-call layer handles f_pos.
type ReadWriter interface {
	ReadAt(t *Task, f *File, off, n int64, sink DataSink) (int64, error)
	WriteAt(t *Task, f *File, off, n int64, src DataSource) (int64, error)
}

// Seeker is implemented by file kinds that support lseek (->llseek).
type Seeker interface {
	Size(f *File) int64
}

// File is an open file description (struct file).
//
// References: every fd-table entry, every mapping (VMA) and every FDBox
// box holding the file owns one reference, and code that looks a file up
// from an fd for the duration of a call holds a transient one (fget/fput).
// When the count drops to zero the file is released (__fput): its kind's
// Release runs and the file is dead; any further use is a bug and panics.
type File struct {
	k     *Kernel
	id    uint64 // creation order, for deterministic listings and dumps
	refs  int64
	Ops   FileOps
	Inode *Inode // nil for files without an inode of ours (char devices)
	Name  string // what the file is, for messages: "/tmp/a", "memfd:guest-ram"

	// Flags are the open flags (O_ACCMODE bits, O_APPEND, ...).
	Flags int
	// Pos is f_pos.
	Pos int64
	// Private is the file kind's per-file state (->private_data).
	Private any

	obj physmem.SlabObj // its filp object
}

// AllocFile creates a file with one reference, which the caller owns (it
// usually hands it to an fd table with Task.InstallFD, or puts it): the
// struct file is a filp object (alloc_empty_file), freed at the last Put.
//
// Errors: ENOMEM (or the injected slab or page_alloc fault) when the filp
// object cannot be allocated.
func (k *Kernel) AllocFile(ops FileOps, inode *Inode, name string, flags int) (*File, error) {
	k.mustAlive()
	obj, err := k.filpAlloc()
	if err != nil {
		return nil, err
	}
	return k.newFile(obj, ops, inode, name, flags), nil
}

// NewFile is AllocFile for callers that cannot fail, such as tests of file
// kinds: it panics (invariant "filp-alloc") when the filp object cannot be
// allocated. Code a user can drive into ENOMEM calls AllocFile.
func (k *Kernel) NewFile(ops FileOps, inode *Inode, name string, flags int) *File {
	f, err := k.AllocFile(ops, inode, name, flags)
	if err != nil {
		panicViolation("filp-alloc", k.MM.Zone.String(), "NewFile(%s): %v", name, err)
	}
	return f
}

// filpAlloc allocates the filp object of a file to be (the allocation in
// alloc_empty_file(), which open(2) makes before it looks the path up).
//
// Errors: ENOMEM.
func (k *Kernel) filpAlloc() (physmem.SlabObj, error) {
	obj, err := k.caches.filp.Alloc()
	if err != nil {
		return 0, errno.ENOMEM
	}
	return obj, nil
}

// newFile makes the file whose filp object is obj.
func (k *Kernel) newFile(obj physmem.SlabObj, ops FileOps, inode *Inode, name string, flags int) *File {
	k.nextFileID++
	f := &File{k: k, id: k.nextFileID, refs: 1, Ops: ops, Inode: inode, Name: name, Flags: flags, obj: obj}
	if inode != nil {
		inode.openFiles++
	}
	k.files[f] = struct{}{}
	return f
}

// ID is the file's creation number in its kernel.
func (f *File) ID() uint64 { return f.id }

// Kernel returns the kernel the file belongs to.
func (f *File) Kernel() *Kernel { return f.k }

// Refs returns the file's reference count (file_count()).
func (f *File) Refs() int64 { return f.refs }

// Get takes a reference (get_file). The caller must Put it.
func (f *File) Get() *File {
	f.mustLive()
	f.refs++
	return f
}

// Put drops a reference (fput). The last Put releases the file.
func (f *File) Put() {
	f.mustLive()
	f.refs--
	if f.refs > 0 {
		return
	}
	if r, ok := f.Ops.(Releaser); ok {
		r.Release(f)
	}
	if f.Inode != nil {
		f.Inode.openFiles--
		f.Inode.iput()
	}
	delete(f.k.files, f)
	f.k.caches.filp.Free(f.obj) // file_free
	f.obj = 0
	f.refs = -1 // dead: any further use panics
}

func (f *File) mustLive() {
	if f.refs <= 0 {
		panic(fmt.Sprintf("kernel: invariant \"file-live\" broken: use of released file %s (id %d, refs %d)", f.Name, f.id, f.refs))
	}
	f.k.mustAlive()
}

// Readable and Writable report the access mode the file was opened with.
func (f *File) Readable() bool { return f.Flags&uapi.O_ACCMODE != uapi.O_WRONLY }

// Writable reports whether the file was opened for writing.
func (f *File) Writable() bool {
	m := f.Flags & uapi.O_ACCMODE
	return m == uapi.O_WRONLY || m == uapi.O_RDWR
}

func (f *File) String() string {
	return fmt.Sprintf("file %d %q (%s, refs %d, pos %d)", f.id, f.Name, f.Ops.Kind(), f.refs, f.Pos)
}

// errNoOp is what a system call returns for an operation the file kind
// does not have.
func errNoOp(op string) error {
	switch op {
	case "ioctl":
		return errno.ENOTTY
	case "lseek":
		return errno.ESPIPE
	default:
		return errno.EINVAL
	}
}
