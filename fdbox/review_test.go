package fdbox

import (
	"github.com/stretchr/testify/require"

	"testing"

	"khosim/errno"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// The tests in this file pin down the UAPI's semantics and each fix the RFC
// review asked for; docs/fdbox.md points at them by name.

// TestPutMovesTheFdTablesReference: PUT_FD takes the file and closes the
// fd; the box now owns the reference the fd table had.
func TestPutMovesTheFdTablesReference(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	fd := e.memfd(e.root)
	f := e.file(e.root, fd)
	require.EqualValues(t, 1, f.Refs())

	require.NoError(t, e.put(e.root, b, fd, "f"))
	_, err := e.root.FD(fd)
	require.Equal(t, errno.EBADF, err, "the fd is closed in the caller")
	require.EqualValues(t, 1, f.Refs(), "one reference, now the box's")
	require.Equal(t, f, e.d.Box("b").FD("f").File())
	require.Equal(t, e.d.Box("b").FD("f"), e.d.Boxed(f))
	e.check()
}

// TestFailedPutLeavesTheFd: a refused PUT_FD changes nothing.
func TestFailedPutLeavesTheFd(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	require.NoError(t, e.put(e.root, b, e.memfd(e.root), "f"))
	fd := e.memfd(e.root)
	f := e.file(e.root, fd)
	require.Equal(t, errno.EEXIST, errno.Of(e.put(e.root, b, fd, "f")))
	require.Equal(t, f, e.file(e.root, fd))
	require.EqualValues(t, 1, f.Refs())
	require.Nil(t, e.d.Boxed(f))
	e.check()
}

// TestGetInstallsAtLowestFreeFd: GET_FD moves the box's reference to the
// lowest free fd, not close-on-exec.
func TestGetInstallsAtLowestFreeFd(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	fd := e.memfd(e.root)
	f := e.file(e.root, fd)
	e.tmpfile(e.root, "t") // occupies the next fd
	require.NoError(t, e.put(e.root, b, fd, "f"))

	got, err := e.get(e.root, b, "f")
	require.NoError(t, err)
	require.Equal(t, fd, got, "lowest free fd is the one PUT freed")
	require.Equal(t, f, e.file(e.root, got))
	require.EqualValues(t, 1, f.Refs())
	require.Nil(t, e.d.Boxed(f))
	cloexec, err := e.root.CloseOnExec(got)
	require.NoError(t, err)
	require.False(t, cloexec)
	require.Empty(t, e.names(b))
	e.check()
}

// TestFilesSurviveTheirTask: a boxed file outlives the task that put it,
// and another task gets it back (the RFC's "preserve fds when userspace
// exits").
func TestFilesSurviveTheirTask(t *testing.T) {
	e := newEnv(t)
	e.mkbox("b")
	a := e.task("a", 0, uapi.CapAll)
	b := e.open(a, DevDir+"b")
	fd := e.memfd(a)
	f := e.file(a, fd)
	require.NoError(t, e.put(a, b, fd, "f"))
	a.Exit()
	e.check()
	require.EqualValues(t, 1, f.Refs())

	c := e.task("c", 0, uapi.CapAll)
	got, err := e.get(c, e.open(c, DevDir+"b"), "f")
	require.NoError(t, err)
	require.Equal(t, f, e.file(c, got))
	e.check()
}

// TestListNamesInInsertionOrder: FDBOX_LIST (Brauner: "How does userspace
// know what file descriptors are in this fdbox?").
func TestListNamesInInsertionOrder(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	for _, n := range []string{"zeta", "alpha", "mid"} {
		require.NoError(t, e.put(e.root, b, e.memfd(e.root), n))
	}
	require.Equal(t, []string{"zeta", "alpha", "mid"}, e.names(b))
	_, err := e.get(e.root, b, "alpha")
	require.NoError(t, err)
	require.NoError(t, e.put(e.root, b, e.memfd(e.root), "alpha"))
	require.Equal(t, []string{"zeta", "mid", "alpha"}, e.names(b))

	require.NoError(t, e.seal(e.root, b))
	l, n, err := e.list(e.root, b)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.True(t, l.Sealed)
	n64, err := sysIoctl(e.root, b, uapi.FDBOX_LIST, (*uapi.FdboxList)(nil))
	require.NoError(t, err)
	require.EqualValues(t, 3, n64)
}

// TestBoxesInOneNamespace: boxes are global to the kernel (the RFC's
// model): a box created by one task is seen, opened and deleted by
// another, and device nodes track the boxes.
func TestBoxesInOneNamespace(t *testing.T) {
	e := newEnv(t)
	e.mkbox("one")
	e.mkbox("two")
	other := e.task("other", 0, uapi.CapAll)
	octl := e.open(other, CtlPath)
	require.NoError(t, e.del(other, octl, "one"))
	require.Equal(t, []string{"two"}, boxNames(e.d))
	require.Equal(t, []string{CtlPath, DevDir + "two"}, fdboxNodes(e.k))
	e.check()
}

func boxNames(d *Driver) []string {
	var out []string
	for _, b := range d.Boxes() {
		out = append(out, b.Name())
	}
	return out
}

func fdboxNodes(k *kernel.Kernel) []string {
	var out []string
	for _, p := range k.Devices() {
		if len(p) > len(DevDir) && p[:len(DevDir)] == DevDir {
			out = append(out, p)
		}
	}
	return out
}

// TestReviewOneLifetimePerBox (Greg KH): the box is owned by the driver's
// list; delete removes its node and releases its files at once, while a
// file still open on the deleted node keeps only a dead box that refuses
// every ioctl with ENODEV.
func TestReviewOneLifetimePerBox(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	b2 := e.open(e.root, DevDir+"b")
	fd := e.memfd(e.root)
	f := e.file(e.root, fd)
	require.NoError(t, e.put(e.root, b, fd, "f"))
	box := e.d.Box("b")

	require.NoError(t, e.del(e.root, e.ctl, "b"))
	require.True(t, box.Deleted())
	require.Nil(t, e.d.Box("b"))
	require.EqualValues(t, -1, f.Refs(), "the box's file was released at delete")
	require.NotContains(t, e.k.Files(), f)
	require.NotContains(t, fdboxNodes(e.k), DevDir+"b")
	for _, fdb := range []int{b, b2} {
		_, _, err := e.list(e.root, fdb)
		require.Equal(t, errno.ENODEV, err)
	}
	// A new box of the same name is a new object; the old files do not
	// reach it.
	e.mkbox("b")
	_, _, err := e.list(e.root, b)
	require.Equal(t, errno.ENODEV, err)
	e.check()
}

// TestReviewPreservableByFileKind (Brauner): preservability comes from the
// file's kind through the handler registry, not from a field in the file.
func TestReviewPreservableByFileKind(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	plain := e.tmpfile(e.root, "t")
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(e.put(e.root, b, plain, "p")))

	// Registering a handler for the kind (here tmpfs: a shmem file that
	// is not a memfd) makes it preservable.
	require.NoError(t, e.d.RegisterHandler(&FileHandler{
		Compatible:  "fdbox,tmpfs-v1",
		CanPreserve: func(f *kernel.File) bool { return kernel.IsShmemFile(f) && !kernel.IsMemfd(f) },
	}))
	require.NoError(t, e.put(e.root, b, plain, "p"))
	require.Equal(t, "fdbox,tmpfs-v1", e.d.Box("b").FD("p").Handler().Compatible)
	mfd := e.memfd(e.root)
	require.NoError(t, e.put(e.root, b, mfd, "m"))
	require.Equal(t, MemfdCompatible, e.d.Box("b").FD("m").Handler().Compatible)
	e.check()
}

