package kexec_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/kbuild"
	"khosim/kexec"
	"khosim/machine"
	"khosim/physmem"
)

const MiB = 1 << 20

func TestMemEncoding(t *testing.T) {
	mems := []kexec.Mem{{Addr: 0x200000, Size: 2 * MiB}, {Addr: 0x1234000, Size: 4096}}
	b := kexec.EncodeMems(mems)
	// Little-endian u64 pairs, as the x86-64 kernel memcpys struct kho_mem.
	require.Equal(t, []byte{0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0}, b[:16])
	got, err := kexec.DecodeMems(b)
	require.NoError(t, err)
	require.Equal(t, mems, got)
	_, err = kexec.DecodeMems(b[:17])
	require.Equal(t, errno.EBADMSG, errno.Of(err))

	for _, c := range []struct {
		m     kexec.Mem
		order uint
		ok    bool
	}{
		{kexec.Mem{Addr: 0x1000, Size: 4096}, 0, true},
		{kexec.Mem{Addr: 0x200000, Size: 2 * MiB}, 9, true},
		{kexec.Mem{Addr: 0x201000, Size: 2 * MiB}, 0, false}, // misaligned
		{kexec.Mem{Addr: 0x1000, Size: 3 * 4096}, 0, false},  // not a power of two
		{kexec.Mem{Addr: 0, Size: 8 * MiB}, 0, false},        // above MAX_PAGE_ORDER
		{kexec.Mem{Addr: 0x1000, Size: 0}, 0, false},
		{kexec.Mem{Addr: 0x1000, Size: 100}, 0, false},
	} {
		order, ok := c.m.FolioOrder()
		require.Equal(t, c.ok, ok, "%v", c.m)
		if ok {
			require.Equal(t, c.order, order)
		}
	}
}

func boot(t *testing.T, mem uint64) *machine.Machine {
	m, err := machine.New(machine.Config{Memory: mem})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Boot(kbuild.Default()))
	return m
}

// testClient is a KHO client outside FDBox: it preserves folios it
// allocated and describes them in a "mem" property of its own node.
type testClient struct {
	m      *machine.Machine
	folios []physmem.Folio
	order  uint
	events []kexec.Cmd
	fail   bool
	size   uint64 // estimate
}

func (c *testClient) notifier() *kexec.Notifier {
	return &kexec.Notifier{
		Name:     "test",
		Estimate: func() uint64 { return c.size },
		Call: func(cmd kexec.Cmd, w *fdt.Writer) error {
			c.events = append(c.events, cmd)
			kho := c.m.KHO()
			switch cmd {
			case kexec.KEXEC_KHO_DUMP:
				var mems []kexec.Mem
				for _, f := range c.folios {
					m, err := kho.PreserveFolio(f)
					if err != nil {
						return err
					}
					mems = append(mems, m)
				}
				if c.fail {
					return errno.EIO
				}
				if err := w.BeginNode("test"); err != nil {
					return err
				}
				if err := w.Property("mem", kexec.EncodeMems(mems)); err != nil {
					return err
				}
				return w.EndNode()
			case kexec.KEXEC_KHO_ABORT:
				for _, f := range c.folios {
					if kho.IsPreserved(f) {
						require.NoError(nil, kho.UnpreserveFolio(f))
					}
				}
			}
			return nil
		},
	}
}

