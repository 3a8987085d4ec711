package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"khosim/errno"
)

func TestRoundTripKHOTree(t *testing.T) {
	want := khoTree()
	b := mustBuild(t, want)
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTree("", want, readTree(t, f, f.Root())); d != "" {
		t.Fatal(d)
	}
	if f.TotalSize() != len(b) || !bytes.Equal(f.Blob(), b) {
		t.Fatalf("TotalSize %d, blob %d bytes", f.TotalSize(), len(b))
	}
}

// TestWriterLayout checks the header and block layout fdt_create and
// fdt_finish produce.
func TestWriterLayout(t *testing.T) {
	b := mustBuild(t, khoTree(), [2]uint64{0x1000, 0x2000}, [2]uint64{1 << 40, 1 << 21})
	be := binary.BigEndian
	h := Header{
		Magic: be.Uint32(b[0:]), TotalSize: be.Uint32(b[4:]), OffDtStruct: be.Uint32(b[8:]),
		OffDtStrings: be.Uint32(b[12:]), OffMemRsvmap: be.Uint32(b[16:]), Version: be.Uint32(b[20:]),
		LastCompVersion: be.Uint32(b[24:]), BootCPUIDPhys: be.Uint32(b[28:]),
		SizeDtStrings: be.Uint32(b[32:]), SizeDtStruct: be.Uint32(b[36:]),
	}
	want := Header{
		Magic: FDT_MAGIC, TotalSize: uint32(len(b)), OffDtStruct: 48 + 3*16,
		OffDtStrings: 48 + 3*16 + h.SizeDtStruct, OffMemRsvmap: 48, Version: 17,
		LastCompVersion: 16, SizeDtStrings: h.SizeDtStrings, SizeDtStruct: h.SizeDtStruct,
	}
	if h != want {
		t.Fatalf("header\n got %+v\nwant %+v", h, want)
	}
	if int(h.OffDtStrings+h.SizeDtStrings) != len(b) {
		t.Fatalf("strings block does not end the blob")
	}
	if got := be.Uint32(b[h.OffDtStrings-4:]); got != FDT_END {
		t.Fatalf("structure block ends with %#x", got)
	}
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header() != h || f.NumMemRsv() != 2 {
		t.Fatalf("Header %+v NumMemRsv %d", f.Header(), f.NumMemRsv())
	}
	for i, e := range [][2]uint64{{0x1000, 0x2000}, {1 << 40, 1 << 21}} {
		a, s, err := f.GetMemRsv(i)
		if err != nil || a != e[0] || s != e[1] {
			t.Fatalf("GetMemRsv(%d) = %#x %#x %v", i, a, s, err)
		}
	}
	if _, _, err := f.GetMemRsv(2); !isErrno(err, errno.EINVAL) {
		t.Fatalf("GetMemRsv(2): %v", err)
	}
}

// TestStringsDedup checks that each property name is stored once, and that,
// as fdt_find_string_ does, a name that is the tail of a stored one reuses it.
func TestStringsDedup(t *testing.T) {
	root := &tnode{props: []tprop{{"compatible", str("a")}, {"vmem", nil}}}
	for i := range 50 {
		root.kids = append(root.kids, &tnode{name: fmt.Sprintf("n%d", i), props: []tprop{
			{"compatible", str("x")}, {"mem", le64(1, 2)}, {"size", le64(3)}, {"vmem", nil},
		}})
	}
	b := mustBuild(t, root)
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	// "mem" lives in "vmem\0"; libfdt stores later strings below earlier ones.
	if got, want := string(f.strs), "size\x00vmem\x00compatible\x00"; got != want {
		t.Fatalf("strings block %q, want %q", got, want)
	}
	if d := diffTree("", root, readTree(t, f, f.Root())); d != "" {
		t.Fatal(d)
	}
}

