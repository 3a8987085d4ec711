// Package fdbox is the File Descriptor Box driver of the RFC "Introduce
// FDBox, and preserve memfd with shmem over KHO" (Pratyush Yadav, March
// 2025, patch 1/5: drivers/misc/fdbox.c, include/linux/fdbox.h,
// include/uapi/linux/fdbox.h), with the fixes its review asked for.
//
// Userspace names file descriptors and hands them to the kernel to hold in
// a box: /dev/fdbox/fdbox creates and deletes boxes, /dev/fdbox/<box> puts
// files in, takes them out, seals and unseals the box. Only sealed boxes are
// handed over to the next kernel by Kexec HandOver (KHO); the KHO code uses
// the exported Driver methods documented "called by KHO".
//
// One Driver belongs to one kernel instance (no Go globals): Init runs as
// that kernel's device initcall, and a kernel booted by kexec builds a new
// Driver whose boxes come only from the handover FDT.
//
// Where khosim deliberately differs from the RFC (bugs and objections from
// the review), the code says so in a "Differs from the RFC" note and
// docs/fdbox.md lists every difference.
package fdbox

import (
	"fmt"
	"slices"
	"strings"

	"khosim/errno"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/preserve"
	"khosim/uapi"
)

// Device paths. The control device is the RFC's miscdevice fdbox_dev with
// .nodename = "fdbox/fdbox"; every box gets a char device named
// "fdbox/<name>" (fdbox_devnode()).
const (
	DevDir  = "/dev/fdbox/"
	CtlPath = DevDir + "fdbox"
	// DevMode is the permission of every FDBox node: the RFC's miscdevice
	// has .mode = 0600 and the box devices get devtmpfs's default 0600,
	// both owned by root.
	DevMode = 0o600
)

// Driver is the FDBox driver of one kernel: what the RFC keeps in its
// static struct priv (box_list, handlers) plus the control miscdevice.
//
// References: the driver's box list owns the boxes; each box owns one
// reference to every file it holds (see BoxFD). Nothing else in the driver
// holds file references.
type Driver struct {
	k *kernel.Kernel

	boxes    []*Box         // priv.box_list, in creation order
	handlers []*FileHandler // priv.handlers, in registration order

	// Lookup indexes over the boxes (never iterated: every iteration
	// goes through boxes/fds, in insertion order). byFile and byInode
	// enforce that a file, and an inode, is in at most one box.
	byFile  map[*kernel.File]*BoxFD
	byInode map[*kernel.Inode]*BoxFD

	// frozen is set by KHO between a successful serialization and its
	// abort or the kexec: sealed boxes must not change (see Freeze).
	frozen bool

	// lc is what the driver's lifecycle adds to PUT_FD, SEAL and UNSEAL
	// (nil: the RFC's stash).
	lc Lifecycle

	ctl    *ctlOps
	boxOps *boxOps

	// nrRecords counts the driver's live kmalloc'd records (boxes and
	// box fds); CheckInvariants matches it against the lists.
	nrRecords int
}

// Init is fdbox_init(): it creates the control device /dev/fdbox/fdbox
// (mode 0600, root) and registers the driver as a holder of file
// references for the kernel's audit. The machine calls it as a device-level
// initcall (module_init of a built-in driver) of every kernel it boots.
//
// The RFC's fdbox_init also registers the KHO notifier and runs
// fdbox_kho_recover(); in khosim the KHO code does both through the Driver
// methods marked "called by KHO".
func Init(k *kernel.Kernel) (*Driver, error) {
	d := &Driver{
		k:       k,
		byFile:  map[*kernel.File]*BoxFD{},
		byInode: map[*kernel.Inode]*BoxFD{},
	}
	d.ctl = &ctlOps{d: d}
	d.boxOps = &boxOps{d: d}
	err := k.RegisterDevice(&kernel.Device{
		Path: CtlPath,
		Mode: DevMode,
		UID:  0,
		Open: func(t *kernel.Task, flags int) (kernel.FileOps, any, error) {
			return d.ctl, d, nil
		},
	})
	if err != nil {
		k.Printk(kernel.LogErr, "fdbox: misc device register failed: %v", err)
		return nil, err
	}
	k.RegisterRefOwner("fdbox", d.visitRefs)
	return d, nil
}

// Kernel returns the kernel the driver belongs to.
func (d *Driver) Kernel() *kernel.Kernel { return d.k }

