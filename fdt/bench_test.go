package fdt

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// memTree is one boxed memfd of 1 GiB in 4 KiB pages: 262144 kho_mem
// records (4 MiB) and their page indices (2 MiB).
func memTree() *tnode {
	const pages = 262144
	idx := make([]uint64, pages)
	for i := range idx {
		idx[i] = uint64(i)
	}
	return &tnode{props: []tprop{{"compatible", str("kho-v1")}}, kids: []*tnode{
		{name: "fdbox", props: []tprop{{"compatible", str("fdbox-v1")}}, kids: []*tnode{
			{name: "vm1", kids: []*tnode{
				{name: "guest-ram", props: []tprop{
					{"compatible", str("fdbox,memfd-v1")}, {"pos", le64(0)}, {"size", le64(1 << 30)},
					{"indices", le64(idx...)},
				}, kids: []*tnode{{props: []tprop{{"mem", khoMem(pages, 1<<32)}}}}},
			}},
		}},
	}}
}

// boxesTree is 10000 small boxed files.
func boxesTree() *tnode {
	fdbox := &tnode{name: "fdbox", props: []tprop{{"compatible", str("fdbox-v1")}}}
	for i := range 10000 {
		fdbox.kids = append(fdbox.kids, &tnode{name: fmt.Sprintf("box%d", i), props: []tprop{
			{"compatible", str("fdbox,memfd-v1")}, {"pos", le64(uint64(i))}, {"size", le64(4096)},
		}, kids: []*tnode{{props: []tprop{{"mem", khoMem(1, uint64(i)<<12)}}}}})
	}
	return &tnode{props: []tprop{{"compatible", str("kho-v1")}}, kids: []*tnode{fdbox}}
}

// mustBuildBig is mustBuild with room for the benchmark trees.
func mustBuildBig(b *testing.B, root *tnode) []byte {
	blob, err := buildTree(16<<20, root)
	if err != nil {
		b.Fatal(err)
	}
	return blob
}

func benchEncode(b *testing.B, root *tnode) {
	size := len(mustBuildBig(b, root))
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		w, err := Create(buf)
		if err == nil {
			err = w.FinishReserveMap()
		}
		if err == nil {
			err = root.write(w)
		}
		if err == nil {
			_, err = w.Finish()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMem4MiB(b *testing.B)    { benchEncode(b, memTree()) }
func BenchmarkEncode10000Nodes(b *testing.B) { benchEncode(b, boxesTree()) }

// BenchmarkDecodeMem4MiB opens the handover, finds the file and sums its
// records and indices, as the next kernel claims them.
func BenchmarkDecodeMem4MiB(b *testing.B) {
	blob := mustBuildBig(b, memTree())
	b.SetBytes(int64(len(blob)))
	for b.Loop() {
		f, err := Open(blob)
		if err != nil {
			b.Fatal(err)
		}
		off, err := f.PathOffset("/fdbox/vm1/guest-ram")
		if err != nil {
			b.Fatal(err)
		}
		idx, err := f.GetProp(off, "indices")
		if err != nil {
			b.Fatal(err)
		}
		var sum uint64
		for i := 0; i+8 <= len(idx); i += 8 {
			sum += binary.LittleEndian.Uint64(idx[i:])
		}
		err = f.Walk(func(node int, name string, v []byte) error {
			if name == "mem" {
				for i := 0; i+16 <= len(v); i += 16 {
					sum += binary.LittleEndian.Uint64(v[i+8:])
				}
			}
			return nil
		})
		if err != nil || sum != 262144*262143/2+262144*4096 {
			b.Fatal(err, sum)
		}
	}
}

// BenchmarkDecode10000Nodes opens the handover and reads every box.
func BenchmarkDecode10000Nodes(b *testing.B) {
	blob := mustBuildBig(b, boxesTree())
	b.SetBytes(int64(len(blob)))
	for b.Loop() {
		f, err := Open(blob)
		if err != nil {
			b.Fatal(err)
		}
		fdbox, err := f.PathOffset("/fdbox")
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for box := range f.Subnodes(fdbox) {
			if _, err := f.GetName(box); err != nil {
				b.Fatal(err)
			}
			if ok, err := f.NodeCheckCompatible(box, "fdbox,memfd-v1"); !ok || err != nil {
				b.Fatal(ok, err)
			}
			pos, err := f.GetPropLE64(box, "pos")
			if err != nil || pos != uint64(n) {
				b.Fatal(pos, err)
			}
			if _, err := f.GetPropLE64(box, "size"); err != nil {
				b.Fatal(err)
			}
			st, err := f.SubnodeOffset(box, "")
			if err != nil {
				b.Fatal(err)
			}
			if mem, err := f.GetProp(st, "mem"); err != nil || len(mem) != 16 {
				b.Fatal(err)
			}
			n++
		}
		if n != 10000 {
			b.Fatal(n)
		}
	}
}
