package fdbox

import (
	"github.com/stretchr/testify/require"

	"testing"

	"khosim/errno"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// newBareEnv is newEnv without the test handler registered, as a kernel
// that booted from a handover before its file kinds registered.
func newBareEnv(t *testing.T) *env {
	k := bootKernel(t)
	used := usedFrames(k)
	d, err := Init(k)
	require.NoError(t, err)
	e := &env{t: t, k: k, d: d, log: &handlerLog{}, usedAtBoot: used}
	e.registerHeld()
	e.root = k.NewTask("root", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	e.ctl = e.open(e.root, CtlPath)
	return e
}

func node(s string) FDTNode { return FDTNode{FDT: []byte(s), Offset: len(s)} }

func TestRegisterHandler(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		h    *FileHandler
		want errno.Errno
	}{
		{"duplicate_compatible_is_EEXIST", e.testHandler(), errno.EEXIST},
		{"second_memfd_handler_is_EEXIST", MemfdHandler(), errno.EEXIST},
		{"nil_is_EINVAL", nil, errno.EINVAL},
		{"no_compatible_is_EINVAL", &FileHandler{CanPreserve: func(*kernel.File) bool { return false }}, errno.EINVAL},
		{"no_CanPreserve_is_EINVAL", &FileHandler{Compatible: "x"}, errno.EINVAL},
		{"new_compatible_registers", &FileHandler{Compatible: "x", CanPreserve: func(*kernel.File) bool { return false }}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, errno.Of(e.d.RegisterHandler(c.h)))
		})
	}
	require.Len(t, e.d.Handlers(), 3)
	require.Equal(t, MemfdCompatible, e.d.Handlers()[0].Compatible)
	require.Equal(t, testCompatible, e.d.Handlers()[1].Compatible)
	require.Nil(t, e.d.Handler("nope"))
	e.check()
}

// TestRecoveredBoxStartsSealed: a recreated box is sealed, its files come
// in through RecoverFD, and userspace gets them after UNSEAL.
func TestRecoveredBoxStartsSealed(t *testing.T) {
	e := newEnv(t)
	box, err := e.d.CreateRecoveredBox("vm1")
	require.NoError(t, err)
	require.True(t, box.Sealed())
	for _, n := range []string{"ram", "state"} {
		bfd, err := e.d.RecoverFD(box, PendingFD{Name: n, Compatible: MemfdCompatible, Node: node(n)})
		require.NoError(t, err)
		require.NotNil(t, bfd)
	}
	e.check()
	b := e.open(e.root, DevDir+"vm1")
	_, err = e.get(e.root, b, "ram")
	require.Equal(t, errno.EBUSY, errno.Of(err))
	require.NoError(t, e.unseal(e.root, b))
	require.Equal(t, []string{"ram", "state"}, e.names(b))
	fd, err := e.get(e.root, b, "ram")
	require.NoError(t, err)
	require.Equal(t, e.log.recovered[0], e.file(e.root, fd))
	e.check()

	_, err = e.d.CreateRecoveredBox("vm1")
	require.Equal(t, errno.EEXIST, errno.Of(err))
	_, err = e.d.CreateRecoveredBox("a/b")
	require.Equal(t, errno.EINVAL, errno.Of(err))
}