// mustAlive panics if the driver's kernel is gone (kexec or reboot): a
// driver dies with its kernel, and the next kernel has its own, built
// from the handover alone. Every exported entry point but Dump checks it,
// so that a stray use of an old kernel's driver fails loudly instead of
// reading boxes and files that no longer exist.
func (d *Driver) mustAlive(op string) {
	if d.k.Gone() {
		invariant.Panic("fdbox", "driver-alive", "", "%s on the FDBox driver of boot %d, which is gone", op, d.k.BootID)
	}
}

// Box is a box of files (struct fdbox).
//
// State machine:
//
//	unsealed --SEAL--> sealed --UNSEAL--> unsealed
//	unsealed --DELETE_BOX--> deleted        (a sealed box: EBUSY)
//	(recovered after kexec) --> sealed
//
// A deleted box is out of the driver's list and its device node is gone,
// but files still open on its node keep the Go object alive: every ioctl on
// them fails with ENODEV. Deleted is final.
//
// Differs from the RFC: struct fdbox embeds both a struct device and a
// struct cdev, two reference counts for one object, and frees the box and
// its files from the device's release callback. Greg KH: "Which one
// defines the lifetime of the object? That's not going to work". Here a
// box has one lifetime, its membership of the driver's list, and the
// device node is only a name for it.
type Box struct {
	d       *Driver
	name    string
	fds     []*BoxFD    // fd_list, in insertion order
	pending []PendingFD // pending_fds: FDT nodes awaiting a handler
	sealed  bool
	deleted bool
	obj     physmem.SlabObj // struct fdbox itself (kzalloc in _fdbox_create_box)
}

// Name returns the box's name (unique among the driver's boxes).
func (b *Box) Name() string { return b.name }

// Path returns the box's device node, /dev/fdbox/<name>.
func (b *Box) Path() string { return DevDir + b.name }

// Sealed reports whether the box is sealed.
func (b *Box) Sealed() bool { return b.sealed }

// Deleted reports whether the box was deleted.
func (b *Box) Deleted() bool { return b.deleted }

// FDs returns the box's files in insertion order. The slice is a copy; the
// BoxFDs are the driver's and stay valid until taken out of the box.
func (b *Box) FDs() []*BoxFD { return slices.Clone(b.fds) }

// Pending returns the FDT nodes of the box still waiting for a handler, in
// the order they were queued.
func (b *Box) Pending() []PendingFD { return slices.Clone(b.pending) }

// FD returns the box's file named name, or nil.
func (b *Box) FD(name string) *BoxFD {
	if i := b.fdIndex(name); i >= 0 {
		return b.fds[i]
	}
	return nil
}

func (b *Box) fdIndex(name string) int {
	return slices.IndexFunc(b.fds, func(bfd *BoxFD) bool { return bfd.name == name })
}

// nameTaken reports whether name is used in the box by a file or by a
// pending FDT node: both are recovered under their name.
func (b *Box) nameTaken(name string) bool {
	return b.fdIndex(name) >= 0 || slices.ContainsFunc(b.pending, func(p PendingFD) bool { return p.Name == name })
}

func (b *Box) String() string {
	state := "unsealed"
	switch {
	case b.deleted:
		state = "deleted"
	case b.sealed:
		state = "sealed"
	}
	return fmt.Sprintf("box %q (%s, %d fds, %d pending)", b.name, state, len(b.fds), len(b.pending))
}

// BoxFD is a file in a box (struct fdbox_fd).
//
// References: a BoxFD owns exactly one reference to its file, the one the
// fd table held before FDBOX_PUT_FD (or the one a handler's Recover
// returned). It goes back to an fd table with FDBOX_GET_FD, to the caller
// of TakeFD, or is put (fput) when the box is deleted.
type BoxFD struct {
	name    string
	file    *kernel.File // nil while serialized (the seal lifecycle)
	box     *Box
	handler *FileHandler
	// record is the file's serialized state while the seal lifecycle
	// holds the box sealed: the file was preserved, detached and dropped
	// at SEAL (file is nil), and UNSEAL rebuilds it from this.
	record preserve.Preserved
	obj    physmem.SlabObj // struct fdbox_fd itself (kzalloc in fdbox_put_file)
}

// key names the file for blackout accounting, across kernels.
func (bfd *BoxFD) key() string { return "fdbox:" + bfd.box.name + "/" + bfd.name }

// Name returns the fd's name (unique in its box).
func (bfd *BoxFD) Name() string { return bfd.name }

// File returns the boxed file, or nil while it is serialized (a box the
// seal lifecycle sealed). The reference is the box's: callers borrow it
// and must not put it.
func (bfd *BoxFD) File() *kernel.File { return bfd.file }

// Record returns the file's serialized state while the seal lifecycle
// holds its box sealed, or nil.
func (bfd *BoxFD) Record() preserve.Preserved { return bfd.record }

