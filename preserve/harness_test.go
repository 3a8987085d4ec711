package preserve

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/fault"
	"khosim/fdt"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/uapi"
)

// world is a machine reduced to what the layer needs: frames, a fault
// injector, and a kernel with KHO and the layer, which kexec replaces by
// a new one built from the frames and the handover alone (as
// machine.Kexec does, without the front-ends).
type world struct {
	t      *testing.T
	frames *physmem.Frames
	faults *fault.Injector
	build  kbuild.Build
	k      *kernel.Kernel
	kho    *kexec.KHO
	l      *Layer
	task   *kernel.Task
	boots  int

	// client is a KHO notifier writing every file in files as a node
	// /test/NAME at activation (the FDBox stash lifecycle, reduced).
	files map[string]Preserved
	order []string
	// atBoot runs in every kernel the world boots after the first, before
	// KHO's late pass returns what nobody claimed (a late initcall).
	atBoot func(w *world)
}

const testMiB = 1 << 20

func newWorld(t *testing.T, memory uint64, b kbuild.Build) *world {
	t.Helper()
	frames, err := physmem.NewFrames(memory)
	require.NoError(t, err)
	t.Cleanup(func() { _ = frames.Close() })
	w := &world{t: t, frames: frames, faults: fault.New(), build: b}
	w.boot(nil)
	return w
}

func (w *world) boot(ho *kexec.Handover) {
	w.t.Helper()
	w.boots++
	params := kernel.BootParams{
		BootID:  w.boots,
		Cmdline: "kho_scratch=16M transparent_hugepage_shmem=" + w.build.Value("shmem_huge"),
		Build:   w.build,
		EarlyInit: func(k *kernel.Kernel) error {
			tr, ok := kexec.LookupTracker(w.build.KHO)
			require.True(w.t, ok)
			w.kho = kexec.New(k, w.faults, tr.New)
			w.kho.Populate(ho)
			return nil
		},
	}
	if ho != nil {
		params.Scratch = ho.Scratch
	}
	k, err := kernel.Boot(kernel.Hardware{Frames: w.frames, Faults: w.faults}, params)
	require.NoError(w.t, err)
	k.RegisterRefOwner("kho", w.kho.VisitRefs)
	k.RegisterFrameCounter("preserved", w.kho.FramesPreserved)
	k.RegisterFrameCounter("tracker", w.kho.FramesTracker)
	w.k = k
	w.l = New(k, w.kho, w.faults)
	w.files, w.order = map[string]Preserved{}, nil
	w.t.Cleanup(func() {
		if !k.Gone() {
			k.Poison("test over")
		}
	})
	require.NoError(w.t, w.kho.RegisterNotifier(&kexec.Notifier{Name: "test", Call: w.notify, Estimate: w.estimate}))
	if ho != nil && w.atBoot != nil {
		w.atBoot(w)
	}
	w.kho.ReturnUnclaimed()
	w.task = k.NewTask("test", kernel.Cred{UID: 0, Caps: uapi.CapAll})
}

// notify writes /test/NAME for every file the test preserved; COMMIT
// detaches them, ABORT puts them back and unpreserves them.
func (w *world) notify(cmd kexec.Cmd, fw *fdt.Writer) error {
	switch cmd {
	case kexec.KEXEC_KHO_DUMP:
		if err := fw.BeginNode("test"); err != nil {
			return err
		}
		for _, name := range w.order {
			if err := fw.BeginNode(name); err != nil {
				return err
			}
			if err := w.files[name].WriteFDT(fw, name); err != nil {
				return err
			}
			if err := fw.EndNode(); err != nil {
				return err
			}
		}
		return fw.EndNode()
	case kexec.KEXEC_KHO_COMMIT:
		for _, name := range w.order {
			w.files[name].Detach()
		}
	}
	return nil
}

// estimate bounds what notify writes.
func (w *world) estimate() uint64 {
	n := uint64(64)
	for _, name := range w.order {
		n += 64 + uint64(len(name)) + w.files[name].EstimateFDT()
	}
	return n
}

// kexec hands over to a new kernel of build b.
func (w *world) kexec(b kbuild.Build) {
	w.t.Helper()
	ho, keep := w.kho.PrepareKexec()
	kexec.Scrub(w.k, keep)
	w.k.Poison("kexec")
	w.build = b
	w.boot(ho)
}

// audit runs every check: the kernel's (references of KHO and the layer
// included), KHO's, the layer's.
func (w *world) audit() {
	w.t.Helper()
	require.NoError(w.t, w.k.CheckInvariants())
	require.NoError(w.t, w.kho.CheckInvariants())
	require.NoError(w.t, w.l.CheckInvariants())
}

// pattern is the test's data: byte o of a file is pattern(seed, o).
func pattern(seed byte) kernel.DataSource {
	return func(dst []byte, off int64) {
		for i := range dst {
			dst[i] = byte((off+int64(i))*7) ^ seed
		}
	}
}

// memfd makes a memfd of size bytes with the pattern written at each of
// the given [offset, length) extents, and returns its fd and file.
func (w *world) memfd(name string, flags uint, size int64, seed byte, extents ...[2]int64) (int, *kernel.File) {
	w.t.Helper()
	fd, err := w.task.MemfdCreate(name, flags)
	require.NoError(w.t, err)
	require.NoError(w.t, w.task.Ftruncate(fd, size))
	for _, e := range extents {
		n, err := w.task.Pwrite(fd, e[0], e[1], pattern(seed))
		require.NoError(w.t, err)
		require.Equal(w.t, e[1], n)
	}
	f, err := w.task.FD(fd)
	require.NoError(w.t, err)
	return fd, f
}

// checkContent reads [0, size) of fd: the pattern inside extents, zeros
// elsewhere.
func (w *world) checkContent(fd int, size int64, seed byte, extents ...[2]int64) {
	w.t.Helper()
	want := func(o int64) byte {
		for _, e := range extents {
			if o >= e[0] && o < e[0]+e[1] {
				return byte(o*7) ^ seed
			}
		}
		return 0
	}
	var bad error
	_, err := w.task.Pread(fd, 0, size, func(src []byte, off int64) error {
		for i, c := range src {
			if c != want(off+int64(i)) && bad == nil {
				bad = fmt.Errorf("byte %#x is %#x, want %#x", off+int64(i), c, want(off+int64(i)))
			}
		}
		return nil
	})
	require.NoError(w.t, err)
	require.NoError(w.t, bad)
}

// used returns the frames of data and tracker in use. Slab frames are not
// counted: the test's task and its files hold slab objects, and a cache
// keeps an empty slab; slab objects are audited by physmem and the kernel.
func (w *world) used() uint64 {
	c := w.k.FrameCounts()
	return c.Used + c.Tracker
}
