package luo

import (
	"fmt"
	"slices"

	"khosim/errno"
	"khosim/fault"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/preserve"
)

// luoFile is one preserved file of a session (struct luo_file).
//
// State machine (outgoing): preserved --reboot path--> frozen
// --failed reboot path--> preserved; preserved|frozen --unpreserve-->
// gone; frozen --kexec--> handed over.
//
// State machine (incoming): deserialized (the record opened and its
// memory claimed at boot) --RETRIEVE_FD ok--> retrieved (file set; later
// retrieves hand out the same file) --FINISH--> gone;
// deserialized --RETRIEVE_FD fails--> failed (memory freed; every later
// retrieve returns the same error) --FINISH--> gone;
// deserialized --FINISH--> gone (discarded: memory freed).
//
// References: file holds one reference while set (outgoing: from
// PRESERVE_FD to unpreserve; incoming: from the retrieve to FINISH).
type luoFile struct {
	s       *Session
	token   uint64
	handler preserve.Handler
	compat  string           // luo_file_ser.compatible: the record's format
	data    physmem.PhysAddr // serialized_data
	file    *kernel.File
	key     any             // the file's key in luo_preserved_files: its inode
	obj     physmem.SlabObj // the struct luo_file itself (kzalloc in luo_preserve_file)

	// outgoing
	rec    preserve.Preserved // private_data
	frozen bool

	// incoming
	in          preserve.Incoming // until retrieved or discarded
	retrieved   bool              // retrieve_status > 0
	retrieveErr error             // retrieve_status < 0
}

func (lf *luoFile) String() string {
	state := "preserved"
	switch {
	case lf.s.incoming && lf.retrieved:
		state = "retrieved"
	case lf.s.incoming && lf.retrieveErr != nil:
		state = fmt.Sprintf("retrieve failed (%v)", lf.retrieveErr)
	case lf.s.incoming:
		state = "deserialized"
	case lf.frozen:
		state = "frozen"
	}
	return fmt.Sprintf("token %#x %s data %#x: %s", lf.token, lf.compat, uint64(lf.data), state)
}

// fileKey is the identity luo_preserved_files keys a file by: its inode,
// so that two open files of one memfd count as one.
func fileKey(f *kernel.File) any {
	if f.Inode != nil {
		return f.Inode
	}
	return f
}

// preserveFD is luo_session_preserve_fd() -> luo_preserve_file(), its
// checks in Linux's order: the token is unused in the session (EEXIST);
// the file array has room (ENOMEM; EBUSY once KHO is finalized); fd is
// open (EBADF); a handler can preserve the file (ENOENT: /dev/null, a
// linked tmpfs file); the file is not preserved already, in this or
// another session (EBUSY); then the handler's preserve (the luo_preserve
// fault site, ENOMEM; preserve.Handler.Preserve pinning every page up to
// i_size and freezing the inode; WriteBlob writing its record in
// preserved memory, EOPNOTSUPP for a memfd-v2 seal it cannot carry, EBUSY
// once KHO is finalized). On any error nothing is preserved and LUO holds
// no reference.
func (s *Session) preserveFD(t *kernel.Task, fd int, token uint64) error {
	l := s.l
	if slices.ContainsFunc(s.files, func(lf *luoFile) bool { return lf.token == token }) {
		return errno.EEXIST
	}
	if err := s.ensureFiles(len(s.files) + 1); err != nil {
		return err
	}
	f, err := t.Fget(fd)
	if err != nil {
		s.fitFiles()
		return err
	}
	fail := func(err error) error {
		f.Put()
		s.fitFiles()
		return err
	}
	h := l.layer.For(f)
	if h == nil {
		return fail(errno.ENOENT)
	}
	key := fileKey(f)
	if l.preserved[key] != nil {
		return fail(errno.EBUSY)
	}
	obj, err := l.kzalloc(fileRecordSize) // kzalloc_obj(*luo_file)
	if err != nil {
		return fail(errno.ENOMEM)
	}
	failFree := func(err error) error {
		l.kfree(&obj)
		return fail(err)
	}
	if err := l.faults.Hit(fault.LUOPreserve); err != nil {
		return failFree(err)
	}
	rec, err := h.Preserve(f, preserve.How{Pin: true, FreezeInode: true})
	if err != nil {
		return failFree(err)
	}
	data, err := rec.WriteBlob()
	if err != nil {
		rec.Unpreserve()
		return failFree(err)
	}
	lf := &luoFile{s: s, token: token, handler: h, compat: h.BlobCompatible(), data: data, file: f, key: key, rec: rec, obj: obj}
	s.files = append(s.files, lf)
	l.preserved[key] = lf
	l.stats.FilesPreserved++
	return nil
}

