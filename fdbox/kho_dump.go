package fdbox

import (
	"slices"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
)

// This file and kho_recover.go, memfd_kho.go are FDBox's Kexec HandOver
// code from the RFC's drivers/misc/fdbox.c (fdbox_kho_notifier,
// fdbox_kho_write_boxes, fdbox_kho_write_fds, fdbox_kho_recover) and
// mm/memfd.c + mm/shmem.c (memfd_fdbox_kho_write/recover,
// shmem_fdbox_kho_write/recover). The driver proper (boxes, ioctls,
// handler registry) is in the other files; this code uses only its
// exported methods.

// Compatibles of the FDT nodes FDBox writes.
const (
	// FdboxCompatible is the /fdbox node.
	FdboxCompatible = "fdbox-v1"
	// BoxCompatible is one node per sealed box, named by the box.
	BoxCompatible = "fdbox,box-v1"
	// FdboxNode is the name of FDBox's node under the KHO root.
	FdboxNode = "fdbox"
)

// KHOFileOps is what a file kind adds to its FileHandler to take part in
// khosim's two-phase serialization (not in the RFC, whose kho_write
// truncates the file as it serializes it, so a later failure loses the
// file):
//
//   - phase 1, FileHandler.KHOWrite during KEXEC_KHO_DUMP: preserve the
//     file's memory and describe it, changing nothing the file's users can
//     see;
//   - phase 2, Commit during KEXEC_KHO_COMMIT, once every notifier and the
//     FDT succeeded: the destructive part (the RFC's removal of the folios
//     from the page cache). It cannot fail.
//
// Abort undoes both (KEXEC_KHO_ABORT: a failed activation or a
// deactivation) and must leave the file exactly as it was; committed says
// whether Commit ran. Abort is also called for a file whose KHOWrite
// failed half way.
type KHOFileOps struct {
	// Estimate bounds the FDT bytes KHOWrite writes for bfd (the fd
	// node's properties and subnodes, not its name). Optional.
	Estimate func(bfd *BoxFD) uint64
	Commit   func(bfd *BoxFD)
	Abort    func(bfd *BoxFD, committed bool)
}

// KHOClient is the FDBox driver's connection to its kernel's KHO: the notifier
// of the RFC's fdbox_kho_nb, the recovery of the boxes the previous kernel
// handed over, and the per-activation record of what was serialized.
//
// State machine (following the KHO notifier events):
//
//	idle --DUMP--> dumped (written lists the files serialized) --COMMIT--> committed (driver frozen)
//	dumped|committed --ABORT--> idle (every written file's Abort, driver thawed)
//	committed --kexec--> gone with the kernel
type KHOClient struct {
	d      *Driver
	kho    *kexec.KHO
	faults *fault.Injector
	nb     *kexec.Notifier
	ops    map[string]*KHOFileOps // by handler compatible

	written   []*BoxFD // files whose KHOWrite ran (or started), in FDT order
	committed bool

	recovered RecoverStats
}

// KHOInit is the KHO part of the RFC's fdbox_init(): it registers the
// driver's KHO notifier and recovers the boxes the previous kernel handed
// over (fdbox_kho_recover). The machine calls it right after Init, at
// device initcall level. faults is the machine's injector (sites
// kho_write and recover; may be nil).
func KHOInit(d *Driver, kho *kexec.KHO, faults *fault.Injector) (*KHOClient, error) {
	c := &KHOClient{d: d, kho: kho, faults: faults, ops: map[string]*KHOFileOps{}}
	c.nb = &kexec.Notifier{Name: "fdbox", Call: c.notifier, Estimate: c.estimate}
	if err := kho.RegisterNotifier(c.nb); err != nil {
		d.k.Printk(kernel.LogErr, "fdbox: cannot register the KHO notifier: %v", err)
		return nil, err
	}
	c.recover()
	return c, nil
}

// Driver returns the driver.
func (c *KHOClient) Driver() *Driver { return c.d }

// KHO returns the kernel's KHO.
func (c *KHOClient) KHO() *kexec.KHO { return c.kho }

// SetFileOps registers the two-phase operations of the file kind whose
// handler has the given compatible.
func (c *KHOClient) SetFileOps(compatible string, ops *KHOFileOps) { c.ops[compatible] = ops }

// Committed reports whether the last activation committed (the boxed
// files' memory is out of their page caches, held by KHO).
func (c *KHOClient) Committed() bool { return c.committed }

// notifier is fdbox_kho_notifier().
func (c *KHOClient) notifier(cmd kexec.Cmd, w *fdt.Writer) error {
	switch cmd {
	case kexec.KEXEC_KHO_DUMP:
		return c.dump(w)
	case kexec.KEXEC_KHO_COMMIT:
		c.commit()
		return nil
	case kexec.KEXEC_KHO_ABORT:
		c.abort()
		return nil
	}
	return errno.EINVAL
}

