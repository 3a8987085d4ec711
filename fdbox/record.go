package fdbox

import (
	"khosim/errno"
	"khosim/physmem"
)

// The sizes of the RFC's records as kzalloc gives them (x86-64, rounded up
// to their kmalloc size class): struct fdbox (name[FDBOX_NAME_LEN = 256],
// rw_semaphore, the fd_list and pending_fds xarrays, the embedded struct
// device and struct cdev, sealed) and struct fdbox_fd (name[256], file,
// flags, box). They are charged to the slab like every kernel record, so
// CREATE_BOX and PUT_FD fail with ENOMEM when kzalloc does (the slab fault
// site), and frames(slab) counts them.
const (
	boxRecordSize   = 1024 // kzalloc(sizeof(struct fdbox)): kmalloc-1k
	boxFDRecordSize = 512  // kzalloc(sizeof(struct fdbox_fd)): 280 bytes, kmalloc-512
)

// kzalloc allocates one of the driver's records; the caller kfrees it
// when the record dies. Errors: ENOMEM.
func (d *Driver) kzalloc(size uint64) (physmem.SlabObj, error) {
	obj, err := d.k.MM.Kmalloc(size)
	if err != nil {
		return 0, errno.ENOMEM
	}
	d.nrRecords++
	return obj, nil
}

// kfree frees a record of kzalloc and clears *obj.
func (d *Driver) kfree(obj *physmem.SlabObj) {
	if *obj == 0 {
		return
	}
	d.k.MM.Kfree(*obj)
	*obj = 0
	d.nrRecords--
}
