package physmem

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/google/btree"
)

// MemblockFlags are the attributes of a memblock region (enum
// memblock_flags in include/linux/memblock.h; same values).
type MemblockFlags uint32

const (
	// MemblockNone is a plain region (MEMBLOCK_NONE).
	MemblockNone MemblockFlags = 0
	// MemblockRsrvNoinit marks reserved memory whose struct pages
	// memblock_free_all leaves uninitialised (MEMBLOCK_RSRV_NOINIT): KHO
	// reserves what the previous kernel preserved this way and initialises
	// the pages as it restores them.
	MemblockRsrvNoinit MemblockFlags = 0x10
	// MemblockKHOScratch marks memory the kernel may allocate from while it
	// must not touch anything else, and that only ever holds movable data
	// (MEMBLOCK_KHO_SCRATCH).
	MemblockKHOScratch MemblockFlags = 0x40
)

func (f MemblockFlags) String() string {
	var s []string
	if f&MemblockRsrvNoinit != 0 {
		s = append(s, "RSRV_NOINIT")
	}
	if f&MemblockKHOScratch != 0 {
		s = append(s, "KHO_SCRATCH")
	}
	if rest := f &^ (MemblockRsrvNoinit | MemblockKHOScratch); rest != 0 {
		s = append(s, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(s) == 0 {
		return "NONE"
	}
	return strings.Join(s, "|")
}

// MemblockRegion is one range of a memblock type (struct memblock_region).
type MemblockRegion struct {
	Base  PhysAddr
	Size  uint64
	Flags MemblockFlags
}

// End returns the first address after the region.
func (r MemblockRegion) End() PhysAddr { return r.Base + PhysAddr(r.Size) }

func (r MemblockRegion) String() string {
	return fmt.Sprintf("[%#x-%#x] %#x bytes flags: %v", uint64(r.Base), uint64(r.End())-1, r.Size, r.Flags)
}

// regionSet models struct memblock_type: a set of disjoint regions kept
// sorted by base, with adjacent regions of equal flags merged
// (memblock_merge_regions). Linux keeps them in an array; a B-tree gives
// the same order with O(log n) updates.
type regionSet struct {
	name  string
	tree  *btree.BTreeG[MemblockRegion]
	total uint64 // memblock_type.total_size
	// hint is the region the last successful covers found covering the
	// whole range on its own (zero size: none). Every mutation goes
	// through replace, which forgets it; after memblock_free_all the set
	// no longer changes, so restore-time lookups (KHO claims, one folio
	// after the other inside one reserved region) cost no tree walk.
	hint MemblockRegion
}

func newRegionSet(name string) regionSet {
	return regionSet{name: name, tree: btree.NewG(16, func(a, b MemblockRegion) bool { return a.Base < b.Base })}
}

// touching returns, in order, the regions that overlap or abut [base, end).
func (s *regionSet) touching(base, end PhysAddr) []MemblockRegion {
	from := base // the base of the last region starting before base, which may abut it
	if base > 0 {
		s.tree.DescendLessOrEqual(MemblockRegion{Base: base - 1}, func(r MemblockRegion) bool {
			from = r.Base
			return false
		})
	}
	var out []MemblockRegion
	s.tree.AscendGreaterOrEqual(MemblockRegion{Base: from}, func(r MemblockRegion) bool {
		if r.Base > end {
			return false
		}
		if r.End() >= base {
			out = append(out, r)
		}
		return true
	})
	return out
}

// replace swaps the regions old (as returned by touching) for pieces,
// merging adjacent pieces of equal flags.
func (s *regionSet) replace(old, pieces []MemblockRegion) {
	s.hint = MemblockRegion{}
	for _, r := range old {
		s.tree.Delete(r)
		s.total -= r.Size
	}
	slices.SortFunc(pieces, cmpBase)
	var prev *MemblockRegion
	var merged []MemblockRegion
	for _, p := range pieces {
		if p.Size == 0 {
			continue
		}
		if prev != nil && prev.End() == p.Base && prev.Flags == p.Flags {
			prev.Size += p.Size
			continue
		}
		merged = append(merged, p)
		prev = &merged[len(merged)-1]
	}
	for _, r := range merged {
		s.tree.ReplaceOrInsert(r)
		s.total += r.Size
	}
}

func cmpBase(a, b MemblockRegion) int {
	switch {
	case a.Base < b.Base:
		return -1
	case a.Base > b.Base:
		return 1
	}
	return 0
}

// add inserts [base, end) with flags; the parts already present keep
// theirs (memblock_add_range).
func (s *regionSet) add(base, end PhysAddr, flags MemblockFlags) {
	if base >= end {
		return
	}
	old := s.touching(base, end)
	pieces := slices.Clone(old)
	cur := base
	for _, r := range old {
		if r.Base > cur && cur < end {
			pieces = append(pieces, MemblockRegion{Base: cur, Size: uint64(min(r.Base, end) - cur), Flags: flags})
		}
		cur = max(cur, r.End())
	}
	if cur < end {
		pieces = append(pieces, MemblockRegion{Base: cur, Size: uint64(end - cur), Flags: flags})
	}
	s.replace(old, pieces)
}

// remove deletes [base, end), splitting regions that straddle its ends
// (memblock_remove_range).
func (s *regionSet) remove(base, end PhysAddr) {
	s.edit(base, end, func(MemblockRegion) (MemblockRegion, bool) { return MemblockRegion{}, false })
}

// setFlags sets or clears flags on the parts of [base, end) present in the
// set (memblock_setclr_flag).
func (s *regionSet) setFlags(base, end PhysAddr, flags MemblockFlags, set bool) {
	s.edit(base, end, func(r MemblockRegion) (MemblockRegion, bool) {
		if set {
			r.Flags |= flags
		} else {
			r.Flags &^= flags
		}
		return r, true
	})
}

// edit isolates [base, end) (memblock_isolate_range) and passes each region
// inside it to f, which returns its replacement or false to drop it.
func (s *regionSet) edit(base, end PhysAddr, f func(MemblockRegion) (MemblockRegion, bool)) {
	if base >= end {
		return
	}
	old := s.touching(base, end)
	var pieces []MemblockRegion
	for _, r := range old {
		lo, hi := max(r.Base, base), min(r.End(), end)
		if lo >= hi { // abuts only
			pieces = append(pieces, r)
			continue
		}
		pieces = append(pieces,
			MemblockRegion{Base: r.Base, Size: uint64(lo - r.Base), Flags: r.Flags},
			MemblockRegion{Base: hi, Size: uint64(r.End() - hi), Flags: r.Flags})
		if in, keep := f(MemblockRegion{Base: lo, Size: uint64(hi - lo), Flags: r.Flags}); keep {
			pieces = append(pieces, in)
		}
	}
	s.replace(old, pieces)
}

// overlaps reports whether any region intersects [base, end).
func (s *regionSet) overlaps(base, end PhysAddr) bool {
	for _, r := range s.touching(base, end) {
		if r.Base < end && r.End() > base {
			return true
		}
	}
	return false
}

// covers reports whether [base, end) lies wholly within regions that all
// have every flag in want.
func (s *regionSet) covers(base, end PhysAddr, want MemblockFlags) bool {
	if h := s.hint; h.Size != 0 && h.Base <= base && end <= h.End() && h.Flags&want == want {
		return true
	}
	cur := base
	for _, r := range s.touching(base, end) {
		if r.End() <= cur {
			continue
		}
		if r.Base > cur || r.Flags&want != want {
			return false
		}
		if cur == base && r.End() >= end {
			s.hint = r
		}
		cur = r.End()
		if cur >= end {
			return true
		}
	}
	return cur >= end
}

// all yields the regions in address order (for_each_mem_region).
func (s *regionSet) all() iter.Seq[MemblockRegion] {
	return func(yield func(MemblockRegion) bool) { s.tree.Ascend(yield) }
}

// check verifies the region invariants: non-empty, sorted, disjoint,
// merged, inside [0, limit), total_size right.
func (s *regionSet) check(limit PhysAddr) error {
	var prev MemblockRegion
	var total uint64
	first, bad := true, ""
	s.tree.Ascend(func(r MemblockRegion) bool {
		switch {
		case r.Size == 0:
			bad = fmt.Sprintf("empty region at %#x", uint64(r.Base))
		case r.End() < r.Base || r.End() > limit:
			bad = fmt.Sprintf("region %v beyond physical memory", r)
		case !first && prev.End() > r.Base:
			bad = fmt.Sprintf("regions %v and %v overlap", prev, r)
		case !first && prev.End() == r.Base && prev.Flags == r.Flags:
			bad = fmt.Sprintf("regions %v and %v not merged", prev, r)
		}
		total += r.Size
		prev, first = r, false
		return bad == ""
	})
	if bad == "" && total != s.total {
		bad = fmt.Sprintf("total_size %#x but regions add up to %#x", s.total, total)
	}
	if bad != "" {
		return fmt.Errorf("memblock.%s: %s", s.name, bad)
	}
	return nil
}

// dump prints the regions as memblock_dump() does.
func (s *regionSet) dump(b *strings.Builder) {
	fmt.Fprintf(b, " %s.cnt = %#x\n", s.name, s.tree.Len())
	i := 0
	s.tree.Ascend(func(r MemblockRegion) bool {
		fmt.Fprintf(b, " %s[%#x]\t%v\n", s.name, i, r)
		i++
		return true
	})
}
