package luo

import (
	"fmt"
	"slices"

	"khosim/errno"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// Session is a LUO session (struct luo_session): a named set of preserved
// files, reached through its session fd.
//
// State machine (outgoing, created in this kernel):
//
//	open --PRESERVE_FD--> open (one more file)
//	open --last fput of its fd--> gone (its files unpreserved, last first)
//	open --last fput while KHO is finalized--> released (files still
//	                    preserved, not carried) --kho deactivate--> gone
//	open --reboot path--> frozen --kexec--> handed over
//	frozen --failed reboot path--> open
//
// State machine (incoming, handed over by the previous kernel):
//
//	handed over --RETRIEVE_SESSION--> retrieved --FINISH--> finished (no files)
//	retrieved|finished --last fput of its fd--> gone (finished first)
//	handed over --kexec--> gone with the kernel (nothing carried)
//
// References: a session holds one reference per file of an outgoing
// session and per retrieved file of an incoming one (luoFile.file).
// Nothing holds the session's own struct file but fd tables.
type Session struct {
	l         *LUO
	name      string
	incoming  bool // from the previous kernel
	retrieved bool // incoming, and its fd was handed out (luo_session.retrieved)
	released  bool // outgoing, fd closed while KHO was finalized
	files     []*luoFile
	arr       block           // outgoing: the luo_file_ser array (luo_file_set.files), allocated with the first file
	obj       physmem.SlabObj // the struct luo_session itself (kzalloc in luo_session_alloc)
}

// Name returns the session's name.
func (s *Session) Name() string { return s.name }

// IsIncoming reports whether the session came from the previous kernel.
func (s *Session) IsIncoming() bool { return s.incoming }

// Retrieved reports whether an incoming session's fd was handed out.
func (s *Session) Retrieved() bool { return s.retrieved }

// Tokens returns the tokens of the session's files, in preservation order.
func (s *Session) Tokens() []uint64 {
	out := make([]uint64, len(s.files))
	for i, lf := range s.files {
		out[i] = lf.token
	}
	return out
}

func (s *Session) String() string {
	dir := "outgoing"
	switch {
	case s.incoming && s.retrieved:
		dir = "incoming, retrieved"
	case s.incoming:
		dir = "incoming"
	case s.released:
		dir = "released"
	}
	arr := "no file array" // allocated with the first file
	if len(s.arr.b) > 0 {
		arr = fmt.Sprintf("array %v", s.arr.mem())
	}
	str := fmt.Sprintf("session %q (%s, %d files, %s)", s.name, dir, len(s.files), arr)
	for _, lf := range s.files {
		str += "\n    " + lf.String()
	}
	return str
}

// sessionName reads a session name from its UAPI buffer, as
// luo_session_create() does: strnlen up to LIVEUPDATE_SESSION_NAME_LENGTH;
// empty or without a NUL in the buffer is EINVAL.
func sessionName(buf [uapi.LIVEUPDATE_SESSION_NAME_LENGTH]byte) (string, error) {
	name, ok := cString(buf[:])
	if !ok || name == "" {
		return "", errno.EINVAL
	}
	return name, nil
}

// createSession is luo_ioctl_create_session() + luo_session_create(): an
// fd is reserved (EMFILE), the name checked (EINVAL), room made in the
// session array (ENOMEM; EBUSY once KHO is finalized and the array is
// full), the name checked against the outgoing sessions (EEXIST), struct
// luo_session and its file allocated (ENOMEM), and the session's file
// installed close-on-exec.
func (l *LUO) createSession(t *kernel.Task, raw [uapi.LIVEUPDATE_SESSION_NAME_LENGTH]byte) (int, error) {
	if _, err := t.UnusedFD(); err != nil {
		return -1, err
	}
	name, err := sessionName(raw)
	if err != nil {
		return -1, err
	}
	// luo_session_insert: room first, then the name.
	if err := l.ensureSessions(len(l.outgoing) + 1); err != nil {
		return -1, err
	}
	if slices.ContainsFunc(l.outgoing, func(o *Session) bool { return o.name == name }) {
		l.fitSessions(len(l.outgoing))
		return -1, errno.EEXIST
	}
	// luo_session_alloc
	obj, err := l.kzalloc(sessionRecordSize)
	if err != nil {
		l.fitSessions(len(l.outgoing))
		return -1, errno.ENOMEM
	}
	s := &Session{l: l, name: name, obj: obj}
	l.outgoing = append(l.outgoing, s)
	f, err := l.sessionFile(s)
	if err != nil { // err_remove, err_free
		l.outgoing = l.outgoing[:len(l.outgoing)-1]
		l.kfree(&s.obj)
		l.fitSessions(len(l.outgoing))
		return -1, err
	}
	l.stats.SessionsCreated++
	return l.installSession(t, f)
}

// sessionFile is luo_session_getfile(): the session's anonymous file,
// "[luo_session] NAME". Errors: ENOMEM (its struct file).
func (l *LUO) sessionFile(s *Session) (*kernel.File, error) {
	f, err := l.k.AllocFile(l.sessOps, nil, "[luo_session] "+s.name, uapi.O_RDWR)
	if err != nil {
		return nil, err
	}
	f.Private = s
	return f, nil
}

// installSession installs a session's file close-on-exec; if that fails
// the file's last reference goes and the session is released with it.
func (l *LUO) installSession(t *kernel.Task, f *kernel.File) (int, error) {
	fd, err := t.InstallFD(f, true)
	if err != nil {
		f.Put() // releases the session
		return -1, err
	}
	return fd, nil
}

// retrieveSession is luo_ioctl_retrieve_session() + luo_session_retrieve():
// the incoming session of that name (ENOENT), once (EINVAL).
func (l *LUO) retrieveSession(t *kernel.Task, raw [uapi.LIVEUPDATE_SESSION_NAME_LENGTH]byte) (int, error) {
	if _, err := t.UnusedFD(); err != nil {
		return -1, err
	}
	name, _ := cString(raw[:]) // strncmp over the whole buffer
	i := slices.IndexFunc(l.incoming, func(o *Session) bool { return o.name == name })
	if i < 0 {
		return -1, errno.ENOENT
	}
	s := l.incoming[i]
	if s.retrieved {
		return -1, errno.EINVAL
	}
	f, err := l.sessionFile(s)
	if err != nil {
		return -1, err // not retrieved: a later RETRIEVE_SESSION may succeed
	}
	s.retrieved = true
	l.stats.SessionsRetrieved++
	return l.installSession(t, f)
}

// sessionOps is luo_session_fops.
type sessionOps struct{ l *LUO }

func (*sessionOps) Kind() string { return "luo_session" }

// Direction of a session ioctl (enum luo_ioctl_type).
const (
	ioctlIncoming = iota
	ioctlOutgoing
)

// Ioctl is luo_session_ioctl(): a number outside the session table
// EINVAL, a bad argument EFAULT, another ioctl of the same nr ENOTTY, the
// wrong direction (PRESERVE_FD on an incoming session, RETRIEVE_FD and
// FINISH on an outgoing one) EINVAL, a size below the structure's last
// field EINVAL, then the command.
func (o *sessionOps) Ioctl(t *kernel.Task, f *kernel.File, cmd uint32, arg any) (int64, error) {
	l := o.l
	l.mustAlive("session ioctl")
	s := f.Private.(*Session)
	valid := func(dir int) bool { return (dir == ioctlIncoming) == s.retrieved }
	switch nr := cmd & 0xff; nr {
	case uapi.LIVEUPDATE_CMD_SESSION_PRESERVE_FD:
		a, ok := arg.(*uapi.LiveupdateSessionPreserveFD)
		if !ok || a == nil {
			return 0, errno.EFAULT
		}
		if cmd != uapi.LIVEUPDATE_SESSION_PRESERVE_FD {
			return 0, errno.ENOTTY
		}
		if !valid(ioctlOutgoing) || a.Size < uapi.SizeofLiveupdateSessionPreserveFD {
			return 0, errno.EINVAL
		}
		return 0, s.preserveFD(t, int(a.FD), a.Token)
	case uapi.LIVEUPDATE_CMD_SESSION_RETRIEVE_FD:
		a, ok := arg.(*uapi.LiveupdateSessionRetrieveFD)
		if !ok || a == nil {
			return 0, errno.EFAULT
		}
		if cmd != uapi.LIVEUPDATE_SESSION_RETRIEVE_FD {
			return 0, errno.ENOTTY
		}
		if !valid(ioctlIncoming) || a.Size < uapi.SizeofLiveupdateSessionRetrieveFD {
			return 0, errno.EINVAL
		}
		fd, err := s.retrieveFD(t, a.Token)
		if err != nil {
			return 0, err
		}
		a.FD = int32(fd)
		return 0, nil
	case uapi.LIVEUPDATE_CMD_SESSION_FINISH:
		a, ok := arg.(*uapi.LiveupdateSessionFinish)
		if !ok || a == nil {
			return 0, errno.EFAULT
		}
		if cmd != uapi.LIVEUPDATE_SESSION_FINISH {
			return 0, errno.ENOTTY
		}
		if !valid(ioctlIncoming) || a.Size < uapi.SizeofLiveupdateSessionFinish || a.Reserved != 0 {
			return 0, errno.EINVAL
		}
		s.finish()
		return 0, nil
	}
	return 0, errno.EINVAL
}

// Release is luo_session_release(), at the last fput of the session's
// file (its last fd closed, or the last process holding it exited): a
// retrieved session is finished; an outgoing one's files are unpreserved,
// last preserved first (luo_file_unpreserve_files). Either leaves its
// list.
//
// While KHO is finalized (arrays, bitmaps after `kho activate`) nothing
// can be unpreserved (kho_unpreserve_folio is EBUSY): the session is
// released but its files stay preserved and their inodes frozen until KHO
// deactivates (LUO's KHO ABORT); a kexec before that does not carry them
// (they are in no session record; the next kernel returns their memory).
// Linux 6.19 has the same window after kho_finalize() from debugfs and
// leaves the folios preserved.
func (o *sessionOps) Release(f *kernel.File) {
	l := o.l
	s := f.Private.(*Session)
	if s.incoming {
		s.finish()
		l.incoming = slices.DeleteFunc(l.incoming, func(x *Session) bool { return x == s })
		l.kfree(&s.obj)
		return
	}
	l.outgoing = slices.DeleteFunc(l.outgoing, func(x *Session) bool { return x == s })
	if !l.canUnpreserve() {
		s.released = true
		l.released = append(l.released, s)
		return
	}
	s.unpreserveFiles()
	l.kfree(&s.obj)
	l.fitSessions(len(l.outgoing))
}

// unpreserveFiles is luo_file_unpreserve_files(): every file, last
// preserved first, is unpreserved (unfrozen, unpinned, no longer
// preserved) and LUO's reference dropped; then the file array is freed.
func (s *Session) unpreserveFiles() {
	for len(s.files) > 0 {
		lf := s.files[len(s.files)-1]
		s.files = s.files[:len(s.files)-1]
		lf.unpreserve()
	}
	s.fitFiles()
}

// ensureFiles makes room in the file array for n files (luo_alloc_files_mem
// and, in liveupdate-v7.2, kho_block_set_grow): the first file allocates
// LUO_FILE_PGCNT pages, a larger block replaces a full one (nothing is in
// it before the reboot path).
func (s *Session) ensureFiles(n int) error {
	if fileCap(s.arr) >= n {
		return nil
	}
	nb, err := s.l.allocBlock(blockSize(uint64(n)*fileSerSize, filePgcnt))
	if err != nil {
		return err
	}
	s.l.freeBlock(s.arr)
	s.arr = nb
	return nil
}

// fitFiles frees the file array of a session without files
// (luo_free_files_mem) or shrinks it to what its files need, where KHO
// allows it.
func (s *Session) fitFiles() {
	l := s.l
	if !s.arr.valid() || !l.canUnpreserve() {
		return
	}
	if len(s.files) == 0 {
		l.freeBlock(s.arr)
		s.arr = block{}
		return
	}
	size := blockSize(uint64(len(s.files))*fileSerSize, filePgcnt)
	if size >= uint64(len(s.arr.b)) || l.kho.Finalized() {
		return
	}
	if nb, err := l.allocBlock(size); err == nil {
		l.freeBlock(s.arr)
		s.arr = nb
	}
}

// freeze is luo_session_freeze_one() -> luo_file_freeze(): every file, in
// preservation order, is frozen (the luo_freeze fault site, then the
// handler's freeze) and its luo_file_ser written. On a failure the files
// frozen so far are unfrozen, the array cleared, and the error returned.
func (s *Session) freeze(st *RebootStats) error {
	for i, lf := range s.files {
		if err := lf.freeze(); err != nil {
			s.l.k.Printk(kernel.LogWarn, "liveupdate: Freeze failed for token[%#x] handler[%s] err[%v]", lf.token, lf.compat, err)
			for _, g := range s.files[:i] {
				g.unfreeze()
			}
			clear(s.arr.b)
			return err
		}
		putFileSer(s.arr.b[i*fileSerSize:], lf.compat, lf.data, lf.token)
		st.Files++
		st.Bytes += fileSerSize
	}
	return nil
}

// unfreeze is luo_session_unfreeze_one(): every file unfrozen, the array
// cleared.
func (s *Session) unfreeze() {
	for _, lf := range s.files {
		lf.unfreeze()
	}
	clear(s.arr.b)
}

// finish is luo_session_finish_one() -> luo_file_finish(): every file,
// last first, is finished: a retrieved one's reference dropped (the file
// is its fds' from now on), one never retrieved discarded (its memory
// freed: memfd_luo_finish of an unretrieved file), one whose retrieve
// failed has nothing left. The session then holds no files.
func (s *Session) finish() {
	for len(s.files) > 0 {
		lf := s.files[len(s.files)-1]
		s.files = s.files[:len(s.files)-1]
		lf.finish()
	}
}
