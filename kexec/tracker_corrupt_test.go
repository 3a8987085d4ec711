package kexec

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/physmem"
)

// corruptSetup is an active KHO with a record to damage: order-0, order-3
// and order-9 folios, so that bitmaps has three chunks (one per order) and
// radix three paths.
type corruptSetup struct {
	w          *trackerWorld
	folios     []Mem // preserved, by address
	o0, o3, o9 Mem   // a preserved folio of each order
	freed      Mem   // an order-0 folio preserved, then unpreserved and freed: its bitmap or leaf exists
}

func newCorruptSetup(t *testing.T, name kbuild.Tracker) *corruptSetup {
	w := newTrackerWorld(t, name, 256<<20)
	s := &corruptSetup{w: w}
	for i := range 300 {
		order := uint(0)
		switch {
		case i%100 == 1:
			order = 9
		case i%20 == 2:
			order = 3
		}
		f := w.preserve(order)
		s.folios = append(s.folios, FolioMem(f, order))
		switch {
		case i == 0:
			s.o0 = FolioMem(f, order)
		case i == 1:
			s.o9 = FolioMem(f, order)
		case i == 2:
			s.o3 = FolioMem(f, order)
		}
	}
	f := w.preserve(0)
	require.NoError(t, w.h.UnpreserveFolio(f))
	s.freed = FolioMem(f, 0)
	slices.SortFunc(s.folios, func(a, b Mem) int { return int(int64(a.Addr) - int64(b.Addr)) })
	require.NoError(t, w.h.Activate())
	w.audit()
	return s
}

func (s *corruptSetup) page(pfn physmem.PFN) []byte { return s.w.k.MM.Frames.Frame(pfn) }

func (s *corruptSetup) scratch() uint64 { return uint64(s.w.k.Scratch[0].Base) }

func (s *corruptSetup) fdtAddr() uint64 {
	a, _, _ := s.w.h.FDT()
	return uint64(a)
}

// freePages returns n distinct pages of zeros that are free memory in
// this kernel (a free frame keeps its bytes across the kexec, so what a
// test writes there is what the next kernel reads).
func (s *corruptSetup) freePages(n int) []physmem.PFN {
	var out []physmem.PFN
	for range n {
		pfn, err := s.w.k.MM.AllocPages(physmem.GFPKernel|physmem.GFPZero, 0)
		require.NoError(s.w.t, err)
		out = append(out, pfn)
	}
	for _, p := range out {
		s.w.k.MM.FreePages(p, 0)
	}
	return out
}

func (s *corruptSetup) freePage() physmem.PFN { return s.freePages(1)[0] }

// bitmaps' structures.
func (s *corruptSetup) bm() *bitmaps { return s.w.h.tracker.(*bitmaps) }

func (s *corruptSetup) chunk(i int) []byte { return s.page(s.bm().chunks[i]) }

func (s *corruptSetup) chunkPhys(i int) uint64 { return uint64(s.bm().chunks[i].Phys()) }

// entry returns the offset of entry j of a chunk.
func entry(j int) int { return KhoserChunkHdrSize + KhoserBitmapPtrSize*j }

// bitOf returns the bitmap holding the bit of m (of the given order) and
// the bit's index in it.
func (s *corruptSetup) bitOf(m Mem, order uint) ([]byte, uint64) {
	high := uint64(m.PFN()) >> order
	p, ok := s.bm().track[order].bitmap(high / BitmapsPreserveBits)
	require.True(s.w.t, ok)
	return s.page(p), high % BitmapsPreserveBits
}

// radix's structures: the pages on the path of key, root first, leaf last.
func (s *corruptSetup) rx() *radix { return s.w.h.tracker.(*radix) }