// Box returns the box holding the file.
func (bfd *BoxFD) Box() *Box { return bfd.box }

// Handler returns the handler of the file's kind, the one whose
// CanPreserve accepted the file (the RFC's file->f_fdbox_op).
func (bfd *BoxFD) Handler() *FileHandler { return bfd.handler }

func (bfd *BoxFD) String() string {
	box, compat := "<none>", "<no handler>"
	if bfd.box != nil {
		box = bfd.box.name
	}
	if bfd.handler != nil {
		compat = bfd.handler.Compatible
	}
	if bfd.file == nil && bfd.record != nil {
		return fmt.Sprintf("fd %q in box %q: serialized %v (%s)", bfd.name, box, bfd.record, compat)
	}
	return fmt.Sprintf("fd %q in box %q: %v (%s)", bfd.name, box, bfd.file, compat)
}

// Boxes returns the live boxes in creation order.
func (d *Driver) Boxes() []*Box {
	d.mustAlive("Boxes")
	return slices.Clone(d.boxes)
}

// Box returns the live box named name, or nil.
func (d *Driver) Box(name string) *Box {
	d.mustAlive("Box")
	if i := d.boxIndex(name); i >= 0 {
		return d.boxes[i]
	}
	return nil
}

func (d *Driver) boxIndex(name string) int {
	return slices.IndexFunc(d.boxes, func(b *Box) bool { return b.name == name })
}

// Boxed returns the BoxFD holding f, or nil if f is in no box.
func (d *Driver) Boxed(f *kernel.File) *BoxFD {
	d.mustAlive("Boxed")
	return d.byFile[f]
}

// Dump describes every box and file, for invariant reports and debugging.
func (d *Driver) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fdbox: %d boxes, %d handlers, frozen=%v\n", len(d.boxes), len(d.handlers), d.frozen)
	for _, h := range d.handlers {
		fmt.Fprintf(&b, "  handler %q\n", h.Compatible)
	}
	for _, box := range d.boxes {
		fmt.Fprintf(&b, "  %v\n", box)
		for _, bfd := range box.fds {
			fmt.Fprintf(&b, "    %v\n", bfd)
		}
		for _, p := range box.pending {
			fmt.Fprintf(&b, "    %q: pending %q at offset %d\n", p.Name, p.Compatible, p.Node.Offset)
		}
	}
	return b.String()
}

// createBox is _fdbox_create_box(): it makes the box and its device node
// /dev/fdbox/<name>.
//
// Preconditions:
//   - name passed checkName.
//
// Errors: ENOMEM (struct fdbox); EEXIST if a box of that name exists or the node's path is taken
// (a box named "fdbox" collides with the control device, as cdev_device_add
// would in Linux).
func (d *Driver) createBox(name string) (*Box, error) {
	if d.boxIndex(name) >= 0 {
		return nil, errno.EEXIST
	}
	obj, err := d.kzalloc(boxRecordSize)
	if err != nil {
		return nil, err
	}
	box := &Box{d: d, name: name, obj: obj}
	err = d.k.RegisterDevice(&kernel.Device{
		Path: box.Path(),
		Mode: DevMode,
		UID:  0,
		Open: func(t *kernel.Task, flags int) (kernel.FileOps, any, error) {
			// box_fops_open(): the file's private data is the box.
			return d.boxOps, box, nil
		},
	})
	if err != nil {
		d.kfree(&box.obj)
		return nil, err
	}
	d.boxes = append(d.boxes, box)
	return box, nil
}

// deleteBox is fdbox_remove_box() + _fdbox_delete_box(): the box leaves
// the list, its node is removed, every file it holds is put and every
// pending FDT node is discarded.
//
// Preconditions:
//   - box is live (in d.boxes).
//
// Differs from the RFC: the RFC puts the files from the device release
// callback, which runs only when the last struct device reference goes
// away, and never releases pending_fds. Here deletion releases everything
// at once: nothing the box held survives it.
func (d *Driver) deleteBox(box *Box) {
	i := slices.Index(d.boxes, box)
	if i < 0 {
		invariant.Panic("fdbox", "box-in-list", d.Dump(), "deleting %v, which is not in the box list", box)
	}
	d.boxes = slices.Delete(d.boxes, i, i+1)
	box.deleted = true
	d.k.UnregisterDevice(box.Path())
	fds, pending := box.fds, box.pending
	box.fds, box.pending = nil, nil
	for _, bfd := range fds {
		if bfd.file == nil {
			// Cannot happen: a sealed box cannot be deleted, and only
			// a sealed box holds records.
			invariant.Panic("fdbox", "boxfd-owner", d.Dump(), "deleting %v, which holds a record", bfd)
		}
		d.unindex(bfd)
		d.kfree(&bfd.obj)
		bfd.file.Put()
	}
	d.kfree(&box.obj)
	for _, p := range pending {
		if p.Discard != nil {
			p.Discard()
		}
	}
}

