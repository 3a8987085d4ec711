package scn

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// TestRandPositional checks the contract of rand(SEED): the byte at offset o
// depends only on (SEED, o), however the range is cut into pieces.
func TestRandPositional(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		seed := rapid.Uint64().Draw(t, "seed")
		off := rapid.Int64Range(0, 1<<40).Draw(t, "off")
		n := rapid.IntRange(0, 300).Draw(t, "n")
		d := RandData(seed)

		whole := make([]byte, n)
		d.Fill(whole, 0, off)

		// The same bytes generated one at a time.
		for i := range n {
			if got := d.At(0, off+int64(i)); got != whole[i] {
				t.Fatalf("byte %d: one at a time %#x, in one go %#x", i, got, whole[i])
			}
		}
		// And in two pieces cut anywhere.
		cut := rapid.IntRange(0, n).Draw(t, "cut")
		pieces := make([]byte, n)
		d.Fill(pieces[:cut], 0, off)
		d.Fill(pieces[cut:], 0, off+int64(cut))
		if !bytes.Equal(pieces, whole) {
			t.Fatalf("two pieces cut at %d differ from one fill", cut)
		}
		if i := d.Mismatch(whole, 0, off); i != -1 {
			t.Fatalf("Mismatch of the stream with itself at %d", i)
		}
		// A flipped byte is found exactly where it is.
		if n > 0 {
			at := rapid.IntRange(0, n-1).Draw(t, "at")
			whole[at] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
			if i := d.Mismatch(whole, 0, off); i != at {
				t.Fatalf("flipped byte %d, Mismatch says %d", at, i)
			}
		}
	})
}

func TestRandSeedsDiffer(t *testing.T) {
	a, b := make([]byte, 4096), make([]byte, 4096)
	RandData(1).Fill(a, 0, 0)
	RandData(2).Fill(b, 0, 0)
	if bytes.Equal(a, b) {
		t.Fatal("rand(1) and rand(2) produce the same page")
	}
	// Not trivially periodic: the two halves of a page differ.
	if bytes.Equal(a[:2048], a[2048:]) {
		t.Fatal("rand(1) repeats within a page")
	}
	// Roughly balanced bits.
	ones := 0
	for _, c := range a {
		for ; c != 0; c &= c - 1 {
			ones++
		}
	}
	if ones < 4096*4*95/100 || ones > 4096*4*105/100 {
		t.Fatalf("rand(1): %d one bits in a page, want about %d", ones, 4096*4)
	}
}

func TestZerosAndText(t *testing.T) {
	z := ZerosData()
	buf := []byte{1, 2, 3}
	z.Fill(buf, 0, 17)
	if !bytes.Equal(buf, []byte{0, 0, 0}) {
		t.Errorf("zeros filled % x", buf)
	}
	if i := z.Mismatch(make([]byte, 100), 0, 5); i != -1 {
		t.Errorf("zeros: mismatch at %d in zero bytes", i)
	}
	big := make([]byte, 100)
	big[42] = 1
	if i := z.Mismatch(big, 0, 5); i != 42 {
		t.Errorf("zeros: mismatch at %d, want 42", i)
	}
	if z.Len() != -1 {
		t.Errorf("zeros: Len %d, want -1", z.Len())
	}

	tx := TextData("hello")
	if tx.Len() != 5 {
		t.Errorf("text: Len %d", tx.Len())
	}
	buf = make([]byte, 3)
	tx.Fill(buf, 100, 102) // offsets 102..104 of a range starting at 100
	if string(buf) != "llo" {
		t.Errorf("text: filled %q, want \"llo\"", buf)
	}
	if i := tx.Mismatch([]byte("ello"), 10, 11); i != -1 {
		t.Errorf("text: mismatch at %d in equal bytes", i)
	}
	if i := tx.Mismatch([]byte("eXlo"), 10, 11); i != 1 {
		t.Errorf("text: mismatch at %d, want 1", i)
	}
	for _, c := range []struct {
		d    Data
		want string
	}{{tx, `"hello"`}, {RandData(7), "rand(7)"}, {z, "zeros"}} {
		if c.d.String() != c.want {
			t.Errorf("String() = %s, want %s", c.d.String(), c.want)
		}
	}
}

func BenchmarkRandFill(b *testing.B) {
	buf := make([]byte, 1<<20)
	d := RandData(7)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		d.Fill(buf, 0, int64(i)*int64(len(buf)))
	}
}

func BenchmarkRandMismatch(b *testing.B) {
	buf := make([]byte, 1<<20)
	d := RandData(7)
	d.Fill(buf, 0, 0)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if d.Mismatch(buf, 0, 0) != -1 {
			b.Fatal("mismatch")
		}
	}
}
