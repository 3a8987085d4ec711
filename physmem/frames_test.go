package physmem

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"khosim/errno"
)

func TestNewFramesRejectsBadSizes(t *testing.T) {
	for _, size := range []uint64{0, 1, PageSize - 1, PageSize + 1, 3*PageSize + 17} {
		f, err := NewFrames(size)
		wantErr(t, err, errno.EINVAL)
		isTrue(t, f == nil, "NewFrames(%d) returned frames", size)
	}
	f, err := NewFrames(math.MaxUint64 &^ (PageSize - 1))
	wantErr(t, err, errno.ENOMEM)
	isTrue(t, f == nil, "NewFrames(huge) returned frames")
}

func TestFramesGeometry(t *testing.T) {
	f := newTestFrames(t, 5)
	eq(t, f.NumFrames(), uint64(5), "NumFrames")
	eq(t, f.Size(), uint64(5*PageSize), "Size")
	eq(t, len(f.Frame(4)), PageSize, "len(Frame)")
	eq(t, cap(f.Frame(4)), PageSize, "cap(Frame)")
	eq(t, len(f.Span(1, 3)), 3*PageSize, "len(Span)")
	eq(t, len(f.Span(5, 0)), 0, "len(empty Span at end)")
	isTrue(t, f.Valid(4) && !f.Valid(5), "Valid")
	// Frame and Span alias the same bytes.
	f.Frame(2)[7] = 0xAB
	eq(t, f.Span(1, 2)[PageSize+7], byte(0xAB), "Span sees Frame's write")
}

func TestFramesReadWriteAtBounds(t *testing.T) {
	f := newTestFrames(t, 2)
	size := PhysAddr(2 * PageSize)
	for _, tc := range []struct {
		name string
		addr PhysAddr
		n    int
		err  error
	}{
		{"first byte", 0, 1, nil},
		{"whole memory", 0, int(size), nil},
		{"last byte", size - 1, 1, nil},
		{"empty at end", size, 0, nil},
		{"straddles end", size - 4, 8, errno.EFAULT},
		{"starts at end", size, 1, errno.EFAULT},
		{"far beyond", 1 << 40, 1, errno.EFAULT},
		{"wraps around", math.MaxUint64 - 2, 8, errno.EFAULT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0x5A}, tc.n)
			n, err := f.WriteAt(buf, tc.addr)
			if tc.err != nil {
				wantErr(t, err, tc.err)
				eq(t, n, 0, "bytes written on error")
				_, err = f.ReadAt(buf, tc.addr)
				wantErr(t, err, tc.err)
				return
			}
			noErr(t, err)
			eq(t, n, tc.n, "bytes written")
			got := make([]byte, tc.n)
			n, err = f.ReadAt(got, tc.addr)
			noErr(t, err)
			eq(t, n, tc.n, "bytes read")
			isTrue(t, bytes.Equal(got, buf), "read back differs")
		})
	}
	// A failed write changes nothing.
	f.Zero(0, 2)
	_, err := f.WriteAt([]byte{1, 2, 3, 4}, size-2)
	wantErr(t, err, errno.EFAULT)
	isTrue(t, bytes.Equal(f.Span(0, 2), make([]byte, size)), "failed WriteAt wrote")
}

func TestFramesOutOfRangeIsABug(t *testing.T) {
	f := newTestFrames(t, 4)
	for name, op := range map[string]func(){
		"Frame(n)":          func() { f.Frame(4) },
		"Frame(huge)":       func() { f.Frame(math.MaxUint64) },
		"Span past end":     func() { f.Span(3, 2) },
		"Span wraps":        func() { f.Span(2, math.MaxUint64) },
		"Copy dst past":     func() { f.Copy(3, 0, 2) },
		"Copy src past":     func() { f.Copy(0, 3, 2) },
		"Zero past end":     func() { f.Zero(4, 1) },
		"Fill past end":     func() { f.Fill(1, 4, 0) },
		"Zero big past end": func() { f.Zero(0, zeroDiscardFrames) },
	} {
		t.Run(name, func(t *testing.T) { requireViolation(t, invPFNInRange, op) })
	}
}

func TestFramesCopyZeroFill(t *testing.T) {
	f := newTestFrames(t, 8)
	f.Fill(0, 2, 0x1122334455667788)
	for off := 0; off < 2*PageSize; off += 8 {
		eq(t, binary.LittleEndian.Uint64(f.Span(0, 2)[off:]), uint64(0x1122334455667788), "pattern at %d", off)
	}
	eq(t, f.Frame(2)[0], byte(0), "Fill stays inside its range")

	f.Copy(4, 0, 2)
	isTrue(t, bytes.Equal(f.Span(4, 2), f.Span(0, 2)), "Copy")
	// Overlapping copy behaves like memmove.
	f.Frame(1)[0] = 9
	f.Copy(2, 1, 3)
	eq(t, f.Frame(2)[0], byte(9), "overlapping Copy")

	f.Zero(1, 1)
	isTrue(t, bytes.Equal(f.Frame(1), make([]byte, PageSize)), "Zero")
	eq(t, f.Frame(0)[0], byte(0x88), "Zero stays inside its range")
}

