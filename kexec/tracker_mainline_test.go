package kexec

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/physmem"
)

// tb is what a tracker world needs of *testing.T, *testing.B and
// *rapid.T.
type tb interface {
	require.TestingT
	Helper()
	Cleanup(func())
}

var mainlineTrackers = []kbuild.Tracker{kbuild.TrackerBitmaps, kbuild.TrackerRadix}

// trackerWorld is a kernel whose KHO uses a registered tracker, with a
// fault injector, and the kexec that boots the next kernel of the same
// build, as the machine does it.
type trackerWorld struct {
	t       tb
	name    kbuild.Tracker
	cmdline string
	frames  *physmem.Frames
	faults  *fault.Injector
	k       *kernel.Kernel
	h       *KHO
}

func newTrackerWorld(t tb, name kbuild.Tracker, mem uint64) *trackerWorld {
	t.Helper()
	frames, err := physmem.NewFrames(mem)
	require.NoError(t, err)
	t.Cleanup(func() { _ = frames.Close() })
	scratch := "32M"
	if mem < 256<<20 {
		scratch = "16M"
	}
	w := &trackerWorld{t: t, name: name, cmdline: "kho_scratch=" + scratch, frames: frames, faults: fault.New()}
	w.boot(nil)
	return w
}

func (w *trackerWorld) boot(ho *Handover) {
	info, ok := LookupTracker(w.name)
	require.True(w.t, ok, "tracker %s registered", w.name)
	params := kernel.BootParams{BootID: 1, Cmdline: w.cmdline, EarlyInit: func(k *kernel.Kernel) error {
		w.h = New(k, w.faults, info.New)
		w.h.Populate(ho)
		return nil
	}}
	if ho != nil {
		params.Scratch, params.BootID = ho.Scratch, w.k.BootID+1
	}
	k, err := kernel.Boot(kernel.Hardware{Frames: w.frames, Faults: w.faults}, params)
	require.NoError(w.t, err)
	k.RegisterRefOwner("kho", w.h.VisitRefs)
	k.RegisterFrameCounter("tracker", w.h.FramesTracker)
	k.RegisterFrameCounter("preserved", w.h.FramesPreserved)
	w.k = k
	w.t.Cleanup(func() {
		if !k.Gone() {
			k.Poison("test over")
		}
	})
}

func (w *trackerWorld) kexec() {
	ho, keep := w.h.PrepareKexec()
	Scrub(w.k, keep)
	w.k.Poison("kexec")
	w.boot(ho)
}

// audit checks the kernel's and KHO's invariants and that frames(tracker)
// is what the tracker owns.
func (w *trackerWorld) audit() {
	w.t.Helper()
	require.NoError(w.t, w.k.CheckInvariants())
	require.NoError(w.t, w.h.CheckInvariants())
	require.Equal(w.t, w.h.tracker.MetadataFrames(), w.k.FrameCounts().Tracker)
}

// fill writes a pattern that names folio i into its frames.
func (w *trackerWorld) fill(f physmem.Folio, order uint, i int) {
	w.k.MM.Frames.Fill(f.PFN(), 1<<order, 0x5a5a000000000000|uint64(i)<<16|uint64(order))
}

func (w *trackerWorld) checkFill(f physmem.Folio, order uint, i int) {
	w.t.Helper()
	want := 0x5a5a000000000000 | uint64(i)<<16 | uint64(order)
	b := w.k.MM.Frames.Span(f.PFN(), 1<<order)
	for off := 0; off < len(b); off += 8 {
		if binary.LittleEndian.Uint64(b[off:]) != want {
			require.Failf(w.t, "data lost", "folio %d (%v order %d): word at %#x is %#x, want %#x",
				i, f, order, off, binary.LittleEndian.Uint64(b[off:]), want)
		}
	}
}

// preserve allocates and preserves a folio of the given order; KHO keeps
// it (the caller's reference is dropped).
func (w *trackerWorld) preserve(order uint) physmem.Folio {
	w.t.Helper()
	f, err := w.k.MM.FolioAlloc(physmem.GFPKernel, order)
	require.NoError(w.t, err)
	_, err = w.h.PreserveFolio(f)
	require.NoError(w.t, err)
	w.k.MM.FolioPut(f)
	return f
}

