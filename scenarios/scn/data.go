package scn

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// Data is a data generator of the scenario language: the bytes a write
// produces, or the bytes a comparison expects, without ever holding them.
//
//   - rand(SEED): the byte at absolute file offset o depends only on
//     (SEED, o), so data written in pieces can be checked in one go.
//   - zeros: zero bytes.
//   - "text": exactly the bytes of the string, starting where the write or
//     the compared range starts.
//
// Generators are positioned by the absolute file offset of the bytes they
// produce; Start is where the write (or the compared range) begins, which
// only "text" needs.
type Data struct {
	kind dataKind
	seed uint64 // rand: the SEED as written
	key  uint64 // rand: the stream key derived from seed
	text string // text: the bytes
}

type dataKind int

const (
	dataRand dataKind = iota + 1
	dataZeros
	dataText
)

// RandData returns the generator rand(seed).
func RandData(seed uint64) Data {
	return Data{kind: dataRand, seed: seed, key: mix64(seed ^ 0x6b686f73696d)}
} // "khosim"

// ZerosData returns the generator zeros.
func ZerosData() Data { return Data{kind: dataZeros} }

// TextData returns the generator for the bytes of s.
func TextData(s string) Data { return Data{kind: dataText, text: s} }

// String prints the generator as a scenario writes it.
func (d Data) String() string {
	switch d.kind {
	case dataRand:
		return "rand(" + strconv.FormatUint(d.seed, 10) + ")"
	case dataZeros:
		return "zeros"
	case dataText:
		return Quote(d.text)
	}
	return "Data(?)"
}

// Len returns the length of a text generator, and -1 for the unbounded
// generators rand and zeros.
func (d Data) Len() int64 {
	if d.kind == dataText {
		return int64(len(d.text))
	}
	return -1
}

// Fill writes into dst the generator's bytes for absolute offsets
// [off, off+len(dst)) of a range that starts at start. For "text", the
// byte at off is text[off-start]; bytes past the text are zero (a caller
// checks lengths first).
func (d Data) Fill(dst []byte, start, off int64) {
	switch d.kind {
	case dataRand:
		randFill(d.key, dst, uint64(off))
	case dataZeros:
		clear(dst)
	case dataText:
		i := off - start
		n := 0
		if i >= 0 && i < int64(len(d.text)) {
			n = copy(dst, d.text[i:])
		}
		clear(dst[n:])
	}
}

// Mismatch compares got, the bytes at absolute offsets [off,
// off+len(got)) of a range that starts at start, with the generator. It
// returns the index in got of the first byte that differs, or -1.
func (d Data) Mismatch(got []byte, start, off int64) int {
	switch d.kind {
	case dataRand:
		return randMismatch(d.key, got, uint64(off))
	case dataZeros:
		return zeroMismatch(got)
	case dataText:
		i := off - start
		for j, c := range got {
			k := i + int64(j)
			if k < 0 || k >= int64(len(d.text)) || d.text[k] != c {
				return j
			}
		}
	}
	return -1
}

// At returns the generator's byte at absolute offset off of a range that
// starts at start (for messages).
func (d Data) At(start, off int64) byte {
	var b [1]byte
	d.Fill(b[:], start, off)
	return b[0]
}

// mix64 is the splitmix64 finalizer (Stafford's variant 13): a bijection on
// 64-bit words whose output bits each depend on every input bit.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// randWord is the i-th 64-bit word of the stream with the given key: the
// bytes at offsets [8i, 8i+8), little-endian. It is wyrand's output for the
// state key + (i+1)*p0 (one 64x64->128 multiply, folded), so any word is
// computed in a few cycles without the ones before it, and the words of
// one key are those of a wyrand sequence (which passes PractRand and
// BigCrush).
func randWord(key, i uint64) uint64 {
	s := key + (i+1)*0xa0761d6478bd642f
	hi, lo := bits.Mul64(s, s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// randFill fills dst with the stream bytes at offsets [off, off+len(dst)).
func randFill(key uint64, dst []byte, off uint64) {
	for len(dst) > 0 && off%8 != 0 {
		dst[0] = byte(randWord(key, off/8) >> (8 * (off % 8)))
		dst = dst[1:]
		off++
	}
	i := off / 8
	for len(dst) >= 32 {
		binary.LittleEndian.PutUint64(dst[0:8], randWord(key, i))
		binary.LittleEndian.PutUint64(dst[8:16], randWord(key, i+1))
		binary.LittleEndian.PutUint64(dst[16:24], randWord(key, i+2))
		binary.LittleEndian.PutUint64(dst[24:32], randWord(key, i+3))
		dst = dst[32:]
		i += 4
	}
	for len(dst) >= 8 {
		binary.LittleEndian.PutUint64(dst, randWord(key, i))
		dst = dst[8:]
		i++
	}
	if len(dst) > 0 {
		w := randWord(key, i)
		for j := range dst {
			dst[j] = byte(w >> (8 * j))
		}
	}
}

// randMismatch returns the index of the first byte of got that is not the
// stream byte at its offset, or -1.
func randMismatch(key uint64, got []byte, off uint64) int {
	j := 0
	for j < len(got) && (off+uint64(j))%8 != 0 {
		o := off + uint64(j)
		if got[j] != byte(randWord(key, o/8)>>(8*(o%8))) {
			return j
		}
		j++
	}
	i := (off + uint64(j)) / 8
	for ; j+32 <= len(got); j += 32 {
		g := got[j : j+32]
		d0 := binary.LittleEndian.Uint64(g[0:8]) ^ randWord(key, i)
		d1 := binary.LittleEndian.Uint64(g[8:16]) ^ randWord(key, i+1)
		d2 := binary.LittleEndian.Uint64(g[16:24]) ^ randWord(key, i+2)
		d3 := binary.LittleEndian.Uint64(g[24:32]) ^ randWord(key, i+3)
		if d0|d1|d2|d3 != 0 {
			break // the word loop below finds the byte
		}
		i += 4
	}
	for ; j+8 <= len(got); j += 8 {
		if w, want := binary.LittleEndian.Uint64(got[j:]), randWord(key, i); w != want {
			return j + firstDiff(w, want)
		}
		i++
	}
	if j < len(got) {
		w := randWord(key, i)
		for k := j; k < len(got); k++ {
			if got[k] != byte(w>>(8*(k-j))) {
				return k
			}
		}
	}
	return -1
}

// firstDiff returns the index of the lowest byte in which two
// little-endian words differ (they must differ).
func firstDiff(a, b uint64) int {
	x := a ^ b
	n := 0
	for x&0xff == 0 {
		x >>= 8
		n++
	}
	return n
}

// zeroMismatch returns the index of the first non-zero byte, or -1.
func zeroMismatch(got []byte) int {
	j := 0
	for ; j+8 <= len(got); j += 8 {
		if w := binary.LittleEndian.Uint64(got[j:]); w != 0 {
			return j + firstDiff(w, 0)
		}
	}
	for ; j < len(got); j++ {
		if got[j] != 0 {
			return j
		}
	}
	return -1
}
