package machine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"khosim/kbuild"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// checkMemMap checks the map's promises against the machine: the runs
// cover every frame once, in order, merged; the counts agree with the
// runs, with FrameCounts' partition and with the scratch counters.
func checkMemMap(t interface {
	require.TestingT
	Helper()
}, m *Machine, mm *MemMap) {
	t.Helper()
	var next physmem.PFN
	var counts [NrFrameKinds]uint64
	for i, r := range mm.Runs {
		require.Equal(t, next, r.PFN, "run %d starts where the one before ends", i)
		require.NotZero(t, r.Frames, "run %d is empty", i)
		require.Equal(t, r.Scratch, mm.InScratch(r.PFN), "run %d: scratch flag", i)
		require.Equal(t, r.Scratch, mm.InScratch(r.End()-1), "run %d: scratch flag at its end", i)
		if i > 0 {
			l := mm.Runs[i-1]
			require.False(t, l.Kind == r.Kind && l.Owner == r.Owner && l.Ino == r.Ino && l.Scratch == r.Scratch,
				"runs %d and %d are not merged: %+v %+v", i-1, i, l, r)
		}
		counts[r.Kind] += r.Frames
		next = r.End()
	}
	require.Equal(t, mm.Frames, uint64(next), "the runs cover every frame")
	require.Equal(t, counts, mm.Counts)

	fc := m.FrameCounts()
	var free, reserved, preserved, used uint64
	for _, r := range mm.Runs {
		switch {
		case r.Kind == KindFree || r.Kind == KindScratchFree:
			free += r.Frames
		case r.Kind == KindLowMem || r.Kind == KindKernelImage || r.Kind == KindMemmap || r.Kind == KindReserved,
			r.Kind == KindFDT && r.Owner == ownerIncomingFDT:
			reserved += r.Frames
		case r.Kind == KindPreserved && r.Owner == ownerUnclaimed:
			preserved += r.Frames
		default:
			used += r.Frames
		}
	}
	require.Equal(t, fc["free"], free, "free")
	require.Equal(t, fc["reserved"], reserved, "reserved")
	require.Equal(t, fc["preserved"], preserved, "preserved")
	require.Equal(t, fc["used"]+fc["slab"]+fc["tracker"], used, "used + slab + tracker")
	require.Equal(t, fc["scratch_free"], mm.Counts[KindScratchFree], "scratch_free")
	require.Equal(t, fc["scratch"], fc["scratch_free"]+fc["scratch_used"], "scratch")
	require.Equal(t, mm.ScratchFree, fc["scratch_free"])
	require.Zero(t, mm.Counts[KindUnowned], "unowned frames")
	require.Zero(t, mm.Counts[KindUninit], "uninitialised frames")
}

