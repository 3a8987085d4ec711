package fdbox

import (
	"slices"

	"khosim/errno"
	"khosim/kernel"
)

// This file is the driver's interface to Kexec HandOver. The KHO code
// (package kexec and the memfd/shmem handlers) writes the FDT and rebuilds
// files; the driver only keeps the boxes consistent around it.

// SealedBoxes returns the sealed boxes in creation order: what the KHO
// DUMP notifier serializes (the RFC's fdbox_kho_write_boxes() skips
// unsealed boxes). For each, Box.FDs gives the files in insertion order
// (fdbox_kho_write_fds()) and BoxFD.Handler their KHOWrite. Called by KHO
// at activation.
func (d *Driver) SealedBoxes() []*Box {
	d.mustAlive("SealedBoxes")
	var out []*Box
	for _, b := range d.boxes {
		if b.sealed {
			out = append(out, b)
		}
	}
	return out
}

// Freeze stops sealed boxes from changing: while frozen, FDBOX_SEAL and
// FDBOX_UNSEAL fail with EBUSY (deleting a sealed box always does), so the
// set of sealed boxes and their files stays exactly what KHO serialized.
// Unsealed boxes are not handed over and stay usable. Called by KHO once
// its activation succeeded (KHOClient commits at KEXEC_KHO_COMMIT); Thaw
// undoes it.
//
// Not in the RFC, whose boxes can be unsealed and emptied after KHO has
// serialized them, so the next kernel revives files the old one no
// longer holds.
func (d *Driver) Freeze() {
	d.mustAlive("Freeze")
	d.frozen = true
}

// Thaw ends Freeze. Called by KHO on abort (writing 0 to
// /sys/kernel/kho/active, or an activation that failed).
func (d *Driver) Thaw() {
	d.mustAlive("Thaw")
	d.frozen = false
}

// Carried names, for blackout accounting, the files a kexec now would hand
// over: those of the sealed boxes, once KHO serialized them.
func (d *Driver) Carried() []string {
	if !d.frozen {
		return nil
	}
	var out []string
	for _, box := range d.SealedBoxes() {
		for _, bfd := range box.fds {
			out = append(out, bfd.key())
		}
	}
	return out
}

// Frozen reports whether KHO froze the driver.
func (d *Driver) Frozen() bool { return d.frozen }

// CreateRecoveredBox recreates a box of the previous kernel: the RFC's
// _fdbox_create_box() from fdbox_kho_recover(), with the box sealed from
// the start (the RFC sets new_box->sealed after its fds). Its files arrive
// through RecoverFD; userspace sees them after FDBOX_UNSEAL. Called by KHO
// in the next kernel, once per box node of the FDT.
//
// Errors: EINVAL for a bad name; EEXIST if a box (or node) of that name
// exists.
func (d *Driver) CreateRecoveredBox(name string) (*Box, error) {
	d.mustAlive("CreateRecoveredBox")
	if err := checkName(name); err != nil {
		d.k.Printk(kernel.LogWarn, "fdbox: could not create box %q: invalid name", name)
		return nil, err
	}
	box, err := d.createBox(name)
	if err != nil {
		d.k.Printk(kernel.LogWarn, "fdbox: could not create box '%s': %v", name, err)
		return nil, err
	}
	box.sealed = true
	return box, nil
}

// TakeFD takes the file named name out of box whatever the box's state
// and hands the box's reference to the caller, who must give the file back
// with ReturnFD or put it. pos is the file's position in the box, for
// ReturnFD. It is the kernel-side fdbox_remove_fd(): it does not run the
// handler's Unseal and does not check Freeze. Called by KHO when it must
// swap a file for another (a failed or aborted serialization that rebuilt
// the file).
//
// Errors: ENODEV if box was deleted; ENOENT if it holds no such name;
// EBUSY if the file is serialized (the seal lifecycle sealed its box).
func (d *Driver) TakeFD(box *Box, name string) (f *kernel.File, pos int, err error) {
	d.mustAlive("TakeFD")
	if box.deleted {
		return nil, -1, errno.ENODEV
	}
	i := box.fdIndex(name)
	if i < 0 {
		return nil, -1, errno.ENOENT
	}
	if box.fds[i].file == nil {
		return nil, -1, errno.EBUSY // serialized at SEAL: no file to take
	}
	return d.removeFD(box, i), i, nil
}

// ReturnFD puts f into box under name at position pos (clamped to the
// box's length), whatever the box's state: the inverse of TakeFD. On
// success the box takes over the caller's reference; on error the caller
// keeps it. Called by KHO on abort.
//
// Preconditions:
//   - if box is sealed, the caller's reference is f's only one (a sealed
//     box's files are idle everywhere else).
//
// Errors: ENODEV if box was deleted; EINVAL for a bad name; EOPNOTSUPP if
// no handler preserves f; EEXIST if f or its inode is already boxed or the
// name is taken; EBUSY if box is sealed and f is referenced elsewhere.
func (d *Driver) ReturnFD(box *Box, pos int, name string, f *kernel.File) (*BoxFD, error) {
	d.mustAlive("ReturnFD")
	if box.deleted {
		return nil, errno.ENODEV
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	bfd, err := d.putFile(box, pos, name, f)
	if err != nil {
		return nil, err
	}
	if box.sealed && idleOutsideBox(bfd) != "" {
		d.removeFD(box, slices.Index(box.fds, bfd))
		return nil, errno.EBUSY
	}
	return bfd, nil
}