// TestWriterHelpers checks the value encodings of the Property helpers.
func TestWriterHelpers(t *testing.T) {
	w, err := Create(make([]byte, 4096))
	if err != nil {
		t.Fatal(err)
	}
	ph := []byte(nil)
	for _, err := range []error{
		w.FinishReserveMap(), w.BeginNode(""),
		w.PropertyString("s", "kho-v1"),
		w.PropertyStringList("l", "a", "", "bc"),
		w.PropertyStringList("l0"),
		w.PropertyU32("u32", 0x01020304),
		w.PropertyU64("u64", 0x0102030405060708),
		w.PropertyCells("cells", 1, 2, 0xffffffff),
		w.PropertyLE64("le", 0x0102030405060708, 9),
		func() (err error) { ph, err = w.PropertyPlaceholder("ph", 5); return err }(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(ph) != 5 || cap(ph) != 5 || !bytes.Equal(ph, make([]byte, 5)) {
		t.Fatalf("placeholder %x cap %d", ph, cap(ph))
	}
	copy(ph, "hello")
	if err := w.EndNode(); err != nil {
		t.Fatal(err)
	}
	b, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []byte
	}{
		{"s", []byte("kho-v1\x00")},
		{"l", []byte("a\x00\x00bc\x00")},
		{"l0", []byte{}},
		{"u32", []byte{1, 2, 3, 4}},
		{"u64", []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"cells", []byte{0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff}},
		{"le", []byte{8, 7, 6, 5, 4, 3, 2, 1, 9, 0, 0, 0, 0, 0, 0, 0}},
		{"ph", []byte("hello")},
	} {
		got, err := f.GetProp(0, tc.name)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if v, err := f.GetPropU32(0, "u32"); v != 0x01020304 || err != nil {
		t.Errorf("GetPropU32 = %#x, %v", v, err)
	}
	if v, err := f.GetPropU64(0, "u64"); v != 0x0102030405060708 || err != nil {
		t.Errorf("GetPropU64 = %#x, %v", v, err)
	}
	if v, err := f.GetPropLE64(0, "u64"); v != 0x0807060504030201 || err != nil {
		t.Errorf("GetPropLE64 = %#x, %v", v, err)
	}
	if v, err := f.GetPropString(0, "l"); v != "a" || err != nil {
		t.Errorf("GetPropString = %q, %v", v, err)
	}
	if v, err := f.GetPropStringList(0, "l"); fmt.Sprintf("%q", v) != `["a" "" "bc"]` || err != nil {
		t.Errorf("GetPropStringList = %q, %v", v, err)
	}
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"U32 of 8 bytes", second(f.GetPropU32(0, "u64"))},
		{"U64 of 4 bytes", second(f.GetPropU64(0, "u32"))},
		{"LE64 of 16 bytes", second(f.GetPropLE64(0, "le"))},
		{"String of cells", second(f.GetPropString(0, "cells"))},
		{"String of empty", second(f.GetPropString(0, "l0"))},
		{"StringList of cells", second(f.GetPropStringList(0, "cells"))},
	} {
		if !isErrno(tc.err, errno.EBADMSG) {
			t.Errorf("%s: %v, want EBADMSG", tc.what, tc.err)
		}
	}
	for _, err := range []error{
		second(f.GetPropU32(0, "nope")), second(f.GetPropU64(0, "nope")),
		second(f.GetPropLE64(0, "nope")), second(f.GetPropString(0, "nope")),
		second(f.GetPropStringList(0, "nope")),
	} {
		if !isErrno(err, errno.ENOENT) {
			t.Errorf("missing property: %v, want ENOENT", err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

type wop struct {
	name string
	do   func(w *Writer) error
}

var (
	opRsv      = wop{"rsv", func(w *Writer) error { return w.AddReserveMapEntry(1, 2) }}
	opFinRsv   = wop{"finrsv", (*Writer).FinishReserveMap}
	opRoot     = wop{"root", func(w *Writer) error { return w.BeginNode("") }}
	opEnd      = wop{"end", (*Writer).EndNode}
	opProp     = wop{"prop", func(w *Writer) error { return w.PropertyU32("p", 1) }}
	opFinish   = wop{"finish", func(w *Writer) error { _, err := w.Finish(); return err }}
	opNode     = func(name string) wop { return wop{"node " + name, func(w *Writer) error { return w.BeginNode(name) }} }
	opPropName = func(name string) wop {
		return wop{"prop " + name, func(w *Writer) error { return w.Property(name, nil) }}
	}
)

// TestWriterMisuse runs op sequences whose last op is a misuse: it must fail
// with EINVAL, leave the writer unchanged, and not call Fault.
func TestWriterMisuse(t *testing.T) {
	deep := []wop{opFinRsv}
	for range MaxDepth {
		deep = append(deep, opNode(""))
	}
	deep[1] = opRoot
	for _, tc := range []struct {
		name string
		ops  []wop
	}{
		{"begin_node before finish_reservemap", []wop{opRoot}},
		{"property before finish_reservemap", []wop{opProp}},
		{"finish before finish_reservemap", []wop{opFinish}},
		{"reservemap entry after finish_reservemap", []wop{opFinRsv, opRsv}},
		{"finish_reservemap twice", []wop{opFinRsv, opFinRsv}},
		{"end_node without begin", []wop{opFinRsv, opEnd}},
		{"end_node after root ended", []wop{opFinRsv, opRoot, opEnd, opEnd}},
		{"property outside a node", []wop{opFinRsv, opProp}},
		{"property after the root ended", []wop{opFinRsv, opRoot, opEnd, opProp}},
		{"property after a subnode", []wop{opFinRsv, opRoot, opNode("a"), opEnd, opProp}},
		{"named root", []wop{opFinRsv, opNode("root")}},
		{"second root", []wop{opFinRsv, opRoot, opEnd, opRoot}},
		{"finish with open nodes", []wop{opFinRsv, opRoot, opNode("a"), opFinish}},
		{"finish with open root", []wop{opFinRsv, opRoot, opFinish}},
		{"finish without root", []wop{opFinRsv, opFinish}},
		{"begin_node after finish", []wop{opFinRsv, opRoot, opEnd, opFinish, opNode("a")}},
		{"property after finish", []wop{opFinRsv, opRoot, opEnd, opFinish, opProp}},
		{"end_node after finish", []wop{opFinRsv, opRoot, opEnd, opFinish, opEnd}},
		{"finish twice", []wop{opFinRsv, opRoot, opEnd, opFinish, opFinish}},
		{"reservemap after finish", []wop{opFinRsv, opRoot, opEnd, opFinish, opRsv}},
		{"too deep", append(deep, opNode("x"))},
		{"node name with slash", []wop{opFinRsv, opRoot, opNode("a/b")}},
		{"node name with NUL", []wop{opFinRsv, opRoot, opNode("a\x00b")}},
		{"node name too long", []wop{opFinRsv, opRoot, opNode(strings.Repeat("n", MaxNameLen+1))}},
		{"empty property name", []wop{opFinRsv, opRoot, opPropName("")}},
		{"property name with @", []wop{opFinRsv, opRoot, opPropName("a@b")}},
		{"property name with NUL", []wop{opFinRsv, opRoot, opPropName("a\x00")}},
		{"property name with slash", []wop{opFinRsv, opRoot, opPropName("a/b")}},
		{"property name too long", []wop{opFinRsv, opRoot, opPropName(strings.Repeat("p", MaxNameLen+1))}},
		{"string with NUL", []wop{opFinRsv, opRoot, {"s", func(w *Writer) error { return w.PropertyString("s", "a\x00b") }}}},
		{"string list with NUL", []wop{opFinRsv, opRoot, {"l", func(w *Writer) error { return w.PropertyStringList("l", "a", "b\x00") }}}},
		{"negative placeholder", []wop{opFinRsv, opRoot, {"ph", func(w *Writer) error { _, err := w.PropertyPlaceholder("p", -1); return err }}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Create(make([]byte, 8192))
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range tc.ops[:len(tc.ops)-1] {
				if err := op.do(w); err != nil {
					t.Fatalf("setup op %s: %v", op.name, err)
				}
			}
			before := *w
			faults := 0
			w.Fault = func() error { faults++; return nil }
			last := tc.ops[len(tc.ops)-1]
			err = last.do(w)
			if !isErrno(err, errno.EINVAL) {
				t.Fatalf("%s: %v, want EINVAL", last.name, err)
			}
			if faults != 0 {
				t.Fatalf("Fault called %d times for a misuse", faults)
			}
			w.Fault = nil
			if w.structSize != before.structSize || w.strSize != before.strSize || w.depth != before.depth ||
				w.state != before.state || w.structOff != before.structOff || len(w.props) != len(before.props) {
				t.Fatalf("failed %s changed the writer", last.name)
			}
		})
	}
	// The boundary cases that are legal.
	for _, name := range []string{"", "a", "cpu@0", "A-Z,._+09", "@1", strings.Repeat("n", MaxNameLen)} {
		if _, err := buildTree(4096, &tnode{kids: []*tnode{{name: name}}}); err != nil {
			t.Errorf("node %q: %v", name, err)
		}
	}
	for _, name := range []string{"a", "#size-cells", "linux,phandle", "a?", strings.Repeat("p", MaxNameLen)} {
		if _, err := buildTree(4096, &tnode{props: []tprop{{name, nil}}}); err != nil {
			t.Errorf("property %q: %v", name, err)
		}
	}
	if _, err := buildTree(8192, chain(MaxDepth)); err != nil {
		t.Errorf("%d nested nodes: %v", MaxDepth, err)
	}
}

// chain is a tree of n nested nodes, the root included.
func chain(n int) *tnode {
	root := &tnode{}
	for p, i := root, 1; i < n; i++ {
		k := &tnode{name: fmt.Sprintf("d%d", i)}
		p.kids = []*tnode{k}
		p = k
	}
	return root
}

// TestENOSPCEveryBufferSize builds a tree into every buffer size below the
// one it needs: each must fail cleanly with ENOSPC; from the needed size
// up the blob is the same, whatever the buffer held before.
func TestENOSPCEveryBufferSize(t *testing.T) {
	root := khoTree()
	rsv := [2]uint64{0x1000, 0x1000}
	want := mustBuild(t, root, rsv)
	for size := 0; size < len(want)+64; size++ {
		buf := bytes.Repeat([]byte{0xa5}, size)
		w, err := Create(buf)
		if err == nil {
			err = w.AddReserveMapEntry(rsv[0], rsv[1])
		}
		if err == nil {
			err = w.FinishReserveMap()
		}
		if err == nil {
			err = root.write(w)
		}
		var b []byte
		if err == nil {
			b, err = w.Finish()
		}
		if size < len(want) {
			if !isErrno(err, errno.ENOSPC) {
				t.Fatalf("size %d: %v, want ENOSPC", size, err)
			}
			if w != nil && w.TotalSize() != 0 {
				t.Fatalf("size %d: TotalSize %d after failure", size, w.TotalSize())
			}
			continue
		}
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(b, want) || w.TotalSize() != len(want) {
			t.Fatalf("size %d: blob differs", size)
		}
	}
}

// TestFaultHook checks that Fault is consulted by every write operation,
// that its error fails the operation without changing anything, and that
// retrying the operation yields the blob an unfaulted run writes.
func TestFaultHook(t *testing.T) {
	root := khoTree()
	build := func(fault func() error) ([]byte, int, error) {
		w, err := Create(make([]byte, 1<<16))
		if err != nil {
			return nil, 0, err
		}
		calls := 0
		w.Fault = func() error { calls++; return fault() }
		// Every op is retried once after a failure.
		retry := func(op func() error) error {
			if err := op(); err != nil {
				if !isErrno(err, errno.ENOSPC) {
					return err
				}
				return op()
			}
			return nil
		}
		var walk func(n *tnode) error
		walk = func(n *tnode) error {
			if err := retry(func() error { return w.BeginNode(n.name) }); err != nil {
				return err
			}
			for _, p := range n.props {
				if err := retry(func() error { return w.Property(p.name, p.val) }); err != nil {
					return err
				}
			}
			for _, k := range n.kids {
				if err := walk(k); err != nil {
					return err
				}
			}
			return retry(w.EndNode)
		}
		err = retry(func() error { return w.AddReserveMapEntry(5, 6) })
		if err == nil {
			err = retry(w.FinishReserveMap)
		}
		if err == nil {
			err = walk(root)
		}
		var b []byte
		if err == nil {
			err = retry(func() (err error) { b, err = w.Finish(); return err })
		}
		return b, calls, err
	}
	want, ops, err := build(func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// 2 reservation-map ops, then 2 per node, 1 per property, 1 finish.
	nodes, props := 0, 0
	var count func(n *tnode)
	count = func(n *tnode) {
		nodes++
		props += len(n.props)
		for _, k := range n.kids {
			count(k)
		}
	}
	count(root)
	if wantOps := 2 + 2*nodes + props + 1; ops != wantOps {
		t.Fatalf("Fault called %d times, want %d", ops, wantOps)
	}
	for k := 1; k <= ops; k++ {
		n := 0
		b, calls, err := build(func() error {
			if n++; n == k {
				return errno.ENOSPC
			}
			return nil
		})
		if err != nil || !bytes.Equal(b, want) || calls != ops+1 {
			t.Fatalf("fault at op %d: err %v, calls %d, same blob %v", k, err, calls, bytes.Equal(b, want))
		}
	}
	// The hook's error is what the operation returns, wrapped.
	w, _ := Create(make([]byte, 4096))
	myErr := errors.New("injected")
	w.Fault = func() error { return myErr }
	if err := w.FinishReserveMap(); !errors.Is(err, myErr) || !strings.Contains(err.Error(), "fdt_finish_reservemap") {
		t.Fatalf("got %v", err)
	}
}

// TestCreateLimits covers fdt_create's buffer checks.
func TestCreateLimits(t *testing.T) {
	for _, n := range []int{0, 1, 47} {
		if _, err := Create(make([]byte, n)); !isErrno(err, errno.ENOSPC) {
			t.Errorf("Create(%d bytes): %v", n, err)
		}
	}
	if _, err := Create(nil); !isErrno(err, errno.ENOSPC) {
		t.Errorf("Create(nil): %v", err)
	}
	w, err := Create(make([]byte, 48))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.FinishReserveMap(); !isErrno(err, errno.ENOSPC) {
		t.Fatalf("FinishReserveMap in 48 bytes: %v", err)
	}
	// A huge placeholder fails with ENOSPC, not a panic or overflow.
	w, _ = Create(make([]byte, 4096))
	_ = w.FinishReserveMap()
	_ = w.BeginNode("")
	for _, n := range []int{4096, 1 << 31, 1<<63 - 1} {
		if _, err := w.PropertyPlaceholder("big", n); !isErrno(err, errno.ENOSPC) {
			t.Fatalf("placeholder of %d: %v", n, err)
		}
	}
	// An unfinished blob is not a blob.
	if _, err := Open(w.buf); !isErrno(err, errno.EBADMSG) {
		t.Fatalf("Open of an unfinished blob: %v", err)
	}
}

// FDBox names nodes after user-chosen box and fd names; libfdt's
// fdt_begin_node() takes any NUL-terminated name, and so does the writer.
func TestWriterAcceptsUserNames(t *testing.T) {
	names := []string{"a b", "a@1@2", "a#", "caf\xc3\xa9", "vm-1 ram"}
	buf := make([]byte, 4096)
	w, err := Create(buf)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.FinishReserveMap())
	must(w.BeginNode(""))
	for _, n := range names {
		must(w.BeginNode(n))
		must(w.EndNode())
	}
	must(w.EndNode())
	blob, err := w.Finish()
	must(err)
	f, err := Open(blob)
	must(err)
	for _, n := range names {
		off, err := f.SubnodeOffset(0, n)
		if err != nil {
			t.Fatalf("SubnodeOffset(%q): %v", n, err)
		}
		if got, _ := f.GetName(off); got != n {
			t.Fatalf("GetName = %q, want %q", got, n)
		}
	}
}
