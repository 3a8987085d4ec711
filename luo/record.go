package luo

import "khosim/physmem"

// The sizes LUO's own kernel objects take from kmalloc (x86-64, Linux
// 6.19, rounded up to the size class they land in): struct luo_session
// (its name[LIVEUPDATE_SESSION_NAME_LENGTH], list head, mutex, its
// luo_file_set and the pointer to its serialized record) and struct
// luo_file (handler, file, token, private and serialized data, retrieve
// status, list head and mutex). They are kernel metadata like any other:
// charged to the slab, counted in frames(slab), and subject to the slab
// fault site (failslab), so that creating a session or preserving a file
// can fail with ENOMEM as kzalloc() lets it in Linux.
const (
	sessionRecordSize = 192 // kzalloc_obj(struct luo_session): kmalloc-192
	fileRecordSize    = 128 // kzalloc_obj(struct luo_file): kmalloc-128
)

// kzalloc allocates one of LUO's records (kzalloc(size, GFP_KERNEL)). The
// caller must kfree it when the record dies.
func (l *LUO) kzalloc(size uint64) (physmem.SlabObj, error) {
	obj, err := l.k.MM.Kmalloc(size)
	if err != nil {
		return 0, err
	}
	l.nrRecords++
	return obj, nil
}

// kfree frees a record allocated by kzalloc and clears *obj.
func (l *LUO) kfree(obj *physmem.SlabObj) {
	if *obj == 0 {
		return
	}
	l.k.MM.Kfree(*obj)
	*obj = 0
	l.nrRecords--
}
