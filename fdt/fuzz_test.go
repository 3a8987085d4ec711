package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"khosim/errno"
)

// Work bound: every reader call below does work linear in the blob (plus
// a log factor per offset lookup), so all of them together must stay under
// stepsPerByte steps per input byte.
const (
	stepsPerByte = 200
	stepsBase    = 4096
)

// exercise opens data and calls every reader function on everything in it,
// checking what the answers must agree on. It returns the work done.
func exercise(t fataler, data []byte) int {
	t.Helper()
	f := new(FDT)
	err := f.checkHeader(data)
	if err == nil {
		err = f.checkFull()
	}
	if err != nil {
		if !errors.Is(err, errno.EBADMSG) {
			t.Fatalf("Open: %v, want EBADMSG", err)
		}
		return f.steps
	}
	props := 0
	for n := range f.Nodes() {
		_, _ = f.GetName(n)
		_, _ = f.GetPath(n)
		d, err := f.NodeDepth(n)
		if err != nil || d >= MaxDepth {
			t.Fatalf("NodeDepth(%d) = %d, %v", n, d, err)
		}
		if p, err := f.ParentOffset(n); err == nil {
			if pd, _ := f.NodeDepth(p); pd != d-1 || p >= n {
				t.Fatalf("parent of %d (depth %d) is %d (depth %d)", n, d, p, pd)
			}
		} else if n != f.Root() {
			t.Fatalf("ParentOffset(%d): %v", n, err)
		}
		kids := 0
		c, err := f.FirstSubnode(n)
		for ; err == nil; c, err = f.NextSubnode(c) {
			if p, _ := f.ParentOffset(c); p != n || c <= n {
				t.Fatalf("subnode %d of %d has parent %d", c, n, p)
			}
			kids++
		}
		for range f.Subnodes(n) {
			kids--
		}
		if kids != 0 {
			t.Fatalf("Subnodes and NextSubnode disagree on node %d", n)
		}
		_, _ = f.SubnodeOffset(n, "")
		_, _ = f.GetProp(n, "compatible")
		_, _ = f.GetProp(n, "mem")
		_, _ = f.NodeCheckCompatible(n, "kho-v1")
		p, err := f.FirstPropertyOffset(n)
		for ; err == nil; p, err = f.NextPropertyOffset(p) {
			if _, _, err := f.GetPropByOffset(p); err != nil {
				t.Fatalf("GetPropByOffset(%d): %v", p, err)
			}
			props++
		}
		for range f.Properties(n) {
			props--
		}
	}
	if props != 0 {
		t.Fatalf("property iterations disagree")
	}
	walked := 0
	if err := f.Walk(func(int, string, []byte) error { walked++; return nil }); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	if walked != len(f.props) {
		t.Fatalf("Walk saw %d of %d properties", walked, len(f.props))
	}
	paths := []string{"/", "/fdbox", "/fdbox/vm1", "/a/b/c/d/e", "box", "aliases/x", ""}
	for i := range f.nodes {
		if i < 4 || i == len(f.nodes)-1 {
			p, _ := f.path("", i)
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		_, _ = f.PathOffset(p)
	}
	if err := f.dump(io.Discard); err != nil {
		t.Fatalf("dump: %v", err)
	}
	return f.steps
}

// reencode checks that a blob the reader accepts, when its names are ones
// the writer writes, reads back the same after a rewrite.
func reencode(t fataler, data []byte) {
	t.Helper()
	f, err := Open(data)
	if err != nil {
		return
	}
	tree := readTree(t, f, f.Root())
	// Deduplication can make the strings block grow (libfdt reuses a
	// stored string's tail, not a later string's), hence ENOSPC.
	b, err := buildTree(4*len(data)+4096, tree)
	if err != nil {
		if !errors.Is(err, errno.EINVAL) && !errors.Is(err, errno.ENOSPC) {
			t.Fatalf("rewrite: %v", err)
		}
		return // a name the writer refuses
	}
	f2, err := Open(b)
	if err != nil {
		t.Fatalf("Open(rewrite): %v", err)
	}
	if d := diffTree("", tree, readTree(t, f2, f2.Root())); d != "" {
		t.Fatalf("rewrite differs: %s", d)
	}
}

func fuzzSeeds(t fataler) [][]byte {
	many := &tnode{props: []tprop{{"compatible", str("kho-v1")}}}
	for i := range 40 {
		many.kids = append(many.kids, &tnode{name: fmt.Sprintf("n%d", i), props: []tprop{{"mem", khoMem(1, uint64(i))}}})
	}
	v16 := mustBuild(t, lookupTree())
	binary.BigEndian.PutUint32(v16[20:], 16)
	return [][]byte{
		mustBuild(t, khoTree()),
		mustBuild(t, lookupTree(), [2]uint64{1, 2}),
		mustBuild(t, many),
		mustBuild(t, chain(MaxDepth)),
		v16,
		raw(okStruct, okStrs, nil),
		raw(cat(nop, beginNode(""), nop, propTok(0, nil), nop, beginNode("a@1"), nop, endNode, nop, endNode, end), okStrs, nil),
	}
}

func checkSteps(t fataler, data []byte, steps int) {
	t.Helper()
	if steps > stepsPerByte*len(data)+stepsBase {
		t.Fatalf("%d steps for %d bytes", steps, len(data))
	}
}

// FuzzOpen: any input opens or fails with EBADMSG, everything in it can be
// walked, looked up and dumped without panic, in linear work.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSteps(t, data, exercise(t, data))
		reencode(t, data)
	})
}

