package kexec

import (
	"iter"
	"math/bits"
)

// bitmap is a set of frame numbers, one bit each.
type bitmap []uint64

// set adds bit i.
func (b bitmap) set(i uint64) { b[i>>6] |= 1 << (i & 63) }

// setClear adds bits [s, e) if none of them is set yet, and reports
// whether it did (bits already set leave the rest unspecified).
func (b bitmap) setClear(s, e uint64) bool {
	for s < e {
		w := s >> 6
		lo := s & 63
		hi := min(e-w<<6, 64)
		mask := ^uint64(0) << lo
		if hi < 64 {
			mask &= 1<<hi - 1
		}
		if b[w]&mask != 0 {
			return false
		}
		b[w] |= mask
		s = w<<6 + hi
	}
	return true
}

// nextSet returns the first set bit at or after i, or len(b)*64.
func (b bitmap) nextSet(i uint64) uint64 {
	n := uint64(len(b)) << 6
	if i >= n {
		return n
	}
	w := i >> 6
	word := b[w] & (^uint64(0) << (i & 63))
	for word == 0 {
		w++
		if w == uint64(len(b)) {
			return n
		}
		word = b[w]
	}
	return w<<6 + uint64(bits.TrailingZeros64(word))
}

// nextClear returns the first clear bit at or after i, or len(b)*64.
func (b bitmap) nextClear(i uint64) uint64 {
	n := uint64(len(b)) << 6
	if i >= n {
		return n
	}
	w := i >> 6
	word := ^b[w] & (^uint64(0) << (i & 63))
	for word == 0 {
		w++
		if w == uint64(len(b)) {
			return n
		}
		word = ^b[w]
	}
	return w<<6 + uint64(bits.TrailingZeros64(word))
}

// runs yields the maximal runs [s, e) of set bits, in order.
func (b bitmap) runs() iter.Seq2[uint64, uint64] {
	return func(yield func(uint64, uint64) bool) {
		n := uint64(len(b)) << 6
		for i := b.nextSet(0); i < n; {
			e := b.nextClear(i)
			if !yield(i, e) {
				return
			}
			i = b.nextSet(e)
		}
	}
}

// ones yields the set bits in [s, e), in order.
func (b bitmap) ones(s, e uint64) iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		for i := b.nextSet(s); i < e; i = b.nextSet(i + 1) {
			if !yield(i) {
				return
			}
		}
	}
}
