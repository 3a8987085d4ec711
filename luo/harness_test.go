package luo

import (
	"errors"
	"fmt"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/preserve"
	"khosim/uapi"
)

// This file is the tests' only contact with how kernels are booted and
// system calls made, so that the tests read like the selftests they model.

const (
	kib = 1 << 10
	mib = 1 << 20
)

// world is a machine reduced to what LUO needs: frames, a fault injector
// and a kernel with KHO, the preservation layer and LUO wired in the
// machine's initcall order; kexec runs the reboot path and boots a new
// kernel from the frames and the handover alone (as machine.Kexec does).
type world struct {
	t       tb
	frames  *physmem.Frames
	faults  *fault.Injector
	build   kbuild.Build
	scratch string // kho_scratch=
	k       *kernel.Kernel
	kho     *kexec.KHO
	layer   *preserve.Layer
	l       *LUO
	boots   int
	// baseline is what a kernel of this world uses right after boot with
	// nothing preserved or carried: every later "nothing leaked" check
	// compares with it.
	baseline uint64
}

// luoBuild returns the default build with LUO on and the given keys.
func luoBuild(t tb, kv ...string) kbuild.Build {
	b := kbuild.Default()
	b.LUO = true
	for i := 0; i+1 < len(kv); i += 2 {
		var err error
		b, err = b.With(kv[i], kv[i+1])
		require.NoError(t, err)
	}
	return b
}

// trackers lists the builds' trackers khosim has (arrays today; bitmaps
// and radix once registered): LUO must work under each.
func trackers() []kbuild.Tracker {
	var out []kbuild.Tracker
	for _, tr := range kexec.Trackers() {
		out = append(out, tr.Name)
	}
	return out
}

func newWorld(t tb, memory uint64, b kbuild.Build) *world {
	t.Helper()
	frames, err := physmem.NewFrames(memory)
	require.NoError(t, err)
	t.Cleanup(func() { _ = frames.Close() })
	w := &world{t: t, frames: frames, faults: fault.New(), build: b, scratch: "16M"}
	w.boot(nil)
	w.baseline = w.used()
	return w
}

func (w *world) boot(ho *kexec.Handover) {
	w.t.Helper()
	w.boots++
	cmdline := "kho_scratch=" + w.scratch + " transparent_hugepage_shmem=" + w.build.Value("shmem_huge")
	if w.build.LUO {
		cmdline += " liveupdate=1"
	}
	tr, ok := kexec.LookupTracker(w.build.KHO)
	require.True(w.t, ok, "tracker %s", w.build.KHO)
	var kho *kexec.KHO
	params := kernel.BootParams{
		BootID:  w.boots,
		Cmdline: cmdline,
		Build:   w.build,
		EarlyInit: func(k *kernel.Kernel) error {
			kho = kexec.New(k, w.faults, tr.New)
			kho.Populate(ho)
			return nil
		},
	}
	if ho != nil {
		params.Scratch = ho.Scratch
	}
	k, err := kernel.Boot(kernel.Hardware{Frames: w.frames, Faults: w.faults}, params)
	require.NoError(w.t, err)
	k.RegisterRefOwner("kho", kho.VisitRefs)
	k.RegisterFrameCounter("preserved", kho.FramesPreserved)
	k.RegisterFrameCounter("tracker", kho.FramesTracker)
	w.k, w.kho, w.l = k, kho, nil
	w.layer = preserve.New(k, kho, w.faults)
	if w.build.LUO {
		Register(k, kho, w.layer, w.faults, func(l *LUO) { w.l = l })
	}
	k.RegisterInitcall(kernel.InitcallLate, "kho_return_unclaimed", func(*kernel.Kernel) error {
		kho.ReturnUnclaimed()
		return nil
	})
	k.RunInitcalls()
	w.t.Cleanup(func() {
		if !k.Gone() {
			k.Poison("test over")
		}
	})
}