// outRecord decodes the running kernel's record from physical memory,
// without the tracker's host-side index: the bitmaps' pages (and, once
// serialized, the chunk list the root points at, which must agree), or
// the radix tree from its root.
func outRecord(t tb, h *KHO) map[physmem.Folio]uint {
	t.Helper()
	out := map[physmem.Folio]uint{}
	add := func(m Mem) bool {
		order, ok := m.FolioOrder()
		require.True(t, ok, "%v is a folio", m)
		_, dup := out[physmem.Folio(m.PFN())]
		require.False(t, dup, "%v recorded twice", m)
		out[physmem.Folio(m.PFN())] = order
		return true
	}
	frames := h.mm.Frames
	switch tr := h.tracker.(type) {
	case *bitmaps:
		for order := range tr.track {
			for n := range tr.track[order].bits {
				if p, ok := tr.track[order].bitmap(uint64(n)); ok {
					start := (uint64(n) * BitmapsPreserveBits) << (uint(order) + physmem.PageShift)
					yieldBits(frames.Frame(p), start, uint(order), add)
				}
			}
		}
		if tr.serialized && tr.rootVal != nil {
			fromChunks := map[physmem.Folio]uint{}
			for phys := le64(tr.rootVal, 0); phys != 0; {
				chunk := frames.Frame(physmem.PhysAddr(phys).PFN())
				for j := range int(le32(chunk, 12)) {
					off := KhoserChunkHdrSize + KhoserBitmapPtrSize*j
					bm := frames.Frame(physmem.PhysAddr(le64(chunk, off+8)).PFN())
					yieldBits(bm, le64(chunk, off), uint(le32(chunk, 8)), func(m Mem) bool {
						order, _ := m.FolioOrder()
						fromChunks[physmem.Folio(m.PFN())] = order
						return true
					})
				}
				phys = le64(chunk, 0)
			}
			require.Equal(t, out, fromChunks, "the chunks describe the bitmaps")
		}
	case *radix:
		if !tr.hasRoot {
			return out
		}
		var walk func(node []byte, level uint, start uint64)
		walk = func(node []byte, level uint, start uint64) {
			for i := range 512 {
				child := le64(node, 8*i)
				if child == 0 {
					continue
				}
				key := start | uint64(i)<<((level-1)*9+15)
				page := frames.Frame(physmem.PhysAddr(child).PFN())
				if level > 1 {
					walk(page, level-1, key)
					continue
				}
				for b := range uint64(1 << 15) {
					if page[b>>3]&(1<<(b&7)) != 0 {
						phys, order := RadixDecodeKey(key | b)
						add(Mem{Addr: phys, Size: physmem.PageSize << order})
					}
				}
			}
		}
		walk(frames.Frame(tr.root), 5, 0)
	default:
		require.Failf(t, "not a mainline tracker", "%T", tr)
	}
	return out
}

func TestMainlineTrackersRegistered(t *testing.T) {
	for _, c := range []struct {
		name       kbuild.Tracker
		compatible string
		finalizes  bool
		subtree    string
	}{
		{kbuild.TrackerBitmaps, "kho-v1", true, "fdt"},
		{kbuild.TrackerRadix, "kho-v2", false, "preserved-data"},
	} {
		info, ok := LookupTracker(c.name)
		require.True(t, ok, c.name)
		tr := info.New(nil)
		require.Equal(t, c.name, tr.Name())
		require.Equal(t, c.compatible, tr.Compatible())
		require.Equal(t, c.finalizes, tr.Finalizes())
		require.Equal(t, c.subtree, tr.SubtreeProperty())
		require.False(t, tr.ClientRecords(), "FDBox's \"mem\" properties are its own, not KHO's record")
	}
	require.Equal(t, 255, KhoserBitmapSize)
	require.Equal(t, 6, KHOTreeMaxDepth)
	require.Equal(t, 52, KHOOrder0Log2)
}

// TestRadixKeyEncoding: kho_radix_encode_key / decode_key and the level
// indices, against the ABI header's table (order bit at 52 - order) and
// its split of the key (59:51 level 5 ... 23:15 level 1, 14:0 the bit).
func TestRadixKeyEncoding(t *testing.T) {
	require.Equal(t, uint64(1)<<52|0x12345, RadixEncodeKey(0x12345000, 0))
	require.Equal(t, uint64(1)<<51|0x12345000>>13, RadixEncodeKey(0x12344000, 1))
	require.Equal(t, uint64(1)<<43|1, RadixEncodeKey(2<<20, 9))
	key := RadixEncodeKey(0x7_4000_0000, 0)
	require.Equal(t, 2, radixTableIndex(key, 5), "the order-0 bit, 52, is bit 1 of the level-5 index")
	require.Equal(t, int((uint64(0x7_4000_0000)>>12)>>15&511), radixTableIndex(key, 1))
	require.Equal(t, (uint64(0x7_4000_0000)>>12)&(1<<15-1), radixBitmapIndex(key))
	rapid.Check(t, func(rt *rapid.T) {
		order := rapid.UintRange(0, physmem.MaxPageOrder).Draw(rt, "order")
		pfn := rapid.Uint64Range(0, 1<<40).Draw(rt, "pfn") &^ (1<<order - 1)
		phys, o := RadixDecodeKey(RadixEncodeKey(physmem.PFN(pfn).Phys(), order))
		require.Equal(rt, order, o)
		require.Equal(rt, physmem.PFN(pfn).Phys(), phys)
	})
}

