package physmem

import (
	"bytes"
	"testing"

	"khosim/errno"
	"khosim/fault"
)

func TestAllocPagesMakesFolios(t *testing.T) {
	mm := bootedMM(t, 2048)
	for order := range uint(MaxPageOrder + 1) {
		pfn, err := mm.AllocPages(GFPKernel, order)
		noErr(t, err)
		f := Folio(pfn)
		eq(t, uint64(pfn)%(1<<order), uint64(0), "order-%d block aligned", order)
		eq(t, mm.FolioRefCount(f), int32(1), "refcount")
		eq(t, mm.FolioOrder(f), order, "folio_order")
		eq(t, mm.FolioNrPages(f), uint64(1)<<order, "folio_nr_pages")
		eq(t, mm.FolioTestLarge(f), order > 0, "folio_test_large")
		eq(t, mm.Page(pfn).Test(PGHead), order > 0, "PG_head")
		for i := PFN(1); i < 1<<order; i++ {
			isTrue(t, mm.Page(pfn+i).Test(PGTail), "PG_tail on page %d", i)
			eq(t, mm.PageFolio(pfn+i), f, "page_folio of page %d", i)
		}
		eq(t, mm.PageFolio(pfn), f, "page_folio of the head")
		noErr(t, mm.CheckInvariants())
		mm.FreePages(pfn, order)
		noErr(t, mm.CheckInvariants())
	}
	mm.DrainAllPages()
	eq(t, mm.Zone.NrFree(MaxPageOrder), uint64(2), "all merged back")
}

func TestAllocPagesErrors(t *testing.T) {
	in := fault.New()
	mm := newTestMM(t, 1024, in)
	noErr(t, mm.MemblockFreeAll())

	_, err := mm.AllocPages(GFPKernel, MaxPageOrder+1)
	wantErr(t, err, errno.EINVAL)
	_, err = mm.AllocPages(1<<20, 0)
	wantErr(t, err, errno.EINVAL)

	noErr(t, in.Arm(fault.PageAlloc, 2, 1))
	_, err = mm.AllocPages(GFPKernel, 0) // the first hit passes
	noErr(t, err)
	_, err = mm.AllocPages(GFPKernel, 0)
	wantErr(t, err, errno.ENOMEM)
	eq(t, in.Fired(fault.PageAlloc), 1, "fault fired")
	eq(t, mm.Zone.NrFreePages(), uint64(1023), "failed allocation took pages")
	noErr(t, mm.CheckInvariants())

	_, err = mm.AllocPages(GFPKernel, MaxPageOrder)
	wantErr(t, err, errno.ENOMEM)
	for range 1023 {
		_, err := mm.AllocPages(GFPKernel, 0)
		noErr(t, err)
	}
	_, err = mm.AllocPages(GFPHighUserMovable, 0)
	wantErr(t, err, errno.ENOMEM)
	noErr(t, mm.CheckInvariants())
}

// TestScratchHoldsOnlyMovable: unmovable allocations never come from KHO
// scratch; movable ones prefer normal memory and fall back to it.
func TestScratchHoldsOnlyMovable(t *testing.T) {
	mm := newTestMM(t, 2048, nil)
	noErr(t, mm.Memblock.MarkKHOScratch(0, 2*pbBytes)) // first 1024 frames
	noErr(t, mm.MemblockFreeAll())
	inScratch := func(pfn PFN) bool { return pfn < 1024 }

	var kernel []PFN
	for {
		pfn, err := mm.AllocPages(GFPKernel, 3)
		if err != nil {
			wantErr(t, err, errno.ENOMEM)
			break
		}
		isTrue(t, !inScratch(pfn), "GFP_KERNEL got scratch %v", pfn)
		kernel = append(kernel, pfn)
	}
	eq(t, len(kernel), 1024/8, "unmovable allocations")
	eq(t, mm.Zone.NrFreePagesOf(MigrateCMA), uint64(1024), "scratch untouched")

	f, err := mm.FolioAlloc(GFPHighUserMovable, 4)
	noErr(t, err)
	isTrue(t, inScratch(PFN(f)), "movable fallback to scratch")
	mm.FreePages(kernel[0], 3)
	g, err := mm.FolioAlloc(GFPHighUserMovable, 0)
	noErr(t, err)
	isTrue(t, !inScratch(PFN(g)), "movable prefers normal memory")
	noErr(t, mm.CheckInvariants())
}

func TestGFPZero(t *testing.T) {
	mm := bootedMM(t, 2048)
	mm.Frames.Fill(0, 2048, 0xdeadbeef)
	pfn, err := mm.AllocPages(GFPKernel, 2)
	noErr(t, err)
	isTrue(t, !bytes.Equal(mm.Frames.Span(pfn, 4), make([]byte, 4*PageSize)), "no __GFP_ZERO: contents kept")
	for _, order := range []uint{0, 3, HPageOrder} {
		pfn, err := mm.AllocPages(GFPKernel|GFPZero, order)
		noErr(t, err)
		isTrue(t, bytes.Equal(mm.Frames.Span(pfn, 1<<order), make([]byte, PageSize<<order)), "order %d not zeroed", order)
	}
}

// TestBuddyMergesCompletely allocates every frame singly and frees them in
// a scrambled order: the allocator must end as it began.
func TestBuddyMergesCompletely(t *testing.T) {
	const n = 3*1024 + 517 // not a multiple of any large order
	mm := bootedMM(t, n)
	before := mm.Zone.String()
	var pfns []PFN
	for {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			break
		}
		pfns = append(pfns, pfn)
	}
	eq(t, len(pfns), n, "frames allocated")
	noErr(t, mm.CheckInvariants())
	for i := range pfns { // a fixed permutation: stride coprime with n
		mm.FreePages(pfns[(i*7919)%n], 0)
	}
	noErr(t, mm.CheckInvariants())
	mm.DrainAllPages()
	noErr(t, mm.CheckInvariants())
	eq(t, mm.Zone.String(), before, "free lists after freeing everything")
}

// TestNoMergeBeyondZone: a machine whose size is not a multiple of the
// largest block never forms a block that runs past its last frame.
func TestNoMergeBeyondZone(t *testing.T) {
	mm := bootedMM(t, 1024+512+1)
	eq(t, mm.Zone.NrFree(MaxPageOrder), uint64(1), "order 10")
	eq(t, mm.Zone.NrFree(PageblockOrder), uint64(1), "order 9")
	eq(t, mm.Zone.NrFree(0), uint64(1), "order 0")
	pfn, err := mm.AllocPages(GFPKernel, 0)
	noErr(t, err)
	eq(t, pfn, PFN(1536), "the lone last frame")
	mm.FreePages(pfn, 0)
	mm.DrainAllPages()
	eq(t, mm.Zone.NrFree(0), uint64(1), "last frame did not merge past the end")
	noErr(t, mm.CheckInvariants())
}

func TestZoneString(t *testing.T) {
	mm := newTestMM(t, 2048, nil)
	noErr(t, mm.Memblock.MarkKHOScratch(0, pbBytes))
	noErr(t, mm.MemblockFreeAll())
	eq(t, mm.Zone.String(), "Normal: 0*4kB 0*8kB 0*16kB 0*32kB 0*64kB 0*128kB 0*256kB 0*512kB 0*1024kB 2*2048kB (MC) 1*4096kB (M) = 8192kB (cma 2048kB, managed 8192kB) pcp count:0 high:4 batch:1", "show_free_areas")
	eq(t, (GFPKernel | GFPZero).String(), "__GFP_ZERO", "gfp string")
	eq(t, GFPKernel.String(), "GFP_KERNEL", "gfp string")
}
