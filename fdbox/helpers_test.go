package fdbox

import (
	"github.com/stretchr/testify/require"

	"slices"

	"khosim/errno"
	"khosim/kernel"
	"khosim/uapi"
)

// This file is the tests' only contact with how a kernel is booted and how
// system calls are made, so that the rest of the tests read like the
// scenarios they model.

// Real memfds are the preservable files of these tests, with tmpfs files
// and /dev/null as the kinds nobody preserves. testKind is a synthetic
// file kind for what the system calls cannot build: two open files on one
// preservable inode (khosim has no /proc/self/fd to reopen a memfd).
// preservableKind is accepted by its own handler (testCompatible);
// plainKind by none.
type testKind struct{ name string }

func (k *testKind) Kind() string { return k.name }

var (
	preservableKind = &testKind{"test-preservable"}
	plainKind       = &testKind{"test-plain"}
)

const testCompatible = "fdbox,test-v1"

// handlerLog records the calls the tests' handlers receive.
type handlerLog struct {
	calls     []string // "seal:name", "unseal:name", "recover:node"
	failSeal  string   // fd name whose Seal fails with EIO
	failUnsl  string   // fd name whose Unseal fails with EIO
	recovered []*kernel.File
}

// loggingHandler is a handler for compatible that logs Seal and Unseal
// and recovers a node by calling make (a node whose FDT is "bad" fails
// with EIO).
func loggingHandler(log *handlerLog, compatible string, canPreserve func(*kernel.File) bool, make func(name string) *kernel.File) *FileHandler {
	return &FileHandler{
		Compatible:  compatible,
		CanPreserve: canPreserve,
		Seal: func(bfd *BoxFD) error {
			log.calls = append(log.calls, "seal:"+bfd.Name())
			if bfd.Name() == log.failSeal {
				return errno.EIO
			}
			return nil
		},
		Unseal: func(bfd *BoxFD) error {
			log.calls = append(log.calls, "unseal:"+bfd.Name())
			if bfd.Name() == log.failUnsl {
				return errno.EIO
			}
			return nil
		},
		Recover: func(node FDTNode) (*kernel.File, error) {
			log.calls = append(log.calls, "recover:"+string(node.FDT))
			if string(node.FDT) == "bad" {
				return nil, errno.EIO
			}
			f := make(string(node.FDT))
			log.recovered = append(log.recovered, f)
			return f, nil
		},
	}
}

// memfdHandler is the memfd handler (MemfdHandler) with logging Seal and
// Unseal, recovering a node as a new empty memfd: what KHO's recovery
// returns, a memfd with one reference.
func (e *env) memfdHandler() *FileHandler {
	h := MemfdHandler()
	return loggingHandler(e.log, h.Compatible, h.CanPreserve, func(name string) *kernel.File {
		if e.kthread == nil {
			e.kthread = e.k.NewTask("kthread", kernel.Cred{})
		}
		fd, err := e.kthread.MemfdCreate(name, 0)
		require.NoError(e.t, err)
		f, err := e.kthread.FD(fd)
		require.NoError(e.t, err)
		f.Get()
		require.NoError(e.t, e.kthread.CloseFD(fd))
		return f
	})
}

// testHandler preserves preservableKind files.
func (e *env) testHandler() *FileHandler {
	return loggingHandler(e.log, testCompatible, func(f *kernel.File) bool { return f.Ops == preservableKind },
		func(name string) *kernel.File {
			return e.k.NewFile(preservableKind, e.k.NewInode(nil), "recovered:"+name, uapi.O_RDWR)
		})
}

// env is a booted kernel with the FDBox driver, the test handler and a
// root task holding the control device open.
type env struct {
	t    tb
	k    *kernel.Kernel
	d    *Driver
	log  *handlerLog
	root *kernel.Task
	ctl  int

	usedAtBoot uint64 // allocated frames right after boot

	// held are file references the test itself holds (an in-flight
	// fget, a file taken out with TakeFD), reported to the kernel's
	// audit as owner "test".
	held []*kernel.File

	kthread *kernel.Task // makes the memfds the memfd handler recovers
}

// registerHeld makes the test a reference owner for the kernel's audit.
func (e *env) registerHeld() {
	e.k.RegisterRefOwner("test", func(v kernel.RefVisitor) {
		for _, f := range e.held {
			v.File(f, 1, "test")
		}
	})
}

// hold takes a reference to f for the test (get_file).
func (e *env) hold(f *kernel.File) { e.held = append(e.held, f.Get()) }

// adopt records that the test now owns a reference it was handed.
func (e *env) adopt(f *kernel.File) { e.held = append(e.held, f) }

// disown forgets one reference of f the test handed on.
func (e *env) disown(f *kernel.File) {
	i := slices.Index(e.held, f)
	require.True(e.t, i >= 0, "the test holds no reference to %v", f)
	e.held = slices.Delete(e.held, i, i+1)
}

// unhold drops a reference the test holds (fput).
func (e *env) unhold(f *kernel.File) {
	e.disown(f)
	f.Put()
}

