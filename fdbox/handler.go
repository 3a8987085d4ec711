package fdbox

import (
	"slices"

	"khosim/errno"
	"khosim/fdt"
	"khosim/kernel"
	"khosim/preserve"
)

// FileHandler is what a preservable file kind provides to FDBox: the RFC's
// struct fdbox_file_ops (kho_write, seal, unseal) together with its struct
// fdbox_handler (compatible, recovery fn), registered with
// fdbox_register_handler().
//
// Differs from the RFC: the RFC finds a file's operations in a new field of
// struct file (f_fdbox_op), which Brauner rejected ("struct file should
// have zero to do with this KHO stuff"). Here a handler recognises files of
// its kind from their file operations (CanPreserve looks at f.Ops, e.g.
// kernel.IsMemfd), and one registry keyed by compatible serves both
// preservation and recovery.
type FileHandler struct {
	// Compatible names the FDT node format the handler writes and
	// recovers, e.g. "fdbox,memfd-v1". Unique among a driver's handlers.
	Compatible string

	// CanPreserve reports whether f is of the handler's kind. Required.
	// It must depend only on what the file is (its Ops), not on its
	// state, so that the answer cannot change while the file is boxed.
	CanPreserve func(f *kernel.File) bool

	// KHOWrite serializes one boxed file into the KHO FDT (->kho_write,
	// whose `void *fdt` is the libfdt sequential-write state, here
	// *fdt.Writer): the KHO code has begun the fd's node and ends it
	// after KHOWrite returns. Called with the box sealed and the driver
	// frozen. Optional: a file kind without it is not handed over (the
	// RFC logs "won't be saved across kexec" and goes on).
	KHOWrite func(bfd *BoxFD, w *fdt.Writer) error

	// Recover rebuilds a file from its FDT node in the next kernel (the
	// RFC's fn(fdt, offset)) and returns it with one reference, which
	// the box takes. Recover consumes the node: on error it must have
	// released (or returned to KHO) everything the node described.
	// Optional: a handler without it cannot recover, and its nodes fail
	// with EOPNOTSUPP.
	Recover func(node FDTNode) (*kernel.File, error)

	// Preserver is the preservation layer's handler for the file kind,
	// which the seal lifecycle serializes with at SEAL. Optional: without
	// it, a file is carried as the stash carries it.
	Preserver preserve.Handler

	// Seal and Unseal are called for every file of the box, in insertion
	// order, when it is sealed or unsealed (->seal, ->unseal), so that a
	// file can check its dependencies on other files of the box
	// (bfd.Box()). Optional.
	Seal   func(bfd *BoxFD) error
	Unseal func(bfd *BoxFD) error
}

// FDTNode locates one fd node in the handover FDT: the (fdt, offset) pair
// the RFC passes to a recovery function. FDT is the flattened tree
// (kho_get_fdt()); fdbox never parses it.
type FDTNode struct {
	FDT    []byte
	Offset int
}

// PendingFD is an fd node of a recovered box whose compatible had no
// registered handler yet (an entry of the RFC's box->pending_fds). It is
// recovered when a handler for Compatible registers.
type PendingFD struct {
	Name       string // the fd's name: its FDT node's name
	Compatible string // the node's "compatible" property
	Node       FDTNode
	// Discard, if not nil, is called when the node is dropped without
	// ever being recovered (its box is deleted), so that KHO can return
	// the memory it preserves. The RFC leaks it.
	Discard func()
}

// Handlers returns the registered handlers in registration order.
func (d *Driver) Handlers() []*FileHandler { return slices.Clone(d.handlers) }

// Handler returns the handler registered for compatible, or nil.
func (d *Driver) Handler(compatible string) *FileHandler {
	i := slices.IndexFunc(d.handlers, func(h *FileHandler) bool { return h.Compatible == compatible })
	if i < 0 {
		return nil
	}
	return d.handlers[i]
}

// RegisterHandler is fdbox_register_handler(): it makes h's file kind
// preservable and recovers every pending fd node of h.Compatible
// (fdbox_recover_pending()), box by box in creation order. Called by file
// kinds at boot (the RFC's memfd does it from a late_initcall); in khosim
// the machine's initcall wiring calls it for memfd.
//
// Errors: EINVAL if h has no Compatible or no CanPreserve; EEXIST if a
// handler for h.Compatible is registered. Failures to recover a pending
// node are logged, not returned, as in the RFC.
//
// The RFC recovers pending nodes only once fdbox_kho_recover() has run
// (priv.recover_done, under recover_sem); a single-threaded kernel has no
// such race, so here registration always scans the pending nodes: before
// recovery there are none.
func (d *Driver) RegisterHandler(h *FileHandler) error {
	d.mustAlive("fdbox_register_handler")
	if h == nil || h.Compatible == "" || h.CanPreserve == nil {
		return errno.EINVAL
	}
	if d.Handler(h.Compatible) != nil {
		return errno.EEXIST
	}
	d.handlers = append(d.handlers, h)
	d.recoverPending(h)
	return nil
}