func (s *corruptSetup) path(key uint64) []physmem.PFN {
	p := []physmem.PFN{s.rx().root}
	for i := uint(KHOTreeMaxDepth - 1); i > 0; i-- {
		next := le64(s.page(p[len(p)-1]), 8*radixTableIndex(key, i))
		require.NotZero(s.w.t, next, "the path of key %#x", key)
		p = append(p, physmem.PhysAddr(next).PFN())
	}
	return p
}

func (s *corruptSetup) order0Key() uint64 { return RadixEncodeKey(s.o0.Addr, 0) }

// leafBit returns the leaf holding the bit of m (of the given order) and
// the bit's index in it.
func (s *corruptSetup) leafBit(m Mem, order uint) ([]byte, uint64) {
	k := RadixEncodeKey(m.Addr, order)
	return s.page(s.path(k)[5]), radixBitmapIndex(k)
}

func (s *corruptSetup) setBit(bm []byte, b uint64)   { bm[b>>3] |= 1 << (b & 7) }
func (s *corruptSetup) clearBit(bm []byte, b uint64) { bm[b>>3] &^= 1 << (b & 7) }

type corruptCase struct {
	name    string
	tracker kbuild.Tracker
	corrupt func(s *corruptSetup)
	refused string // what the refusal says; "" when the handover is accepted
	// accepted checks what came back (before the late pass).
	accepted func(t *testing.T, s *corruptSetup, got map[Mem]bool)
}

