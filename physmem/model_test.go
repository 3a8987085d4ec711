package physmem

import (
	"bytes"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
)

// allocModel is the buddy allocator's contract, with no buddies: which
// frames are free, which pageblocks are scratch, which folios are
// allocated with how many references.
type allocModel struct {
	free     []bool // in the allocator
	reserved []bool // PG_reserved
	cma      []bool // in a MIGRATE_CMA pageblock
	folios   map[PFN]*modelFolio
}

type modelFolio struct {
	order uint
	refs  int32
}

// fits reports whether some naturally aligned run of 2^order free frames
// lies wholly in pageblocks of one kind: with complete coalescing, exactly
// when the allocator must be able to serve the order from that kind.
func (m *allocModel) fits(order uint, cma bool) bool {
	size := 1 << order
	for start := 0; start+size <= len(m.free); start += size {
		ok := true
		for i := start; i < start+size && ok; i++ {
			ok = m.free[i] && m.cma[i] == cma
		}
		if ok {
			return true
		}
	}
	return false
}

func (m *allocModel) heads() []PFN {
	var hs []PFN
	for pfn := range m.folios {
		hs = append(hs, pfn)
	}
	slices.Sort(hs)
	return hs
}

func count(bs []bool, also []bool) uint64 {
	var n uint64
	for i, b := range bs {
		if b && (also == nil || also[i]) {
			n++
		}
	}
	return n
}

// bootModelMachine draws a machine: its size, holes, reserved byte ranges
// and scratch pageblocks; boots it and the model of it.
func bootModelMachine(t *rapid.T, in *fault.Injector) (*MM, *allocModel) {
	n := rapid.IntRange(PageblockNrPages+1, 6*PageblockNrPages+3).Draw(t, "frames")
	f, err := NewFrames(uint64(n) * PageSize)
	noErr(t, err)
	t.Cleanup(func() { f.Close() })
	mm, err := NewMM(f, in)
	noErr(t, err)
	t.Cleanup(func() { mm.Close() })
	size := uint64(n) * PageSize
	m := &allocModel{free: make([]bool, n), reserved: make([]bool, n), cma: make([]bool, n), folios: map[PFN]*modelFolio{}}

	inMemory := make([]bool, n)
	for i := range inMemory {
		inMemory[i] = true
	}
	if rapid.Bool().Draw(t, "hole") {
		a := rapid.Uint64Range(0, size-1).Draw(t, "hole_start")
		l := rapid.Uint64Range(1, min(size-a, 64*PageSize)).Draw(t, "hole_len")
		noErr(t, mm.Memblock.Remove(PhysAddr(a), l))
		for i := a / PageSize; i < (a+l+PageSize-1)/PageSize; i++ {
			inMemory[i] = false
		}
	}
	for pb := range n / PageblockNrPages {
		if rapid.Bool().Draw(t, "scratch") {
			noErr(t, mm.Memblock.MarkKHOScratch(PFN(pb*PageblockNrPages).Phys(), pbBytes))
			for i := pb * PageblockNrPages; i < (pb+1)*PageblockNrPages; i++ {
				m.cma[i] = true
			}
		}
	}
	for range rapid.IntRange(0, 3).Draw(t, "reservations") {
		a := rapid.Uint64Range(0, size-1).Draw(t, "reserve_start")
		l := rapid.Uint64Range(1, min(size-a, 40*PageSize)).Draw(t, "reserve_len")
		noErr(t, mm.Memblock.Reserve(PhysAddr(a), l))
		for i := a / PageSize; i < (a+l+PageSize-1)/PageSize; i++ {
			m.reserved[i] = true
		}
	}
	if rapid.Bool().Draw(t, "deferred") {
		// CONFIG_DEFERRED_STRUCT_PAGE_INIT with sections small enough
		// that this machine defers most of its memory.
		mm.sectionPages = PFN(1) << rapid.IntRange(0, 11).Draw(t, "section_order")
		noErr(t, mm.SetDeferredStructPageInit(true))
	}
	noErr(t, mm.MemblockFreeAll())
	for i := range n {
		if !inMemory[i] {
			m.reserved[i] = true
		}
		m.free[i] = !m.reserved[i]
	}
	return mm, m
}