// index records bfd in the lookup maps.
func (d *Driver) index(bfd *BoxFD) {
	d.byFile[bfd.file] = bfd
	if in := bfd.file.Inode; in != nil {
		d.byInode[in] = bfd
	}
}

func (d *Driver) unindex(bfd *BoxFD) {
	delete(d.byFile, bfd.file)
	if in := bfd.file.Inode; in != nil {
		delete(d.byInode, in)
	}
}

// preservable returns the handler for f's kind: the first registered
// handler whose CanPreserve accepts f. It is how khosim answers the RFC's
// "file->f_fdbox_op != NULL" without a field in struct file (Brauner).
func (d *Driver) preservable(f *kernel.File) *FileHandler {
	for _, h := range d.handlers {
		if h.CanPreserve(f) {
			return h
		}
	}
	return nil
}

// alreadyBoxed reports whether f, or another file on f's inode, is in a
// box: the same inode must never be serialized twice (Brauner's dup()
// case).
func (d *Driver) alreadyBoxed(f *kernel.File) bool {
	if d.byFile[f] != nil {
		return true
	}
	return f.Inode != nil && d.byInode[f.Inode] != nil
}

// putFile is fdbox_put_file(): it adds f under name at position pos of box
// (pos >= len(box.fds) appends). The box takes over the caller's reference
// on success; on error the caller still owns it.
//
// Preconditions:
//   - box is live; name passed checkName.
//
// Errors, in the RFC's order: EOPNOTSUPP if no handler preserves f's
// kind; ENOMEM (kzalloc of struct fdbox_fd); EEXIST if f or its inode is
// already in a box, or name is taken in box.
func (d *Driver) putFile(box *Box, pos int, name string, f *kernel.File) (*BoxFD, error) {
	return d.putFileWith(box, pos, name, f, nil)
}

// putFileWith is putFile with the handler chosen by the caller (recovery
// knows it from the node's compatible); nil looks it up. The handler must
// accept f, else EOPNOTSUPP.
func (d *Driver) putFileWith(box *Box, pos int, name string, f *kernel.File, h *FileHandler) (*BoxFD, error) {
	if h == nil {
		h = d.preservable(f)
	}
	if h == nil || !h.CanPreserve(f) {
		return nil, errno.EOPNOTSUPP
	}
	obj, err := d.kzalloc(boxFDRecordSize)
	if err != nil {
		return nil, err
	}
	if d.alreadyBoxed(f) || box.nameTaken(name) {
		d.kfree(&obj)
		return nil, errno.EEXIST
	}
	bfd := &BoxFD{name: name, file: f, box: box, handler: h, obj: obj}
	pos = min(max(pos, 0), len(box.fds))
	box.fds = slices.Insert(box.fds, pos, bfd)
	d.index(bfd)
	return bfd, nil
}

// removeFD is fdbox_remove_fd(): it takes the file at index i out of box
// and hands its reference to the caller.
func (d *Driver) removeFD(box *Box, i int) *kernel.File {
	bfd := box.fds[i]
	box.fds = slices.Delete(box.fds, i, i+1)
	d.unindex(bfd)
	d.kfree(&bfd.obj)
	return bfd.file
}

// idleOutsideBox reports why bfd's file is not idle everywhere but in the
// box, or "" if it is: the box's reference must be the file's only one (no
// fd, no mapping, no transient holder: Gunthorpe's "struct file refcount ==
// 1"), and no other open file may share its inode.
func idleOutsideBox(bfd *BoxFD) string {
	f := bfd.file
	if n := f.Refs(); n != 1 {
		why := fmt.Sprintf("file has %d references, the box holds 1", n)
		if holders := f.Kernel().FileHolders(f); len(holders) > 0 {
			why += "; the others: " + strings.Join(holders, ", ")
		}
		return why
	}
	if f.Inode != nil && f.Inode.OpenFiles() != 1 {
		return fmt.Sprintf("inode %d has %d open files", f.Inode.Ino, f.Inode.OpenFiles())
	}
	return ""
}

