package fdbox

import (
	"github.com/stretchr/testify/require"

	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// TestModel drives the driver with random sequences of system calls by
// root, unprivileged and capability-less tasks and compares every result
// and the resulting state with a small model of the UAPI. After every step
// the driver's and the kernel's invariants must hold; at the end every box
// is deleted and every task exits, and no file or inode may be left.

// mKind is what a model file is.
type mKind int

const (
	mMemfd  mKind = iota // memfd_create: the memfd handler preserves it
	mSynth               // the synthetic preservable kind: two files on one inode
	mTmpfs               // a /tmp file: nobody preserves it
	mNull                // /dev/null: nobody preserves it
	mCtl                 // /dev/fdbox/fdbox
	mBoxDev              // /dev/fdbox/<box>
)

func (k mKind) preservable() bool { return k == mMemfd || k == mSynth }

// ofKind and preservable select files for drawFD.
func ofKind(k mKind) func(*mFile) bool { return func(f *mFile) bool { return f.kind == k } }
func preservable(f *mFile) bool        { return f.kind.preservable() }
func anyFile(*mFile) bool              { return true }

// mInode groups files on one inode.
type mInode struct {
	files int
	owner uint32 // tmpfs: the uid that created it (mode 0644)
}

// mFile is a model open file description.
type mFile struct {
	f     *kernel.File
	kind  mKind
	inode *mInode // memfd, synthetic and tmpfs files
	path  string  // tmpfs files
	box   *mBox   // mBoxDev: the box the node named when opened
	refs  int     // fds + boxes holding it
	inBox *mBox   // the box holding it, if any
}

type mBoxFD struct {
	name string
	file *mFile
}

type mBox struct {
	name    string
	sealed  bool
	deleted bool
	fds     []mBoxFD
}

func (b *mBox) find(name string) int {
	return slices.IndexFunc(b.fds, func(x mBoxFD) bool { return x.name == name })
}

// mMap is a model shared mapping: it holds a reference to its file.
type mMap struct {
	v *kernel.VMA
	f *mFile
}

// mTask is a model process.
type mTask struct {
	t    *kernel.Task
	name string
	uid  uint32
	caps uint64
	fds  map[int]*mFile
	maps []mMap
}

func (t *mTask) admin() bool { return t.caps&(1<<uapi.CAP_SYS_ADMIN) != 0 }

// canOpen models the 0600 root-owned nodes: the owner or CAP_DAC_OVERRIDE.
func (t *mTask) canOpen() bool { return t.uid == 0 || t.caps&(1<<uapi.CAP_DAC_OVERRIDE) != 0 }

func (t *mTask) lowestFree() int {
	fd := 0
	for t.fds[fd] != nil {
		fd++
	}
	return fd
}

type model struct {
	e   *env
	tmp map[string]*mInode // /tmp names created: their inodes live on

	inodesAtBoot int
	boxes        []*mBox // live boxes in creation order
	files        []*mFile
	tasks        []*mTask
	n            int
}

// Name pools: mostly valid names, so that sequences reach deep states,
// and a few invalid ones.
var (
	boxNamePool = []string{"a", "a", "b", "b", "c", "fdbox", "", "x/y"}
	fdNamePool  = []string{"x", "x", "y", "y", "z", "", "p/q"}
)

func (m *model) box(name string) *mBox {
	for _, b := range m.boxes {
		if b.name == name {
			return b
		}
	}
	return nil
}

func (m *model) boxed(f *mFile) bool {
	if f.inBox != nil {
		return true
	}
	for _, o := range m.files {
		if o != f && o.inode != nil && o.inode == f.inode && o.inBox != nil {
			return true
		}
	}
	return false
}

func (m *model) spawn(name string, uid uint32, caps uint64) {
	m.n++
	name = fmt.Sprintf("%s%d", name, m.n)
	m.tasks = append(m.tasks, &mTask{t: m.e.k.NewTask(name, kernel.Cred{UID: uid, Caps: caps}), name: name, uid: uid, caps: caps, fds: map[int]*mFile{}})
}

func (m *model) install(t *mTask, fd int, f *mFile) {
	if _, taken := t.fds[fd]; taken {
		m.e.t.Fatalf("model: fd %d of %s taken", fd, t.name)
	}
	t.fds[fd] = f
}

func (m *model) drop(f *mFile) {
	f.refs--
	if f.refs == 0 && f.inode != nil {
		f.inode.files--
	}
}

// newFile makes a memfd, a synthetic preservable file, a tmpfs file or
// /dev/null in task and returns its fd (-1 if the tmpfs file is someone
// else's).
func (m *model) newFile(t *rapid.T, task *mTask) int {
	e := m.e
	kind := rapid.SampledFrom([]mKind{mMemfd, mMemfd, mSynth, mTmpfs, mNull}).Draw(t, "kind")
	f := &mFile{kind: kind, refs: 1}
	var fd int
	var err error
	switch kind {
	case mMemfd:
		fd, err = task.t.MemfdCreate("m", 0)
		f.inode = &mInode{files: 1}
	case mSynth:
		f.f = e.k.NewFile(preservableKind, e.k.NewInode(nil), "model", uapi.O_RDWR)
		fd, err = task.t.InstallFD(f.f, false)
		f.inode = &mInode{files: 1}
	case mTmpfs:
		name := rapid.SampledFrom([]string{"t1", "t2"}).Draw(t, "tmp")
		f.path = "/tmp/" + name
		fd, err = sysOpen(task.t, f.path, uapi.O_RDWR|uapi.O_CREAT)
		in := m.tmp[name]
		if in != nil && in.owner != task.uid && task.caps&(1<<uapi.CAP_DAC_OVERRIDE) == 0 {
			expectErr(t, "open "+f.path, err, errno.EACCES) // mode 0644, not ours
			return -1
		}
		if in == nil {
			in = &mInode{owner: task.uid}
			m.tmp[name] = in
		}
		f.inode = in
		f.inode.files++
	case mNull:
		fd, err = sysOpen(task.t, "/dev/null", uapi.O_RDWR)
	}
	require.NoError(t, err)
	require.Equal(t, task.lowestFree(), fd)
	f.f, err = task.t.FD(fd)
	require.NoError(t, err)
	m.install(task, fd, f)
	m.files = append(m.files, f)
	return fd
}

// sameInode opens a second file on of's inode in task, if of's kind
// allows it (a tmpfs path, the synthetic kind), and returns its fd.
func (m *model) sameInode(t *rapid.T, task *mTask, of *mFile) (int, bool) {
	g := &mFile{kind: of.kind, inode: of.inode, path: of.path, refs: 1}
	var fd int
	var err error
	switch of.kind {
	case mSynth:
		g.f = m.e.k.NewFile(preservableKind, of.f.Inode, "model-same-inode", uapi.O_RDWR)
		fd, err = task.t.InstallFD(g.f, false)
	case mTmpfs:
		fd, err = sysOpen(task.t, of.path, uapi.O_RDWR)
		if err == nil {
			g.f, err = task.t.FD(fd)
		}
	default:
		return -1, false
	}
	require.NoError(t, err)
	require.True(t, g.f.Inode == of.f.Inode, "same inode")
	g.inode.files++
	m.install(task, fd, g)
	m.files = append(m.files, g)
	return fd, true
}

// put runs FDBOX_PUT_FD of fd under n on box fd bfd of task and checks it
// against the model.
func (m *model) put(t *rapid.T, task *mTask, bfd, fd int, n string) {
	t.Helper()
	e := m.e
	err := e.put(task.t, bfd, fd, n)
	bf, f := task.fds[bfd], task.fds[fd]
	want, done := boxIoctlErr(task, bf)
	if !done {
		b := bf.box
		switch {
		case b.sealed:
			want = errno.EBUSY
		case f == nil:
			want = errno.EBADF
		case !f.kind.preservable():
			want = errno.EOPNOTSUPP
		case !nameOK(n):
			want = errno.EINVAL
		case m.boxed(f):
			want = errno.EEXIST
		case b.find(n) >= 0:
			want = errno.EEXIST
		}
	}
	expectErr(t, fmt.Sprintf("put fd %d as %q", fd, n), err, want)
	if want != 0 {
		return
	}
	delete(task.fds, fd)
	b := bf.box
	b.fds = append(b.fds, mBoxFD{name: n, file: f})
	f.inBox = b
}

// createOrDelete runs FDBOX_CREATE_BOX or FDBOX_DELETE_BOX on fd of task
// and checks it against the model.
func (m *model) createOrDelete(t *rapid.T, task *mTask, fd int, n string, create bool) {
	t.Helper()
	e := m.e
	var err error
	if create {
		err = e.create(task.t, fd, n)
	} else {
		err = e.del(task.t, fd, n)
	}
	f := task.fds[fd]
	want := errno.Errno(0)
	b := m.box(n)
	switch {
	case f == nil:
		want = errno.EBADF
	case f.kind != mCtl && f.kind != mBoxDev:
		want = errno.ENOTTY
	case !task.admin():
		want = errno.EPERM
	case f.kind == mBoxDev && f.box.deleted:
		want = errno.ENODEV
	case f.kind != mCtl:
		want = errno.ENOTTY
	case !nameOK(n):
		want = errno.EINVAL
	case create && (b != nil || n == "fdbox"):
		want = errno.EEXIST
	case !create && b == nil:
		want = errno.ENOENT
	case !create && b.sealed:
		want = errno.EBUSY
	}
	expectErr(t, fmt.Sprintf("create=%v %q", create, n), err, want)
	if want != 0 {
		return
	}
	if create {
		m.boxes = append(m.boxes, &mBox{name: n})
		return
	}
	b.deleted = true
	m.boxes = slices.DeleteFunc(m.boxes, func(x *mBox) bool { return x == b })
	for _, bfd := range b.fds {
		bfd.file.inBox = nil
		m.drop(bfd.file)
	}
	b.fds = nil
}

// open opens path in task, checking the result against the model.
func (m *model) open(t *rapid.T, task *mTask, path string) {
	t.Helper()
	ctl := path == CtlPath
	box := m.box(path[len(DevDir):])
	fd, err := sysOpen(task.t, path, uapi.O_RDWR)
	switch {
	case path == DevDir:
		expectErr(t, "open "+path, err, errno.EISDIR) // the /dev/fdbox directory
	case !ctl && box == nil:
		expectErr(t, "open "+path, err, errno.ENOENT)
	case !task.canOpen():
		expectErr(t, "open "+path, err, errno.EACCES)
	default:
		require.NoError(t, err)
		require.Equal(t, task.lowestFree(), fd)
		f := &mFile{kind: mCtl, refs: 1, box: box}
		if !ctl {
			f.kind = mBoxDev
		}
		f.f, _ = task.t.FD(fd)
		m.install(task, fd, f)
		m.files = append(m.files, f)
	}
}

func nameOK(s string) bool { return checkName(s) == nil }

func (m *model) drawTask(t *rapid.T) *mTask { return rapid.SampledFrom(m.tasks).Draw(t, "task") }

// drawTaskWith draws a task, usually one holding an fd of kind.
func (m *model) drawTaskWith(t *rapid.T, kind mKind) *mTask {
	var with []*mTask
	for _, task := range m.tasks {
		for _, f := range task.fds {
			if f.kind == kind {
				with = append(with, task)
				break
			}
		}
	}
	if len(with) == 0 || rapid.IntRange(0, 4).Draw(t, "any-task") == 0 {
		return m.drawTask(t)
	}
	return rapid.SampledFrom(with).Draw(t, "task")
}

// drawFD draws an fd of task: usually one holding a file want accepts,
// sometimes any open fd, rarely a closed one.
func (m *model) drawFD(t *rapid.T, task *mTask, want func(*mFile) bool, label string) int {
	all := slices.Sorted(maps.Keys(task.fds))
	var ofKind []int
	for _, fd := range all {
		if want(task.fds[fd]) {
			ofKind = append(ofKind, fd)
		}
	}
	r := rapid.IntRange(0, 19).Draw(t, label+"-how")
	switch {
	case r == 0 || len(all) == 0:
		return 62
	case r <= 2 || len(ofKind) == 0:
		return rapid.SampledFrom(all).Draw(t, label)
	default:
		return rapid.SampledFrom(ofKind).Draw(t, label)
	}
}

func expectErr(t *rapid.T, what string, got error, want errno.Errno) {
	t.Helper()
	if errno.Of(got) != want {
		t.Fatalf("%s: got %v, model says %v", what, errno.Of(got), want)
	}
}

// boxIoctlErr is the common prefix of every box ioctl: the fd, the
// capability, a deleted box.
func boxIoctlErr(task *mTask, f *mFile) (errno.Errno, bool) {
	switch {
	case f == nil:
		return errno.EBADF, true
	case f.kind != mBoxDev && f.kind != mCtl:
		return errno.ENOTTY, true
	case !task.admin():
		return errno.EPERM, true
	case f.kind == mCtl:
		return errno.ENOTTY, true
	case f.box.deleted:
		return errno.ENODEV, true
	}
	return 0, false
}

func (m *model) actions() map[string]func(*rapid.T) {
	e := m.e
	return map[string]func(*rapid.T){
		"newFile": func(t *rapid.T) {
			m.newFile(t, m.drawTaskWith(t, mBoxDev))
		},
		// newFileAndPut is the usual sequence, to fill boxes more often.
		"newFileAndPut": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.newFile(t, task)
			m.put(t, task, m.drawFD(t, task, ofKind(mBoxDev), "box"), fd, rapid.SampledFrom(fdNamePool).Draw(t, "name"))
		},
		// newFileSharedAndPut puts a file that another fd, or another
		// file on its inode, still reaches: the cases SEAL and PUT_FD
		// must refuse.
		"newFileSharedAndPut": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.newFile(t, task)
			f := task.fds[fd]
			if f == nil {
				return
			}
			other, ok := -1, false
			if !rapid.Bool().Draw(t, "dup") {
				other, ok = m.sameInode(t, task, f)
			}
			if !ok {
				nfd, err := task.t.Dup(fd)
				require.NoError(t, err)
				require.Equal(t, task.lowestFree(), nfd)
				f.refs++
				m.install(task, nfd, f)
				other = nfd
			}
			bfd := m.drawFD(t, task, ofKind(mBoxDev), "box")
			m.put(t, task, bfd, fd, rapid.SampledFrom(fdNamePool).Draw(t, "name"))
			if rapid.Bool().Draw(t, "put-other") {
				m.put(t, task, bfd, other, rapid.SampledFrom(fdNamePool).Draw(t, "name2"))
			}
		},
		"sameInode": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.drawFD(t, task, func(f *mFile) bool { return f.kind == mSynth || f.kind == mTmpfs }, "fd")
			of := task.fds[fd]
			if of == nil {
				t.Skip("no file")
			}
			if _, ok := m.sameInode(t, task, of); !ok {
				t.Skip("cannot reopen this kind")
			}
		},
		"mmap": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.drawFD(t, task, ofKind(mMemfd), "fd")
			f := task.fds[fd]
			if f == nil || f.kind != mMemfd {
				t.Skip("no memfd")
			}
			v, err := task.t.Mmap(fd, 0, physmem.PageSize, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			require.NoError(t, err)
			f.refs++
			task.maps = append(task.maps, mMap{v: v, f: f})
		},
		"munmap": func(t *rapid.T) {
			task := m.drawTask(t)
			if len(task.maps) == 0 {
				t.Skip("no mapping")
			}
			i := rapid.IntRange(0, len(task.maps)-1).Draw(t, "map")
			mp := task.maps[i]
			require.NoError(t, task.t.Munmap(mp.v))
			task.maps = slices.Delete(task.maps, i, i+1)
			m.drop(mp.f)
		},
		"write": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.drawFD(t, task, ofKind(mMemfd), "fd")
			if f := task.fds[fd]; f == nil || f.kind != mMemfd {
				t.Skip("no memfd")
			}
			off := int64(rapid.IntRange(0, 3).Draw(t, "page")) * physmem.PageSize
			n := int64(rapid.SampledFrom([]int{1, 100, 5000}).Draw(t, "len"))
			got, err := task.t.Pwrite(fd, off, n, func(dst []byte, o int64) {
				for i := range dst {
					dst[i] = byte(o + int64(i))
				}
			})
			require.NoError(t, err)
			require.EqualValues(t, n, got)
		},
		"dup": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			fd := m.drawFD(t, task, anyFile, "fd")
			nfd, err := task.t.Dup(fd)
			f := task.fds[fd]
			if f == nil {
				expectErr(t, "dup", err, errno.EBADF)
				return
			}
			require.NoError(t, err)
			require.Equal(t, task.lowestFree(), nfd)
			f.refs++
			m.install(task, nfd, f)
		},
		"close": func(t *rapid.T) {
			task := m.drawTask(t)
			fd := m.drawFD(t, task, anyFile, "fd")
			err := task.t.CloseFD(fd)
			f := task.fds[fd]
			if f == nil {
				expectErr(t, "close", err, errno.EBADF)
				return
			}
			require.NoError(t, err)
			delete(task.fds, fd)
			m.drop(f)
		},
		"open": func(t *rapid.T) {
			task := m.drawTask(t)
			path := CtlPath
			switch rapid.IntRange(0, 4).Draw(t, "what") {
			case 0:
			case 1:
				path = DevDir + rapid.SampledFrom(boxNamePool).Draw(t, "box")
			default: // a live box, if any
				if len(m.boxes) > 0 {
					path = DevDir + rapid.SampledFrom(m.boxes).Draw(t, "box").name
				}
			}
			m.open(t, task, path)
		},
		"createOrDelete": func(t *rapid.T) {
			task := m.drawTaskWith(t, mCtl)
			fd := m.drawFD(t, task, ofKind(mCtl), "ctl")
			n := rapid.SampledFrom(boxNamePool).Draw(t, "name")
			m.createOrDelete(t, task, fd, n, rapid.Bool().Draw(t, "create"))
		},
		// createAndOpen is the usual sequence, create then open, to
		// reach boxes with files more often.
		"createAndOpen": func(t *rapid.T) {
			task := m.drawTaskWith(t, mCtl)
			fd := m.drawFD(t, task, ofKind(mCtl), "ctl")
			n := rapid.SampledFrom(boxNamePool).Draw(t, "name")
			m.createOrDelete(t, task, fd, n, true)
			m.open(t, task, DevDir+n)
		},
		"put": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			bfd := m.drawFD(t, task, ofKind(mBoxDev), "box")
			fd := m.drawFD(t, task, preservable, "fd")
			m.put(t, task, bfd, fd, rapid.SampledFrom(fdNamePool).Draw(t, "name"))
		},
		"get": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			bfd := m.drawFD(t, task, ofKind(mBoxDev), "box")
			n := rapid.SampledFrom(fdNamePool).Draw(t, "name")
			got, err := e.get(task.t, bfd, n)
			bf := task.fds[bfd]
			want, done := boxIoctlErr(task, bf)
			i := -1
			if !done {
				b := bf.box
				i = b.find(n)
				switch {
				case b.sealed:
					want = errno.EBUSY
				case !nameOK(n):
					want = errno.EINVAL
				case i < 0:
					want = errno.ENOENT
				}
			}
			expectErr(t, fmt.Sprintf("get %q", n), err, want)
			if want != 0 {
				return
			}
			b := bf.box
			f := b.fds[i].file
			require.Equal(t, task.lowestFree(), got)
			b.fds = slices.Delete(b.fds, i, i+1)
			f.inBox = nil
			m.install(task, got, f)
		},
		"sealOrUnseal": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			bfd := m.drawFD(t, task, ofKind(mBoxDev), "box")
			seal := rapid.Bool().Draw(t, "seal")
			var err error
			if seal {
				err = e.seal(task.t, bfd)
			} else {
				err = e.unseal(task.t, bfd)
			}
			bf := task.fds[bfd]
			want, done := boxIoctlErr(task, bf)
			if !done {
				b := bf.box
				switch {
				case seal && b.sealed, !seal && !b.sealed:
					want = errno.EBUSY
				case seal && slices.ContainsFunc(b.fds, func(x mBoxFD) bool { return x.file.refs != 1 || x.file.inode.files != 1 }):
					want = errno.EBUSY
				}
			}
			expectErr(t, fmt.Sprintf("seal=%v", seal), err, want)
			if want == 0 {
				bf.box.sealed = seal
			}
		},
		"list": func(t *rapid.T) {
			task := m.drawTaskWith(t, mBoxDev)
			bfd := m.drawFD(t, task, ofKind(mBoxDev), "box")
			l, n, err := e.list(task.t, bfd)
			bf := task.fds[bfd]
			want, _ := boxIoctlErr(task, bf)
			expectErr(t, "list", err, want)
			if want != 0 {
				return
			}
			var names []string
			for _, x := range bf.box.fds {
				names = append(names, x.name)
			}
			var got []string
			for _, en := range l.Entries {
				got = append(got, en.Name)
			}
			require.Equal(t, len(names), n)
			require.Equal(t, names, got)
			require.Equal(t, bf.box.sealed, l.Sealed)
		},
		"unknownIoctl": func(t *rapid.T) {
			task := m.drawTask(t)
			fd := m.drawFD(t, task, anyFile, "fd")
			_, err := sysIoctl(task.t, fd, 0x2e42, nil)
			f := task.fds[fd]
			want := errno.ENOTTY
			switch {
			case f == nil:
				want = errno.EBADF
			case (f.kind == mCtl || f.kind == mBoxDev) && !task.admin():
				want = errno.EPERM
			case f.kind == mBoxDev && f.box.deleted:
				want = errno.ENODEV
			}
			expectErr(t, "unknown ioctl", err, want)
		},
		"exit": func(t *rapid.T) {
			if len(m.tasks) < 2 {
				t.Skip("keep one task")
			}
			task := m.drawTask(t)
			task.t.Exit()
			for _, fd := range slices.Sorted(maps.Keys(task.fds)) {
				m.drop(task.fds[fd])
			}
			for _, mp := range task.maps {
				m.drop(mp.f)
			}
			m.tasks = slices.DeleteFunc(m.tasks, func(x *mTask) bool { return x == task })
		},
		"spawn": func(t *rapid.T) {
			if len(m.tasks) >= 5 {
				t.Skip("enough tasks")
			}
			switch rapid.IntRange(0, 2).Draw(t, "who") {
			case 0:
				m.spawn("root", 0, uapi.CapAll)
			case 1:
				m.spawn("user", 1000, 0)
			default:
				m.spawn("nocap", 0, 0)
			}
			m.open(t, m.tasks[len(m.tasks)-1], CtlPath)
		},
		"": func(t *rapid.T) { m.check(t) },
	}
}