// rootFDT builds a handover root: compatible and, if mapLen > 0, a
// "preserved-memory-map" of that many bytes.
func rootFDT(t *testing.T, compatible string, mapLen int) *fdt.FDT {
	buf := make([]byte, 4096)
	w, err := fdt.Create(buf)
	require.NoError(t, err)
	require.NoError(t, w.FinishReserveMap())
	require.NoError(t, w.BeginNode(""))
	require.NoError(t, w.PropertyString("compatible", compatible))
	if mapLen > 0 {
		require.NoError(t, w.Property(PreservedMemoryMapProp, make([]byte, mapLen)))
	}
	require.NoError(t, w.EndNode())
	blob, err := w.Finish()
	require.NoError(t, err)
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	return f
}

// TestMainlineTrackersRecognise: each tracker reads only its own layout.
// arrays and bitmaps share "kho-v1" and are told apart by
// "preserved-memory-map"; radix is "kho-v2".
func TestMainlineTrackersRecognise(t *testing.T) {
	roots := map[string]*fdt.FDT{
		"arrays":       rootFDT(t, "kho-v1", 0),
		"bitmaps":      rootFDT(t, "kho-v1", 8),
		"radix":        rootFDT(t, "kho-v2", 8),
		"kho-v1 short": rootFDT(t, "kho-v1", 4),
		"kho-v2 none":  rootFDT(t, "kho-v2", 0),
		"other":        rootFDT(t, "kho-v3", 8),
	}
	trs := map[string]Tracker{"arrays": arrays{}, "bitmaps": &bitmaps{}, "radix": &radix{}}
	for _, tn := range slices.Sorted(maps.Keys(trs)) {
		for _, rn := range slices.Sorted(maps.Keys(roots)) {
			why := trs[tn].Recognise(roots[rn])
			if tn == rn {
				require.Empty(t, why, "%s reads its own root", tn)
			} else {
				require.NotEmpty(t, why, "%s must refuse a %s root", tn, rn)
			}
		}
	}
	require.Contains(t, (&bitmaps{}).Recognise(roots["arrays"]), "kho=arrays")
	require.Contains(t, arrays{}.Recognise(roots["bitmaps"]), "kho=bitmaps")
	require.Contains(t, (&radix{}).Recognise(roots["bitmaps"]), "kho-v1")
}