// TestBuddyModel runs random operations against allocModel. The model
// knows nothing of the per-CPU lists: pages on them are free, and because
// AllocPages drains the lists and retries before it falls back to scratch
// or fails, placement (normal memory unless none fits) and ENOMEM (exactly
// when no aligned free run exists) are as if every free page sat on the
// fully coalesced buddy lists. pcp->high and ->batch are drawn, as the
// percpu_pagelist_high_fraction sysctl would change them, so that spills,
// refills and drains happen at every size.
func TestBuddyModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := fault.New()
		mm, m := bootModelMachine(t, in)
		mm.Zone.pcp.batch = rapid.IntRange(1, 16).Draw(t, "pcp_batch")
		mm.Zone.pcp.high = rapid.IntRange(0, 64).Draw(t, "pcp_high")
		gfps := []GFP{GFPKernel, GFPKernel | GFPZero, GFPHighUserMovable, GFPHighUserMovable | GFPZero}

		t.Repeat(map[string]func(*rapid.T){
			"alloc": func(t *rapid.T) {
				gfp := rapid.SampledFrom(gfps).Draw(t, "gfp")
				order := uint(rapid.IntRange(0, MaxPageOrder).Draw(t, "order"))
				pfn, err := mm.AllocPages(gfp, order)
				wantCMA := false
				if !m.fits(order, false) {
					if gfp&GFPMovable == 0 || !m.fits(order, true) {
						wantErr(t, err, errno.ENOMEM)
						return
					}
					wantCMA = true
				}
				noErr(t, err)
				nr := PFN(1) << order
				eq(t, pfn%nr, PFN(0), "block aligned")
				for i := pfn; i < pfn+nr; i++ {
					isTrue(t, m.free[i], "%v allocated but not free", i)
					eq(t, m.cma[i], wantCMA, "%v in scratch (%v, order %d)", i, gfp, order)
					m.free[i] = false
				}
				if gfp&GFPZero != 0 {
					isTrue(t, bytes.Equal(mm.Frames.Span(pfn, uint64(nr)), make([]byte, nr*PageSize)), "__GFP_ZERO")
				}
				for i := pfn; i < pfn+nr; i++ { // dirty it for the next __GFP_ZERO
					mm.Frames.Frame(i)[i%PageSize] = 0xA5
				}
				m.folios[pfn] = &modelFolio{order: order, refs: 1}
			},
			"alloc_fault": func(t *rapid.T) {
				noErr(t, in.Arm(fault.PageAlloc, 1, 1))
				free, pcp := mm.Zone.NrFreePages(), mm.Zone.PcpCount()
				_, err := mm.AllocPages(rapid.SampledFrom(gfps).Draw(t, "gfp"), 0)
				wantErr(t, err, errno.ENOMEM)
				eq(t, mm.Zone.NrFreePages(), free, "failed allocation took frames")
				eq(t, mm.Zone.PcpCount(), pcp, "injected failure touched the per-CPU lists")
			},
			"drain": func(t *rapid.T) {
				free := mm.Zone.NrFreePages()
				mm.DrainAllPages()
				eq(t, mm.Zone.PcpCount(), uint64(0), "pcp->count after drain_all_pages")
				eq(t, mm.Zone.NrFreePages(), free, "drain changed the free pages")
				if mm.DeferredPages() != 0 {
					return // free memory not on the lists yet
				}
				for order := range uint(MaxPageOrder + 1) { // fully coalesced: the buddy lists alone serve every fit
					for _, cma := range []bool{false, true} {
						mt := MigrateMovable
						if cma {
							mt = MigrateCMA
						}
						has := false
						for o := order; o <= MaxPageOrder && !has; o++ {
							has = mm.Zone.NrFreeList(o, mt) > 0
						}
						eq(t, has, m.fits(order, cma), "after drain, a %v block of order >= %d", mt, order)
					}
				}
			},
			"get": func(t *rapid.T) {
				if len(m.folios) == 0 {
					t.Skip("nothing allocated")
				}
				pfn := rapid.SampledFrom(m.heads()).Draw(t, "folio")
				tail := PFN(rapid.IntRange(0, 1<<m.folios[pfn].order-1).Draw(t, "page"))
				mm.GetPage(pfn + tail)
				m.folios[pfn].refs++
			},
			"put": func(t *rapid.T) {
				if len(m.folios) == 0 {
					t.Skip("nothing allocated")
				}
				pfn := rapid.SampledFrom(m.heads()).Draw(t, "folio")
				mf := m.folios[pfn]
				if rapid.Bool().Draw(t, "free_pages") {
					mm.FreePages(pfn, mf.order)
				} else {
					mm.FolioPut(Folio(pfn))
				}
				if mf.refs--; mf.refs == 0 {
					for i := pfn; i < pfn+1<<mf.order; i++ {
						m.free[i] = true
					}
					delete(m.folios, pfn)
				}
			},
			"split": func(t *rapid.T) {
				var large []PFN
				for _, pfn := range m.heads() {
					if m.folios[pfn].order > 0 {
						large = append(large, pfn)
					}
				}
				if len(large) == 0 {
					t.Skip("no large folio")
				}
				pfn := rapid.SampledFrom(large).Draw(t, "folio")
				headRefs := rapid.Int32Range(1, 3).Draw(t, "head_refs")
				tailRefs := rapid.Int32Range(1, 3).Draw(t, "tail_refs")
				noErr(t, mm.SplitFolio(Folio(pfn), headRefs, tailRefs))
				order := m.folios[pfn].order
				m.folios[pfn] = &modelFolio{refs: headRefs}
				for i := pfn + 1; i < pfn+1<<order; i++ {
					m.folios[i] = &modelFolio{refs: tailRefs}
				}
			},
			"free_reserved": func(t *rapid.T) {
				var rsv []PFN
				for i, r := range m.reserved {
					if r {
						rsv = append(rsv, PFN(i))
					}
				}
				if len(rsv) == 0 {
					t.Skip("nothing reserved")
				}
				pfn := rapid.SampledFrom(rsv).Draw(t, "reserved")
				noErr(t, mm.FreeReservedPages(pfn, 1))
				m.reserved[pfn], m.free[pfn] = false, true
			},
			"": func(t *rapid.T) {
				noErr(t, mm.CheckInvariants())
				eq(t, mm.Zone.NrFreePages(), count(m.free, nil), "NR_FREE_PAGES")
				eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), count(m.free, m.cma), "NR_FREE_CMA_PAGES")
				var allocated uint64
				for pfn, mf := range m.folios {
					allocated += 1 << mf.order
					eq(t, mm.FolioRefCount(Folio(pfn)), mf.refs, "refcount of %v", pfn)
					eq(t, mm.FolioOrder(Folio(pfn)), mf.order, "order of %v", pfn)
				}
				eq(t, mm.Zone.ManagedPages(), count(m.free, nil)+allocated, "managed pages")
				for pfn := range m.free {
					eq(t, mm.PageIsFree(PFN(pfn)), m.free[pfn], "PageIsFree(%v)", PFN(pfn))
				}
			},
		})
	})
}
