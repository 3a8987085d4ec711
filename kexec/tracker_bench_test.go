package kexec

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/physmem"
)

// syntheticTracker is a tracker of w's kernel that is not its KHO's: it
// records folios the tests name by pfn without allocating them (they may
// lie beyond memory), paying for its pages from w's allocator. Its pages
// are freed at cleanup.
func syntheticTracker(t tb, w *trackerWorld) Tracker {
	info, _ := LookupTracker(w.name)
	tr := info.New(w.h)
	t.Cleanup(func() {
		for m := range tr.MetadataPages() {
			w.k.MM.FreePages(m.PFN(), 0)
		}
	})
	return tr
}

// TestTrackerMetadataPerGiB measures the tracker pages that record N GiB
// preserved in folios of order 0 and 9 (physically contiguous from address
// 0: the best case, each bitmap or leaf full), interior nodes and chunks
// counted, and checks the counts against the layouts: bitmaps needs one
// page per PRESERVE_BITS folios of an order and one chunk per 255 bitmaps;
// radix one leaf per 32768 folios of an order, a level-1 node per 512
// leaves and one node at each of levels 5 to 2 (the root included).
// Issue target P3: at most 33 KiB per preserved GiB at order 0.
func TestTrackerMetadataPerGiB(t *testing.T) {
	sizes := []uint64{1, 4, 16}
	if !testing.Short() {
		sizes = append(sizes, 64)
	}
	ceil := func(a, b uint64) uint64 { return (a + b - 1) / b }
	for _, name := range mainlineTrackers {
		for _, order := range []uint{0, 9} {
			for _, gib := range sizes {
				w := newTrackerWorld(t, name, 128<<20)
				tr := syntheticTracker(t, w)
				folios := gib << (30 - physmem.PageShift - order)
				for i := range folios {
					if err := tr.Preserve(physmem.PFN(i<<order), order); err != nil {
						t.Fatal(err) // not require: its Helper call costs a stack walk per folio
					}
				}
				require.NoError(t, tr.Finalize())
				got := tr.MetadataFrames()
				var want uint64
				switch name {
				case kbuild.TrackerBitmaps:
					bm := ceil(folios, BitmapsPreserveBits)
					want = bm + ceil(bm, KhoserBitmapSize)
				case kbuild.TrackerRadix:
					leaves := ceil(folios, 1<<KHOBitmapSizeLog2)
					want = leaves + ceil(leaves, 512) + 4
				}
				require.Equal(t, want, got, "%s order %d, %d GiB", name, order, gib)
				perGiB := float64(got*physmem.PageSize) / 1024 / float64(gib)
				t.Logf("%-7s order %d %3d GiB: %5d pages, %7.2f KiB per preserved GiB", name, order, gib, got, perGiB)
				if order == 0 && gib >= 64 {
					require.LessOrEqual(t, perGiB, 33.0, "P3")
				}
			}
		}
	}
}

// BenchmarkTrackerPreserve is the tracker's cost of one Preserve (per
// folio, and per page: ns/page) for folios of order 0 and 9 spread over
// 2^20 folio slots, their pages allocated on first use.
func BenchmarkTrackerPreserve(b *testing.B) {
	for _, name := range mainlineTrackers {
		for _, order := range []uint{0, 9} {
			b.Run(fmt.Sprintf("%s/order%d", name, order), func(b *testing.B) {
				w := newTrackerWorld(b, name, 128<<20)
				tr := syntheticTracker(b, w)
				i := uint64(0)
				start := time.Now()
				for b.Loop() {
					if err := tr.Preserve(physmem.PFN((i%(1<<20))<<order), order); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(i<<order), "ns/page")
			})
		}
	}
}

// BenchmarkTrackerCollect is the next kernel's cost of reading the record
// (Collect, after Validate accepted it): per folio yielded, and per page
// (ns/page), for 64 MiB of order-0 folios and 128 MiB of order-9 folios.
func BenchmarkTrackerCollect(b *testing.B) {
	for _, name := range mainlineTrackers {
		for _, c := range []struct {
			order uint
			size  uint64
		}{{0, 64 << 20}, {9, 128 << 20}} {
			b.Run(fmt.Sprintf("%s/order%d", name, c.order), func(b *testing.B) {
				w := newTrackerWorld(b, name, 512<<20)
				n := c.size >> (physmem.PageShift + c.order)
				for range n {
					w.preserve(c.order)
				}
				require.NoError(b, w.h.Activate())
				w.kexec()
				require.Empty(b, w.h.HandoverRefused())
				require.Len(b, w.h.InRanges(), int(n))
				f := w.h.GetFDT()
				bad := func(where string, err error) { b.Fatalf("%s: %v", where, err) }
				var folios uint64
				start := time.Now()
				for b.Loop() {
					for range w.h.tracker.Collect(f, bad) {
						folios++
					}
				}
				el := float64(time.Since(start).Nanoseconds())
				b.ReportMetric(el/float64(folios), "ns/folio")
				b.ReportMetric(el/float64(folios<<c.order), "ns/page")
			})
		}
	}
}