// kexec is the machine's kexec into build b: the reboot path (LUO's
// freeze, then KHO's finalize where LUO needs it: EAGAIN when that fails),
// then the handover. On error the kernel runs on.
func (w *world) kexec(b kbuild.Build) error {
	w.t.Helper()
	if w.l != nil {
		need, err := w.l.Reboot()
		if err != nil {
			return err
		}
		if need && !w.kho.Active() {
			if err := w.kho.Activate(); err != nil {
				w.l.Unreboot()
				return fmt.Errorf("KHO finalize failed (%v): %w", err, errno.EAGAIN)
			}
		}
	}
	w.handover(b)
	return nil
}

// handover is the kexec proper, once the reboot path is done: what KHO
// hands over (nothing unless it is active) and the boot of build b.
func (w *world) handover(b kbuild.Build) {
	w.t.Helper()
	ho, keep := w.kho.PrepareKexec()
	kexec.Scrub(w.k, keep)
	w.k.Poison("kexec")
	w.build = b
	w.boot(ho)
}

func (w *world) mustKexec() {
	w.t.Helper()
	require.NoError(w.t, w.kexec(w.build))
	w.audit()
}

// audit runs every check of the running kernel.
func (w *world) audit() {
	w.t.Helper()
	require.NoError(w.t, w.k.CheckInvariants())
	if w.l != nil {
		require.NoError(w.t, w.l.CheckInvariants())
	}
	require.NoError(w.t, w.layer.CheckInvariants())
	require.NoError(w.t, w.kho.CheckInvariants())
}

// used returns the frames in use (used, slab, tracker) and still
// preserved (handed over, not claimed or returned).
// used counts the frames of data, tracker and preserved memory in use.
// Slab frames are not counted: the test's own open files (its
// /dev/liveupdate fd, its process) hold filp and fd-table objects, and a
// cache keeps an empty slab; slab objects are audited by physmem's and
// the kernel's checks instead.
func (w *world) used() uint64 {
	c := w.k.FrameCounts()
	return c.Used + c.Tracker + c.Preserved
}

// filePages counts the frames of the folios of every file being preserved,
// and of its folios and record's pages.
func (w *world) filePages() (folios, all uint64) {
	for _, p := range w.layer.Live() {
		folios += p.Pages()
		for m := range p.Mems() {
			all += m.NrPages()
		}
	}
	return folios, all
}

// noLeak checks that the kernel uses exactly what it used at boot.
func (w *world) noLeak() {
	w.t.Helper()
	w.audit()
	require.Zero(w.t, w.k.FrameCounts().Preserved, "preserved frames left")
	require.Equal(w.t, w.baseline, w.used(), "frames in use beyond the boot baseline")
}

func (w *world) proc(name string) *kernel.Task {
	return w.k.NewTask(name, kernel.Cred{UID: 0, Caps: uapi.CapAll})
}

// The selftests' helpers (tools/testing/selftests/liveupdate/luo_test_utils.c).

func luoOpen(t *kernel.Task) (int, error) { return t.Open(DevPath, uapi.O_RDWR) }

func createSession(t *kernel.Task, lu int, name string) (int, error) {
	a := &uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
	uapi.SetSessionName(&a.Name, name)
	if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, a); err != nil {
		return -1, err
	}
	return int(a.FD), nil
}

func retrieveSession(t *kernel.Task, lu int, name string) (int, error) {
	a := &uapi.LiveupdateIoctlRetrieveSession{Size: uapi.SizeofLiveupdateIoctlRetrieveSession}
	uapi.SetSessionName(&a.Name, name)
	if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, a); err != nil {
		return -1, err
	}
	return int(a.FD), nil
}

func preserveFD(t *kernel.Task, s, fd int, token uint64) error {
	_, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_PRESERVE_FD,
		&uapi.LiveupdateSessionPreserveFD{Size: uapi.SizeofLiveupdateSessionPreserveFD, FD: int32(fd), Token: token})
	return err
}