// estimate bounds what dump writes: the /fdbox node, and for every sealed
// box its node and every file's node.
func (c *KHOClient) estimate() uint64 {
	n := uint64(256)
	for _, box := range c.d.SealedBoxes() {
		n += 128 + uint64(len(box.Name()))
		for _, bfd := range box.FDs() {
			n += 64 + uint64(len(bfd.Name()))
			if rec := bfd.Record(); rec != nil {
				n += rec.EstimateFDT()
			} else if ops := c.ops[bfd.Handler().Compatible]; ops != nil && ops.Estimate != nil {
				n += ops.Estimate(bfd)
			} else {
				n += 4096
			}
		}
	}
	return n
}

// dump is the DUMP half of fdbox_kho_notifier() with
// fdbox_kho_write_boxes() and fdbox_kho_write_fds(): /fdbox
// (compatible "fdbox-v1"), one node per sealed box (compatible
// "fdbox,box-v1"), one node per file written by its handler's KHOWrite.
// Unsealed boxes are not carried; a file whose handler has no KHOWrite is
// skipped with a message, as in the RFC. Each file reports to the
// kho_write fault site (EIO) before it is serialized.
//
// Differs from the RFC, which ORs libfdt error codes together (so the
// errno it returns is meaningless) and goes on after a failure: the first
// failure stops the DUMP and is returned as is.
func (c *KHOClient) dump(w *fdt.Writer) error {
	c.written, c.committed = nil, false
	k := c.d.k
	if err := w.BeginNode(FdboxNode); err != nil {
		return err
	}
	if err := w.PropertyString("compatible", FdboxCompatible); err != nil {
		return err
	}
	for _, box := range c.d.SealedBoxes() {
		if err := w.BeginNode(box.Name()); err != nil {
			k.Printk(kernel.LogErr, "fdbox: failed to begin node for box '%s': %v", box.Name(), err)
			return err
		}
		if err := w.PropertyString("compatible", BoxCompatible); err != nil {
			return err
		}
		for _, bfd := range box.FDs() {
			if err := c.writeFD(w, box, bfd); err != nil {
				return err
			}
		}
		if err := w.EndNode(); err != nil {
			return err
		}
	}
	return w.EndNode()
}

// writeFD is the loop body of fdbox_kho_write_fds().
func (c *KHOClient) writeFD(w *fdt.Writer, box *Box, bfd *BoxFD) error {
	k := c.d.k
	h := bfd.Handler()
	if rec := bfd.Record(); rec != nil {
		// Serialized at SEAL (the seal lifecycle): only the record is
		// written; nothing is left to commit or abort.
		if err := c.faults.Hit(fault.KHOWrite); err != nil {
			k.Printk(kernel.LogErr, "fdbox: kho_write failed for box '%s' FD '%s': %v", box.Name(), bfd.Name(), err)
			return err
		}
		if err := w.BeginNode(bfd.Name()); err != nil {
			return err
		}
		if err := rec.WriteFDT(w, bfd.Name()); err != nil {
			return err
		}
		return w.EndNode()
	}
	if h.KHOWrite == nil {
		k.Printk(kernel.LogInfo, "fdbox: box '%s' FD '%s' has no KHO method. It won't be saved across kexec",
			box.Name(), bfd.Name())
		return nil
	}
	if err := c.faults.Hit(fault.KHOWrite); err != nil {
		k.Printk(kernel.LogErr, "fdbox: kho_write failed for box '%s' FD '%s': %v", box.Name(), bfd.Name(), err)
		return err
	}
	if err := w.BeginNode(bfd.Name()); err != nil {
		k.Printk(kernel.LogErr, "fdbox: failed to begin node for box '%s' FD '%s': %v", box.Name(), bfd.Name(), err)
		return err
	}
	c.written = append(c.written, bfd)
	if err := h.KHOWrite(bfd, w); err != nil {
		k.Printk(kernel.LogErr, "fdbox: kho_write failed for box '%s' FD '%s': %v", box.Name(), bfd.Name(), err)
		return err
	}
	if err := w.EndNode(); err != nil {
		k.Printk(kernel.LogErr, "fdbox: failed to end node for box '%s' FD '%s': %v", box.Name(), bfd.Name(), err)
		return err
	}
	return nil
}

// commit is phase 2: every serialized file's Commit, then the driver is
// frozen so that what was serialized cannot change before the kexec.
func (c *KHOClient) commit() {
	if c.committed {
		invariant.Panic("fdbox", "kho-commit-once", c.d.Dump(), "KEXEC_KHO_COMMIT twice")
	}
	for _, bfd := range c.written {
		if ops := c.ops[bfd.Handler().Compatible]; ops != nil && ops.Commit != nil {
			ops.Commit(bfd)
		}
	}
	c.committed = true
	c.d.Freeze()
}

// abort undoes the activation: every serialized file's Abort, in reverse
// order, then the driver is thawed. The RFC's ABORT does nothing
// (NOTIFY_DONE), leaving the memfds' pages out of their page caches with
// KHO's references leaked.
func (c *KHOClient) abort() {
	for _, bfd := range slices.Backward(c.written) {
		if ops := c.ops[bfd.Handler().Compatible]; ops != nil && ops.Abort != nil {
			ops.Abort(bfd, c.committed)
		}
	}
	c.written, c.committed = nil, false
	c.d.Thaw()
}
