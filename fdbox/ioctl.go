package fdbox

import (
	"khosim/errno"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/uapi"
)

// ctlOps is the file kind of /dev/fdbox/fdbox (the RFC's fdbox_fops).
type ctlOps struct{ d *Driver }

// Kind implements kernel.FileOps.
func (*ctlOps) Kind() string { return "fdbox-ctl" }

// Ioctl is fdbox_fops_unl_ioctl(): FDBOX_CREATE_BOX and FDBOX_DELETE_BOX.
//
// Errors, in the order they are checked: EPERM without CAP_SYS_ADMIN;
// ENOTTY for another command; EFAULT if arg is not the command's UAPI
// structure; EINVAL for non-zero flags or a bad name; then the command's.
//
// Differs from the RFC: the RFC's control ioctls check no capability (only
// the node's 0600 mode protects them) and return EINVAL for an unknown
// command; here they need CAP_SYS_ADMIN like the box ioctls, and an unknown
// command is ENOTTY as for every other ioctl in Linux.
func (c *ctlOps) Ioctl(t *kernel.Task, f *kernel.File, cmd uint32, arg any) (int64, error) {
	if !t.Capable(uapi.CAP_SYS_ADMIN) {
		return -1, errno.EPERM
	}
	switch cmd {
	case uapi.FDBOX_CREATE_BOX:
		return c.createBox(arg)
	case uapi.FDBOX_DELETE_BOX:
		return c.deleteBox(arg)
	default:
		return -1, errno.ENOTTY
	}
}

// createBox is fdbox_create_box(): copy in struct fdbox_create_box, check
// flags and name, create the box and its node.
func (c *ctlOps) createBox(arg any) (int64, error) {
	a, ok := arg.(*uapi.FdboxCreateBox)
	if !ok || a == nil {
		return -1, errno.EFAULT
	}
	if a.Flags != 0 {
		return -1, errno.EINVAL
	}
	name, err := nameFromUser(&a.Name)
	if err != nil {
		return -1, err
	}
	if _, err := c.d.createBox(name); err != nil {
		return -1, err
	}
	return 0, nil
}

// deleteBox is fdbox_delete_box().
//
// Errors: ENOENT if no box has the name; EBUSY if the box is sealed.
//
// Differs from the RFC: the RFC deletes sealed boxes too. Here a sealed box
// is immutable until unsealed, deletion included (so a sealed box, or one
// KHO has serialized, cannot lose its files behind KHO's back); the files
// are released at once (see Driver.deleteBox).
func (c *ctlOps) deleteBox(arg any) (int64, error) {
	a, ok := arg.(*uapi.FdboxDeleteBox)
	if !ok || a == nil {
		return -1, errno.EFAULT
	}
	if a.Flags != 0 {
		return -1, errno.EINVAL
	}
	name, err := nameFromUser(&a.Name)
	if err != nil {
		return -1, err
	}
	box := c.d.Box(name)
	if box == nil {
		return -1, errno.ENOENT
	}
	if box.sealed {
		return -1, errno.EBUSY
	}
	c.d.deleteBox(box)
	return 0, nil
}

// boxOps is the file kind of /dev/fdbox/<box> (the RFC's box_fops). The
// file's Private is the *Box.
type boxOps struct{ d *Driver }

// Kind implements kernel.FileOps.
func (*boxOps) Kind() string { return "fdbox-box" }

// Ioctl is box_fops_unl_ioctl(): FDBOX_PUT_FD, FDBOX_GET_FD, FDBOX_SEAL,
// FDBOX_UNSEAL and khosim's FDBOX_LIST.
//
// Errors, in the order they are checked: EPERM without CAP_SYS_ADMIN;
// ENODEV if the box was deleted since the file was opened; ENOTTY for an
// unknown command (the RFC returns EINVAL); then the command's.
func (o *boxOps) Ioctl(t *kernel.Task, f *kernel.File, cmd uint32, arg any) (int64, error) {
	if !t.Capable(uapi.CAP_SYS_ADMIN) {
		return -1, errno.EPERM
	}
	box, ok := f.Private.(*Box)
	if !ok || box.d != o.d {
		invariant.Panic("fdbox", "box-file-private", "", "%v is a box file without its box", f)
	}
	if box.deleted {
		return -1, errno.ENODEV
	}
	switch cmd {
	case uapi.FDBOX_PUT_FD:
		return o.putFD(t, box, arg)
	case uapi.FDBOX_GET_FD:
		return o.getFD(t, box, arg)
	case uapi.FDBOX_SEAL:
		return 0, o.d.seal(box)
	case uapi.FDBOX_UNSEAL:
		return 0, o.d.unseal(box)
	case uapi.FDBOX_LIST:
		return o.list(box, arg)
	default:
		return -1, errno.ENOTTY
	}
}

