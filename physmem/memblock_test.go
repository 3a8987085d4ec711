package physmem

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
)

const (
	mib     = 1 << 20
	pbBytes = PageblockNrPages * PageSize // 2 MiB
)

func regions(seq func(func(MemblockRegion) bool)) string {
	var s []string
	for r := range seq {
		s = append(s, fmt.Sprintf("%#x+%#x", uint64(r.Base), r.Size)+flagSuffix(r.Flags))
	}
	return strings.Join(s, " ")
}

func flagSuffix(f MemblockFlags) string {
	if f == MemblockNone {
		return ""
	}
	return ":" + f.String()
}

func TestMemblockRegionEditing(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  func(m *Memblock)
		mem  string
		rsv  string
	}{
		{"adjacent adds merge", func(m *Memblock) {
			m.Add(0x2000, 0x1000)
			m.Add(0x1000, 0x1000)
			m.Add(0x3000, 0x1000)
		}, "0x1000+0x3000", ""},
		{"overlapping add keeps flags of existing parts", func(m *Memblock) {
			m.Add(0, 4*mib)
			m.MarkKHOScratch(2*mib, 2*mib)
			m.Add(mib, 6*mib)
		}, "0x0+0x200000 0x200000+0x200000:KHO_SCRATCH 0x400000+0x300000", ""},
		{"remove splits", func(m *Memblock) {
			m.Add(0, 0x10000)
			m.Remove(0x4000, 0x2000)
		}, "0x0+0x4000 0x6000+0xa000", ""},
		{"remove across regions", func(m *Memblock) {
			m.Add(0, 0x2000)
			m.Add(0x3000, 0x2000)
			m.Remove(0x1000, 0x3000)
		}, "0x0+0x1000 0x4000+0x1000", ""},
		{"clearing scratch merges back", func(m *Memblock) {
			m.Add(0, 8*mib)
			m.MarkKHOScratch(2*mib, 4*mib)
			m.ClearKHOScratch(2*mib, 2*mib)
			m.ClearKHOScratch(4*mib, 2*mib)
		}, "0x0+0x800000", ""},
		{"scratch only where memory is", func(m *Memblock) {
			m.Add(2*mib, 2*mib)
			m.MarkKHOScratch(0, 8*mib)
		}, "0x200000+0x200000:KHO_SCRATCH", ""},
		{"reserve unaligned bytes, merge and free part", func(m *Memblock) {
			m.Reserve(0x1234, 0x100)
			m.Reserve(0x1334, 0x100)
			m.PhysFree(0x1300, 0x10)
		}, "", "0x1234+0xcc 0x1310+0x124"},
		{"noinit marks only reserved parts", func(m *Memblock) {
			m.Reserve(0x1000, 0x3000)
			m.ReservedMarkNoinit(0x2000, 0x4000)
		}, "", "0x1000+0x1000 0x2000+0x2000:RSRV_NOINIT"},
		{"zero sizes do nothing", func(m *Memblock) {
			m.Add(0x1000, 0)
			m.Reserve(0x1000, 0)
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemblock(16 * mib)
			tc.ops(m)
			eq(t, regions(m.Memory()), tc.mem, "memory")
			eq(t, regions(m.Reserved()), tc.rsv, "reserved")
			noErr(t, m.check())
		})
	}
}

