package pagecache

import (
	"encoding/binary"
	"slices"
	"testing"
)

// opReader decodes fuzz input into operation arguments; it yields zeros
// once the input runs out.
type opReader struct {
	data []byte
	h    *harness
}

func (r *opReader) u8() uint8 {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *opReader) uint(n int) uint64 {
	var buf [8]byte
	k := copy(buf[:n], r.data)
	r.data = r.data[k:]
	return binary.LittleEndian.Uint64(buf[:])
}

// index decodes an index: dense (12 bits), sparse (40 bits), near the top
// of the space, or inside an entry already stored.
func (r *opReader) index() uint64 {
	switch r.u8() % 4 {
	case 0:
		return r.uint(2) & 0xfff
	case 1:
		return r.uint(5)
	case 2:
		return ^uint64(0) - r.uint(2)
	default:
		if len(r.h.md.m) == 0 {
			return r.uint(2)
		}
		bases := make([]uint64, 0, len(r.h.md.m))
		for b := range r.h.md.m {
			bases = append(bases, b)
		}
		slices.Sort(bases)
		b := bases[int(r.u8())%len(bases)]
		return b + r.uint(2)%span(r.h.md.m[b].order)
	}
}

func (r *opReader) order() uint { return orders[r.u8()%uint8(len(orders))] }

func (r *opReader) entry() Entry {
	switch k := r.u8(); {
	case k < 128:
		return folio(r.uint(3))
	case k < 250:
		return ValueEntry(r.uint(3))
	default:
		return 0
	}
}

// FuzzXArray decodes the input as a sequence of operations, applies them
// to the XArray and the model, and checks they agree and the invariants
// hold after each one.
func FuzzXArray(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 9, 0, 5, 0, 0, 0})
	f.Add([]byte{0, 1, 1, 2, 3, 4, 5, 13, 0, 4, 3, 0, 0, 3, 0})
	f.Add([]byte{0, 2, 0, 0, 0, 0, 1, 0, 1, 4, 3, 0, 0, 7, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 14, 5, 6, 3, 0, 0, 7, 2, 0, 6, 1, 0, 3, 0, 0})
	f.Fuzz(runFuzzBody)
}

func runFuzzBody(t *testing.T, data []byte) {
	h := newHarness(t)
	r := &opReader{data: data, h: h}
	for steps := 0; len(r.data) > 0 && steps < 200; steps++ {
		switch r.u8() % 12 {
		case 0:
			i, o := r.index(), r.order()
			h.store(t, i&^(span(o)-1), r.entry(), o)
		case 1:
			h.store(t, r.index(), r.entry(), r.order()) // maybe misaligned
		case 2:
			i, o := r.index(), r.order()
			h.insert(t, i&^(span(o)-1), r.entry(), o)
		case 3:
			h.erase(t, r.index())
		case 4:
			h.split(t, r.index(), r.order())
		case 5:
			h.load(t, r.index())
		case 6:
			h.mark(t, r.index(), Mark{r.u8() % xaMarkCount}, int(r.u8()%3))
		case 7:
			start := r.index()
			max := start + r.uint(3)
			if max < start {
				max = ^uint64(0)
			}
			h.extract(t, start, max, int(r.u8()%5)-2, r.u8()%2 == 0)
		case 8:
			i, o := r.index(), r.order()
			n := int(r.u8() % 100)
			for k := 0; k < n && i&^(span(o)-1)+uint64(k)*span(o) >= i&^(span(o)-1); k++ {
				h.store(t, i&^(span(o)-1)+uint64(k)*span(o), folio(uint64(k)), o)
			}
		case 9:
			i, o := r.index(), r.order()
			h.reserve(t, i&^(span(o)-1), o)
		case 10:
			h.release(t, r.index())
		case 11:
			h.fault(t, 1+int(r.u8()%4))
		}
		h.check(t)
	}
}