// check compares the real state with the model and runs the invariants.
func (m *model) check(t *rapid.T) {
	t.Helper()
	require.NoError(t, m.e.d.CheckInvariants())
	require.NoError(t, kernelInvariants(m.e.k))
	var live []*kernel.File
	for _, f := range m.files {
		if f.refs == 0 {
			require.EqualValues(t, -1, f.f.Refs(), "released file")
			continue
		}
		require.EqualValues(t, f.refs, f.f.Refs(), "refs of %v", f.f)
		live = append(live, f.f)
	}
	kfiles := m.e.k.Files()
	require.Len(t, kfiles, len(live)+1) // + the env's root ctl fd
	var names []string
	for _, b := range m.boxes {
		names = append(names, b.name)
		rb := m.e.d.Box(b.name)
		require.NotNil(t, rb)
		require.Equal(t, b.sealed, rb.Sealed())
		require.Len(t, rb.FDs(), len(b.fds))
		for i, x := range b.fds {
			require.Equal(t, x.name, rb.FDs()[i].Name())
			require.True(t, x.file.f == rb.FDs()[i].File(), "file of %q", x.name)
		}
	}
	require.Equal(t, names, boxNames(m.e.d))
	for _, task := range m.tasks {
		require.Equal(t, slices.Sorted(maps.Keys(task.fds)), task.t.FDs(), "fds of %s", task.name)
		vmas := task.t.MM.VMAs()
		require.Len(t, vmas, len(task.maps))
		for i, mp := range task.maps {
			require.True(t, vmas[i] == mp.v && mp.v.File == mp.f.f, "mapping %d of %s", i, task.name)
		}
		for fd, f := range task.fds {
			rf, err := task.t.FD(fd)
			require.NoError(t, err)
			require.True(t, rf == f.f, "fd %d of %s", fd, task.name)
			if f.kind == mBoxDev {
				require.True(t, rf.Private.(*Box).Deleted() == f.box.deleted)
				require.Equal(t, f.box.name, rf.Private.(*Box).Name())
			}
		}
	}
}

