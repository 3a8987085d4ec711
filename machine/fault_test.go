package machine

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// fixture is a machine with two sealed boxes holding three memfds: a
// 2 MiB-folio one, an order-0 one with a fallocated tail, and a small
// one in the second box.
type fixture struct {
	*world
	p     *kernel.Task
	files []fixtureFile
}

type fixtureFile struct {
	box, name string
	size      int64
	seed      uint64
	written   int64 // bytes of data from 0; the rest reads as zeros
}

func newFixture(t testing.TB, cfg Config) *fixture {
	if cfg.Memory == 0 {
		cfg.Memory = 128 * MiB
	}
	w := newWorld(t, cfg, "within_size")
	fx := &fixture{world: w, p: w.proc("p")}
	fx.files = []fixtureFile{
		{"vm1", "ram", 4*MiB + 3*KiB, 1, 4*MiB + 3*KiB},
		{"vm1", "state", 1*MiB + 17, 2, 300 * KiB},
		{"vm2", "ram", 96 * KiB, 3, 96 * KiB},
	}
	boxes := map[string]int{}
	for i, f := range fx.files {
		if _, ok := boxes[f.box]; !ok {
			boxes[f.box] = w.createBox(fx.p, f.box)
		}
		fd := w.memfd(fx.p, fmt.Sprintf("%s-%s", f.box, f.name), uapi.MFD_ALLOW_SEALING)
		require.NoError(t, fx.p.Ftruncate(fd, f.size))
		if f.written < f.size {
			require.NoError(t, fx.p.Fallocate(fd, 0, 0, f.size))
		}
		w.pwrite(fx.p, fd, 0, f.written, f.seed)
		_, err := fx.p.Lseek(fd, int64(i)*1000, uapi.SEEK_SET)
		require.NoError(t, err)
		w.put(fx.p, boxes[f.box], fd, f.name)
	}
	for _, b := range boxes {
		w.seal(fx.p, b)
	}
	return fx
}

// verify checks, in the new kernel, every fixture file that should have
// survived (want[i]) and that the others are gone from their boxes (or
// their box is gone, when none of its files should have survived).
func (fx *fixture) verify(want []bool) {
	fx.t.Helper()
	p := fx.proc(fmt.Sprintf("v%d", fx.k().BootID))
	boxes := map[string]int{}
	for i, f := range fx.files {
		if _, ok := boxes[f.box]; !ok {
			fd, err := p.Open("/dev/fdbox/"+f.box, uapi.O_RDWR)
			if errno.Of(err) == errno.ENOENT {
				for j, g := range fx.files {
					require.False(fx.t, g.box == f.box && want[j], "box %s is gone, and %s/%s with it", f.box, g.box, g.name)
				}
				fd = -1
			} else {
				require.NoError(fx.t, err, "open box %s", f.box)
				fx.unseal(p, fd)
			}
			boxes[f.box] = fd
		}
		if boxes[f.box] < 0 {
			continue
		}
		fd, err := fx.get(p, boxes[f.box], f.name)
		if !want[i] {
			wantErr(fx.t, errno.ENOENT, err)
			continue
		}
		require.NoError(fx.t, err, "%s/%s", f.box, f.name)
		require.Equal(fx.t, f.size, fx.size(p, fd))
		require.Equal(fx.t, int64(i)*1000, fx.pos(p, fd))
		fx.content(p, fd, 0, f.written, f.seed)
		fx.content(p, fd, f.written, f.size-f.written, 0)
	}
	fx.check()
}

// disarm cancels whatever is left of a plan on site.
func disarm(in *fault.Injector, site fault.Site) {
	_ = in.Arm(site, math.MaxInt32, 1)
}