func corruptCases() []corruptCase {
	B, R := kbuild.TrackerBitmaps, kbuild.TrackerRadix
	lostFolio := func(t *testing.T, s *corruptSetup, got map[Mem]bool) {
		require.False(t, got[s.o0], "the folio whose bit was cleared is not handed over")
		require.Len(t, got, len(s.folios)-1)
	}
	oneRejected := func(t *testing.T, s *corruptSetup, got map[Mem]bool) {
		require.Equal(t, 1, s.w.h.Incoming().Rejected, "the bad range is refused on its own")
		for _, m := range s.folios {
			require.True(t, got[m], "%v still comes back", m)
		}
	}
	oneExtra := func(t *testing.T, s *corruptSetup, got map[Mem]bool) {
		require.Zero(t, s.w.h.Incoming().Rejected)
		require.True(t, got[s.freed], "the free page a flipped bit names is reserved, then returned")
		require.Len(t, got, len(s.folios)+1)
	}
	return []corruptCase{
		// bitmaps: the chunk list.
		{"chunk cycle", B, func(s *corruptSetup) { putLE64(s.chunk(1), 0, s.chunkPhys(0)) }, "already linked", nil},
		{"chunk links itself", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, s.chunkPhys(0)) }, "already linked", nil},
		{"chunk outside memory", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, 1<<40) }, "outside memory", nil},
		{"chunk at the end of the address space", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, ^uint64(0)&^0xfff) }, "outside memory", nil},
		{"chunk misaligned", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, s.chunkPhys(1)+8) }, "not page aligned", nil},
		{"chunk in scratch", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, s.scratch()) }, "scratch", nil},
		{"chunk in the FDT", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, s.fdtAddr()) }, "FDT", nil},
		{"chunk in the kernel image", B, func(s *corruptSetup) { putLE64(s.chunk(0), 0, 20<<20) }, "reserved at boot", nil},
		{"chunk order beyond MAX_PAGE_ORDER", B, func(s *corruptSetup) { putLE32(s.chunk(1), 8, 11) }, "MAX_PAGE_ORDER", nil},
		{"chunk num_elms beyond the page", B, func(s *corruptSetup) { putLE32(s.chunk(0), 12, KhoserBitmapSize+1) }, "entries", nil},
		{"bitmap in scratch", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0)+8, s.scratch()) }, "scratch", nil},
		{"bitmap outside memory", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0)+8, 1<<33) }, "outside memory", nil},
		{"bitmap in the FDT", B, func(s *corruptSetup) { putLE64(s.chunk(2), entry(0)+8, s.fdtAddr()) }, "FDT", nil},
		{"bitmap misaligned", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0)+8, le64(s.chunk(0), entry(0)+8)+512) }, "not page aligned", nil},
		{"bitmap is the next chunk", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0)+8, s.chunkPhys(1)) }, "already linked", nil},
		{"bitmap shared", B, func(s *corruptSetup) { putLE64(s.chunk(1), entry(0)+8, le64(s.chunk(0), entry(0)+8)) }, "already linked", nil},
		{"phys_start misaligned", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0), 4096) }, "not a multiple", nil},
		{"phys_start beyond memory", B, func(s *corruptSetup) { putLE64(s.chunk(0), entry(0), 64<<30) }, "beyond memory", nil},
		{"two bitmaps at one phys_start", B, func(s *corruptSetup) {
			c := s.chunk(0)
			putLE32(c, 12, 2)
			putLE64(c, entry(1), le64(c, entry(0)))
			putLE64(c, entry(1)+8, uint64(s.freePage().Phys()))
		}, "second", nil},
		{"root in scratch", B, func(s *corruptSetup) { putLE64(s.bm().rootVal, 0, s.scratch()) }, "scratch", nil},
		{"root outside memory", B, func(s *corruptSetup) { putLE64(s.bm().rootVal, 0, 1<<40) }, "outside memory", nil},
		{"more chunks than memory could need", B, func(s *corruptSetup) {
			prev := s.chunk(2)
			for _, p := range s.freePages(40) {
				putLE64(prev, 0, uint64(p.Phys()))
				prev = s.page(p)
			}
		}, "too many", nil},
		{"chain truncated", B, func(s *corruptSetup) { putLE64(s.chunk(1), 0, 0) }, "", func(t *testing.T, s *corruptSetup, got map[Mem]bool) {
			for _, m := range s.folios {
				order, _ := m.FolioOrder()
				require.Equal(t, order != 9, got[m], "%v: only the order-9 chunk was cut off", m)
			}
		}},
		{"chain ends in an empty chunk", B, func(s *corruptSetup) {
			putLE64(s.chunk(2), 0, uint64(s.freePage().Phys()))
		}, "", func(t *testing.T, s *corruptSetup, got map[Mem]bool) { require.Len(t, got, len(s.folios)) }},
		// bitmaps: the bitmaps themselves.
		{"bitmap bit cleared", B, func(s *corruptSetup) { s.clearBit(s.bitOf(s.o0, 0)) }, "", lostFolio},
		{"bitmap bit on the kernel image", B, func(s *corruptSetup) {
			s.setBit(s.bitOf(Mem{Addr: 20 << 20, Size: physmem.PageSize}, 0))
		}, "", oneRejected},
		{"bitmap bit on a free page", B, func(s *corruptSetup) { s.setBit(s.bitOf(s.freed, 0)) }, "", oneExtra},
		{"bitmap bit on another folio", B, func(s *corruptSetup) {
			bm, _ := s.bitOf(s.o9, 9)
			s.setBit(bm, uint64(s.o0.PFN())>>9)
		}, "", func(t *testing.T, s *corruptSetup, got map[Mem]bool) {
			require.Equal(t, 1, s.w.h.Incoming().Rejected, "the overlapping 2 MiB range is refused")
		}},

		// radix: the root and the nodes.
		{"root is 0", R, func(s *corruptSetup) { putLE64(s.rx().rootVal, 0, 0) }, "is 0", nil},
		{"root outside memory", R, func(s *corruptSetup) { putLE64(s.rx().rootVal, 0, 1<<40) }, "outside memory", nil},
		{"root in scratch", R, func(s *corruptSetup) { putLE64(s.rx().rootVal, 0, s.scratch()) }, "scratch", nil},
		{"root in the FDT", R, func(s *corruptSetup) { putLE64(s.rx().rootVal, 0, s.fdtAddr()) }, "FDT", nil},
		{"node links the root", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[3]), 8*radixTableIndex(s.order0Key(), 2), uint64(p[0].Phys()))
		}, "already linked", nil},
		{"node links itself", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[2]), 8*radixTableIndex(s.order0Key(), 3), uint64(p[2].Phys()))
		}, "already linked", nil},
		{"node misaligned", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[1]), 8*radixTableIndex(s.order0Key(), 4), uint64(p[2].Phys())+64)
		}, "not page aligned", nil},
		{"node in the kernel image", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[4]), 8*radixTableIndex(s.order0Key(), 1), 17<<20)
		}, "reserved at boot", nil},
		{"node in scratch", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[4]), 8*radixTableIndex(s.order0Key(), 1), s.scratch())
		}, "scratch", nil},
		{"two paths share a node", R, func(s *corruptSetup) {
			k3, k9 := RadixEncodeKey(s.o3.Addr, 3), RadixEncodeKey(s.o9.Addr, 9)
			putLE64(s.page(s.path(k3)[3]), 8*radixTableIndex(k3, 2), uint64(s.path(k9)[4].Phys()))
		}, "already linked", nil},
		{"leaf shared", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			i := radixTableIndex(s.order0Key(), 1)
			putLE64(s.page(p[4]), 8*(i^1), uint64(p[5].Phys()))
		}, "already linked", nil},
		{"link to keys of order 11", R, func(s *corruptSetup) {
			p := s.path(RadixEncodeKey(s.o9.Addr, 9))
			putLE64(s.page(p[1]), 0, uint64(s.freePage().Phys())) // level-4 index 0: keys below the order-10 bit
		}, "of no folio", nil},
		{"link beyond the top level's orders", R, func(s *corruptSetup) {
			putLE64(s.page(s.rx().root), 8*5, uint64(s.freePage().Phys()))
		}, "of no folio", nil},
		{"link to addresses beyond memory", R, func(s *corruptSetup) {
			p := s.path(s.order0Key())
			putLE64(s.page(p[4]), 8*100, uint64(s.freePage().Phys())) // 12.5 GiB
		}, "of no folio", nil},
		// radix: the leaves.
		{"leaf bit cleared", R, func(s *corruptSetup) { s.clearBit(s.leafBit(s.o0, 0)) }, "", lostFolio},
		{"leaf bit on the kernel image", R, func(s *corruptSetup) {
			leaf, _ := s.leafBit(s.o0, 0)
			s.setBit(leaf, radixBitmapIndex(RadixEncodeKey(18<<20, 0)))
		}, "", oneRejected},
		{"leaf bit beyond memory", R, func(s *corruptSetup) {
			leaf, _ := s.leafBit(s.o9, 9)
			s.setBit(leaf, 4000) // 8000 MiB
		}, "", oneRejected},
		{"leaf bit on a free page", R, func(s *corruptSetup) { s.setBit(s.leafBit(s.freed, 0)) }, "", oneExtra},
	}
}

