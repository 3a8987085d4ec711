package kernel

import (
	"slices"

	"khosim/errno"
)

// Device is a character device node under /dev (a miscdevice or a cdev
// with its devtmpfs node).
type Device struct {
	// Path is the node's path, e.g. "/dev/fdbox/fdbox".
	Path string
	// Mode is the node's permission bits (0600: owner read/write).
	Mode uint32
	// UID owns the node (0: root).
	UID uint32
	// Open creates the file for an open of the node (->open). It returns
	// the file kind and its private data.
	Open func(t *Task, flags int) (ops FileOps, private any, err error)
}

// RegisterDevice creates a device node (misc_register / cdev_device_add).
// It fails with EEXIST if the path is taken.
func (k *Kernel) RegisterDevice(d *Device) error {
	k.mustAlive()
	if _, ok := k.devices[d.Path]; ok {
		return errno.EEXIST
	}
	k.devices[d.Path] = d
	return nil
}

// UnregisterDevice removes a device node (cdev_device_del). Files already
// open on it stay open.
func (k *Kernel) UnregisterDevice(path string) {
	delete(k.devices, path)
}

// Devices lists the device paths, sorted.
func (k *Kernel) Devices() []string {
	out := make([]string, 0, len(k.devices))
	for p := range k.devices {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// devicePermission models generic_permission() for a device node: the
// owner gets the owner bits, everyone else the "other" bits, and
// CAP_DAC_OVERRIDE bypasses both.
func devicePermission(t *Task, d *Device, flags int) error {
	const capDACOverride = 1
	if t.Capable(capDACOverride) {
		return nil
	}
	bits := d.Mode & 7
	if t.Cred.UID == d.UID {
		bits = d.Mode >> 6 & 7
	}
	var want uint32
	f := &File{Flags: flags}
	if f.Readable() {
		want |= 4
	}
	if f.Writable() {
		want |= 2
	}
	if bits&want != want {
		return errno.EACCES
	}
	return nil
}

// openDevice opens the device node at path for t (chrdev_open): the
// driver's file operations and private data for the new file.
func (k *Kernel) openDevice(t *Task, path string, flags int) (FileOps, any, error) {
	d, ok := k.devices[path]
	if !ok {
		return nil, nil, errno.ENOENT
	}
	if err := devicePermission(t, d, flags); err != nil {
		return nil, nil, err
	}
	return d.Open(t, flags)
}
