package kernel

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
	if _, err := Boot(Hardware{Frames: newFrames(t, 64<<20)}, BootParams{BootID: 1}); errno.Of(err) != errno.EINVAL {
		t.Fatalf("64 MiB machine: %v, want EINVAL", err)
	}
	if _, err := Boot(Hardware{}, BootParams{BootID: 1}); err != errno.EINVAL {
		t.Fatalf("no frames: %v, want EINVAL", err)
	}
}

func TestBootColdScratch(t *testing.T) {
	const M = 1 << 20
	for _, c := range []struct {
		mem     uint64
		cmdline string
		want    []uint64 // sizes of the areas, in order
		warn    bool
	}{
		{256 * M, "", []uint64{16 * M}, false},                 // 1/16 is below the 16 MiB minimum
		{1 << 30, "", []uint64{64 * M}, false},                 // 1/16
		{256 * M, "kho_scratch=33M", []uint64{34 * M}, false},  // rounded up to 2 MiB
		{256 * M, "kho_scratch=bogus", []uint64{16 * M}, true}, // ignored, with a warning
		// N% scales the kernel's memblock memory: the 16 MiB image and the
		// memmap (4 MiB for 256 MiB, 16 MiB for 1 GiB), all below 4 GiB:
		// a lowmem area and the node's, the global one empty.
		{256 * M, "kho_scratch=25%", []uint64{6 * M, 6 * M}, false}, // 5 MiB, rounded up
		{256 * M, "kho_scratch=200%", []uint64{40 * M, 40 * M}, false},
		{1 << 30, "kho_scratch=200%", []uint64{64 * M, 64 * M}, false},
		{256 * M, "kho_scratch=0%", nil, false}, // a scale of 0: every area empty
		{256 * M, "kho_scratch=4294967296%", []uint64{16 * M}, true},
		{256 * M, "kho_scratch=%", []uint64{16 * M}, true},
		{256 * M, "kho_scratch=-1%", []uint64{16 * M}, true},
		// lowmem, global, per-node sizes.
		{256 * M, "kho_scratch=16M,32M,8M", []uint64{16 * M, 32 * M, 8 * M}, false},
		{256 * M, "kho_scratch=1M,0,0", []uint64{2 * M}, false},
		{256 * M, "kho_scratch=0,4194304,1K", []uint64{4 * M, 2 * M}, false},
		{256 * M, "kho_scratch=0,0,0", []uint64{16 * M}, true}, // all 0 is invalid
		{256 * M, "kho_scratch=16M,32M", []uint64{16 * M}, true},
		{256 * M, "kho_scratch=16M,32M,8M,4M", []uint64{16 * M}, true},
		{256 * M, "kho_scratch=16M,,8M", []uint64{16 * M}, true},
		{256 * M, "kho_scratch=", []uint64{16 * M}, true},
		// Sizes that overflow when rounded up to pageblocks cannot be
		// reserved: KHO is disabled (issue 16 #8: the first wrapped to 0).
		{256 * M, "kho_scratch=18446744073709551615", nil, true},
		{256 * M, "kho_scratch=18446744073709551615,0,0", nil, true},
		{256 * M, "kho_scratch=0,0,0xffffffffffffffff", nil, true},
		{256 * M, "kho_scratch=4294967295%", nil, true}, // fits: too large to reserve
		// Too large for memory: the areas reserved first are freed again.
		{256 * M, "kho_scratch=64M,64M,200M", nil, true},
		{256 * M, "kho_scratch=0", nil, false}, // no KHO
	} {
		m := bootMachine(t, machineOpts{mem: c.mem, cmdline: c.cmdline})
		k := m.k
		var sizes []uint64
		var total uint64
		for _, r := range k.Scratch {
			sizes = append(sizes, r.Size)
			total += r.Size
		}
		if !slices.Equal(sizes, c.want) {
			t.Fatalf("%d MiB %q: scratch %v, want sizes %v", c.mem>>20, c.cmdline, k.Scratch, c.want)
		}
		warned := false
		for _, l := range k.Log() {
			warned = warned || l.Level == LogWarn
		}
		if warned != c.warn {
			t.Fatalf("%d MiB %q: warned %v, want %v (log %v)", c.mem>>20, c.cmdline, warned, c.warn, k.Log())
		}
		for i, r := range k.Scratch {
			if !k.MM.Memblock.IsKHOScratch(r.Base, r.Size) || r.Base%scratchAlign != 0 {
				t.Fatalf("scratch %v is not aligned memblock scratch", r)
			}
			if strings.Contains(c.cmdline, ",") && i == 0 && c.want[0] != 0 && r.End() > archLowAddressLimit {
				t.Fatalf("lowmem scratch %v above 4 GiB", r)
			}
			for pfn := r.Base.PFN(); pfn < r.End().PFN(); pfn += physmem.PageblockNrPages {
				if k.MM.Zone.PageblockMigratetype(pfn) != physmem.MigrateCMA {
					t.Fatalf("scratch pageblock %v is not MIGRATE_CMA", pfn)
				}
			}
		}
		if free := k.MM.Zone.NrFreePagesOf(physmem.MigrateCMA); free != total/physmem.PageSize {
			t.Fatalf("%d free CMA pages, want the whole scratch (%d)", free, total/physmem.PageSize)
		}
		fc := k.FrameCounts()
		if fc.Free+fc.Used+fc.Slab+fc.Tracker+fc.Reserved+fc.Preserved != fc.Total || fc.Scratch != total/physmem.PageSize {
			t.Fatalf("frame counts %+v", fc)
		}
		m.check()
	}
}