// TestMainlineTrackersCorruptRecord: a record the next kernel cannot trust
// (a link that cycles, is shared, points outside memory, into scratch, the
// FDT or the kernel image, a bad order or count, too many pages) makes it
// refuse the handover whole: nothing reserved, every frame outside boot's
// reservations free. A flipped bit in a bitmap or leaf is a valid record
// of something else: the KHO core takes what checks and refuses the rest
// range by range. Either way no frame leaks and nothing panics.
func TestMainlineTrackersCorruptRecord(t *testing.T) {
	for _, c := range corruptCases() {
		t.Run(string(c.tracker)+"/"+c.name, func(t *testing.T) {
			s := newCorruptSetup(t, c.tracker)
			c.corrupt(s)
			w := s.w
			require.NotPanics(t, w.kexec)
			w.audit()
			if c.refused != "" {
				require.Contains(t, w.h.HandoverRefused(), c.refused)
				require.Empty(t, w.h.InRanges())
				fc := w.k.FrameCounts()
				require.Zero(t, fc.Preserved)
				require.Zero(t, fc.Tracker)
				require.Zero(t, fc.Used, "every frame outside boot's reservations is free")
				return
			}
			require.Empty(t, w.h.HandoverRefused())
			got := map[Mem]bool{}
			for _, r := range w.h.InRanges() {
				got[r.Mem] = true
			}
			c.accepted(t, s, got)
			for m := range got {
				if slices.Contains(s.folios, m) {
					f, err := w.h.ClaimMem(m)
					require.NoError(t, err)
					w.k.MM.FolioPut(f)
				}
			}
			w.h.ReturnUnclaimed()
			w.audit()
			fc := w.k.FrameCounts()
			require.Zero(t, fc.Preserved)
			require.Zero(t, fc.Used, "claimed folios put, the rest returned: nothing leaked")
		})
	}
}