// TestMainlineTrackersModel: random preserve / unpreserve / activate /
// deactivate sequences, some with an allocation failing, checked after
// every step against the preserved set: the record in physical memory
// (decoded without the tracker's index) is exactly the preserved folios,
// a failed preserve records nothing and leaks no page, frames(tracker) is
// what the tracker owns, and the kernel's and KHO's audits hold.
func TestMainlineTrackersModel(t *testing.T) {
	for _, name := range mainlineTrackers {
		t.Run(string(name), func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				w := newTrackerWorld(rt, name, 128<<20)
				mm := w.k.MM
				model := map[physmem.Folio]uint{}
				disarm := func() {
					for w.faults.Armed(fault.PageAlloc) {
						_ = w.faults.Hit(fault.PageAlloc)
					}
				}
				rt.Repeat(map[string]func(*rapid.T){
					"preserve": func(rt *rapid.T) {
						order := rapid.UintRange(0, physmem.MaxPageOrder).Draw(rt, "order")
						f, err := mm.FolioAlloc(physmem.GFPKernel, order)
						if err != nil {
							rt.Skip("memory full")
						}
						failAt := rapid.IntRange(0, 6).Draw(rt, "failAt")
						if failAt > 0 {
							require.NoError(rt, w.faults.Arm(fault.PageAlloc, failAt, 1))
						}
						before, rooted := w.h.tracker.MetadataFrames(), name != kbuild.TrackerRadix || w.h.tracker.(*radix).hasRoot
						_, err = w.h.PreserveFolio(f)
						fired := failAt > 0 && !w.faults.Armed(fault.PageAlloc)
						disarm()
						switch {
						case w.h.Finalized():
							require.ErrorIs(rt, err, errno.EBUSY)
							mm.FolioPut(f)
						case fired:
							require.ErrorIs(rt, err, errno.ENOMEM)
							require.False(rt, w.h.IsPreserved(f))
							after := w.h.tracker.MetadataFrames()
							if rooted {
								require.Equal(rt, before, after, "a failed preserve frees what it allocated")
							} else {
								require.LessOrEqual(rt, after, before+1, "only the radix root may stay")
							}
							mm.FolioPut(f)
						default:
							require.NoError(rt, err)
							model[f] = order
							mm.FolioPut(f)
						}
					},
					"unpreserve": func(rt *rapid.T) {
						if len(model) == 0 {
							rt.Skip("nothing preserved")
						}
						f := rapid.SampledFrom(slices.Sorted(maps.Keys(model))).Draw(rt, "folio")
						err := w.h.UnpreserveFolio(f)
						if w.h.Finalized() {
							require.ErrorIs(rt, err, errno.EBUSY)
							return
						}
						require.NoError(rt, err)
						delete(model, f)
					},
					"activate": func(rt *rapid.T) {
						if w.h.Active() {
							require.ErrorIs(rt, w.h.Activate(), errno.EBUSY)
							return
						}
						failAt := rapid.IntRange(0, 4).Draw(rt, "failAt")
						if failAt > 0 {
							require.NoError(rt, w.faults.Arm(fault.PageAlloc, failAt, 1))
						}
						before := w.h.tracker.MetadataFrames()
						err := w.h.Activate()
						fired := failAt > 0 && !w.faults.Armed(fault.PageAlloc)
						disarm()
						if fired {
							require.ErrorIs(rt, err, errno.ENOMEM)
							require.Equal(rt, Idle, w.h.State())
							require.LessOrEqual(rt, w.h.tracker.MetadataFrames(), before+1, "the chunks are freed")
							return
						}
						require.NoError(rt, err)
					},
					"deactivate": func(rt *rapid.T) {
						if !w.h.Active() {
							rt.Skip("idle")
						}
						require.NoError(rt, w.h.Deactivate())
					},
					"": func(rt *rapid.T) {
						w.audit()
						require.Equal(rt, model, outRecord(rt, w.h))
					},
				})
			})
		})
	}
}

// roundTrip preserves folios of the given order (every one of a dense run,
// or every third of a run with the rest kept allocated: sparse), kexecs,
// and checks that exactly those folios come back, with their data, and
// that the tracker's pages were handed over and are free memory afterwards.
func roundTrip(t *testing.T, name kbuild.Tracker, orders []uint, sparse bool) {
	w := newTrackerWorld(t, name, 256<<20)
	mm := w.k.MM
	type pf struct {
		f     physmem.Folio
		order uint
		i     int // the fill pattern's name
	}
	var kept []pf
	var others []physmem.Folio // allocated, not preserved: scrubbed at the kexec
	w.k.RegisterRefOwner("test", func(v kernel.RefVisitor) {
		for _, f := range others {
			v.Folio(f.PFN(), 1, "test: not preserved")
		}
	})
	for i, order := range orders {
		f, err := mm.FolioAlloc(physmem.GFPKernel, order)
		require.NoError(t, err)
		if sparse && i%3 != 0 {
			others = append(others, f)
			continue
		}
		w.fill(f, order, i)
		_, err = w.h.PreserveFolio(f)
		require.NoError(t, err)
		mm.FolioPut(f)
		kept = append(kept, pf{f, order, i})
	}
	w.audit()
	require.NoError(t, w.h.Activate())
	w.audit()
	meta := slices.Collect(w.h.tracker.MetadataPages())
	require.NotEmpty(t, meta)

	w.kexec()
	require.Empty(t, w.h.HandoverRefused())
	want := map[Mem]bool{}
	for _, p := range kept {
		want[FolioMem(p.f, p.order)] = true
	}
	got := map[Mem]bool{}
	for _, r := range w.h.InRanges() {
		got[r.Mem] = true
	}
	require.Equal(t, want, got, "exactly the preserved folios come back")
	require.Zero(t, w.h.Incoming().Rejected)
	for _, p := range kept {
		f, err := w.h.ClaimMem(FolioMem(p.f, p.order))
		require.NoError(t, err)
		require.Equal(t, p.f, f)
		require.Equal(t, p.order, w.k.MM.FolioOrder(f))
		w.checkFill(f, p.order, p.i)
		w.k.MM.FolioPut(f)
	}
	w.h.ReturnUnclaimed()
	w.audit()
	c := w.k.FrameCounts()
	require.Zero(t, c.Tracker, "the previous kernel's record is not this kernel's")
	require.Zero(t, c.Preserved)
	require.Zero(t, c.Used, "every claimed folio was put: nothing leaked")
	for _, m := range meta {
		require.True(t, w.k.MM.PageInitialised(m.PFN()), "tracker page %v is ordinary memory", m)
		require.True(t, w.k.MM.PageIsFree(m.PFN()), "tracker page %v is free once read", m)
	}
}

