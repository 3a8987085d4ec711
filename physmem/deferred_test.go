package physmem

import (
	"syscall"
	"testing"
	"unsafe"

	"khosim/errno"
)

// memmapResident returns the bytes of the memmap the host has committed
// (mincore).
func memmapResident(t *testing.T, mm *MM) uint64 {
	t.Helper()
	b := mm.Memmap.mem
	hp := syscall.Getpagesize()
	vec := make([]byte, (len(b)+hp-1)/hp)
	_, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	var n uint64
	for _, v := range vec {
		n += uint64(v & 1)
	}
	return n * uint64(hp)
}

// bootDeferred boots a machine of size bytes with 16 MiB reserved at 0,
// deferring struct page initialisation or not, and checks it.
func bootDeferred(t *testing.T, size uint64, deferred bool) *MM {
	t.Helper()
	mm := bootDeferredUnchecked(t, size, deferred)
	noErr(t, mm.CheckInvariants())
	return mm
}

// bootDeferredUnchecked is bootDeferred without the check, which reads
// (and so maps) the whole memmap.
func bootDeferredUnchecked(t *testing.T, size uint64, deferred bool) *MM {
	t.Helper()
	mm := newTestMM(t, size/PageSize, nil)
	noErr(t, mm.Memblock.Reserve(0, 16<<20))
	noErr(t, mm.SetDeferredStructPageInit(deferred))
	noErr(t, mm.MemblockFreeAll())
	return mm
}

// TestDeferredStructPageInit boots an 8 GiB machine with deferral:
// ZONE_DMA32 and the first section of ZONE_NORMAL are initialised, the
// rest is free but uninitialised, refused by Page, and initialised a
// section at a time as allocations need it; every free frame can be
// allocated, as without deferral.
func TestDeferredStructPageInit(t *testing.T) {
	const size = 8 << 30
	plain := bootDeferred(t, size, false)
	mm := bootDeferred(t, size, true)
	wantFirst := zoneDMA32End + PagesPerSection
	eq(t, mm.Memmap.limit, wantFirst, "first_deferred_pfn")
	eq(t, mm.DeferredPages(), uint64(size/PageSize)-uint64(wantFirst), "deferred frames")
	eq(t, mm.Zone.NrFreePages(), plain.Zone.NrFreePages(), "NR_FREE_PAGES as after page_alloc_init_late")
	eq(t, mm.Zone.ManagedPages(), plain.Zone.ManagedPages(), "managed pages")

	pfn := wantFirst + 12345
	isTrue(t, !mm.PageInitialised(pfn), "deferred frame initialised")
	isTrue(t, mm.PageIsFree(pfn), "deferred frame not free")
	order, free := mm.FreeBlockAt(wantFirst)
	isTrue(t, free && order == MaxPageOrder, "FreeBlockAt(first deferred) = %d, %v", order, free)
	requireViolation(t, invPageInit, func() { mm.Page(pfn) })
	requireViolation(t, invPagePoisoned, func() { mm.Memmap.Page(pfn).Flags() })

	// Take every free frame in 2 MiB folios: deferral grows the zone a
	// section at a time, from the lowest deferred frame up.
	var got, want int
	for {
		if _, err := mm.AllocPages(GFPKernel, PageblockOrder); err != nil {
			wantErr(t, err, errno.ENOMEM)
			break
		}
		got++
		if got == 2200 { // 4.3 GiB: beyond the early-boot part
			isTrue(t, mm.DeferredPages() > 0 && mm.Memmap.limit > wantFirst, "grown a section at a time: limit %v", mm.Memmap.limit)
			noErr(t, mm.CheckInvariants())
		}
	}
	for {
		if _, err := plain.AllocPages(GFPKernel, PageblockOrder); err != nil {
			break
		}
		want++
	}
	eq(t, got, want, "2 MiB folios allocated")
	eq(t, mm.DeferredPages(), uint64(0), "deferred frames left")
	eq(t, mm.Memmap.limit, PFN(mm.Memmap.NumPages()), "limit once all is initialised")
	noErr(t, mm.CheckInvariants())
	isTrue(t, mm.PageInitialised(pfn), "grown frame not initialised")
}

// TestDeferredCheck corrupts the record of deferred frames.
func TestDeferredCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(mm *MM)
	}{
		{"count", func(mm *MM) { mm.Zone.deferred++ }},
		{"limit", func(mm *MM) { mm.Memmap.limit++ }},
		{"overlaps reserved", func(mm *MM) {
			mm.Memmap.deferred[0].start = 0
			mm.Zone.deferred += uint64(mm.Memmap.limit)
			mm.Memmap.relimit()
		}},
		{"unsorted", func(mm *MM) {
			r := mm.Memmap.deferred[0]
			mm.Memmap.deferred = []pfnRange{{r.start + 64, r.end}, {r.start, r.start + 64}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := bootDeferred(t, 8<<30, true)
			tc.corrupt(mm)
			requireCheckFails(t, mm, invDeferred)
		})
	}
}

// TestDeferredHostCost boots a 256 GiB machine with and without deferral
// and compares the memmap the host commits: with deferral only the
// early-boot part is written (the point of
// CONFIG_DEFERRED_STRUCT_PAGE_INIT for khosim: a memmap nobody touches
// costs the host nothing).
func TestDeferredHostCost(t *testing.T) {
	if testing.Short() {
		t.Skip("256 GiB memmaps")
	}
	const size = 256 << 30
	deferred := memmapResident(t, bootDeferredUnchecked(t, size, true))
	plain := memmapResident(t, bootDeferredUnchecked(t, size, false))
	t.Logf("memmap committed at boot: %d KiB deferred, %d KiB not", deferred>>10, plain>>10)
	isTrue(t, deferred <= 16<<20, "deferred boot committed %d KiB of memmap", deferred>>10)
	isTrue(t, deferred*10 < plain, "deferral saved too little: %d vs %d KiB", deferred>>10, plain>>10)
}

// TestDeferredSetAfterBoot: the build is fixed once memblock_free_all ran.
func TestDeferredSetAfterBoot(t *testing.T) {
	mm := bootedMM(t, 1024)
	wantErr(t, mm.SetDeferredStructPageInit(true), errno.EINVAL)
}