// putFD is fdbox_put_fd(): the box takes the file at fd and the fd is
// closed in the caller (in the seal lifecycle the fd stays: the box takes a
// reference of its own, Lifecycle.PutKeepsFD). The box takes over the fd table's reference:
// fget() takes a second one, close_fd() drops the table's, so the net
// change is one reference moved from the fd table to the box.
//
// Errors, in the order they are checked: EFAULT (arg), EINVAL (flags),
// EBUSY (sealed), EBADF (fd), EOPNOTSUPP (no handler preserves the file's
// kind), EINVAL (name), EEXIST (the file or its inode is already in a box),
// EEXIST (name taken in this box).
//
// Differs from the RFC: the RFC ignores put_fd.flags and returns EINVAL
// when fget() fails; here non-zero flags are EINVAL and a bad fd is EBADF,
// as for every system call that takes an fd. The RFC also lets the same
// file (or inode) be put twice under two names, which serializes one inode
// twice and restores two unrelated files (Brauner); here that is EEXIST.
func (o *boxOps) putFD(t *kernel.Task, box *Box, arg any) (int64, error) {
	a, ok := arg.(*uapi.FdboxPutFD)
	if !ok || a == nil {
		return -1, errno.EFAULT
	}
	if a.Flags != 0 {
		return -1, errno.EINVAL
	}
	if box.sealed {
		return -1, errno.EBUSY
	}
	fd := int(a.FD)
	file, err := t.Fget(fd)
	if err != nil {
		return -1, errno.EBADF
	}
	if o.d.preservable(file) == nil {
		file.Put()
		return -1, errno.EOPNOTSUPP
	}
	name, err := nameFromUser(&a.Name)
	if err != nil {
		file.Put()
		return -1, err
	}
	bfd, err := o.d.putFile(box, len(box.fds), name, file)
	if err != nil {
		file.Put()
		return -1, err
	}
	if o.d.lc != nil && o.d.lc.PutKeepsFD() {
		return 0, nil // the box keeps fget's reference; the fd stays
	}
	defer func() {
		if file.Refs() == 1 {
			// The stash's blackout starts here: the workload's last
			// fd of the file went into the box.
			o.d.k.Meter().Lost(bfd.key())
		}
	}()
	if err := t.CloseFD(fd); err != nil {
		// Cannot happen in a single-threaded kernel: the fd was there
		// a moment ago. The RFC handles a racing close here; do the
		// same: undo the put and drop the fget reference.
		o.d.removeFD(box, box.fdIndex(bfd.name))
		file.Put()
		return -1, err
	}
	return 0, nil
}

// getFD is fdbox_get_fd(): the file named in the request leaves the box
// and is installed at the lowest free fd of the caller; the box's
// reference moves to the fd table. The fd is not close-on-exec
// (get_unused_fd_flags(0)).
//
// Errors, in the order they are checked (the RFC's): EBUSY (sealed),
// EFAULT (arg), EINVAL (flags, name), EMFILE (no free fd), ENOENT (no such
// name). On EMFILE the file stays in the box.
//
// Differs from the RFC: a name without a NUL in FDBOX_NAME_LEN bytes is
// EINVAL here, as for PUT_FD; the RFC compares it and reports ENOENT.
func (o *boxOps) getFD(t *kernel.Task, box *Box, arg any) (int64, error) {
	if box.sealed {
		return -1, errno.EBUSY
	}
	a, ok := arg.(*uapi.FdboxGetFD)
	if !ok || a == nil {
		return -1, errno.EFAULT
	}
	if a.Flags != 0 {
		return -1, errno.EINVAL
	}
	name, err := nameFromUser(&a.Name)
	if err != nil {
		return -1, err
	}
	// get_unused_fd_flags() before fdbox_remove_fd(), as the RFC.
	if len(t.FDs()) >= t.NoFile {
		return -1, errno.EMFILE
	}
	i := box.fdIndex(name)
	if i < 0 {
		return -1, errno.ENOENT
	}
	file := box.fds[i].file
	fd, err := t.InstallFD(file, false)
	if err != nil {
		return -1, err // the file stays in the box, with its reference
	}
	key := box.fds[i].key()
	o.d.removeFD(box, i) // the reference now belongs to the fd table
	m := o.d.k.Meter()
	m.Regained(key) // taken back before a kexec: no blackout
	m.Back(key)     // or back in the next kernel: the blackout ends
	return int64(fd), nil
}

// list is FDBOX_LIST, khosim's answer to Brauner's "How does userspace
// know what file descriptors are in this fdbox?" (the author agreed to add
// one). It works on sealed and unsealed boxes, fills *uapi.FdboxList (if
// arg is not nil) with the sealed state and the names in insertion order,
// and returns the number of files. A nil arg (also a nil *uapi.FdboxList)
// only counts; another type is EFAULT. Pending FDT nodes are not files yet and
// are not listed.
func (o *boxOps) list(box *Box, arg any) (int64, error) {
	if arg != nil {
		l, ok := arg.(*uapi.FdboxList)
		if !ok {
			return -1, errno.EFAULT
		}
		if l == nil {
			return int64(len(box.fds)), nil
		}
		l.Sealed = box.sealed
		l.Entries = make([]uapi.FdboxListEntry, 0, len(box.fds))
		for _, bfd := range box.fds {
			l.Entries = append(l.Entries, uapi.FdboxListEntry{Name: bfd.name})
		}
	}
	return int64(len(box.fds)), nil
}