func TestRecoverFDErrors(t *testing.T) {
	e := newEnv(t)
	box, err := e.d.CreateRecoveredBox("b")
	require.NoError(t, err)
	_, err = e.d.RecoverFD(box, PendingFD{Name: "f", Compatible: MemfdCompatible, Node: node("f")})
	require.NoError(t, err)

	_, err = e.d.RecoverFD(box, PendingFD{Name: "f", Compatible: MemfdCompatible, Node: node("again")})
	require.Equal(t, errno.EEXIST, errno.Of(err), "duplicate name")
	_, err = e.d.RecoverFD(box, PendingFD{Name: "", Compatible: MemfdCompatible})
	require.Equal(t, errno.EINVAL, errno.Of(err))
	_, err = e.d.RecoverFD(box, PendingFD{Name: "g", Compatible: MemfdCompatible, Node: node("bad")})
	require.Equal(t, errno.EIO, errno.Of(err), "the handler's error")
	require.Equal(t, []string{"recover:f", "recover:bad"}, e.log.calls, "names are checked before the handler runs")
	require.Len(t, box.FDs(), 1)
	e.check()

	// A handler returning a file it does not preserve: EOPNOTSUPP, and
	// the file is put.
	var stray *kernel.File
	require.NoError(t, e.d.RegisterHandler(&FileHandler{
		Compatible:  "fdbox,liar-v1",
		CanPreserve: func(f *kernel.File) bool { return false },
		Recover: func(FDTNode) (*kernel.File, error) {
			stray = e.k.NewFile(plainKind, nil, "stray", uapi.O_RDWR)
			return stray, nil
		},
	}))
	_, err = e.d.RecoverFD(box, PendingFD{Name: "h", Compatible: "fdbox,liar-v1"})
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(err))
	require.EqualValues(t, -1, stray.Refs())

	require.NoError(t, e.d.RegisterHandler(&FileHandler{
		Compatible: "fdbox,norecover-v1", CanPreserve: func(*kernel.File) bool { return false },
	}))
	_, err = e.d.RecoverFD(box, PendingFD{Name: "i", Compatible: "fdbox,norecover-v1"})
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(err))

	require.NoError(t, e.unseal(e.root, e.open(e.root, DevDir+"b")))
	require.NoError(t, e.del(e.root, e.ctl, "b"))
	_, err = e.d.RecoverFD(box, PendingFD{Name: "j", Compatible: MemfdCompatible})
	require.Equal(t, errno.ENODEV, errno.Of(err))
	e.check()
}

// TestPendingRecoveredAtRegistration: fd nodes without a handler wait in
// their box; registering the handler recovers them in box order, then fd
// order (fdbox_recover_pending).
func TestPendingRecoveredAtRegistration(t *testing.T) {
	e := newBareEnv(t)
	b1, err := e.d.CreateRecoveredBox("b1")
	require.NoError(t, err)
	b2, err := e.d.CreateRecoveredBox("b2")
	require.NoError(t, err)
	for _, p := range []struct {
		box  *Box
		name string
		comp string
	}{{b2, "x", MemfdCompatible}, {b1, "y", MemfdCompatible}, {b1, "o", "fdbox,other-v1"}, {b1, "z", MemfdCompatible}} {
		bfd, err := e.d.RecoverFD(p.box, PendingFD{Name: p.name, Compatible: p.comp, Node: node(p.box.Name() + "/" + p.name)})
		require.NoError(t, err)
		require.Nil(t, bfd, "queued")
	}
	require.Len(t, b1.Pending(), 3)
	e.check()

	// A pending name is taken.
	require.NoError(t, e.d.unseal(b1))
	b := e.open(e.root, DevDir+"b1")
	require.NoError(t, e.d.RegisterHandler(e.testHandler()))
	require.Equal(t, errno.EEXIST, errno.Of(e.put(e.root, b, e.newFile(e.root, preservableKind), "y")))
	// A box with pending nodes cannot be sealed again.
	require.Equal(t, errno.EBUSY, errno.Of(e.seal(e.root, b)))

	require.NoError(t, e.d.RegisterHandler(e.memfdHandler()))
	require.Equal(t, []string{"recover:b1/y", "recover:b1/z", "recover:b2/x"}, e.log.calls)
	require.Equal(t, []string{"y", "z"}, e.names(b))
	require.Len(t, b1.Pending(), 1)
	require.Equal(t, "o", b1.Pending()[0].Name)
	require.Len(t, b2.FDs(), 1)
	require.Empty(t, b2.Pending())
	e.check()
}

