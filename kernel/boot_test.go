package kernel

import (
	"errors"
	"testing"

	"khosim/errno"
	"khosim/fault"
	"khosim/physmem"
)

func newFrames(t *testing.T, size uint64) *physmem.Frames {
	t.Helper()
	f, err := physmem.NewFrames(size)
	must(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestBootRefusesSmallMachines(t *testing.T) {
	if _, err := Boot(Hardware{Frames: newFrames(t, 64<<20)}, BootParams{BootID: 1}); err != errno.EINVAL {
		t.Fatalf("64 MiB machine: %v, want EINVAL", err)
	}
	if _, err := Boot(Hardware{}, BootParams{BootID: 1}); err != errno.EINVAL {
		t.Fatalf("no frames: %v, want EINVAL", err)
	}
}

func TestBootColdScratch(t *testing.T) {
	for _, c := range []struct {
		mem     uint64
		cmdline string
		want    uint64
	}{
		{256 << 20, "", 16 << 20},                  // 1/16 is below the 16 MiB minimum
		{1 << 30, "", 64 << 20},                    // 1/16
		{256 << 20, "kho_scratch=33M", 34 << 20},   // rounded up to 2 MiB
		{256 << 20, "kho_scratch=25%", 64 << 20},   // a percentage
		{256 << 20, "kho_scratch=bogus", 16 << 20}, // ignored, with a warning
	} {
		m := bootMachine(t, machineOpts{mem: c.mem, cmdline: c.cmdline})
		k := m.k
		if len(k.Scratch) != 1 || k.Scratch[0].Size != c.want {
			t.Fatalf("%d MiB %q: scratch %v, want %d MiB", c.mem>>20, c.cmdline, k.Scratch, c.want>>20)
		}
		r := k.Scratch[0]
		if !k.MM.Memblock.IsKHOScratch(r.Base, r.Size) || r.Base%scratchAlign != 0 {
			t.Fatalf("scratch %v is not aligned memblock scratch", r)
		}
		for pfn := r.Base.PFN(); pfn < r.End().PFN(); pfn += physmem.PageblockNrPages {
			if k.MM.Zone.PageblockMigratetype(pfn) != physmem.MigrateCMA {
				t.Fatalf("scratch pageblock %v is not MIGRATE_CMA", pfn)
			}
		}
		if free := k.MM.Zone.NrFreePagesOf(physmem.MigrateCMA); free != c.want/physmem.PageSize {
			t.Fatalf("%d free CMA pages, want the whole scratch (%d)", free, c.want/physmem.PageSize)
		}
		fc := k.FrameCounts()
		if fc.Free+fc.Used+fc.Slab+fc.Tracker+fc.Reserved+fc.Preserved != fc.Total || fc.Scratch != c.want/physmem.PageSize {
			t.Fatalf("frame counts %+v", fc)
		}
		m.check()
	}
}

func TestBootKexecScratchOnly(t *testing.T) {
	frames := newFrames(t, 512<<20)
	scratch := []physmem.MemblockRegion{{Base: 256 << 20, Size: 32 << 20}}
	inEarly := false
	k, err := Boot(Hardware{Frames: frames}, BootParams{BootID: 2, Scratch: scratch, EarlyInit: func(k *Kernel) error {
		inEarly = true
		if !k.MM.Memblock.KHOScratchOnly() {
			t.Error("EarlyInit runs outside scratch-only mode")
		}
		return nil
	}})
	must(t, err)
	defer k.Poison("test over")
	if !inEarly {
		t.Fatal("EarlyInit did not run")
	}
	if len(k.memmapBlocks) != 4 { // 512 MiB / 4 KiB * 64 bytes = 8 MiB
		t.Fatalf("memmap blocks %v", k.memmapBlocks)
	}
	for _, b := range k.memmapBlocks {
		if !k.MM.Memblock.IsKHOScratch(b, vmemmapChunk) {
			t.Fatalf("memmap block %v outside scratch on a kexec boot", b)
		}
	}
	if k.MM.Memblock.KHOScratchOnly() {
		t.Fatal("scratch-only mode outlived boot")
	}
	must(t, k.CheckInvariants())
}

func TestBootFailures(t *testing.T) {
	t.Run("EarlyInit", func(t *testing.T) {
		want := errors.New("kho: bad FDT")
		_, err := Boot(Hardware{Frames: newFrames(t, 256<<20)}, BootParams{BootID: 1, EarlyInit: func(*Kernel) error { return want }})
		if err != want {
			t.Fatalf("boot: %v, want %v", err, want)
		}
	})
	t.Run("page_alloc faults do not hit memblock", func(t *testing.T) {
		// fail_page_alloc covers the buddy allocator only: boot's memblock
		// allocations (scratch, memmap) leave an armed fault armed, and it
		// fires at the first page allocation after boot.
		faults := fault.New()
		must(t, faults.Arm(fault.PageAlloc, 1, 1))
		k, err := Boot(Hardware{Frames: newFrames(t, 256<<20), Faults: faults}, BootParams{BootID: 1})
		must(t, err)
		defer k.Poison("test over")
		if k.Scratch == nil || !faults.Armed(fault.PageAlloc) {
			t.Fatalf("scratch %v, fault armed %v: boot consumed the fault", k.Scratch, faults.Armed(fault.PageAlloc))
		}
		// The first page allocation after boot is the first slab page of
		// shmem_inode_cache: the inode cannot be allocated, and
		// memfd_create fails with the ENOSPC of __shmem_get_inode.
		task := k.NewTask("t", Cred{})
		if _, err := task.MemfdCreate("m", 0); errno.Of(err) != errno.ENOSPC {
			t.Fatalf("first page allocation after boot: %v, want ENOSPC", err)
		}
		must(t, k.CheckInvariants())
	})
	t.Run("bad scratch", func(t *testing.T) {
		_, err := Boot(Hardware{Frames: newFrames(t, 256<<20)},
			BootParams{BootID: 2, Scratch: []physmem.MemblockRegion{{Base: 4096, Size: 4096}}})
		if errno.Of(err) != errno.EINVAL {
			t.Fatalf("boot: %v, want EINVAL", err)
		}
	})
}

func TestBootCmdline(t *testing.T) {
	m := bootMachine(t, machineOpts{cmdline: "transparent_hugepage_shmem=sometimes transparent_hugepage_tmpfs=always"})
	if m.k.shm.huge != shmemHugeNever || m.k.tmp.huge != shmemHugeAlways {
		t.Fatalf("shm %v tmp %v", m.k.shm.huge, m.k.tmp.huge)
	}
	warned := false
	for _, l := range m.k.Log() {
		warned = warned || l.Level == LogWarn
	}
	if !warned {
		t.Fatal("no warning for a bad transparent_hugepage_shmem=")
	}
	if m.k.tmp.maxBlocks != m.k.MM.Zone.ManagedPages()/2 {
		t.Fatalf("/tmp size %d pages", m.k.tmp.maxBlocks)
	}
}

func TestPoisonedKernelPanics(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 0)
	m.k.Poison("kexec")
	defer func() {
		if recover() == nil {
			t.Fatal("a system call on a gone kernel did not panic")
		}
	}()
	_, _ = p.MemfdCreate("x", 0)
}