// TestActivateDeactivateStates: the outgoing state machine and its
// errnos, the notifier events, the preservation references.
func TestActivateDeactivateStates(t *testing.T) {
	m := boot(t, 256*MiB)
	kho := m.KHO()
	c := &testClient{m: m}
	mm := m.Kernel().MM
	f, err := mm.FolioAlloc(physmem.GFPKernel, 2)
	require.NoError(t, err)
	c.folios = []physmem.Folio{f}
	nb := c.notifier()
	require.NoError(t, kho.RegisterNotifier(nb))
	require.Equal(t, errno.EEXIST, errno.Of(kho.RegisterNotifier(nb)))
	require.Equal(t, kexec.Idle, kho.State())
	require.Equal(t, errno.EINVAL, errno.Of(m.KHODeactivate()))
	// While idle a client may preserve (LUO does, at PRESERVE_FD) and
	// unpreserve; nothing then stays preserved for the activation.
	_, err = kho.PreserveFolio(f)
	require.NoError(t, err, "preserving while idle")
	require.NoError(t, kho.UnpreserveFolio(f))
	require.Equal(t, int32(1), mm.FolioRefCount(f))

	require.NoError(t, m.KHOActivate())
	g, err := mm.FolioAlloc(physmem.GFPKernel, 0)
	require.NoError(t, err)
	_, err = kho.PreserveFolio(g)
	require.Equal(t, errno.EBUSY, errno.Of(err), "preserving after finalize (the arrays tracker finalizes)")
	require.Equal(t, errno.EBUSY, errno.Of(kho.UnpreserveFolio(f)), "unpreserving after finalize")
	mm.FreePages(g.PFN(), 0)
	require.Equal(t, kexec.Active, kho.State())
	require.Equal(t, int32(2), mm.FolioRefCount(f), "ours + KHO's")
	require.Equal(t, errno.EBUSY, errno.Of(m.KHOActivate()))
	require.Equal(t, errno.EBUSY, errno.Of(kho.RegisterNotifier(&kexec.Notifier{Name: "late", Call: nb.Call})))
	_, blob, ok := kho.FDT()
	require.True(t, ok)
	require.True(t, bytes.Contains(blob, []byte("kho-v1")))
	require.NoError(t, m.KHODeactivate())
	require.Equal(t, int32(1), mm.FolioRefCount(f))
	require.Equal(t, []kexec.Cmd{kexec.KEXEC_KHO_DUMP, kexec.KEXEC_KHO_COMMIT, kexec.KEXEC_KHO_ABORT}, c.events)

	// A DUMP that fails aborts every notifier and keeps nothing.
	c.fail, c.events = true, nil
	require.Equal(t, errno.EIO, errno.Of(m.KHOActivate()))
	require.Equal(t, []kexec.Cmd{kexec.KEXEC_KHO_DUMP, kexec.KEXEC_KHO_ABORT}, c.events)
	require.Equal(t, int32(1), mm.FolioRefCount(f))
	require.Zero(t, kho.PreservedPages())
	require.True(t, strings.Contains(kho.Dump(), "idle"))
	mm.FreePages(f.PFN(), 2)
	require.NoError(t, m.CheckInvariants())
}

// TestGenericClientHandover: a client outside FDBox preserves folios; the
// next kernel reserves them (frames(preserved) until boot ends), nobody
// claims them, and the late pass returns them: nothing leaks, and claims
// after that fail cleanly.
func TestGenericClientHandover(t *testing.T) {
	m := boot(t, 256*MiB)
	c := &testClient{m: m}
	mm := m.Kernel().MM
	for i := range 3 {
		f, err := mm.FolioAlloc(physmem.GFPKernel, uint(i))
		require.NoError(t, err)
		c.folios = append(c.folios, f)
	}
	require.NoError(t, m.KHO().RegisterNotifier(c.notifier()))
	require.NoError(t, m.KHOActivate())
	// The test's folios have one reference nobody reports: drop ours so
	// that KHO's is the only one.
	for _, f := range c.folios {
		mm.FolioPut(f)
	}
	require.NoError(t, m.CheckInvariants())
	require.NoError(t, m.Kexec(m.Build()))
	kho := m.KHO()
	in := kho.Incoming()
	require.Equal(t, 3, in.Ranges)
	require.Equal(t, 3, in.Returned)
	require.Zero(t, in.ReservedPages)
	require.NoError(t, m.CheckInvariants())
	var returned bool
	for _, l := range m.Kernel().Log() {
		returned = returned || strings.Contains(l.Text, "unclaimed preserved ranges")
	}
	require.True(t, returned)
	r := kho.InRanges()[0]
	_, err := kho.ClaimMem(r.Mem)
	require.Equal(t, errno.EBUSY, errno.Of(err))
	_, err = kho.ClaimMem(kexec.Mem{Addr: 0x7000000, Size: 4096})
	require.Equal(t, errno.EINVAL, errno.Of(err))
	require.Equal(t, errno.EBUSY, errno.Of(kho.ReturnMem(r.Mem)))
}