// TestDeleteDiscardsPending: deleting a box drops its pending nodes and
// tells KHO through Discard (the RFC leaks them).
func TestDeleteDiscardsPending(t *testing.T) {
	e := newBareEnv(t)
	box, err := e.d.CreateRecoveredBox("b")
	require.NoError(t, err)
	var discarded []string
	for _, n := range []string{"p", "q"} {
		_, err := e.d.RecoverFD(box, PendingFD{Name: n, Compatible: "fdbox,gone-v1", Discard: func() { discarded = append(discarded, n) }})
		require.NoError(t, err)
	}
	_, err = e.d.RecoverFD(box, PendingFD{Name: "r", Compatible: "fdbox,gone-v1"}) // no Discard
	require.NoError(t, err)
	b := e.open(e.root, DevDir+"b")
	require.NoError(t, e.unseal(e.root, b))
	require.NoError(t, e.del(e.root, e.ctl, "b"))
	require.Equal(t, []string{"p", "q"}, discarded)
	e.check()
}

// TestSealedBoxesInCreationOrder: what the KHO DUMP notifier walks.
func TestSealedBoxesInCreationOrder(t *testing.T) {
	e := newEnv(t)
	var fds []int
	for _, n := range []string{"c", "a", "b", "d"} {
		fds = append(fds, e.mkbox(n))
	}
	require.NoError(t, e.seal(e.root, fds[3]))
	require.NoError(t, e.seal(e.root, fds[0]))
	require.NoError(t, e.seal(e.root, fds[2]))
	require.Equal(t, []string{"c", "b", "d"}, func() (out []string) {
		for _, b := range e.d.SealedBoxes() {
			out = append(out, b.Name())
		}
		return
	}())
	require.Equal(t, []string{"c", "a", "b", "d"}, boxNames(e.d))
}

// TestTakeAndReturnFD: the kernel-side take/return pair KHO abort uses.
func TestTakeAndReturnFD(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	for _, n := range []string{"x", "y", "z"} {
		require.NoError(t, e.put(e.root, b, e.memfd(e.root), n))
	}
	require.NoError(t, e.seal(e.root, b))
	box := e.d.Box("b")
	f, pos, err := e.d.TakeFD(box, "y")
	require.NoError(t, err)
	require.Equal(t, 1, pos)
	require.EqualValues(t, 1, f.Refs(), "the caller now owns the box's reference")
	require.Nil(t, e.d.Boxed(f))
	e.adopt(f)
	e.check()

	_, _, err = e.d.TakeFD(box, "y")
	require.Equal(t, errno.ENOENT, errno.Of(err))

	// Into a sealed box only an idle file goes back.
	e.hold(f)
	_, err = e.d.ReturnFD(box, pos, "y", f)
	require.Equal(t, errno.EBUSY, errno.Of(err))
	require.Nil(t, e.d.Boxed(f))
	e.unhold(f)
	_, err = e.d.ReturnFD(box, pos, "x", f)
	require.Equal(t, errno.EEXIST, errno.Of(err))
	_, err = e.d.ReturnFD(box, pos, "", f)
	require.Equal(t, errno.EINVAL, errno.Of(err))
	bfd, err := e.d.ReturnFD(box, pos, "y", f)
	require.NoError(t, err)
	e.disown(f)
	require.Equal(t, box, bfd.Box())
	require.Equal(t, []string{"x", "y", "z"}, e.names(b), "back at its place")
	e.check()

	// A plain file cannot be returned; a deleted box takes nothing.
	g := e.k.NewFile(plainKind, nil, "plain", uapi.O_RDWR)
	_, err = e.d.ReturnFD(box, 0, "g", g)
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(err))
	require.NoError(t, e.unseal(e.root, b))
	require.NoError(t, e.del(e.root, e.ctl, "b"))
	_, err = e.d.ReturnFD(box, 0, "g", g)
	require.Equal(t, errno.ENODEV, errno.Of(err))
	_, _, err = e.d.TakeFD(box, "x")
	require.Equal(t, errno.ENODEV, errno.Of(err))
	g.Put()
	e.check()
}

// refRecorder is a kernel.RefVisitor that records file references.
type refRecorder struct{ files map[*kernel.File]int64 }

func (r *refRecorder) File(f *kernel.File, n int64, who string) { r.files[f] += n }
func (r *refRecorder) Folio(physmem.PFN, int64, string)         {}
func (r *refRecorder) Frames(physmem.PFN, uint64, string)       {}

