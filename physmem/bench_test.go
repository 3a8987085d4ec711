package physmem

import (
	"testing"
	"unsafe"
)

// benchMM boots a 1 GiB machine.
func benchMM(b *testing.B) *MM {
	b.Helper()
	mm := bootedMM(b, 1<<18)
	b.ReportAllocs()
	return mm
}

// fragment allocates every frame at order 0 and frees every other one, so
// that the order-0 free lists are populated and buddies are busy: the
// steady state of a running machine. The per-CPU lists hold up to high of
// the freed pages; the rest went back to the buddy lists in batches.
func fragment(b *testing.B, mm *MM) {
	b.Helper()
	var pfns []PFN
	for {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			break
		}
		pfns = append(pfns, pfn)
	}
	for _, pfn := range pfns {
		if pfn%2 == 0 {
			mm.FreePages(pfn, 0)
		}
	}
	noErr(b, mm.CheckInvariants())
}

// BenchmarkAllocFreeOrder0 allocates and frees one page on a fragmented
// machine: the common case.
func BenchmarkAllocFreeOrder0(b *testing.B) {
	mm := benchMM(b)
	fragment(b, mm)
	b.ResetTimer()
	for b.Loop() {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			b.Fatal(err)
		}
		mm.FreePages(pfn, 0)
	}
}

// BenchmarkAllocFreeOrder0Split allocates and frees one page on a freshly
// booted machine. Without per-CPU lists every allocation would split an
// order-10 block and every free merge it back; with them the first
// allocation takes a batch (rmqueue_bulk) and the page then cycles through
// the per-CPU list.
func BenchmarkAllocFreeOrder0Split(b *testing.B) {
	mm := benchMM(b)
	for b.Loop() {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		if err != nil {
			b.Fatal(err)
		}
		mm.FreePages(pfn, 0)
	}
}

// BenchmarkAllocFreeOrder0Burst allocates 1024 pages and frees them again,
// so that the per-CPU list refills (rmqueue_bulk) and spills
// (free_pcppages_bulk) every batch pages; ns/op is per page allocated and
// freed.
func BenchmarkAllocFreeOrder0Burst(b *testing.B) {
	mm := benchMM(b)
	pfns := make([]PFN, 1024)
	for b.Loop() {
		for i := range pfns {
			pfn, err := mm.AllocPages(GFPKernel, 0)
			if err != nil {
				b.Fatal(err)
			}
			pfns[i] = pfn
		}
		for _, pfn := range pfns {
			mm.FreePages(pfn, 0)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pfns)), "ns/page")
}

// BenchmarkAllocFreeOrder9 allocates and frees a PMD-sized folio (512
// struct pages to prepare and check).
func BenchmarkAllocFreeOrder9(b *testing.B) {
	mm := benchMM(b)
	for b.Loop() {
		f, err := mm.FolioAlloc(GFPHighUserMovable, HPageOrder)
		if err != nil {
			b.Fatal(err)
		}
		mm.FolioPut(f)
	}
}

// BenchmarkMemmapBytesPerFrame reports the memmap's cost per 4 KiB frame.
func BenchmarkMemmapBytesPerFrame(b *testing.B) {
	mm := benchMM(b)
	for b.Loop() {
		_ = mm.Page(PFN(b.N) % PFN(mm.Memmap.NumPages()))
	}
	b.ReportMetric(float64(mm.Memmap.Bytes())/float64(mm.Memmap.NumPages()), "memmap-bytes/frame")
	b.ReportMetric(float64(unsafe.Sizeof(Page{})), "sizeof(Page)")
}

// BenchmarkCheckInvariants1GiB checks a fragmented 1 GiB machine.
func BenchmarkCheckInvariants1GiB(b *testing.B) {
	mm := benchMM(b)
	fragment(b, mm)
	b.ResetTimer()
	for b.Loop() {
		if err := mm.CheckInvariants(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKmemCacheAllocFree allocates and frees one 576-byte object
// (a radix_tree_node) of a cache with a partial slab: the slab fast path.
func BenchmarkKmemCacheAllocFree(b *testing.B) {
	mm := benchMM(b)
	c, err := mm.KmemCacheCreate("radix_tree_node", 576)
	noErr(b, err)
	keep, err := c.Alloc() // the slab stays partial
	noErr(b, err)
	for b.Loop() {
		o, err := c.Alloc()
		if err != nil {
			b.Fatal(err)
		}
		c.Free(o)
	}
	c.Free(keep)
}

// BenchmarkKmemCacheChurn allocates 2^16 objects and frees them in
// another order, the pattern of page-cache nodes in a sparse tree: slabs
// are made, filled, emptied and freed. ns/op is per object.
func BenchmarkKmemCacheChurn(b *testing.B) {
	mm := benchMM(b)
	c, err := mm.KmemCacheCreate("radix_tree_node", 576)
	noErr(b, err)
	objs := make([]SlabObj, 1<<16)
	for b.Loop() {
		for i := range objs {
			o, err := c.Alloc()
			if err != nil {
				b.Fatal(err)
			}
			objs[i] = o
		}
		for i := range objs {
			c.Free(objs[(i*40503)&(len(objs)-1)])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(objs)), "ns/object")
}