// TestReviewSameFileOrInodeNeverBoxedTwice (Brauner's dup() case): a file
// already in a box, through a dup or another file on its inode, cannot be
// put again, in this box or another.
func TestReviewSameFileOrInodeNeverBoxedTwice(t *testing.T) {
	// Two open files on one preservable inode cannot be made with
	// memfds (khosim has no /proc/self/fd to reopen one), so that case
	// uses the tests' synthetic preservable kind.
	cases := []struct {
		name      string
		second    func(e *env, fd int) int // returns the fd to put second
		box2      bool
		synthetic bool
	}{
		{"dup_of_put_fd_same_box", func(e *env, fd int) int {
			d, err := e.root.Dup(fd)
			require.NoError(e.t, err)
			return d
		}, false, false},
		{"dup_of_put_fd_other_box", func(e *env, fd int) int {
			d, err := e.root.Dup(fd)
			require.NoError(e.t, err)
			return d
		}, true, false},
		{"other_file_same_inode", func(e *env, fd int) int {
			f := e.file(e.root, fd)
			g := e.k.NewFile(preservableKind, f.Inode, "same-inode", uapi.O_RDWR)
			nfd, err := e.root.InstallFD(g, false)
			require.NoError(e.t, err)
			return nfd
		}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.mkbox("b")
			target := b
			if c.box2 {
				target = e.mkbox("c")
			}
			fd := e.memfd(e.root)
			if c.synthetic {
				fd = e.newFile(e.root, preservableKind)
			}
			second := c.second(e, fd)
			require.NoError(t, e.put(e.root, b, fd, "first"))
			require.Equal(t, errno.EEXIST, errno.Of(e.put(e.root, target, second, "second")))
			_, err := e.root.FD(second)
			require.NoError(t, err, "the refused fd stays open")
			e.check()
		})
	}
}