// mutate changes b in one of the ways that break blobs.
func mutate(r *rand.Rand, b []byte) []byte {
	b = bytes.Clone(b)
	words := []uint32{0, 1, 2, 3, 4, 8, 9, 16, 17, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff, uint32(len(b)), uint32(len(b) - 1)}
	switch r.IntN(6) {
	case 0:
		if len(b) > 0 {
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		}
	case 1, 2:
		if len(b) >= 4 {
			i := r.IntN(len(b)/4) * 4
			binary.BigEndian.PutUint32(b[i:], words[r.IntN(len(words))])
		}
	case 3:
		if len(b) >= 4 {
			i := r.IntN(len(b)/4) * 4
			binary.BigEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:])+uint32(r.IntN(9))-4)
		}
	case 4:
		b = b[:r.IntN(len(b)+1)]
	case 5:
		if len(b) > 8 {
			i, j := r.IntN(len(b)), r.IntN(len(b))
			n := r.IntN(min(len(b)-i, len(b)-j, 64) + 1)
			copy(b[i:i+n], b[j:j+n])
		}
	}
	return b
}

// TestMutatedBlobs is a deterministic, always-run slice of FuzzOpen.
func TestMutatedBlobs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	opened := 0
	for _, seed := range fuzzSeeds(t) {
		b := seed
		for i := range 1500 {
			if i%50 == 0 {
				b = seed
			}
			b = mutate(r, b)
			checkSteps(t, b, exercise(t, b))
			reencode(t, b)
			if _, err := Open(b); err == nil {
				opened++
			}
		}
	}
	if opened == 0 {
		t.Fatal("no mutated blob opened: the mutations test nothing past the header")
	}
	t.Logf("%d of %d mutated blobs opened", opened, 7*1500)
}

// TestLinearWorstCases builds hostile blobs of about 1 MiB shaped to make
// naive readers quadratic and checks the work and time stay linear.
func TestLinearWorstCases(t *testing.T) {
	const size = 1 << 20
	name255 := append(bytes.Repeat([]byte("p"), MaxNameLen), 0)
	longName := strings.Repeat("n", size/MaxDepth-16)
	var cases = []struct {
		name string
		blob func() []byte
	}{
		{"flat: one root, tiny children", func() []byte {
			st := beginNode("")
			for len(st) < size {
				st = append(st, cat(beginNode(""), endNode)...)
			}
			return raw(cat(st, endNode, end), nil, nil)
		}},
		{"deep chain of long names", func() []byte {
			var st []byte
			for i := range MaxDepth {
				st = append(st, beginNode(longName[:min(i, 1)*len(longName)])...)
			}
			for range MaxDepth {
				st = append(st, endNode...)
			}
			return raw(append(st, end...), nil, nil)
		}},
		{"many properties with the longest name", func() []byte {
			st := beginNode("")
			for len(st) < size {
				st = append(st, propTok(0, nil)...)
			}
			return raw(cat(st, endNode, end), name255, nil)
		}},
		{"properties pointing into an unterminated string", func() []byte {
			st := beginNode("")
			for len(st) < size/2 {
				st = append(st, propTok(uint32(len(st)%1000), nil)...)
			}
			return raw(cat(st, endNode, end), bytes.Repeat([]byte("x"), size/2), nil)
		}},
		{"NOPs", func() []byte {
			st := beginNode("")
			for len(st) < size {
				st = append(st, nop...)
			}
			return raw(cat(st, endNode, end), nil, nil)
		}},
		{"unterminated node name", func() []byte {
			return raw(cat(tok(FDT_BEGIN_NODE), bytes.Repeat([]byte("n"), size)), nil, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.blob()
			start := time.Now()
			steps := exercise(t, b)
			checkSteps(t, b, steps)
			t.Logf("%d bytes: %d steps (%.1f/byte) in %v", len(b), steps, float64(steps)/float64(len(b)), time.Since(start))
		})
	}
}