func TestMemblockQueries(t *testing.T) {
	m := NewMemblock(16 * mib)
	noErr(t, m.Add(0, 8*mib))
	noErr(t, m.Add(10*mib, 2*mib))
	noErr(t, m.MarkKHOScratch(4*mib, 4*mib))
	noErr(t, m.Reserve(0x5000, 0x2000))
	noErr(t, m.Reserve(6*mib, PageSize))
	noErr(t, m.ReservedMarkNoinit(6*mib, PageSize))

	isTrue(t, m.IsRegionMemory(0, 8*mib), "memory")
	isTrue(t, !m.IsRegionMemory(7*mib, 2*mib), "straddles a hole")
	isTrue(t, !m.IsRegionMemory(0, 0), "empty range")
	isTrue(t, m.IsRegionReserved(0x6fff, 0x10), "overlaps reserved")
	isTrue(t, !m.IsRegionReserved(0x7000, 0x10), "after reserved")
	isTrue(t, m.IsKHOScratch(5*mib, mib), "inside scratch")
	isTrue(t, !m.IsKHOScratch(3*mib, 2*mib), "half scratch")
	isTrue(t, m.IsReservedNoinit(6*mib, PageSize), "noinit")
	isTrue(t, !m.IsReservedNoinit(0x5000, PageSize), "plain reserved")
	eq(t, m.PhysMemSize(), uint64(10*mib), "memblock_phys_mem_size")
	eq(t, m.ReservedSize(), uint64(0x2000+PageSize), "memblock_reserved_size")
	eq(t, regions(m.FreeRanges()),
		"0x0+0x5000 0x7000+0x3f9000 0x400000+0x200000:KHO_SCRATCH 0x601000+0x1ff000:KHO_SCRATCH 0xa00000+0x200000",
		"for_each_free_mem_range")
	isTrue(t, strings.Contains(m.String(), "reserved[0x1]"), "memblock_dump:\n%s", m)
}

func TestMemblockPhysAlloc(t *testing.T) {
	m := NewMemblock(16 * mib)
	noErr(t, m.Add(0, 16*mib))

	a, err := m.PhysAlloc(PageSize, PageSize)
	noErr(t, err)
	eq(t, a, PhysAddr(16*mib-PageSize), "top-down")
	isTrue(t, m.IsRegionReserved(a, PageSize), "allocation is reserved")

	b, err := m.PhysAlloc(100, mib)
	noErr(t, err)
	eq(t, b, PhysAddr(15*mib), "aligned below the first")

	noErr(t, m.Reserve(0, 15*mib))
	_, err = m.PhysAlloc(2*mib, PageSize)
	wantErr(t, err, errno.ENOMEM)

	noErr(t, m.PhysFree(a, PageSize))
	c, err := m.PhysAlloc(PageSize, PageSize)
	noErr(t, err)
	eq(t, c, a, "freed range reused")

	for _, bad := range []struct{ size, align uint64 }{{0, PageSize}, {PageSize, 0}, {PageSize, 3}, {PageSize, PageSize + 1}} {
		_, err := m.PhysAlloc(bad.size, bad.align)
		wantErr(t, err, errno.EINVAL)
	}
}

func TestMemblockPhysAllocAvoidsFirstPage(t *testing.T) {
	m := NewMemblock(4 * PageSize)
	noErr(t, m.Add(0, 4*PageSize))
	for range 3 {
		a, err := m.PhysAlloc(PageSize, PageSize)
		noErr(t, err)
		isTrue(t, a != 0, "allocated page 0")
	}
	_, err := m.PhysAlloc(PageSize, PageSize)
	wantErr(t, err, errno.ENOMEM)
	isTrue(t, !m.IsRegionReserved(0, PageSize), "page 0 reserved")
}

func TestMemblockScratchOnly(t *testing.T) {
	m := NewMemblock(32 * mib)
	noErr(t, m.Add(0, 32*mib))
	noErr(t, m.MarkKHOScratch(4*mib, 4*mib))
	m.SetKHOScratchOnly()
	isTrue(t, m.KHOScratchOnly(), "scratch-only")

	a, err := m.PhysAlloc(mib, PageSize)
	noErr(t, err)
	eq(t, a, PhysAddr(7*mib), "top of scratch, not top of memory")
	_, err = m.PhysAlloc(4*mib, PageSize)
	wantErr(t, err, errno.ENOMEM)

	m.ClearKHOScratchOnly()
	a, err = m.PhysAlloc(4*mib, PageSize)
	noErr(t, err)
	eq(t, a, PhysAddr(28*mib), "anywhere again")

	for _, r := range [][2]uint64{{mib, pbBytes}, {0, mib}, {pbBytes, pbBytes + PageSize}} {
		wantErr(t, m.MarkKHOScratch(PhysAddr(r[0]), r[1]), errno.EINVAL)
	}
}