// unpreserve is one step of luo_file_unpreserve_files(): the handler's
// unpreserve, the file out of luo_preserved_files, LUO's reference
// dropped. Preconditions: the file is no longer in its session's list.
func (lf *luoFile) unpreserve() {
	l := lf.s.l
	lf.rec.Unpreserve()
	l.k.Meter().Regained(lf.meterKey())
	delete(l.preserved, lf.key)
	lf.file.Put()
	lf.file, lf.rec = nil, nil
	l.kfree(&lf.obj)
}

// freeze is luo_file_freeze_one(): the luo_freeze fault site, then the
// handler's ->freeze (memfd_luo_freeze records f_pos in its record).
func (lf *luoFile) freeze() error {
	if err := lf.s.l.faults.Hit(fault.LUOFreeze); err != nil {
		return err
	}
	if err := lf.rec.Freeze(); err != nil {
		return err
	}
	lf.frozen = true
	lf.s.l.k.Meter().Lost(lf.meterKey()) // LUO's blackout starts at the reboot path's freeze
	return nil
}

// meterKey names the file for blackout accounting, across kernels.
func (lf *luoFile) meterKey() string { return fmt.Sprintf("luo:%s/%#x", lf.s.name, lf.token) }

// unfreeze is luo_file_unfreeze_one().
func (lf *luoFile) unfreeze() {
	if lf.frozen {
		lf.rec.Unfreeze()
		lf.frozen = false
		lf.s.l.k.Meter().Regained(lf.meterKey()) // the kexec did not happen
	}
}

// retrieveFD is luo_session_retrieve_fd() -> luo_retrieve_file(): an fd is
// reserved (EMFILE); the token must name a file of the session (ENOENT,
// also once the session is finished); a retrieve that failed before fails
// again with its error; a file retrieved before is handed out again (the
// same struct file, another fd); otherwise the luo_retrieve fault site
// (EIO) and the handler's retrieve (preserve.Incoming.Restore) make the
// file, which LUO keeps a reference on until FINISH. A failed retrieve
// frees what the record held. The fd is close-on-exec.
func (s *Session) retrieveFD(t *kernel.Task, token uint64) (int, error) {
	if _, err := t.UnusedFD(); err != nil {
		return -1, err
	}
	i := slices.IndexFunc(s.files, func(lf *luoFile) bool { return lf.token == token })
	if i < 0 {
		return -1, errno.ENOENT
	}
	lf := s.files[i]
	if lf.retrieveErr != nil {
		return -1, lf.retrieveErr
	}
	if !lf.retrieved {
		if err := lf.retrieve(); err != nil {
			return -1, err
		}
	}
	fd, err := t.InstallFD(lf.file.Get(), true)
	if err != nil {
		lf.file.Put()
		return -1, err
	}
	s.l.k.Meter().Back(lf.meterKey()) // the blackout ends with the file back
	return fd, nil
}

// retrieve runs the handler's retrieve once.
func (lf *luoFile) retrieve() error {
	l := lf.s.l
	fail := func(err error) error {
		e := errno.Of(err)
		if e == 0 {
			e = errno.EIO
		}
		lf.retrieveErr = e
		l.k.Printk(kernel.LogErr, "liveupdate: session %q: retrieving token %#x (%s) failed: %v", lf.s.name, lf.token, lf.compat, err)
		return lf.retrieveErr
	}
	if err := l.faults.Hit(fault.LUORetrieve); err != nil {
		lf.in.Discard()
		lf.in = nil
		return fail(err)
	}
	f, err := lf.in.Restore() // on error the record's memory is returned
	lf.in = nil
	if err != nil {
		return fail(err)
	}
	key := fileKey(f)
	if l.preserved[key] != nil {
		invariant.Panic("luo", "luo-preserved-files", l.Dump(), "a retrieved file %v is already in luo_preserved_files", f)
	}
	lf.file, lf.key, lf.retrieved = f, key, true
	l.preserved[key] = lf
	l.stats.FilesRetrieved++
	return nil
}

// finish is luo_file_finish_one() for one incoming file, the session's
// list having dropped it: a retrieved file leaves luo_preserved_files and
// LUO's reference goes; a deserialized one is discarded (memfd_luo_finish
// without retrieve: every folio freed).
func (lf *luoFile) finish() {
	l := lf.s.l
	switch {
	case lf.retrieved:
		delete(l.preserved, lf.key)
		lf.file.Put()
		lf.file = nil
	case lf.in != nil:
		lf.in.Discard()
		lf.in = nil
		l.stats.FilesDiscarded++
	}
	l.kfree(&lf.obj)
}
