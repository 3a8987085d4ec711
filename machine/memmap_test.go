package machine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/physmem"
)

// checkMemMap checks the map's promises against the machine: the runs
// cover every frame once, in order, merged; the counts agree with the
// runs, with FrameCounts' partition and with the scratch counters.
func checkMemMap(t *testing.T, m *Machine, mm *MemMap) {
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
	free := int64(w.k().MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
	w.pwrite(p, filler, 0, free, 3)
	fd := w.memfd(p, "guest-ram", 0)
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
