package physmem

import "testing"

// BenchmarkKexecBoot4GiB boots kernel after kernel over one 4 GiB machine
// (a 40 MiB memmap), each handing the next 2 GiB of order-9 folios: the
// next kernel recycles the memmap (newMemmap), reserves the folios
// MEMBLOCK_RSRV_NOINIT (a run of contiguous ones at once, as kexec's
// reserveRuns does), runs memblock_free_all and restores every folio
// (RestoreFolio), then closes. ns/op is one such boot; boot-ns/op the
// part up to and including memblock_free_all.
func BenchmarkKexecBoot4GiB(b *testing.B) {
	const nframes = 1 << 20
	const nr = 1 << HPageOrder
	frames := newTestFrames(b, nframes)
	mm, err := NewMM(frames, nil)
	noErr(b, err)
	noErr(b, mm.MemblockFreeAll())
	var folios []PFN
	for range nframes / 2 / nr {
		f, err := mm.FolioAlloc(GFPHighUserMovable, HPageOrder)
		noErr(b, err)
		folios = append(folios, f.PFN())
	}
	var runs []pfnRange // contiguous folios
	for _, pfn := range folios {
		if k := len(runs) - 1; k >= 0 && runs[k].end == pfn {
			runs[k].end += nr
		} else {
			runs = append(runs, pfnRange{pfn, pfn + nr})
		}
	}
	noErr(b, mm.Close())
	var bootNs int64
	b.ReportAllocs()
	for b.Loop() {
		start := b.Elapsed()
		mm, err := NewMM(frames, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range runs {
			base, size := r.start.Phys(), uint64(r.end-r.start)*PageSize
			if mm.Memblock.Reserve(base, size) != nil || mm.Memblock.ReservedMarkNoinit(base, size) != nil {
				b.Fatal("reserve")
			}
		}
		if err := mm.MemblockFreeAll(); err != nil {
			b.Fatal(err)
		}
		bootNs += int64(b.Elapsed() - start)
		for _, pfn := range folios {
			if _, err := mm.RestoreFolio(pfn, HPageOrder); err != nil {
				b.Fatal(err)
			}
		}
		if err := mm.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bootNs)/float64(b.N), "boot-ns/op")
	b.ReportMetric(float64(len(runs)), "runs")
}
