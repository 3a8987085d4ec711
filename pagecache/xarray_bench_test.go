package pagecache

import (
	"math/rand/v2"
	"testing"

	"khosim/physmem"
)

const benchN = 1 << 20 // a 4 GiB file of order-0 folios

// benchNodeCache returns a radix_tree_node cache on a 1 GiB machine of
// its own: the benchmarks charge every node, as a kernel's page cache
// does, so that they measure the slab seam too.
func benchNodeCache(b *testing.B) *physmem.KmemCache {
	b.Helper()
	_, c := nodeCache(&benchTB{b}, nil)
	return c
}

// benchTB gives nodeCache a 1 GiB machine instead of 64 MiB.
type benchTB struct{ *testing.B }

// release empties xa (untimed by the caller), giving its node objects
// back.
func release(xa *XArray) {
	for f := range xa.All() {
		xa.Erase(f.Index)
	}
}

// benchIndices returns n indices: 0..n-1 shuffled (dense) or random
// 40-bit ones (sparse), from a fixed seed.
func benchIndices(n int, dense bool) []uint64 {
	rng := rand.New(rand.NewPCG(1, 2))
	idx := make([]uint64, n)
	for i := range idx {
		if dense {
			idx[i] = uint64(i)
		} else {
			idx[i] = rng.Uint64() & (1<<40 - 1)
		}
	}
	rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	return idx
}

func filled(b *testing.B, c *physmem.KmemCache, idx []uint64) *XArray {
	xa := &XArray{}
	if c == nil {
		c = benchNodeCache(b)
	}
	xa.SetNodeCache(c)
	for _, i := range idx {
		if _, err := xa.Store(i, folio(i&0xffffff), 0); err != nil {
			b.Fatal(err)
		}
	}
	return xa
}

func benchLoad(b *testing.B, idx []uint64) {
	xa := filled(b, nil, idx)
	mask := len(idx) - 1
	var sink Entry
	b.ResetTimer()
	for i := range b.N {
		sink ^= xa.Load(idx[i&mask])
	}
	if sink == 1 {
		b.Log(sink)
	}
}

// BenchmarkLoadDense loads a dense range 0..2^20-1 in random order: 10 MiB
// of nodes, so most levels miss the caches.
func BenchmarkLoadDense(b *testing.B) { benchLoad(b, benchIndices(benchN, true)) }

// BenchmarkLoadDense64K loads 0..2^16-1 in random order (600 KiB of nodes).
func BenchmarkLoadDense64K(b *testing.B) { benchLoad(b, benchIndices(1<<16, true)) }

// BenchmarkLoadDenseSequential loads 0..2^20-1 in order, as readahead does.
func BenchmarkLoadDenseSequential(b *testing.B) {
	idx := benchIndices(benchN, true)
	for i := range idx {
		idx[i] = uint64(i)
	}
	benchLoad(b, idx)
}

// BenchmarkLoadSparse loads 2^16 random 40-bit indices (a 7-level tree).
func BenchmarkLoadSparse(b *testing.B) { benchLoad(b, benchIndices(1<<16, false)) }

// benchStore overwrites entries already present: no node is created, so
// nothing may be allocated.
func benchStore(b *testing.B, idx []uint64) {
	xa := filled(b, nil, idx)
	mask := len(idx) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		xa.Store(idx[i&mask], folio(uint64(i)&0xffff), 0)
	}
}

func BenchmarkStoreDense(b *testing.B)  { benchStore(b, benchIndices(benchN, true)) }
func BenchmarkStoreSparse(b *testing.B) { benchStore(b, benchIndices(1<<16, false)) }

// benchEraseStore erases an entry and stores it back: in the sparse tree
// every erase frees the entry's private chain of nodes and every store
// takes them back from the free list.
func benchEraseStore(b *testing.B, idx []uint64) {
	xa := filled(b, nil, idx)
	mask := len(idx) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := idx[i&mask]
		e := xa.Erase(j)
		xa.Store(j, e, 0)
	}
}

func BenchmarkEraseStoreDense(b *testing.B)  { benchEraseStore(b, benchIndices(benchN, true)) }
func BenchmarkEraseStoreSparse(b *testing.B) { benchEraseStore(b, benchIndices(1<<16, false)) }

// benchErase erases everything in random order, refilling (untimed) when
// the array runs empty.
func benchErase(b *testing.B, idx []uint64) {
	c := benchNodeCache(b)
	xa := filled(b, c, idx)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(idx)
		if k == 0 && i > 0 {
			b.StopTimer()
			xa = filled(b, c, idx) // the old one is empty: its objects are back
			b.StartTimer()
		}
		xa.Erase(idx[k])
	}
}

func BenchmarkEraseDense(b *testing.B)  { benchErase(b, benchIndices(1<<16, true)) }
func BenchmarkEraseSparse(b *testing.B) { benchErase(b, benchIndices(1<<16, false)) }

// BenchmarkFindBatchWalk walks 2^20 dense entries with folio_batch-sized
// Extract calls, as truncate_inode_pages_range() does; reported per entry.
func BenchmarkFindBatchWalk(b *testing.B) {
	xa := filled(b, nil, benchIndices(benchN, true))
	var batch Batch
	seen := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		next, more := uint64(0), true
		for more {
			batch.Reinit()
			next, more = xa.Extract(next, ^uint64(0), &batch)
			seen += batch.Len()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seen), "ns/entry")
}
