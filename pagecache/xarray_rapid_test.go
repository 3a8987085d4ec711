package pagecache

import (
	"slices"
	"testing"

	"khosim/physmem"

	"pgregory.net/rapid"
)

// orders weights order 0 and covers both sibling entries (1..5, 7..9, 13)
// and whole-slot entries of higher nodes (6, 12).
var orders = []uint{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 12, 13}

// indexGen draws indices the way the test's layout asks: dense (a few
// thousand indices), sparse (anywhere in 40 bits), near the top of the
// 64-bit space, or at/inside an entry already stored.
type indexGen struct {
	layout string
	h      *harness
}

func (g indexGen) draw(t *rapid.T, label string) uint64 {
	layout := g.layout
	if layout == "mixed" {
		layout = rapid.SampledFrom([]string{"dense", "sparse", "top"}).Draw(t, label+"-layout")
	}
	if len(g.h.md.m) > 0 && rapid.IntRange(0, 3).Draw(t, label+"-near") == 0 {
		bases := make([]uint64, 0, len(g.h.md.m))
		for b := range g.h.md.m {
			bases = append(bases, b)
		}
		slices.Sort(bases)
		b := rapid.SampledFrom(bases).Draw(t, label+"-base")
		return b + rapid.Uint64Range(0, span(g.h.md.m[b].order)-1).Draw(t, label+"-in")
	}
	switch layout {
	case "dense":
		return rapid.Uint64Range(0, 4095).Draw(t, label)
	case "sparse":
		return rapid.Uint64Range(0, 1<<40-1).Draw(t, label)
	default:
		return ^uint64(0) - rapid.Uint64Range(0, 1<<20).Draw(t, label)
	}
}

func drawEntry(t *rapid.T) Entry {
	switch rapid.IntRange(0, 5).Draw(t, "kind") {
	case 0, 1, 2:
		return FolioEntry(physmem.PFN(rapid.Uint64Range(0, 1<<20).Draw(t, "pfn")))
	case 3, 4:
		return ValueEntry(rapid.Uint64Range(0, 1<<30).Draw(t, "value"))
	default:
		return ValueEntry(MaxValue)
	}
}

func drawMark(t *rapid.T) Mark {
	return Mark{uint8(rapid.IntRange(0, xaMarkCount-1).Draw(t, "mark"))}
}

// TestXArrayModel drives the XArray and the model with random operations
// and checks the invariants and the whole content after every step.
func TestXArrayModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHarness(t)
		g := indexGen{layout: rapid.SampledFrom([]string{"dense", "sparse", "mixed"}).Draw(t, "layout"), h: h}
		aligned := func(label string) (uint64, uint) {
			order := rapid.SampledFrom(orders).Draw(t, label+"-order")
			return g.draw(t, label) &^ (span(order) - 1), order
		}
		t.Repeat(map[string]func(*rapid.T){
			"store": func(t *rapid.T) {
				i, o := aligned("store")
				h.store(t, i, drawEntry(t), o)
			},
			"store-null": func(t *rapid.T) {
				i, o := aligned("store-null")
				h.store(t, i, 0, o)
			},
			"store-misaligned": func(t *rapid.T) {
				h.store(t, g.draw(t, "misaligned"), drawEntry(t), rapid.SampledFrom(orders).Draw(t, "order"))
			},
			"insert": func(t *rapid.T) {
				i, o := aligned("insert")
				h.insert(t, i, drawEntry(t), o)
			},
			"fill": func(t *rapid.T) {
				i, o := aligned("fill")
				n := rapid.IntRange(1, 200).Draw(t, "n")
				for k := 0; k < n && i+uint64(k)*span(o) >= i; k++ {
					h.store(t, i+uint64(k)*span(o), drawEntry(t), o)
				}
			},
			"erase": func(t *rapid.T) { h.erase(t, g.draw(t, "erase")) },
			"reserve": func(t *rapid.T) {
				i, o := aligned("reserve")
				h.reserve(t, i, o)
			},
			"release": func(t *rapid.T) { h.release(t, g.draw(t, "release")) },
			"fault":   func(t *rapid.T) { h.fault(t, rapid.IntRange(1, 4).Draw(t, "nth")) },
			"split": func(t *rapid.T) {
				h.split(t, g.draw(t, "split"), rapid.SampledFrom(orders).Draw(t, "order"))
			},
			"load": func(t *rapid.T) { h.load(t, g.draw(t, "load")) },
			"mark": func(t *rapid.T) {
				h.mark(t, g.draw(t, "mark-index"), drawMark(t), rapid.IntRange(0, 2).Draw(t, "op"))
			},
			"extract": func(t *rapid.T) {
				start := g.draw(t, "start")
				max := start + rapid.SampledFrom([]uint64{0, 1, 63, 64, 4095, 1 << 20, ^uint64(0)}).Draw(t, "len")
				if max < start {
					max = ^uint64(0)
				}
				filter := rapid.IntRange(filterReserved, xaMarkCount-1).Draw(t, "filter")
				h.extract(t, start, max, filter, rapid.Bool().Draw(t, "whole"))
			},
			"": func(t *rapid.T) { h.check(t) },
		})
	})
}

// TestXArrayBatchWalkModel walks random arrays batch by batch, as
// truncate and writeback do, and checks the concatenation of the batches
// is exactly the model's entries.
func TestXArrayBatchWalkModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHarness(t)
		n := rapid.IntRange(0, 300).Draw(t, "n")
		for k := 0; k < n; k++ {
			o := rapid.SampledFrom(orders).Draw(t, "order")
			i := rapid.Uint64Range(0, 1<<14).Draw(t, "index") &^ (span(o) - 1)
			h.store(t, i, drawEntry(t), o)
			if rapid.IntRange(0, 3).Draw(t, "marked") == 0 {
				h.mark(t, i, XAMark0, 0)
			}
		}
		start := rapid.Uint64Range(0, 1<<14).Draw(t, "start")
		max := start + rapid.Uint64Range(0, 1<<15).Draw(t, "len")
		for _, filter := range []int{filterPresent, 0} {
			var got []Found
			var b Batch
			next, more := start, true
			for more {
				b.Reinit()
				next, more = h.xa.extract(next, max, filter, false, &b)
				got = append(got, b.Entries()...)
			}
			if want := h.md.overlapping(start, max, filter); !slices.Equal(got, want) {
				t.Fatalf("batch walk [%#x, %#x] filter %d = %v; model %v", start, max, filter, got, want)
			}
			want := h.md.overlapping(start, max, filter)
			got = slices.Collect(h.xa.rangeFilter(start, max, filter))
			if !slices.Equal(got, want) {
				t.Fatalf("Range [%#x, %#x] filter %d = %v; model %v", start, max, filter, got, want)
			}
		}
		h.check(t)
	})
}