// TestReviewSealNeedsIdleFiles (Gunthorpe: refcount == 1): SEAL fails with
// EBUSY while a boxed file is referenced outside the box, and succeeds once
// the outside reference is gone.
func TestReviewSealNeedsIdleFiles(t *testing.T) {
	cases := []struct {
		name      string
		hold      func(e *env, fd int) (release func())
		wantErr   errno.Errno
		synthetic bool // a second open file on the inode needs the synthetic kind
	}{
		{"no_outside_reference_seals", func(e *env, fd int) func() { return func() {} }, 0, false},
		{"dup_in_same_task_is_EBUSY", func(e *env, fd int) func() {
			d, err := e.root.Dup(fd)
			require.NoError(e.t, err)
			return func() { require.NoError(e.t, e.root.CloseFD(d)) }
		}, errno.EBUSY, false},
		{"fd_in_another_task_is_EBUSY", func(e *env, fd int) func() {
			o := e.task("other", 1000, 0)
			_, err := o.InstallFD(e.file(e.root, fd).Get(), false)
			require.NoError(e.t, err)
			return func() { o.Exit() }
		}, errno.EBUSY, false},
		{"kernel_holder_is_EBUSY", func(e *env, fd int) func() {
			f := e.file(e.root, fd)
			e.hold(f) // e.g. an in-flight fget
			return func() { e.unhold(f) }
		}, errno.EBUSY, false},
		{"mapping_is_EBUSY", func(e *env, fd int) func() {
			require.NoError(e.t, e.root.Ftruncate(fd, 2*physmem.PageSize))
			v, err := e.root.Mmap(fd, 0, 2*physmem.PageSize, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			require.NoError(e.t, err)
			_, err = e.root.Store(v, 0, 100, func(dst []byte, off int64) {
				for i := range dst {
					dst[i] = byte(off) + byte(i)
				}
			})
			require.NoError(e.t, err)
			return func() { require.NoError(e.t, e.root.Munmap(v)) }
		}, errno.EBUSY, false},
		{"other_open_file_on_inode_is_EBUSY", func(e *env, fd int) func() {
			g := e.k.NewFile(preservableKind, e.file(e.root, fd).Inode, "same-inode", uapi.O_RDWR)
			nfd, err := e.root.InstallFD(g, false)
			require.NoError(e.t, err)
			return func() { require.NoError(e.t, e.root.CloseFD(nfd)) }
		}, errno.EBUSY, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.mkbox("b")
			require.NoError(t, e.put(e.root, b, e.memfd(e.root), "idle"))
			fd := e.memfd(e.root)
			if c.synthetic {
				fd = e.newFile(e.root, preservableKind)
			}
			release := c.hold(e, fd)
			require.NoError(t, e.put(e.root, b, fd, "held"))
			err := e.seal(e.root, b)
			if c.wantErr == 0 {
				require.NoError(t, err)
				return
			}
			require.Equal(t, c.wantErr, errno.Of(err))
			require.False(t, e.d.Box("b").Sealed())
			require.Empty(t, e.log.calls, "no handler was told to seal")
			e.check()
			release()
			require.NoError(t, e.seal(e.root, b))
			e.check()
		})
	}
}