// FuzzTrackerRecord damages the record of an active handover (bitmaps when
// the first byte is even, radix when odd) with the operations the rest of
// the input spells, 4 bytes each: a tracker page (byte 0, modulo their
// number, or the root's "preserved-memory-map" when it is 0xff), an offset
// (bytes 1-2, modulo the page), and what to do (byte 3: its low 2 bits
// flip a bit (the next 3 bits say which), write one of a set of
// interesting addresses, write the address of a tracker page, or write
// the address of a preserved folio). Then it kexecs: the next kernel must
// not panic, its audit must hold, and once it claimed and put every range
// it was handed and ran the late pass, no frame may be left used.
func FuzzTrackerRecord(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1})
	f.Add([]byte{0, 0, 0, 0, 0x05})       // bitmaps: first page's next -> 1<<40
	f.Add([]byte{1, 0, 0, 0x10, 0x02})    // radix: root entry 2 -> a tracker page
	f.Add([]byte{0, 0xff, 0, 0, 0x0d})    // bitmaps: root -> scratch
	f.Add([]byte{1, 3, 0x01, 0x23, 0x1c}) // radix: flip a bit
	f.Add([]byte{0, 1, 0, 0x18, 0x03, 2, 0, 0x10, 0x06})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := newCorruptSetup(t, mainlineTrackers[data[0]&1])
		w := s.w
		pages := slices.Collect(w.h.tracker.MetadataPages())
		var rootVal []byte
		switch tr := w.h.tracker.(type) {
		case *bitmaps:
			rootVal = tr.rootVal
		case *radix:
			rootVal = tr.rootVal
		}
		interesting := []uint64{0, 1 << 40, s.scratch(), s.fdtAddr(), 20 << 20, ^uint64(0), 0x1000, uint64(s.freed.Addr), 255 << 20}
		for ops := data[1:]; len(ops) >= 4; ops = ops[4:] {
			var b []byte
			if ops[0] == 0xff {
				b = rootVal
			} else {
				b = s.page(pages[int(ops[0])%len(pages)].PFN())
			}
			off := (int(ops[1])<<8 | int(ops[2])) % len(b)
			arg := int(ops[3] >> 2)
			switch ops[3] & 3 {
			case 0:
				b[off] ^= 1 << (arg & 7)
			case 1:
				putLE64(b, off&^7, interesting[arg%len(interesting)])
			case 2:
				putLE64(b, off&^7, uint64(pages[arg%len(pages)].Addr))
			case 3:
				putLE64(b, off&^7, uint64(s.folios[arg%len(s.folios)].Addr))
			}
		}
		require.NotPanics(t, w.kexec)
		w.audit()
		for _, r := range w.h.InRanges() {
			fo, err := w.h.ClaimMem(r.Mem)
			require.NoError(t, err, "every range handed over is one folio")
			w.k.MM.FolioPut(fo)
		}
		w.h.ReturnUnclaimed()
		w.audit()
		fc := w.k.FrameCounts()
		require.Zero(t, fc.Preserved)
		require.Zero(t, fc.Tracker)
		require.Zero(t, fc.Used, "nothing leaked")
	})
}