func TestMemblockErrors(t *testing.T) {
	in := fault.New()
	m := NewMemblock(4 * mib)
	noErr(t, m.Add(0, 4*mib))
	wantErr(t, m.Add(0, 4*mib+1), errno.EINVAL)
	wantErr(t, m.Reserve(4*mib, 1), errno.EINVAL)
	wantErr(t, m.Reserve(1, ^uint64(0)), errno.EINVAL)

	// memblock is not a page_alloc fault site (fail_page_alloc covers the
	// buddy allocator only): an armed fault stays armed through it.
	noErr(t, in.Arm(fault.PageAlloc, 1, 1))
	_, err := m.PhysAlloc(PageSize, PageSize)
	noErr(t, err)
	if !in.Armed(fault.PageAlloc) {
		t.Fatal("memblock_phys_alloc consumed a page_alloc fault")
	}
}

func TestMemblockReadOnlyAfterFreeAll(t *testing.T) {
	mm := bootedMM(t, 1024)
	mb := mm.Memblock
	isTrue(t, mb.HandedOver(), "handed over")
	for name, err := range map[string]error{
		"add":     mb.Add(0, PageSize),
		"remove":  mb.Remove(0, PageSize),
		"reserve": mb.Reserve(0, PageSize),
		"free":    mb.PhysFree(0, PageSize),
		"noinit":  mb.ReservedMarkNoinit(0, PageSize),
		"scratch": mb.MarkKHOScratch(0, pbBytes),
	} {
		if err != errno.EINVAL {
			t.Errorf("%s after memblock_free_all: %v, want EINVAL", name, err)
		}
	}
	_, err := mb.PhysAlloc(PageSize, PageSize)
	wantErr(t, err, errno.EINVAL)
	wantErr(t, mm.MemblockFreeAll(), errno.EINVAL)
}

func TestMemblockCheckFindsBrokenRegions(t *testing.T) {
	mm := newTestMM(t, 1024, nil)
	noErr(t, mm.CheckInvariants())
	mm.Memblock.reserved.tree.ReplaceOrInsert(MemblockRegion{Base: 0x1000, Size: 0x2000})
	mm.Memblock.reserved.tree.ReplaceOrInsert(MemblockRegion{Base: 0x2000, Size: 0x2000})
	requireCheckFails(t, mm, invMemblockRegions)
}

// memblockModel is memblock at page granularity.
type memblockModel struct {
	memory, scratch, reserved []bool
	scratchOnly               bool
}

// alloc is memblock_phys_alloc's contract: the highest aligned range that
// lies in one memory region (a maximal run of memory with equal scratch
// flag), unreserved, above the first page, in scratch if scratch-only.
func (mm *memblockModel) alloc(pages, alignPages int) (int, bool) {
	n := len(mm.memory)
	for cand := (n - pages) / alignPages * alignPages; cand >= 1; cand -= alignPages {
		ok := true
		for i := cand; i < cand+pages && ok; i++ {
			ok = mm.memory[i] && !mm.reserved[i] && mm.scratch[i] == mm.scratch[cand] &&
				(!mm.scratchOnly || mm.scratch[i])
		}
		if ok {
			return cand, true
		}
	}
	return 0, false
}

func TestMemblockModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const n = 4 * PageblockNrPages // 8 MiB
		m := NewMemblock(n * PageSize)
		model := &memblockModel{memory: make([]bool, n), scratch: make([]bool, n), reserved: make([]bool, n)}
		pageRange := func(label string) (int, int) {
			start := rapid.IntRange(0, n-1).Draw(t, label+"_start")
			end := rapid.IntRange(start, min(n, start+PageblockNrPages*2)).Draw(t, label+"_end")
			return start, end
		}
		set := func(s []bool, a, b int, v bool) {
			for i := a; i < b; i++ {
				s[i] = v
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"add": func(t *rapid.T) {
				a, b := pageRange("add")
				noErr(t, m.Add(PFN(a).Phys(), uint64(b-a)*PageSize))
				for i := a; i < b; i++ {
					if !model.memory[i] {
						model.memory[i], model.scratch[i] = true, false
					}
				}
			},
			"remove": func(t *rapid.T) {
				a, b := pageRange("remove")
				noErr(t, m.Remove(PFN(a).Phys(), uint64(b-a)*PageSize))
				set(model.memory, a, b, false)
				set(model.scratch, a, b, false)
			},
			"reserve": func(t *rapid.T) {
				a, b := pageRange("reserve")
				noErr(t, m.Reserve(PFN(a).Phys(), uint64(b-a)*PageSize))
				set(model.reserved, a, b, true)
			},
			"free": func(t *rapid.T) {
				a, b := pageRange("free")
				noErr(t, m.PhysFree(PFN(a).Phys(), uint64(b-a)*PageSize))
				set(model.reserved, a, b, false)
			},
			"scratch": func(t *rapid.T) {
				pb := rapid.IntRange(0, n/PageblockNrPages-1).Draw(t, "pb")
				on := rapid.Bool().Draw(t, "on")
				a, b := pb*PageblockNrPages, (pb+1)*PageblockNrPages
				if on {
					noErr(t, m.MarkKHOScratch(PFN(a).Phys(), pbBytes))
				} else {
					noErr(t, m.ClearKHOScratch(PFN(a).Phys(), pbBytes))
				}
				for i := a; i < b; i++ {
					model.scratch[i] = on && model.memory[i]
				}
			},
			"scratch_only": func(t *rapid.T) {
				model.scratchOnly = rapid.Bool().Draw(t, "scratch_only")
				if model.scratchOnly {
					m.SetKHOScratchOnly()
				} else {
					m.ClearKHOScratchOnly()
				}
			},
			"alloc": func(t *rapid.T) {
				pages := rapid.IntRange(1, 64).Draw(t, "pages")
				align := 1 << rapid.IntRange(0, 9).Draw(t, "align_order")
				got, err := m.PhysAlloc(uint64(pages)*PageSize, uint64(align)*PageSize)
				want, ok := model.alloc(pages, align)
				if !ok {
					wantErr(t, err, errno.ENOMEM)
					return
				}
				noErr(t, err)
				eq(t, got, PFN(want).Phys(), "memblock_phys_alloc(%d pages, align %d)", pages, align)
				set(model.reserved, want, want+pages, true)
			},
			"": func(t *rapid.T) {
				noErr(t, m.check())
				mem, scr, rsv := make([]bool, n), make([]bool, n), make([]bool, n)
				for r := range m.Memory() {
					set(mem, int(r.Base.PFN()), int(r.End().PFN()), true)
					set(scr, int(r.Base.PFN()), int(r.End().PFN()), r.Flags&MemblockKHOScratch != 0)
				}
				for r := range m.Reserved() {
					set(rsv, int(r.Base.PFN()), int(r.End().PFN()), true)
				}
				isTrue(t, slices.Equal(mem, model.memory), "memory differs from the model")
				isTrue(t, slices.Equal(scr, model.scratch), "scratch differs from the model")
				isTrue(t, slices.Equal(rsv, model.reserved), "reserved differs from the model")
				i := rapid.IntRange(0, n-1).Draw(t, "probe")
				a := PFN(i).Phys()
				eq(t, m.IsRegionMemory(a, PageSize), model.memory[i], "memory at page %d", i)
				eq(t, m.IsKHOScratch(a, PageSize), model.scratch[i], "scratch at page %d", i)
				eq(t, m.IsRegionReserved(a, PageSize), model.reserved[i], "reserved at page %d", i)
				var free []bool = make([]bool, n)
				for r := range m.FreeRanges() {
					set(free, int(r.Base.PFN()), int(r.End().PFN()), true)
				}
				for i := range n {
					eq(t, free[i], model.memory[i] && !model.reserved[i], "page %d in a free range", i)
				}
			},
		})
	})
}