// TestActivationFaultsLeaveFilesIntact arms each activation-time fault
// site at every point it can be reached: activation fails with the site's
// errno, every file is exactly as before, the invariants hold, and once
// the site is exhausted activation and kexec work.
func TestActivationFaultsLeaveFilesIntact(t *testing.T) {
	for _, site := range []fault.Site{fault.FDT, fault.KHOWrite, fault.PageAlloc} {
		t.Run(string(site), func(t *testing.T) {
			fx := newFixture(t, Config{})
			before := fx.snapshot()
			info, _ := fault.Lookup(string(site))
			fired := 0
			for nth := 1; ; nth++ {
				require.NoError(t, fx.m.Faults().Arm(site, nth, 1))
				err := fx.m.KHOActivate()
				if err == nil {
					disarm(fx.m.Faults(), site)
					break
				}
				fired++
				wantErr(t, info.Errno, err)
				require.False(t, fx.m.KHO().Active())
				require.False(t, fx.m.FDBox().Frozen())
				requireSameFiles(t, before, fx.snapshot())
				fx.check()
				require.Less(t, nth, 10000)
			}
			require.Positive(t, fired)
			t.Logf("%s: %d failure points", site, fired)
			fx.kexec()
			fx.verify([]bool{true, true, true})
		})
	}
}

// TestClaimFault: a kho_claim fault in the new kernel fails one file's
// recovery; its node is skipped with a message, all its memory is
// returned, the other files recover and nothing leaks.
func TestClaimFault(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	// "ram" in vm1 is 2 MiB folios + a 4 KiB tail: 3 claims. The 4th is
	// the first of "state".
	require.NoError(t, fx.m.Faults().Arm(fault.KHOClaim, 4, 1))
	fx.kexec()
	require.True(t, fx.logHas("failed to claim folio"), "log")
	require.True(t, fx.logHas("failed to recover fd \"state\" of box \"vm1\""))
	fx.verify([]bool{true, false, true})
	s := fx.m.Stats().Incoming
	require.Positive(t, s.Returned)
	require.Equal(t, s.Ranges, s.Claimed+s.Returned)
}

// TestRecoverFault: a recover fault fails one file with EIO.
func TestRecoverFault(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	require.NoError(t, fx.m.Faults().Arm(fault.Recover, 3, 1))
	fx.kexec()
	require.True(t, fx.logHas("error when recovering KHO node '/fdbox/vm2/ram'"))
	fx.verify([]bool{true, true, false})
	require.Equal(t, 1, fx.m.Stats().Recovered.FailedFDs)
}

// TestFaultsStayArmedAcrossKexec: a page_alloc fault armed before kexec
// survives the next kernel's boot, which allocates from memblock (not
// covered by fail_page_alloc), and fires at its first page allocation:
// recovery's first slab page, for the first file's shmem inode, so that
// file is lost (ENOSPC, as __shmem_get_inode returns) and the others come
// back.
func TestFaultsStayArmedAcrossKexec(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	require.NoError(t, fx.m.Faults().Arm(fault.PageAlloc, 1, 2))
	fx.kexec()
	require.False(t, fx.m.Faults().Armed(fault.PageAlloc))
	require.Equal(t, 2, fx.m.Faults().Fired(fault.PageAlloc))
	// The first allocations of the next kernel's FDBox recovery are the
	// slab page behind struct fdbox of the first box, of kmalloc-1k's
	// order and then of order 0: vm1 is not recreated, and its memory
	// goes back to the allocator.
	require.True(t, fx.logHas("fdbox: could not create box 'vm1': ENOMEM"))
	fx.verify([]bool{false, false, true})
}

// TestCorruptHeader: a corrupt FDT header means no handover at all: a
// clear message, nothing reserved, every frame usable.
func TestCorruptHeader(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	require.NoError(t, fx.m.CorruptFDT(0, 4))
	wantErr(t, errno.EINVAL, fx.m.CorruptFDT(1<<30, 1))
	// A deliberate corruption is not a broken invariant of the old kernel.
	require.NoError(t, fx.m.CheckInvariants())
	fx.kexec()
	require.True(t, fx.logHas("kho: invalid handover FDT"))
	require.NotEmpty(t, fx.m.KHO().HandoverRefused())
	require.Empty(t, fx.m.FDBox().Boxes())
	require.Zero(t, fx.m.Stats().Incoming.Ranges)
	c := fx.m.FrameCounts()
	require.Equal(t, c["total"], c["free"]+c["used"]+c["slab"]+c["tracker"]+c["reserved"])
	// Only boot's own reservations: low memory, kernel image, memmap.
	require.Less(t, c["reserved"], uint64(40*MiB/physmem.PageSize))
}