// recoverPending is fdbox_recover_pending().
func (d *Driver) recoverPending(h *FileHandler) {
	for _, box := range d.boxes {
		var keep []PendingFD
		var mine []PendingFD
		for _, p := range box.pending {
			if p.Compatible == h.Compatible {
				mine = append(mine, p)
			} else {
				keep = append(keep, p)
			}
		}
		box.pending = keep
		for _, p := range mine {
			_, _ = d.recoverFD(box, p, h)
		}
	}
}

// RecoverFD is the per-fd step of fdbox_kho_recover(): called by KHO in
// the next kernel for each fd node of a box it recreated with
// CreateRecoveredBox. If a handler for p.Compatible is registered, its
// Recover rebuilds the file and the file goes into box under p.Name
// (fdbox_recover_fd()); otherwise the node is queued in the box's pending
// list until RegisterHandler brings a handler, and RecoverFD returns nil
// and no error.
//
// Preconditions:
//   - box is live.
//
// Errors: ENODEV if box was deleted; EINVAL for a bad name; EEXIST if the
// name is taken in box (the node was not consumed: the caller still owns
// what it describes); otherwise the error of the recovery (the node was
// consumed). Every failure is also logged, as the RFC does.
func (d *Driver) RecoverFD(box *Box, p PendingFD) (*BoxFD, error) {
	d.mustAlive("RecoverFD")
	if box.deleted {
		return nil, errno.ENODEV
	}
	if err := checkName(p.Name); err != nil {
		d.k.Printk(kernel.LogErr, "fdbox: invalid fd name %q in box %q", p.Name, box.name)
		return nil, err
	}
	if box.nameTaken(p.Name) {
		d.k.Printk(kernel.LogErr, "fdbox: fd %q appears twice in box %q", p.Name, box.name)
		return nil, errno.EEXIST
	}
	h := d.Handler(p.Compatible)
	if h == nil {
		d.k.Printk(kernel.LogDebug, "fdbox: found no handler for compatible %s. Queueing for later.", p.Compatible)
		box.pending = append(box.pending, p)
		return nil, nil
	}
	return d.recoverFD(box, p, h)
}

// recoverFD is fdbox_recover_fd(): h rebuilds the file and it goes into
// box, sealed or not.
//
// Preconditions:
//   - box is live, p.Name is valid and not taken in box (so the put can
//     only fail if the handler misbehaves).
func (d *Driver) recoverFD(box *Box, p PendingFD, h *FileHandler) (*BoxFD, error) {
	if h.Recover == nil {
		d.k.Printk(kernel.LogErr, "fdbox: handler %s cannot recover fd %q of box %q", h.Compatible, p.Name, box.name)
		return nil, errno.EOPNOTSUPP
	}
	f, err := h.Recover(p.Node)
	if err == nil && f == nil {
		err = errno.EIO
	}
	if err != nil {
		d.k.Printk(kernel.LogErr, "fdbox: failed to recover fd %q of box %q: %v", p.Name, box.name, err)
		return nil, errno.Of(err)
	}
	bfd, err := d.putFileWith(box, len(box.fds), p.Name, f, h)
	if err == nil && box.sealed {
		if why := idleOutsideBox(bfd); why != "" {
			d.removeFD(box, len(box.fds)-1)
			d.k.Printk(kernel.LogErr, "fdbox: recovered fd %q of box %q is not idle: %s", p.Name, box.name, why)
			err = errno.EBUSY
		}
	}
	if err != nil {
		d.k.Printk(kernel.LogErr, "fdbox: failed to put fd '%s' into box '%s': %v", p.Name, box.name, err)
		f.Put()
		return nil, err
	}
	// Box and fd names are not covered by the storage node's checksum
	// (the box and fd nodes are the RFC's format): say what came back.
	d.k.Printk(kernel.LogInfo, "fdbox: recovered fd %q of box %q: %s, %d bytes", p.Name, box.name, f.Name, fileSize(f))
	return bfd, nil
}

// fileSize returns i_size of f, or 0 for a file without an inode.
func fileSize(f *kernel.File) int64 {
	if f.Inode == nil {
		return 0
	}
	return f.Inode.Size
}
