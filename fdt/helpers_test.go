package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"khosim/errno"
)

// tprop and tnode are an in-memory tree for tests: the writer writes it,
// the reader reads it back.
type tprop struct {
	name string
	val  []byte
}

type tnode struct {
	name  string
	props []tprop
	kids  []*tnode
}

// write writes n and its subtree.
func (n *tnode) write(w *Writer) error {
	if err := w.BeginNode(n.name); err != nil {
		return err
	}
	for _, p := range n.props {
		if err := w.Property(p.name, p.val); err != nil {
			return err
		}
	}
	for _, k := range n.kids {
		if err := k.write(w); err != nil {
			return err
		}
	}
	return w.EndNode()
}

// buildTree writes root (and reservation entries) into a fresh buffer of
// size bytes.
func buildTree(size int, root *tnode, rsv ...[2]uint64) ([]byte, error) {
	w, err := Create(make([]byte, size))
	if err != nil {
		return nil, err
	}
	for _, r := range rsv {
		if err := w.AddReserveMapEntry(r[0], r[1]); err != nil {
			return nil, err
		}
	}
	if err := w.FinishReserveMap(); err != nil {
		return nil, err
	}
	if err := root.write(w); err != nil {
		return nil, err
	}
	return w.Finish()
}

// fataler is what test helpers need of *testing.T, *testing.B and *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustBuild(t fataler, root *tnode, rsv ...[2]uint64) []byte {
	t.Helper()
	b, err := buildTree(1<<20, root, rsv...)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return b
}

// readTree reads the subtree at off back with the offset-based API.
func readTree(t fataler, f *FDT, off int) *tnode {
	t.Helper()
	name, err := f.GetName(off)
	if err != nil {
		t.Fatalf("GetName(%d): %v", off, err)
	}
	n := &tnode{name: name}
	p, err := f.FirstPropertyOffset(off)
	for err == nil {
		pn, v, err2 := f.GetPropByOffset(p)
		if err2 != nil {
			t.Fatalf("GetPropByOffset(%d): %v", p, err2)
		}
		n.props = append(n.props, tprop{pn, v})
		p, err = f.NextPropertyOffset(p)
	}
	if !errors.Is(err, errno.ENOENT) {
		t.Fatalf("property iteration of node %d ended with %v", off, err)
	}
	c, err := f.FirstSubnode(off)
	for err == nil {
		n.kids = append(n.kids, readTree(t, f, c))
		c, err = f.NextSubnode(c)
	}
	if !errors.Is(err, errno.ENOENT) {
		t.Fatalf("subnode iteration of node %d ended with %v", off, err)
	}
	return n
}

// diffTree returns "" when a and b are the same tree, else where they differ.
func diffTree(path string, a, b *tnode) string {
	if a.name != b.name {
		return fmt.Sprintf("%s: name %q vs %q", path, a.name, b.name)
	}
	path += "/" + a.name
	if len(a.props) != len(b.props) {
		return fmt.Sprintf("%s: %d vs %d properties", path, len(a.props), len(b.props))
	}
	for i := range a.props {
		if a.props[i].name != b.props[i].name || !bytes.Equal(a.props[i].val, b.props[i].val) {
			return fmt.Sprintf("%s: property %d: %q=%x vs %q=%x", path, i,
				a.props[i].name, a.props[i].val, b.props[i].name, b.props[i].val)
		}
	}
	if len(a.kids) != len(b.kids) {
		return fmt.Sprintf("%s: %d vs %d subnodes", path, len(a.kids), len(b.kids))
	}
	for i := range a.kids {
		if d := diffTree(path, a.kids[i], b.kids[i]); d != "" {
			return d
		}
	}
	return ""
}

func str(s string) []byte { return append([]byte(s), 0) }

func strlist(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(append(b, s...), 0)
	}
	return b
}

func le64(v ...uint64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	return b
}

func be32s(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.BigEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// khoMem is n struct kho_mem {u64 addr; u64 size} records in x86 byte order.
func khoMem(n int, base uint64) []byte {
	v := make([]uint64, 0, 2*n)
	for i := range n {
		v = append(v, base+uint64(i)*0x2000, 0x1000)
	}
	return le64(v...)
}

// khoTree is a handover shaped like KHO's with the FDBox RFC's nodes: a
// box per VM, a file node per boxed memfd and its unnamed storage subnode
// holding "mem" records.
func khoTree() *tnode {
	file := func(name string, pos, size uint64, nrec int, base uint64) *tnode {
		return &tnode{name: name, props: []tprop{
			{"compatible", str("fdbox,memfd-v1")},
			{"pos", le64(pos)},
			{"size", le64(size)},
		}, kids: []*tnode{{name: "", props: []tprop{{"mem", khoMem(nrec, base)}}}}}
	}
	return &tnode{name: "", props: []tprop{{"compatible", str("kho-v1")}}, kids: []*tnode{
		{name: "fdbox", props: []tprop{{"compatible", str("fdbox-v1")}}, kids: []*tnode{
			{name: "vm1", props: []tprop{{"sealed", nil}}, kids: []*tnode{
				file("guest-ram", 0, 1<<20, 4, 0x100000),
				file("state", 4096, 8192, 2, 0x900000),
			}},
			{name: "vm2", kids: []*tnode{file("guest-ram", 0, 1<<16, 1, 0x4000000)}},
		}},
		{name: "memblock", props: []tprop{{"compatible", strlist("memblock-v1", "kho-v1")}}},
	}}
}

// pathOK reports whether every component of a node path is non-empty.
func pathOK(p string) bool { return !strings.Contains(p[1:]+"/", "//") }

func isErrno(err error, e errno.Errno) bool { return err != nil && errors.Is(err, e) }