// teardown deletes every box and ends every task; nothing may be left.
func (m *model) teardown(t *rapid.T) {
	e := m.e
	admin := e.task("teardown", 0, uapi.CapAll)
	ctl := e.open(admin, CtlPath)
	for _, b := range m.boxes {
		if b.sealed {
			require.NoError(t, e.unseal(admin, e.open(admin, DevDir+b.name)))
		}
		require.NoError(t, e.del(admin, ctl, b.name))
	}
	require.Empty(t, e.d.Boxes())
	for _, task := range m.tasks {
		task.t.Exit()
	}
	admin.Exit()
	e.root.Exit()
	require.NoError(t, e.d.CheckInvariants())
	require.NoError(t, kernelInvariants(e.k))
	require.Empty(t, e.k.Files(), "files left alive")
	require.Len(t, e.k.Inodes(), m.inodesAtBoot+len(m.tmp), "inodes left alive: only /tmp's names keep theirs")
	require.NoError(t, kernelLeaks(e.k, e.usedAtBoot))
}

// actionWeights makes the actions that build state more frequent than
// those that tear it down (rapid picks actions uniformly).
var actionWeights = map[string]int{
	"newFile": 3, "newFileAndPut": 3, "newFileSharedAndPut": 2, "write": 2, "open": 3, "createOrDelete": 2, "createAndOpen": 2, "put": 3, "get": 2, "sealOrUnseal": 2, "dup": 2,
}

// weighted repeats each action under weight distinct keys.
func weighted(actions map[string]func(*rapid.T), weights map[string]int) map[string]func(*rapid.T) {
	out := map[string]func(*rapid.T){}
	for name, fn := range actions {
		out[name] = fn
		for i := 1; i < weights[name]; i++ {
			out[fmt.Sprintf("%s#%d", name, i)] = fn
		}
	}
	return out
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &model{e: newEnv(t), tmp: map[string]*mInode{}}
		m.inodesAtBoot = len(m.e.k.Inodes())
		m.spawn("root", 0, uapi.CapAll)
		m.spawn("root", 0, uapi.CapAll)
		m.spawn("user", 1000, 0)
		m.spawn("nocap", 0, 0)
		for _, task := range m.tasks {
			m.open(t, task, CtlPath)
		}
		// Each Repeat runs about 30 actions; five in a row reach
		// deeper states (boxes with files, sealed, deleted).
		phases := 5
		if testing.Short() {
			phases = 2
		}
		for range phases {
			t.Repeat(weighted(m.actions(), actionWeights))
		}
		m.teardown(t)
	})
}