func newEnv(t tb) *env {
	t.Helper()
	k := bootKernel(t)
	used := usedFrames(k)
	d, err := Init(k)
	require.NoError(t, err)
	e := &env{t: t, k: k, d: d, log: &handlerLog{}, usedAtBoot: used}
	e.registerHeld()
	require.NoError(t, d.RegisterHandler(e.memfdHandler()))
	require.NoError(t, d.RegisterHandler(e.testHandler()))
	e.root = k.NewTask("root", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	e.ctl = e.open(e.root, CtlPath)
	return e
}

// check runs the driver's and the kernel's invariant checks.
func (e *env) check() {
	e.t.Helper()
	require.NoError(e.t, e.d.CheckInvariants())
	require.NoError(e.t, kernelInvariants(e.k))
}

func (e *env) task(name string, uid uint32, caps uint64) *kernel.Task {
	return e.k.NewTask(name, kernel.Cred{UID: uid, Caps: caps})
}

func (e *env) open(t *kernel.Task, path string) int {
	e.t.Helper()
	fd, err := sysOpen(t, path, uapi.O_RDWR)
	require.NoError(e.t, err, "open %s", path)
	return fd
}

// newFile makes a file of the synthetic kind on a fresh inode at the
// lowest free fd of t.
func (e *env) newFile(t *kernel.Task, kind *testKind) int {
	e.t.Helper()
	f := e.k.NewFile(kind, e.k.NewInode(nil), "test:"+kind.name, uapi.O_RDWR)
	fd, err := t.InstallFD(f, false)
	require.NoError(e.t, err)
	return fd
}

// memfd is memfd_create("m", 0) in t.
func (e *env) memfd(t *kernel.Task) int {
	e.t.Helper()
	fd, err := t.MemfdCreate("m", 0)
	require.NoError(e.t, err)
	return fd
}

// tmpfile opens (creating) the tmpfs file /tmp/<name> in t.
func (e *env) tmpfile(t *kernel.Task, name string) int {
	e.t.Helper()
	fd, err := sysOpen(t, "/tmp/"+name, uapi.O_RDWR|uapi.O_CREAT)
	require.NoError(e.t, err)
	return fd
}

// file returns the file at fd of t.
func (e *env) file(t *kernel.Task, fd int) *kernel.File {
	e.t.Helper()
	f, err := t.FD(fd)
	require.NoError(e.t, err)
	return f
}

func name(s string) [uapi.FDBOX_NAME_LEN]byte {
	var b [uapi.FDBOX_NAME_LEN]byte
	uapi.SetName(&b, s)
	return b
}

func (e *env) create(t *kernel.Task, ctl int, box string) error {
	_, err := sysIoctl(t, ctl, uapi.FDBOX_CREATE_BOX, &uapi.FdboxCreateBox{Name: name(box)})
	return err
}

func (e *env) del(t *kernel.Task, ctl int, box string) error {
	_, err := sysIoctl(t, ctl, uapi.FDBOX_DELETE_BOX, &uapi.FdboxDeleteBox{Name: name(box)})
	return err
}

// mkbox creates box as root and opens it in root.
func (e *env) mkbox(box string) int {
	e.t.Helper()
	require.NoError(e.t, e.create(e.root, e.ctl, box))
	return e.open(e.root, DevDir+box)
}

func (e *env) put(t *kernel.Task, boxfd, fd int, n string) error {
	_, err := sysIoctl(t, boxfd, uapi.FDBOX_PUT_FD, &uapi.FdboxPutFD{FD: uint32(fd), Name: name(n)})
	return err
}

func (e *env) get(t *kernel.Task, boxfd int, n string) (int, error) {
	r, err := sysIoctl(t, boxfd, uapi.FDBOX_GET_FD, &uapi.FdboxGetFD{Name: name(n)})
	return int(r), err
}

func (e *env) seal(t *kernel.Task, boxfd int) error {
	_, err := sysIoctl(t, boxfd, uapi.FDBOX_SEAL, nil)
	return err
}

func (e *env) unseal(t *kernel.Task, boxfd int) error {
	_, err := sysIoctl(t, boxfd, uapi.FDBOX_UNSEAL, nil)
	return err
}

func (e *env) list(t *kernel.Task, boxfd int) (uapi.FdboxList, int, error) {
	var l uapi.FdboxList
	r, err := sysIoctl(t, boxfd, uapi.FDBOX_LIST, &l)
	return l, int(r), err
}

// names lists the fd names in a box through FDBOX_LIST.
func (e *env) names(boxfd int) []string {
	e.t.Helper()
	l, n, err := e.list(e.root, boxfd)
	require.NoError(e.t, err)
	require.Len(e.t, l.Entries, n)
	out := []string{}
	for _, en := range l.Entries {
		out = append(out, en.Name)
	}
	return out
}

// tb is what the test environment needs of *testing.T and *rapid.T:
// testify's require.TestingT plus Helper and Cleanup.
type tb interface {
	require.TestingT
	Fatalf(format string, args ...any)
	Helper()
	Cleanup(func())
}