// seal is fdbox_seal().
//
// Preconditions: box is live.
//
// Errors: EBUSY if the box is already sealed, KHO froze the driver, the
// box still has pending FDT nodes (they cannot be serialized again without
// a handler), or a file is still referenced outside the box; whatever a
// handler's Seal returns.
//
// Differs from the RFC: the RFC seals even if userspace still holds a dup
// or a mapping of a boxed file. Here a sealed box's files are idle
// everywhere else (Gunthorpe: "check the struct file refcount == 1"), so
// what KHO serializes cannot change behind it. A failing handler Seal
// unseals the files already sealed, in reverse order, and the box stays
// unsealed (the RFC leaves them sealed).
func (d *Driver) seal(box *Box) error {
	if box.sealed || d.frozen || len(box.pending) > 0 {
		return errno.EBUSY
	}
	for _, bfd := range box.fds {
		if why := idleOutsideBox(bfd); why != "" {
			d.k.Printk(kernel.LogDebug, "fdbox: cannot seal box %q: fd %q: %s", box.name, bfd.name, why)
			return errno.EBUSY
		}
	}
	for _, bfd := range box.fds {
		// The workload holds none of the files any more (idle): for
		// the seal lifecycle the blackout starts here, before SEAL
		// serializes; for the stash it started at PUT_FD if the file
		// had no other reference then.
		d.k.Meter().Lost(bfd.key())
	}
	for i, bfd := range box.fds {
		if bfd.handler.Seal == nil {
			continue
		}
		if err := bfd.handler.Seal(bfd); err != nil {
			d.k.Printk(kernel.LogErr, "fdbox: seal of box %q failed at fd %q: %v", box.name, bfd.name, err)
			d.unsealHandlers(box, i)
			return errno.Of(err)
		}
	}
	if d.lc != nil {
		if err := d.lc.Seal(box); err != nil {
			d.k.Printk(kernel.LogErr, "fdbox: cannot seal box %q: %v", box.name, err)
			d.unsealHandlers(box, len(box.fds))
			return errno.Of(err)
		}
	}
	box.sealed = true
	return nil
}

// unsealHandlers runs the handlers' Unseal for the first n files of box,
// in reverse order, to undo a seal that failed after them.
func (d *Driver) unsealHandlers(box *Box, n int) {
	for _, done := range slices.Backward(box.fds[:n]) {
		if done.handler.Unseal != nil {
			if uerr := done.handler.Unseal(done); uerr != nil {
				d.k.Printk(kernel.LogErr, "fdbox: unseal of fd %q while undoing a failed seal: %v", done.name, uerr)
			}
		}
	}
}

// unseal is fdbox_unseal().
//
// Preconditions: box is live.
//
// Errors: EBUSY if the box is not sealed or KHO froze the driver; whatever
// a handler's Unseal returns.
//
// Differs from the RFC: the RFC's fdbox_unseal() calls each file's ->seal
// operation again (a copy-paste bug); here it calls Unseal. A failing
// Unseal re-seals the files already unsealed and the box stays sealed.
func (d *Driver) unseal(box *Box) error {
	if !box.sealed || d.frozen {
		return errno.EBUSY
	}
	if d.lc != nil {
		if err := d.lc.Unseal(box); err != nil {
			d.k.Printk(kernel.LogErr, "fdbox: cannot unseal box %q: %v", box.name, err)
			return errno.Of(err)
		}
	}
	for i, bfd := range box.fds {
		if bfd.handler.Unseal == nil {
			continue
		}
		if err := bfd.handler.Unseal(bfd); err != nil {
			d.k.Printk(kernel.LogErr, "fdbox: unseal of box %q failed at fd %q: %v", box.name, bfd.name, err)
			for _, done := range slices.Backward(box.fds[:i]) {
				if done.handler.Seal != nil {
					if serr := done.handler.Seal(done); serr != nil {
						d.k.Printk(kernel.LogErr, "fdbox: seal of fd %q while undoing a failed unseal: %v", done.name, serr)
					}
				}
			}
			return errno.Of(err)
		}
	}
	box.sealed = false
	return nil
}

// checkName validates a box or fd name: not empty, no '/', not "." or
// "..", no NUL, shorter than FDBOX_NAME_LEN.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) >= uapi.FDBOX_NAME_LEN ||
		strings.ContainsAny(name, "/\x00") {
		return errno.EINVAL
	}
	return nil
}

// nameFromUser reads a name from a UAPI buffer: strscpy_pad() into
// FDBOX_NAME_LEN bytes, which fails (EINVAL) if the buffer holds no NUL,
// then checkName.
func nameFromUser(buf *[uapi.FDBOX_NAME_LEN]byte) (string, error) {
	n := slices.Index(buf[:], 0)
	if n < 0 {
		return "", errno.EINVAL
	}
	name := string(buf[:n])
	if err := checkName(name); err != nil {
		return "", err
	}
	return name, nil
}