// TestReviewUnsealCallsUnseal: the RFC's fdbox_unseal calls ->seal; here
// UNSEAL calls each file's Unseal, in insertion order.
func TestReviewUnsealCallsUnseal(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	require.NoError(t, e.put(e.root, b, e.memfd(e.root), "x"))
	require.NoError(t, e.put(e.root, b, e.memfd(e.root), "y"))
	require.NoError(t, e.seal(e.root, b))
	require.NoError(t, e.unseal(e.root, b))
	require.Equal(t, []string{"seal:x", "seal:y", "unseal:x", "unseal:y"}, e.log.calls)
}

// TestSealFailureUnwinds: a handler's failing Seal unseals what was sealed,
// in reverse, and the box stays unsealed; a failing Unseal re-seals and
// the box stays sealed.
func TestSealFailureUnwinds(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	for _, n := range []string{"x", "y", "z"} {
		require.NoError(t, e.put(e.root, b, e.memfd(e.root), n))
	}
	e.log.failSeal = "z"
	require.Equal(t, errno.EIO, errno.Of(e.seal(e.root, b)))
	require.False(t, e.d.Box("b").Sealed())
	require.Equal(t, []string{"seal:x", "seal:y", "seal:z", "unseal:y", "unseal:x"}, e.log.calls)
	e.check()

	e.log.failSeal, e.log.failUnsl, e.log.calls = "", "y", nil
	require.NoError(t, e.seal(e.root, b))
	require.Equal(t, errno.EIO, errno.Of(e.unseal(e.root, b)))
	require.True(t, e.d.Box("b").Sealed())
	require.Equal(t, []string{"seal:x", "seal:y", "seal:z", "unseal:x", "unseal:y", "seal:x"}, e.log.calls)
	e.check()
}

// TestReviewDeleteReleasesEverything: DELETE_BOX puts every file; nothing
// leaks, and the files' inodes go too.
func TestReviewDeleteReleasesEverything(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	var files []*kernel.File
	for _, n := range []string{"x", "y", "z"} {
		fd := e.memfd(e.root)
		files = append(files, e.file(e.root, fd))
		require.NoError(t, e.put(e.root, b, fd, n))
	}
	// One file is also held elsewhere: delete drops only the box's
	// reference.
	kept := files[1].Get()
	inodes := len(e.k.Inodes())
	require.NoError(t, e.del(e.root, e.ctl, "b"))
	require.EqualValues(t, -1, files[0].Refs())
	require.EqualValues(t, -1, files[2].Refs())
	require.EqualValues(t, 1, kept.Refs())
	require.Len(t, e.k.Inodes(), inodes-2)
	kept.Put()
	require.NoError(t, e.root.CloseFD(b))
	require.NoError(t, e.root.CloseFD(e.ctl))
	require.Empty(t, e.k.Files())
	require.Empty(t, e.k.Inodes())
	require.NoError(t, e.d.CheckInvariants())
}

// TestDriverPerKernel: two kernels have two drivers that share nothing.
func TestDriverPerKernel(t *testing.T) {
	e1, e2 := newEnv(t), newEnv(t)
	e1.mkbox("b")
	require.Nil(t, e2.d.Box("b"))
	require.NotContains(t, fdboxNodes(e2.k), DevDir+"b")
	e2.mkbox("b") // same name, other kernel
	e1.check()
	e2.check()

	// A second Init on the same kernel finds the node taken.
	_, err := Init(e1.k)
	require.Equal(t, errno.EEXIST, errno.Of(err))
}

// TestFreezeBlocksSealChanges: while KHO has frozen the driver, SEAL and
// UNSEAL fail with EBUSY; unsealed boxes stay usable.
func TestFreezeBlocksSealChanges(t *testing.T) {
	e := newEnv(t)
	s := e.mkbox("sealed")
	u := e.mkbox("open")
	require.NoError(t, e.seal(e.root, s))
	e.d.Freeze()
	require.True(t, e.d.Frozen())
	require.Equal(t, errno.EBUSY, errno.Of(e.unseal(e.root, s)))
	require.Equal(t, errno.EBUSY, errno.Of(e.seal(e.root, u)))
	require.Equal(t, errno.EBUSY, errno.Of(e.del(e.root, e.ctl, "sealed")))
	require.NoError(t, e.put(e.root, u, e.memfd(e.root), "f"))
	_, err := e.get(e.root, u, "f")
	require.NoError(t, err)
	e.d.Thaw()
	require.NoError(t, e.unseal(e.root, s))
	e.check()
}