func TestMainlineTrackersRoundTrip(t *testing.T) {
	for _, name := range mainlineTrackers {
		for order := uint(0); order <= physmem.MaxPageOrder; order++ {
			for _, sparse := range []bool{false, true} {
				layout := map[bool]string{false: "dense", true: "sparse"}[sparse]
				t.Run(fmt.Sprintf("%s/order%d/%s", name, order, layout), func(t *testing.T) {
					n := max(3, (16<<20>>physmem.PageShift)>>order) // 16 MiB, at least 3 folios
					if sparse {
						n = max(9, n)
					}
					roundTrip(t, name, slices.Repeat([]uint{order}, n), sparse)
				})
			}
		}
		t.Run(string(name)+"/mixed", func(t *testing.T) {
			var orders []uint
			for i := range 500 {
				orders = append(orders, 0)
				if i%10 == 0 {
					orders = append(orders, uint(1+i/10%4))
				}
				if i%50 == 0 {
					orders = append(orders, 9)
				}
				if i%250 == 0 {
					orders = append(orders, 10)
				}
			}
			roundTrip(t, name, orders, false)
		})
	}
}

// TestMainlineTrackersPreserveENOMEM: a preserve whose tracker page cannot
// be allocated (the page_alloc fault at each allocation it makes) fails
// with ENOMEM and records nothing: the folio is not preserved, the
// tracker keeps no page it allocated for it (radix may keep its root,
// which kho_init allocates once), and a later preserve works. An
// activation whose chunk cannot be allocated fails the same way and
// frees its chunks.
func TestMainlineTrackersPreserveENOMEM(t *testing.T) {
	for _, name := range mainlineTrackers {
		for nth := 1; nth <= KHOTreeMaxDepth; nth++ {
			t.Run(fmt.Sprintf("%s/alloc%d", name, nth), func(t *testing.T) {
				w := newTrackerWorld(t, name, 128<<20)
				w.preserve(0) // the root (radix), the order-0 bitmap (bitmaps)
				f, err := w.k.MM.FolioAlloc(physmem.GFPKernel, 9)
				require.NoError(t, err)
				before := w.h.tracker.MetadataFrames()
				require.NoError(t, w.faults.Arm(fault.PageAlloc, nth, 1))
				_, err = w.h.PreserveFolio(f)
				if !w.faults.Armed(fault.PageAlloc) {
					require.Equal(t, errno.ENOMEM, errno.Of(err))
					require.False(t, w.h.IsPreserved(f))
					require.Equal(t, before, w.h.tracker.MetadataFrames())
					require.NoError(t, w.h.CheckInvariants())
					_, err = w.h.PreserveFolio(f)
				} else {
					_ = w.faults.Hit(fault.PageAlloc) // this preserve needed fewer pages
				}
				require.NoError(t, err)
				w.k.MM.FolioPut(f)
				w.audit()
				require.Equal(t, map[physmem.Folio]uint{f: 9, outFirst(w): 0}, outRecord(t, w.h))
			})
		}
		t.Run(string(name)+"/activate", func(t *testing.T) {
			w := newTrackerWorld(t, name, 128<<20)
			w.preserve(0)
			w.preserve(3)
			before := w.h.tracker.MetadataFrames()
			require.NoError(t, w.faults.Arm(fault.PageAlloc, 3, 1)) // FDT buffer, first chunk, second chunk
			err := w.h.Activate()
			if name == kbuild.TrackerBitmaps {
				require.Equal(t, errno.ENOMEM, errno.Of(err))
				require.Equal(t, Idle, w.h.State())
				require.Equal(t, before, w.h.tracker.MetadataFrames(), "the first chunk was freed")
				w.audit()
				require.NoError(t, w.h.Activate())
			} else {
				require.NoError(t, err, "radix allocates nothing at activation")
				_ = w.faults.Hit(fault.PageAlloc)
			}
			w.audit()
		})
	}
}

// outFirst returns the order-0 folio the world preserved first.
func outFirst(w *trackerWorld) physmem.Folio {
	for f, order := range w.h.preservedSeq() {
		if order == 0 {
			return f
		}
	}
	return 0
}