// TestRefsReportedToAudit: the driver reports one reference per boxed
// file, and nothing else.
func TestRefsReportedToAudit(t *testing.T) {
	e := newEnv(t)
	b := e.mkbox("b")
	var boxed []*kernel.File
	for _, n := range []string{"x", "y"} {
		fd := e.memfd(e.root)
		boxed = append(boxed, e.file(e.root, fd))
		require.NoError(t, e.put(e.root, b, fd, n))
	}
	e.memfd(e.root) // not boxed
	r := &refRecorder{files: map[*kernel.File]int64{}}
	e.d.visitRefs(r)
	require.Equal(t, map[*kernel.File]int64{boxed[0]: 1, boxed[1]: 1}, r.files)
}

// TestCheckInvariantsCatchesCorruption: every invariant CheckInvariants
// names can fail.
func TestCheckInvariantsCatchesCorruption(t *testing.T) {
	setup := func(t *testing.T) (*env, *Box) {
		e := newEnv(t)
		b := e.mkbox("b")
		require.NoError(t, e.put(e.root, b, e.memfd(e.root), "x"))
		require.NoError(t, e.put(e.root, b, e.memfd(e.root), "y"))
		require.NoError(t, e.d.CheckInvariants())
		return e, e.d.Box("b")
	}
	cases := []struct {
		name    string
		corrupt func(e *env, box *Box)
		want    string
	}{
		{"duplicate_box_name", func(e *env, box *Box) {
			e.d.boxes = append(e.d.boxes, &Box{d: e.d, name: "b"})
		}, "box-names-unique"},
		{"deleted_box_in_list", func(e *env, box *Box) { box.deleted = true }, "box-names-unique"},
		{"missing_node", func(e *env, box *Box) { e.k.UnregisterDevice(box.Path()) }, "box-nodes"},
		{"stray_node", func(e *env, box *Box) {
			require.NoError(e.t, e.k.RegisterDevice(&kernel.Device{Path: DevDir + "stray"}))
		}, "box-nodes"},
		{"duplicate_fd_name", func(e *env, box *Box) { box.fds[1].name = "x" }, "fd-names-unique"},
		{"fd_name_equal_to_pending", func(e *env, box *Box) {
			box.pending = append(box.pending, PendingFD{Name: "y"})
		}, "fd-names-unique"},
		{"boxfd_of_other_box", func(e *env, box *Box) { box.fds[0].box = &Box{name: "other"} }, "boxfd-owner"},
		{"boxfd_with_dead_file", func(e *env, box *Box) { box.fds[0].file.Put() }, "boxfd-owner"},
		{"boxfd_without_handler", func(e *env, box *Box) { box.fds[0].handler = nil }, "boxfd-owner"},
		{"boxfd_with_nil_file", func(e *env, box *Box) { box.fds[0].file = nil }, "boxfd-owner"},
		{"boxfd_with_unregistered_handler", func(e *env, box *Box) {
			box.fds[0].handler = &FileHandler{Compatible: testCompatible, CanPreserve: func(*kernel.File) bool { return true }}
		}, "boxfd-owner"},
		{"file_in_two_boxfds", func(e *env, box *Box) { box.fds[1].file = box.fds[0].file }, "file-in-one-box"},
		{"stale_index", func(e *env, box *Box) {
			delete(e.d.byFile, box.fds[0].file)
		}, "file-in-one-box"},
		{"sealed_box_file_referenced_elsewhere", func(e *env, box *Box) {
			box.sealed = true
			box.fds[0].file.Get()
		}, "sealed-idle"},
		{"duplicate_handler", func(e *env, box *Box) {
			e.d.handlers = append(e.d.handlers, &FileHandler{Compatible: testCompatible, CanPreserve: func(*kernel.File) bool { return true }})
		}, "handler-names-unique"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, box := setup(t)
			c.corrupt(e, box)
			err := e.d.CheckInvariants()
			require.Error(t, err)
			require.Contains(t, err.Error(), `"`+c.want+`"`)
		})
	}
}