// TestCorruptNode: corrupting a byte of one file's "mem" property is
// caught by the shmem-v2 checksum: that file is skipped, its memory comes
// back through the late pass, the others recover intact.
func TestCorruptNode(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	blob, err := fx.m.HandoverFDT()
	require.NoError(t, err)
	off := propValueOffset(t, blob, "/fdbox/vm1/state/", "mem")
	require.NoError(t, fx.m.CorruptFDT(uint64(off)+1, 1))
	fx.kexec()
	require.True(t, fx.logHas("checksum mismatch"))
	require.True(t, fx.logHas("was not claimed; returning it"))
	fx.verify([]bool{true, false, true})
}

// TestCorruptCompatibles: a box node with a bad compatible is skipped
// with its files; a bad root compatible refuses the whole handover.
func TestCorruptCompatibles(t *testing.T) {
	t.Run("box", func(t *testing.T) {
		fx := newFixture(t, Config{})
		require.NoError(t, fx.m.KHOActivate())
		blob, _ := fx.m.HandoverFDT()
		require.NoError(t, fx.m.CorruptFDT(uint64(propValueOffset(t, blob, "/fdbox/vm2", "compatible")), 2))
		fx.kexec()
		require.True(t, fx.logHas("invalid compatible for box 'vm2'"))
		require.Nil(t, fx.m.FDBox().Box("vm2"))
		fx.files = fx.files[:2]
		fx.verify([]bool{true, true})
	})
	t.Run("root", func(t *testing.T) {
		fx := newFixture(t, Config{})
		require.NoError(t, fx.m.KHOActivate())
		blob, _ := fx.m.HandoverFDT()
		require.NoError(t, fx.m.CorruptFDT(uint64(propValueOffset(t, blob, "/", "compatible")), 1))
		fx.kexec()
		require.True(t, fx.logHas("root node is not compatible"))
		require.Empty(t, fx.m.FDBox().Boxes())
	})
}

// TestSwapinFault: a page_alloc failure half way through swapping a boxed
// memfd in fails the activation with ENOMEM; the file keeps its contents
// (part of it now in memory, the rest still on swap) and works after.
func TestSwapinFault(t *testing.T) {
	w := newWorld(t, Config{Memory: 128 * MiB, Swap: 16 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "s", 0)
	require.NoError(t, p.Ftruncate(fd, 2*MiB))
	w.pwrite(p, fd, 0, 2*MiB, 5)
	v, err := p.Mmap(fd, 0, 2*MiB, uapi.PROT_READ, uapi.MAP_SHARED)
	require.NoError(t, err)
	_, err = p.Load(v, 0, 2*MiB, func([]byte, int64) error { return nil })
	require.NoError(t, err)
	require.NoError(t, p.Madvise(v, 0, 2*MiB, uapi.MADV_PAGEOUT))
	require.NoError(t, p.Munmap(v))
	file := w.file(p, fd)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "s")
	w.seal(p, box)
	require.NoError(t, w.m.Faults().Arm(fault.PageAlloc, 100, 1))
	wantErr(t, errno.ENOMEM, w.m.KHOActivate())
	info := kernel.ShmemInode(file)
	// Allocation 1 is the FDT buffer, 2..99 swapped pages in.
	require.Equal(t, int64(512-98), info.Swapped())
	w.check()
	w.unseal(p, box)
	fd = w.mustGet(p, box, "s")
	w.content(p, fd, 0, 2*MiB, 5)
	w.put(p, box, fd, "s")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	w.kexec()
	p2 := w.proc("p2")
	w.content(p2, w.mustGet(p2, w.openBox(p2, "b"), "s"), 0, 2*MiB, 5)
}