func TestFramesZeroDiscardsLargeSpans(t *testing.T) {
	n := uint64(zeroDiscardFrames + 3)
	f := newTestFrames(t, n)
	f.Fill(0, n, ^uint64(0))
	f.Zero(1, zeroDiscardFrames)
	isTrue(t, bytes.Equal(f.Span(1, zeroDiscardFrames), make([]byte, zeroDiscardFrames*PageSize)), "discarded span reads zero")
	eq(t, f.Frame(0)[PageSize-1], byte(0xFF), "frame before the span kept")
	eq(t, f.Frame(zeroDiscardFrames + 1)[0], byte(0xFF), "frame after the span kept")
}

func TestDiscardUnalignedEdges(t *testing.T) {
	f := newTestFrames(t, 4)
	f.Fill(0, 4, ^uint64(0))
	b := f.Span(0, 4)
	discard(b[100 : 3*PageSize+50])
	isTrue(t, bytes.Equal(b[100:3*PageSize+50], make([]byte, 3*PageSize-50)), "discarded bytes read zero")
	eq(t, b[99], byte(0xFF), "byte before kept")
	eq(t, b[3*PageSize+50], byte(0xFF), "byte after kept")
	discard(b[10:20]) // inside one host page: cleared, not discarded
	eq(t, b[9]&b[20], byte(0xFF), "neighbours of a small discard kept")
}

func TestFramesCloseTwice(t *testing.T) {
	f, err := NewFrames(PageSize)
	noErr(t, err)
	noErr(t, f.Close())
	wantErr(t, f.Close(), errno.EBADF)
}

func TestFramesDiscard(t *testing.T) {
	f := newTestFrames(t, 4)
	f.Fill(0, 4, ^uint64(0))
	f.Discard(1, 2) // below zeroDiscardFrames: discarded all the same
	isTrue(t, bytes.Equal(f.Span(1, 2), make([]byte, 2*PageSize)), "discarded frames read zero")
	eq(t, f.Frame(0)[PageSize-1], byte(0xFF), "frame before kept")
	eq(t, f.Frame(3)[0], byte(0xFF), "frame after kept")
	f.Discard(3, 0) // nothing
	eq(t, f.Frame(3)[0], byte(0xFF), "empty discard")
}

// TestMemmapRecycled: a closed MM leaves its memmap's host memory to the
// frames, and the next MM's memmap is that memory, holding whatever the
// old kernel left in it (stale, not read) until memblock_free_all
// initialises every struct page.
func TestMemmapRecycled(t *testing.T) {
	frames := newTestFrames(t, 4096)
	mm1, err := NewMM(frames, nil)
	noErr(t, err)
	isTrue(t, !mm1.Memmap.stale, "a fresh memmap is all zero, not stale")
	noErr(t, mm1.MemblockFreeAll())
	f, err := mm1.FolioAlloc(GFPKernel, 3)
	noErr(t, err)
	mm1.Page(f.PFN()).Set(PGDirty | PGUptodate)
	for i := range mm1.Memmap.pages {
		if i%7 == 0 {
			mm1.Memmap.pages[i].index = ^uint64(0)
		}
	}
	old := uintptrOf(mm1.Memmap.mem)
	noErr(t, mm1.Close())
	isTrue(t, frames.spareMemmap != nil, "memmap kept for the next kernel")

	mm2, err := NewMM(frames, nil)
	noErr(t, err)
	defer mm2.Close()
	eq(t, uintptrOf(mm2.Memmap.mem), old, "the same host memory")
	isTrue(t, frames.spareMemmap == nil, "taken")
	isTrue(t, mm2.Memmap.stale, "recycled memmap is stale")
	eq(t, mm2.Memmap.pages[7].index, ^uint64(0), "not cleared at NewMM")
	noErr(t, mm2.CheckInvariants()) // stale bytes are not checked before memblock_free_all
	noErr(t, mm2.MemblockFreeAll())
	isTrue(t, !mm2.Memmap.stale, "initialised by memblock_free_all")
	for i := range mm2.Memmap.pages {
		if p := &mm2.Memmap.pages[i]; p.index != 0 || p.flags&^PGBuddy != 0 || p.refcount != 0 {
			t.Fatalf("page %d of the recycled memmap after memblock_free_all: %v", i, p)
		}
	}
	noErr(t, mm2.CheckInvariants())
}

// TestClearResident clears unaligned parts of a mapping: whole host pages,
// resident or not, read zero; the partial host pages at the edges are
// cleared only within the range.
func TestClearResident(t *testing.T) {
	f := newTestFrames(t, 6)
	f.Fill(0, 6, ^uint64(0))
	b := f.Span(0, 6)
	discard(b[2*PageSize : 3*PageSize]) // one host page not resident
	clearResident(b[100 : 5*PageSize+50])
	isTrue(t, bytes.Equal(b[100:5*PageSize+50], make([]byte, 5*PageSize-50)), "cleared bytes read zero")
	eq(t, b[99], byte(0xFF), "byte before kept")
	eq(t, b[5*PageSize+50], byte(0xFF), "byte after kept")
	clearResident(b[5*PageSize+60 : 5*PageSize+70]) // inside one host page
	eq(t, b[5*PageSize+59]&b[5*PageSize+70], byte(0xFF), "neighbours of a small clear kept")
	isTrue(t, bytes.Equal(b[5*PageSize+60:5*PageSize+70], make([]byte, 10)), "small clear reads zero")
	clearResident(b[:PageSize]) // aligned
	isTrue(t, bytes.Equal(b[:PageSize], make([]byte, PageSize)), "aligned clear reads zero")
}