// TestMemoryMapPhases takes the map at every phase of an FDBox live update
// of a memfd whose folios sit in scratch: every frame is accounted for at
// each phase, the migrations out of scratch are traced, the FDT is placed,
// and the file's frames are named by the file before and after.
func TestMemoryMapPhases(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB, ScratchBytes: 64 * MiB}, "never")
	p := w.proc("vmm")
	// Fill memory outside scratch with a first file, so that the second
	// one lands in scratch (movable allocations may use MIGRATE_CMA).
	filler := w.memfd(p, "filler", 0)
	// The page cache's nodes are kernel memory, which scratch
	// (MIGRATE_CMA) never holds: give the memfd every node it will need
	// first (a page every 64), then fill normal memory.
	fd := w.memfd(p, "guest-ram", 0)
	for off := int64(0); off < 8*MiB; off += 64 * 4096 {
		w.pwrite(p, fd, off, 4096, 7)
	}
	free := int64(w.k().MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
	w.pwrite(p, filler, 0, free-MiB, 3)
	w.pwrite(p, fd, 0, 8*MiB, 7)
	require.NotZero(t, w.m.FrameCounts()["scratch_used"], "the memfd has folios in scratch")
	require.NoError(t, p.Close(filler))
	box := w.createBox(p, "vm1")
	w.put(p, box, fd, "ram")
	w.seal(p, box)

	var phases []Phase
	maps := map[Phase]*MemMap{}
	w.m.SetPhaseHook(func(e PhaseEvent) {
		mm, err := w.m.MemoryMap()
		require.NoError(t, err)
		checkMemMap(t, w.m, mm)
		phases = append(phases, e.Phase)
		maps[e.Phase] = mm
	})
	before, err := w.m.MemoryMap()
	require.NoError(t, err)
	checkMemMap(t, w.m, before)
	pc := uint64(0)
	for _, r := range before.Runs {
		if r.Kind == KindPageCache {
			require.Equal(t, "memfd:guest-ram", r.Owner)
			pc += r.Frames
		}
	}
	require.Equal(t, uint64(8*MiB/physmem.PageSize), pc, "the memfd's frames are page cache of memfd:guest-ram")

	require.NoError(t, w.m.KHOActivate())
	act := maps[PhaseActivated]
	require.NotNil(t, act)
	require.NotNil(t, act.FDT)
	require.True(t, act.FDT.Outgoing)
	require.False(t, act.FDT.InScratch)
	require.NotZero(t, act.Counts[KindFDT])
	require.Equal(t, uint64(8*MiB/physmem.PageSize), act.Counts[KindPreserved])
	for _, r := range act.Runs {
		if r.Kind == KindPreserved {
			require.Equal(t, "memfd:guest-ram", r.Owner, "a preserved run is named by its record")
			require.False(t, r.Scratch)
		}
	}
	require.NotEmpty(t, act.Migrations)
	var moved uint64
	for _, mg := range act.Migrations {
		require.False(t, mg.Back)
		require.True(t, act.InScratch(mg.From), "migrated from scratch: %+v", mg)
		require.False(t, act.InScratch(mg.To), "migrated out of scratch: %+v", mg)
		moved += mg.Pages
	}
	require.Equal(t, w.m.MigratedFolios(), moved, "order-0 folios: one page each")
	require.Equal(t, w.k().VMStat()["pgmigrate_success"], moved)

	w.kexec()
	require.Equal(t, []Phase{PhaseBeforeActivation, PhaseActivated, PhaseEarlyBoot, PhaseRestored}, phases)
	early := maps[PhaseEarlyBoot]
	require.Equal(t, uint64(8*MiB/physmem.PageSize), early.Counts[KindPreserved], "handed over, not yet claimed")
	require.NotNil(t, early.FDT)
	require.False(t, early.FDT.Outgoing)
	require.NotZero(t, early.Counts[KindMemmap])
	restored := maps[PhaseRestored]
	require.Zero(t, restored.Counts[KindPreserved])
	require.Equal(t, uint64(8*MiB/physmem.PageSize), restored.Counts[KindPageCache])
	require.Empty(t, restored.Migrations, "a new kernel's trace starts empty")
	p2, ok := w.m.FDTPlacement()
	require.True(t, ok)
	require.Equal(t, act.FDT.Addr, p2.Addr, "the FDT stays where the old kernel wrote it")
}

// TestMemoryMapSmallOn64GiB: an idle 64 GiB machine's map is a handful of
// runs.
func TestMemoryMapSmallOn64GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("64 GiB machine")
	}
	m, err := New(Config{Memory: 64 << 30})
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Boot(kbuild.Default()))
	mm, err := m.MemoryMap()
	require.NoError(t, err)
	checkMemMap(t, m, mm)
	require.Less(t, len(mm.Runs), 16, "%+v", mm.Runs)
}

func TestMemoryMapNoKernel(t *testing.T) {
	m, err := New(Config{Memory: 128 * MiB})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.MemoryMap()
	wantErr(t, 22, err)
	_, ok := m.FDTPlacement()
	require.False(t, ok)
	require.Zero(t, m.MigratedFolios())
}