// TestBootScratchAbove4G checks the lowmem area's limit on a machine with
// memory above 4 GiB: lowmem lands below it, global and the node's at the
// top, and the scale counts the memmap as global there.
func TestBootScratchAbove4G(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5 GiB machine")
	}
	m := bootMachine(t, machineOpts{mem: 5 << 30, cmdline: "kho_scratch=100%"})
	// kernel image 16 MiB (lowmem); memmap 5 GiB/4 KiB*64 = 80 MiB (global).
	require.Len(t, m.k.Scratch, 3)
	low, global, node := m.k.Scratch[0], m.k.Scratch[1], m.k.Scratch[2]
	require.Equal(t, uint64(16<<20), low.Size)
	require.Equal(t, uint64(80<<20), global.Size)
	require.Equal(t, uint64(96<<20), node.Size)
	require.LessOrEqual(t, uint64(low.End()), uint64(archLowAddressLimit))
	require.Greater(t, uint64(global.Base), uint64(archLowAddressLimit))
	m.check()
}

// TestBootScratchOverflow: a kho_scratch= size that overflows when
// rounded up to pageblocks is refused as such, not reserved as its
// wrapped value (issue 16 #8: 2^64-1 rounded to 0, and only the
// allocator's refusal of a 0-byte area disabled KHO).
func TestBootScratchOverflow(t *testing.T) {
	for _, v := range []string{"18446744073709551615", "0,18446744073709551615,0", "0,0,0xfffffffffff00001"} {
		m := bootMachine(t, machineOpts{cmdline: "kho_scratch=" + v})
		require.Empty(t, m.k.Scratch, v)
		said := false
		for _, l := range m.k.Log() {
			said = said || l.Level == LogWarn && strings.Contains(l.Text, "overflows when rounded up")
		}
		require.True(t, said, "%s: log %v", v, m.k.Log())
		m.check()
	}
	for _, size := range []uint64{^uint64(0), ^uint64(0) - scratchAlign + 2} {
		_, ok := roundUpScratch(size)
		require.False(t, ok, "%#x", size)
	}
	r, ok := roundUpScratch(^uint64(0) - scratchAlign + 1)
	require.True(t, ok)
	require.Equal(t, ^uint64(0)-scratchAlign+1, r)
}

func TestParseScratch(t *testing.T) {
	for _, c := range []struct {
		v    string
		want scratchParam
		err  bool
	}{
		{"200%", scratchParam{scale: true, percent: 200}, false},
		{"4294967295%", scratchParam{scale: true, percent: 4294967295}, false},
		{"04294967295%", scratchParam{}, true}, // 12 characters
		{"1G", scratchParam{single: true, sizes: [3]uint64{0, 1 << 30, 0}}, false},
		{"1K,2M,3G", scratchParam{sizes: [3]uint64{1 << 10, 2 << 20, 3 << 30}}, false},
		{"0x10,0,0", scratchParam{sizes: [3]uint64{16, 0, 0}}, false},
		{"16T,0,0", scratchParam{sizes: [3]uint64{16 << 40, 0, 0}}, false},
		{"17000000T,0,0", scratchParam{}, true}, // memparse overflows
		{"1,2,3,", scratchParam{}, true},
		{",1,2", scratchParam{}, true},
		{"1%,2,3", scratchParam{}, true},
	} {
		got, err := parseScratch(c.v)
		if c.err {
			require.Error(t, err, c.v)
			continue
		}
		require.NoError(t, err, c.v)
		require.Equal(t, c.want, got, c.v)
	}
}

// FuzzParseScratch: parseScratch never panics, and what it accepts the
// boot turns into areas without overflow (or refuses with an error).
func FuzzParseScratch(f *testing.F) {
	for _, s := range []string{"200%", "1K,2M,3G", "18446744073709551615", "0,0,1", "%", ",,", "4294967295%"} {
		f.Add(s)
	}
	m := bootMachine(f, machineOpts{})
	f.Fuzz(func(t *testing.T, v string) {
		p, err := parseScratch(v)
		if err != nil {
			return
		}
		if p.scale {
			if sizes, ok := m.k.scaleScratch(256<<20, p.percent); ok {
				for _, s := range sizes {
					if r, ok := roundUpScratch(s); ok && (r < s || r%scratchAlign != 0) {
						t.Fatalf("%q: %d rounds to %d", v, s, r)
					}
				}
			}
			return
		}
		for _, s := range p.sizes {
			if r, ok := roundUpScratch(s); ok && (r < s || r%scratchAlign != 0) {
				t.Fatalf("%q: %d rounds to %d", v, s, r)
			}
		}
	})
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
		must(t, faults.Arm(fault.PageAlloc, 1, 2))
		k, err := Boot(Hardware{Frames: newFrames(t, 256<<20), Faults: faults}, BootParams{BootID: 1})
		must(t, err)
		defer k.Poison("test over")
		if k.Scratch == nil || !faults.Armed(fault.PageAlloc) {
			t.Fatalf("scratch %v, fault armed %v: boot consumed the fault", k.Scratch, faults.Armed(fault.PageAlloc))
		}
		// The first page allocations after boot are the first slab page of
		// shmem_inode_cache, of its order and then of its minimum order
		// (allocate_slab's fallback): the inode cannot be allocated, and
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

// TestBootTooSmall: a machine under 128 MiB is refused with EINVAL and a
// message that says what does not fit.
func TestBootTooSmall(t *testing.T) {
	_, err := Boot(Hardware{Frames: newFrames(t, 64<<20)}, BootParams{BootID: 1})
	if errno.Of(err) != errno.EINVAL || !strings.Contains(err.Error(), "64 MiB of RAM is below the 128 MiB a khosim kernel needs") {
		t.Fatalf("boot of 64 MiB: %v", err)
	}
}
