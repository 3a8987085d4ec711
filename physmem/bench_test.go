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
// steady state of a running machine, where most order-0 requests are served
// without splitting (Linux serves them from the per-CPU lists).
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
// booted machine: every allocation splits an order-10 block and every free
// merges it back, the worst case.
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