func retrieveFD(t *kernel.Task, s int, token uint64) (int, error) {
	a := &uapi.LiveupdateSessionRetrieveFD{Size: uapi.SizeofLiveupdateSessionRetrieveFD, Token: token}
	if _, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_RETRIEVE_FD, a); err != nil {
		return -1, err
	}
	return int(a.FD), nil
}

func finish(t *kernel.Task, s int) error {
	_, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_FINISH, &uapi.LiveupdateSessionFinish{Size: uapi.SizeofLiveupdateSessionFinish})
	return err
}

// bytesSource writes data from offset 0, zeros after it.
func bytesSource(data []byte) kernel.DataSource {
	return func(dst []byte, off int64) {
		for i := range dst {
			if o := off + int64(i); o < int64(len(data)) {
				dst[i] = data[o]
			} else {
				dst[i] = 0
			}
		}
	}
}

// createAndPreserveMemfd is the selftests' create_and_preserve_memfd: a
// one-page memfd written through a shared mapping with data (NUL
// terminated), preserved under token, and its fd closed.
func createAndPreserveMemfd(w *world, t *kernel.Task, s int, token uint64, data string) error {
	w.t.Helper()
	mfd, err := t.MemfdCreate("test_mfd", 0)
	if err != nil {
		return err
	}
	defer func() { require.NoError(w.t, t.Close(mfd)) }()
	if err := t.Ftruncate(mfd, physmem.PageSize); err != nil {
		return err
	}
	v, err := t.Mmap(mfd, 0, physmem.PageSize, uapi.PROT_WRITE, uapi.MAP_SHARED)
	if err != nil {
		return err
	}
	if _, err := t.Store(v, 0, int64(len(data)+1), bytesSource([]byte(data))); err != nil {
		return err
	}
	require.NoError(w.t, t.Munmap(v))
	return preserveFD(t, s, mfd, token)
}

// restoreAndVerifyMemfd is restore_and_verify_memfd: the file retrieved
// under token, read through a shared mapping, must hold data (when not
// nil) as a NUL-terminated string. It returns the new fd.
func restoreAndVerifyMemfd(w *world, t *kernel.Task, s int, token uint64, data *string) (int, error) {
	w.t.Helper()
	mfd, err := retrieveFD(t, s, token)
	if err != nil {
		return -1, err
	}
	v, err := t.Mmap(mfd, 0, physmem.PageSize, uapi.PROT_READ, uapi.MAP_SHARED)
	if err != nil {
		return -1, err
	}
	var got []byte
	_, err = t.Load(v, 0, physmem.PageSize, func(src []byte, _ int64) error { got = append(got, src...); return nil })
	require.NoError(w.t, err)
	require.NoError(w.t, t.Munmap(v))
	if data != nil {
		if s, _ := cString(got); s != *data {
			_ = t.Close(mfd)
			return -1, fmt.Errorf("data mismatch: expected %q, got %q: %w", *data, s, errno.EINVAL)
		}
	}
	return mfd, nil
}

// readAll reads the file from its position to EOF.
func readAll(t *kernel.Task, fd int) ([]byte, error) {
	var out []byte
	_, err := t.Read(fd, 1<<20, func(src []byte, _ int64) error { out = append(out, src...); return nil })
	return out, err
}

// preadAll reads n bytes at off.
func preadAll(t *kernel.Task, fd int, off, n int64) ([]byte, error) {
	out := make([]byte, 0, n)
	_, err := t.Pread(fd, off, n, func(src []byte, _ int64) error { out = append(out, src...); return nil })
	return out, err
}

// tb is what the tests need of a *testing.T or a *rapid.T.
type tb interface {
	require.TestingT
	Fatalf(format string, args ...any)
	Helper()
	Cleanup(func())
}

// errOf is the errno an error carries (0 for nil), for table tests.
func errOf(err error) errno.Errno { return errno.Of(err) }

var _ = errors.Is
