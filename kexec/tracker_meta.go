package kexec

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math/bits"
	"slices"

	"khosim/physmem"
)

// What the trackers that keep their record in pages of their own (bitmaps,
// radix) share: the set of pages a tracker owns, how it allocates them,
// and how the next kernel checks a page the record links before it reads
// it.

// metaPages is the set of 4 KiB pages a tracker owns, sorted by address
// (MetadataPages must yield them in address order). The tracker holds the
// one reference AllocPages gave each page.
type metaPages struct{ pfns []physmem.PFN }

func (s *metaPages) add(pfn physmem.PFN) {
	i, found := slices.BinarySearch(s.pfns, pfn)
	if found {
		panic(fmt.Sprintf("kexec: tracker page %v owned twice", pfn))
	}
	s.pfns = slices.Insert(s.pfns, i, pfn)
}

func (s *metaPages) remove(pfn physmem.PFN) {
	i, found := slices.BinarySearch(s.pfns, pfn)
	if !found {
		panic(fmt.Sprintf("kexec: tracker page %v freed but not owned", pfn))
	}
	s.pfns = slices.Delete(s.pfns, i, i+1)
}

func (s *metaPages) has(pfn physmem.PFN) bool {
	_, found := slices.BinarySearch(s.pfns, pfn)
	return found
}

func (s *metaPages) len() int { return len(s.pfns) }

// seq yields the pages as Mems, in address order.
func (s *metaPages) seq() iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		for _, p := range s.pfns {
			if !yield(Mem{Addr: p.Phys(), Size: physmem.PageSize}) {
				return
			}
		}
	}
}

// allocMetaPage is get_zeroed_page(GFP_KERNEL): one zeroed page of
// unmovable kernel memory (never in scratch) for a tracker's record, owned
// by s. It fails with the allocator's errno (ENOMEM, or the page_alloc
// fault).
func allocMetaPage(h *KHO, s *metaPages) (physmem.PFN, error) {
	pfn, err := h.mm.AllocPages(physmem.GFPKernel|physmem.GFPZero, 0)
	if err != nil {
		return 0, err
	}
	s.add(pfn)
	return pfn, nil
}

// freeMetaPage is free_page() of a page allocMetaPage returned.
func freeMetaPage(h *KHO, s *metaPages, pfn physmem.PFN) {
	s.remove(pfn)
	h.mm.FreePages(pfn, 0)
}

// le64 and putLE64 read and write the little-endian u64 at off of a page
// (the x86-64 kernel's native layout).
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func putLE64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

// le32 and putLE32 are the same for a u32.
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }

func putLE32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// inMetaCheck is how the next kernel checks each page a handed-over record
// links, before it reads it (the Validate half of Tracker): the page must
// be page aligned and inside memory, outside scratch (which this kernel
// already allocates from), outside the handover FDT and outside what this
// kernel reserved at boot (its image, the low 1 MiB: the previous kernel
// never allocated there), and linked only once (no cycle, no page shared
// by two links). seen is a bitmap of the frames of memory.
type inMetaCheck struct {
	h     *KHO
	seen  bitmap
	count uint64
	limit uint64 // most pages a valid record could have
}

func newInMetaCheck(h *KHO, limit uint64) *inMetaCheck {
	return &inMetaCheck{h: h, seen: make(bitmap, (h.mm.Frames.NumFrames()+63)/64), limit: limit}
}

// page checks the page at phys, which the record links from where()
// (called only for a message) as a what ("chunk", "node"), and returns
// its bytes.
func (c *inMetaCheck) page(phys uint64, what string, where func() string) ([]byte, error) {
	h := c.h
	m := Mem{Addr: physmem.PhysAddr(phys), Size: physmem.PageSize}
	pfn := uint64(m.PFN())
	why := ""
	switch {
	case !m.Addr.PageAligned():
		why = "which is not page aligned"
	case m.End() < m.Addr || !h.mm.Frames.Valid(m.PFN()) || !h.mm.Memblock.IsRegionMemory(m.Addr, m.Size):
		why = "outside memory"
	case overlapsAny(m, h.in.scratch):
		why = "in KHO scratch"
	case m.Overlaps(h.in.fdtMem):
		why = "inside the handover FDT"
	case h.mm.Memblock.IsRegionReserved(m.Addr, m.Size):
		why = "in memory this kernel reserved at boot"
	case c.seen[pfn>>6]&(1<<(pfn&63)) != 0:
		why = "which the record already linked: a cycle or a shared page"
	case c.count >= c.limit:
		return nil, fmt.Errorf("%s links one %s too many: a record of this memory needs at most %d pages", where(), what, c.limit)
	}
	if why != "" {
		return nil, fmt.Errorf("%s links %s %#x, %s", where(), what, phys, why)
	}
	c.count++
	c.seen.set(pfn)
	return h.mm.Frames.Frame(m.PFN()), nil
}

// yieldBits yields, for every set bit i of the little-endian bitmap bm
// (DECLARE_BITMAP on x86-64: bit i is bit i%64 of u64 word i/64), the
// range PAGE_SIZE << order at base + i << (PAGE_SHIFT + order). Empty
// words are skipped whole and a word of all ones is yielded without
// scanning it bit by bit. It reports whether the iteration went on to the
// end.
func yieldBits(bm []byte, base uint64, order uint, yield func(Mem) bool) bool {
	size := uint64(physmem.PageSize) << order
	shift := physmem.PageShift + order
	for w := 0; w < len(bm); w += 8 {
		word := binary.LittleEndian.Uint64(bm[w:])
		if word == 0 {
			continue
		}
		addr := base + uint64(w*8)<<shift
		if word == ^uint64(0) {
			for i := range uint64(64) {
				if !yield(Mem{Addr: physmem.PhysAddr(addr + i<<shift), Size: size}) {
					return false
				}
			}
			continue
		}
		for word != 0 {
			b := uint64(bits.TrailingZeros64(word))
			word &= word - 1
			if !yield(Mem{Addr: physmem.PhysAddr(addr + b<<shift), Size: size}) {
				return false
			}
		}
	}
	return true
}

// popcount counts the set bits of a little-endian bitmap.
func popcount(bm []byte) uint64 {
	var n uint64
	for w := 0; w < len(bm); w += 8 {
		n += uint64(bits.OnesCount64(binary.LittleEndian.Uint64(bm[w:])))
	}
	return n
}
