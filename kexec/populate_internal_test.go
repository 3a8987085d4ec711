package kexec

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kernel"
	"khosim/physmem"
)

func TestBitmap(t *testing.T) {
	b := make(bitmap, 4)
	require.True(t, b.setClear(3, 3), "empty")
	require.True(t, b.setClear(3, 4))
	require.True(t, b.setClear(60, 70))
	require.False(t, b.setClear(69, 71), "overlaps")
	require.True(t, b.setClear(128, 256))
	require.False(t, b.setClear(200, 201))
	b.set(100)
	var runs [][2]uint64
	for s, e := range b.runs() {
		runs = append(runs, [2]uint64{s, e})
	}
	require.Equal(t, [][2]uint64{{3, 4}, {60, 70}, {100, 101}, {128, 256}}, runs)
	require.Equal(t, []uint64{128, 130}, slices.Collect(func(yield func(uint64) bool) {
		c := make(bitmap, 4)
		c.set(128)
		c.set(130)
		c.set(250)
		for i := range c.ones(100, 200) {
			if !yield(i) {
				return
			}
		}
	}))
	require.Equal(t, uint64(256), b.nextClear(128))
	require.Equal(t, uint64(256), make(bitmap, 4).nextSet(0))
	full := bitmap{^uint64(0)}
	require.Equal(t, uint64(64), full.nextClear(5))
}

// bootEarly boots a kernel on frames with KHO scratch at [192, 224) MiB and
// runs fn in its EarlyInit, with a KHO whose incoming scratch and FDT
// ranges are set as Populate would set them.
func bootEarly(t *testing.T, frames *physmem.Frames, fn func(h *KHO)) *kernel.Kernel {
	t.Helper()
	scratch := []physmem.MemblockRegion{{Base: 192 << 20, Size: 32 << 20}}
	k, err := kernel.Boot(kernel.Hardware{Frames: frames}, kernel.BootParams{
		BootID:  1,
		Scratch: scratch,
		EarlyInit: func(k *kernel.Kernel) error {
			h := New(k, nil, nil)
			h.in.scratch = scratch
			h.in.fdtMem = Mem{Addr: 150 << 20, Size: 64 << 10}
			fn(h)
			return nil
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { k.Poison("test over") })
	return k
}

// TestReserveRunsMatchesReserveEach: for a valid handover, reserving runs
// of contiguous ranges leaves memblock and the range table exactly as
// reserving range by range does.
func TestReserveRunsMatchesReserveEach(t *testing.T) {
	const mib = 1 << 20
	var mems []Mem
	for i := range 64 { // 64 contiguous 4 KiB pages, out of address order
		mems = append(mems, Mem{Addr: physmem.PhysAddr(64*mib + (63-i)*4096), Size: 4096})
	}
	mems = append(mems,
		Mem{Addr: 66 * mib, Size: 2 * mib}, // 2 MiB folios, adjacent
		Mem{Addr: 68 * mib, Size: 2 * mib},
		Mem{Addr: 72 * mib, Size: 4096},      // alone
		Mem{Addr: 32 * mib, Size: 4 * 4096},  // abuts the kernel image's end
		Mem{Addr: 100 * mib, Size: 3 * 4096}, // not a folio: reserved all the same
	)
	frames, err := physmem.NewFrames(256 * mib)
	require.NoError(t, err)
	defer frames.Close()

	type result struct {
		pages    uint64
		reserved []physmem.MemblockRegion
		ranges   []inRange
	}
	run := func(fast bool) result {
		var r result
		bootEarly(t, frames, func(h *KHO) {
			if fast {
				malformed := false
				var ok bool
				r.pages, ok = h.reserveRuns(slices.Values(mems), &malformed)
				require.True(t, ok)
			} else {
				r.pages = h.reserveEach(slices.Values(mems))
				require.Zero(t, h.in.rejected)
			}
			r.reserved = slices.Collect(h.mm.Memblock.Reserved())
			r.ranges = slices.Clone(h.in.ranges)
		})
		return r
	}
	fast, slow := run(true), run(false)
	require.Equal(t, slow, fast)
	require.Len(t, fast.ranges, len(mems))
	require.Equal(t, uint64(64+512+512+1+4+3), fast.pages)
}

// TestReserveRunsRefuses: any range the range-by-range path would reject
// makes the fast path give up without reserving or recording anything.
func TestReserveRunsRefuses(t *testing.T) {
	const mib = 1 << 20
	good := []Mem{{Addr: 64 * mib, Size: 4096}, {Addr: 64*mib + 4096, Size: 4096}}
	frames, err := physmem.NewFrames(256 * mib)
	require.NoError(t, err)
	defer frames.Close()
	for name, bad := range map[string]Mem{
		"empty":         {Addr: 80 * mib},
		"misaligned":    {Addr: 80*mib + 8, Size: 4096},
		"odd size":      {Addr: 80 * mib, Size: 100},
		"wraps":         {Addr: ^physmem.PhysAddr(4095), Size: 8192},
		"beyond memory": {Addr: 256 * mib, Size: 4096},
		"overlap":       {Addr: 64 * mib, Size: 2 * 4096},
		"duplicate":     {Addr: 64 * mib, Size: 4096},
		"scratch":       {Addr: 200 * mib, Size: 4096},
		"fdt":           {Addr: 150 * mib, Size: 4096},
		"kernel image":  {Addr: 20 * mib, Size: 4096},
		"low memory":    {Addr: 0, Size: 4096},
	} {
		bootEarly(t, frames, func(h *KHO) {
			before := slices.Collect(h.mm.Memblock.Reserved())
			malformed := false
			_, ok := h.reserveRuns(slices.Values(append(slices.Clone(good), bad)), &malformed)
			require.False(t, ok, name)
			require.Empty(t, h.in.ranges, name)
			require.Equal(t, before, slices.Collect(h.mm.Memblock.Reserved()), name)
		})
	}
	bootEarly(t, frames, func(h *KHO) {
		malformed := true // a "mem" property that is no kho_mem array
		_, ok := h.reserveRuns(slices.Values(good), &malformed)
		require.False(t, ok)
		require.Empty(t, h.in.ranges)
	})
}
