package pagecache

import (
	"testing"

	"khosim/physmem"
)

// BenchmarkAddFolioSequential inserts 2^20 order-0 folios at ascending
// indices into an empty mapping, as a KHO restore does (ns per folio).
func BenchmarkAddFolioSequential(b *testing.B) {
	c := benchNodeCache(b)
	for range b.N {
		b.StopTimer()
		a, _ := NewAddressSpace(1)
		a.SetNodeCache(c)
		b.StartTimer()
		for i := range uint64(benchN) {
			if _, err := a.AddFolio(physmem.PFN(i+1<<20), i, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		release(&a.iPages)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchN), "ns/folio")
}

// BenchmarkDeleteFolioSequential deletes 2^20 order-0 folios at ascending
// indices, as a truncation does (ns per folio).
func BenchmarkDeleteFolioSequential(b *testing.B) {
	c := benchNodeCache(b)
	for range b.N {
		b.StopTimer()
		a, _ := NewAddressSpace(1)
		a.SetNodeCache(c)
		for i := range uint64(benchN) {
			_, _ = a.AddFolio(physmem.PFN(i+1<<20), i, 0)
		}
		b.StartTimer()
		for i := range uint64(benchN) {
			if err := a.DeleteFolio(physmem.PFN(i+1<<20), i, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchN), "ns/folio")
}

// BenchmarkRangeSequential iterates over 2^20 order-0 folios.
func BenchmarkRangeSequential(b *testing.B) {
	a, _ := NewAddressSpace(1)
	a.SetNodeCache(benchNodeCache(b))
	for i := range uint64(benchN) {
		_, _ = a.AddFolio(physmem.PFN(i+1<<20), i, 0)
	}
	b.ResetTimer()
	n := 0
	for range b.N {
		for range a.Range(0, ^uint64(0)) {
			n++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchN), "ns/folio")
}