// TestMemoryMapModel drives a machine through random writes, truncations,
// closes, FDBox activations and deactivations and kexecs (in either
// shmem_huge mode, some memfds landing in scratch) and checks the map
// after every step: it covers every frame once, merged, agrees with
// FrameCounts and leaves no frame unowned.
func TestMemoryMapModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		huge := rapid.SampledFrom([]string{"never", "always"}).Draw(rt, "huge")
		m, err := New(Config{Memory: 128 * MiB, ScratchBytes: 16 * MiB})
		require.NoError(rt, err)
		defer m.Close()
		b := kbuild.Default()
		b.ShmemHuge = huge
		require.NoError(rt, m.Boot(b))
		var p *kernel.Task
		var fds []int
		box := -1
		start := func() {
			p = m.Kernel().NewTask("p", kernel.Cred{UID: 0, Caps: uapi.CapAll})
			fds, box = nil, -1
			ctl, err := p.Open("/dev/fdbox/fdbox", uapi.O_RDWR)
			require.NoError(rt, err)
			var cb uapi.FdboxCreateBox
			uapi.SetName(&cb.Name, "b")
			if _, err := p.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &cb); err == nil {
				box, _ = p.Open("/dev/fdbox/b", uapi.O_RDWR)
			}
		}
		start()
		check := func() {
			mm, err := m.MemoryMap()
			require.NoError(rt, err)
			checkMemMap(rt, m, mm)
		}
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 6).Draw(rt, "op") {
			case 6: // fill memory outside scratch, so later files land in it
				fd, err := p.MemfdCreate("filler", uapi.MFD_NOEXEC_SEAL)
				require.NoError(rt, err)
				free := int64(m.Kernel().MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
				_, _ = p.Pwrite(fd, 0, free, func(dst []byte, off int64) { clear(dst) })
				fds = append(fds, fd)
			case 0: // a new memfd with data
				fd, err := p.MemfdCreate("f", uapi.MFD_NOEXEC_SEAL)
				require.NoError(rt, err)
				n := int64(rapid.IntRange(1, 1024).Draw(rt, "pages")) * physmem.PageSize
				// A write may run out of memory (ENOMEM, ENOSPC): the map
				// must hold either way.
				_, _ = p.Pwrite(fd, int64(rapid.IntRange(0, 64).Draw(rt, "at"))*physmem.PageSize, n, func(dst []byte, off int64) {
					for j := range dst {
						dst[j] = byte(off + int64(j))
					}
				})
				fds = append(fds, fd)
			case 1: // truncate one
				if len(fds) > 0 {
					fd := fds[rapid.IntRange(0, len(fds)-1).Draw(rt, "which")]
					_ = p.Ftruncate(fd, int64(rapid.IntRange(0, 256).Draw(rt, "len"))*physmem.PageSize)
				}
			case 2: // close one
				if len(fds) > 0 {
					j := rapid.IntRange(0, len(fds)-1).Draw(rt, "which")
					require.NoError(rt, p.Close(fds[j]))
					fds = append(fds[:j], fds[j+1:]...)
				}
			case 3: // box one and seal the box
				if len(fds) > 0 && box >= 0 {
					put := uapi.FdboxPutFD{FD: uint32(fds[0])}
					uapi.SetName(&put.Name, fmt.Sprintf("f%d", i))
					if _, err := p.Ioctl(box, uapi.FDBOX_PUT_FD, &put); err == nil {
						fds = fds[1:]
					}
					_, _ = p.Ioctl(box, uapi.FDBOX_SEAL, nil)
				}
			case 4: // activate, or deactivate
				if m.KHO().Active() {
					require.NoError(rt, m.KHODeactivate())
				} else {
					_ = m.KHOActivate()
				}
			case 5:
				require.NoError(rt, m.Kexec(m.Build()))
				start()
			}
			check()
		}
	})
}