// TestPreserveRules: a folio in scratch is refused (the next kernel
// allocates there before it knows what is preserved), and so is a second
// preservation of the same folio.
func TestPreserveRules(t *testing.T) {
	m := boot(t, 256*MiB)
	kho := m.KHO()
	mm := m.Kernel().MM
	// Exhaust normal memory so that a movable allocation falls back to
	// scratch (MIGRATE_CMA).
	var blocks []physmem.PFN
	for {
		pfn, err := mm.AllocPages(physmem.GFPKernel, 0)
		if err != nil {
			break
		}
		blocks = append(blocks, pfn)
	}
	inScratch, err := mm.FolioAlloc(physmem.GFPMovable, 0)
	require.NoError(t, err)
	require.True(t, kho.InScratch(inScratch.PFN(), 1))
	for _, pfn := range blocks {
		mm.FreePages(pfn, 0)
	}
	normal, err := mm.FolioAlloc(physmem.GFPKernel, 0)
	require.NoError(t, err)
	require.False(t, kho.InScratch(normal.PFN(), 1))
	var errs []error
	require.NoError(t, kho.RegisterNotifier(&kexec.Notifier{Name: "rules", Call: func(cmd kexec.Cmd, w *fdt.Writer) error {
		switch cmd {
		case kexec.KEXEC_KHO_DUMP:
			_, err := kho.PreserveFolio(inScratch)
			errs = append(errs, err)
			_, err = kho.PreserveFolio(normal)
			errs = append(errs, err)
			_, err = kho.PreserveFolio(normal)
			errs = append(errs, err)
			return errno.ECANCELED
		case kexec.KEXEC_KHO_ABORT:
			// Leave "normal" preserved: KHO's abort releases it.
		}
		return nil
	}}))
	require.Equal(t, errno.ECANCELED, errno.Of(m.KHOActivate()))
	require.Equal(t, []errno.Errno{errno.EINVAL, 0, errno.EEXIST}, []errno.Errno{errno.Of(errs[0]), errno.Of(errs[1]), errno.Of(errs[2])})
	require.Equal(t, int32(1), mm.FolioRefCount(normal), "abort dropped KHO's reference")
	mm.FolioPut(normal)
	mm.FolioPut(inScratch)
	require.NoError(t, m.CheckInvariants())
}

// TestLargeFDTBuffer: an estimate beyond MAX_PAGE_ORDER makes KHO find a
// contiguous run of blocks; the buffer is freed on deactivate.
func TestLargeFDTBuffer(t *testing.T) {
	m := boot(t, 256*MiB)
	c := &testClient{m: m, size: 10 * MiB}
	require.NoError(t, m.KHO().RegisterNotifier(c.notifier()))
	free := m.FrameCounts()["free"]
	require.NoError(t, m.KHOActivate())
	require.Equal(t, free-3*1024, m.FrameCounts()["free"], "three 4 MiB blocks")
	require.NoError(t, m.CheckInvariants())
	require.NoError(t, m.KHODeactivate())
	require.Equal(t, free, m.FrameCounts()["free"])
	// page_alloc failure while allocating the buffer: ENOMEM, nothing kept.
	require.NoError(t, m.Faults().Arm(fault.PageAlloc, 2, 1))
	require.Equal(t, errno.ENOMEM, errno.Of(m.KHOActivate()))
	require.Equal(t, free, m.FrameCounts()["free"])
	require.NoError(t, m.CheckInvariants())
}

// TestScrub: frames the old kernel used for data are poisoned unless
// preserved or part of the FDT; the boot reservations the simulation never
// writes data into (kernel image, memmap blocks) are discarded and read as
// zeros; free frames keep their bytes.
func TestScrub(t *testing.T) {
	m := boot(t, 256*MiB)
	k := m.Kernel()
	mm := k.MM
	used, err := mm.FolioAlloc(physmem.GFPKernel, 0)
	require.NoError(t, err)
	mm.Frames.Fill(used.PFN(), 1, 0x1111111111111111)
	kept, err := mm.FolioAlloc(physmem.GFPKernel, 0)
	require.NoError(t, err)
	mm.Frames.Fill(kept.PFN(), 1, 0x2222222222222222)
	freed, err := mm.FolioAlloc(physmem.GFPKernel, 0)
	require.NoError(t, err)
	mm.Frames.Fill(freed.PFN(), 1, 0x3333333333333333)
	mm.FolioPut(freed)
	blank := k.UnwrittenReservations()
	require.GreaterOrEqual(t, len(blank), 3, "low memory, kernel image, memmap")
	var blankFrames uint64
	for _, r := range blank {
		mm.Frames.Fill(r.Base.PFN(), 1, 0x4444444444444444) // what a stray write would leave
		mm.Frames.Fill(r.End().PFN()-1, 1, 0x4444444444444444)
		blankFrames += r.Size / physmem.PageSize
	}
	n := kexec.Scrub(k, []kexec.Mem{kexec.FolioMem(kept, 0)})
	require.Greater(t, n, blankFrames, "data frames poisoned besides the blank ones")
	frame := func(f physmem.Folio) []byte { return mm.Frames.Frame(f.PFN()) }
	require.Equal(t, byte(0x1d), frame(used)[0], "poisoned (PoisonPattern is little-endian)")
	require.Equal(t, byte(0x22), frame(kept)[0])
	require.Equal(t, byte(0x33), frame(freed)[0])
	for _, r := range blank {
		require.Equal(t, make([]byte, physmem.PageSize), mm.Frames.Frame(r.Base.PFN()), "blank %v discarded", r)
		require.Equal(t, make([]byte, physmem.PageSize), mm.Frames.Frame(r.End().PFN()-1), "blank %v discarded", r)
	}
}
