package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"khosim/errno"
)

// Raw structure-block pieces, for blobs the writer refuses to write.
func tok(v ...uint32) []byte { return be32s(v...) }

func beginNode(name string) []byte {
	b := append(tok(FDT_BEGIN_NODE), name...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func propTok(nameoff uint32, val []byte) []byte {
	b := append(tok(FDT_PROP, uint32(len(val)), nameoff), val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// raw lays out header (40 bytes), an empty reservation map at 40, the
// structure block at 56 and the strings block after it; mutate may change
// the header before it is written.
func raw(st, strs []byte, mutate func(h *Header)) []byte {
	h := Header{
		Magic: FDT_MAGIC, OffMemRsvmap: 40, OffDtStruct: 56, Version: 17, LastCompVersion: 16,
		OffDtStrings: 56 + uint32(len(st)), SizeDtStruct: uint32(len(st)), SizeDtStrings: uint32(len(strs)),
	}
	h.TotalSize = h.OffDtStrings + h.SizeDtStrings
	if mutate != nil {
		mutate(&h)
	}
	b := make([]byte, 56, 56+len(st)+len(strs))
	h.put(b)
	return append(append(b, st...), strs...)
}

var (
	endNode = tok(FDT_END_NODE)
	end     = tok(FDT_END)
	nop     = tok(FDT_NOP)
	// okStruct: / { p = <1>; a { }; };
	okStruct = cat(beginNode(""), propTok(0, tok(1)), beginNode("a"), endNode, endNode, end)
	okStrs   = []byte("p\x00")
)

func nested(n int) []byte {
	var b []byte
	for range n {
		b = append(b, beginNode("")...)
	}
	for range n {
		b = append(b, endNode...)
	}
	return append(b, end...)
}

func TestOpenRejects(t *testing.T) {
	ok := raw(okStruct, okStrs, nil)
	if _, err := Open(ok); err != nil {
		t.Fatalf("base blob: %v", err)
	}
	h := func(m func(h *Header)) []byte { return raw(okStruct, okStrs, m) }
	long := append(bytes.Repeat([]byte("p"), MaxNameLen+1), 0)
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"7 bytes", ok[:7]},
		{"27 bytes", ok[:27]},
		{"39 bytes", ok[:39]},
		{"bad magic", h(func(h *Header) { h.Magic = 0xd00dfeee })},
		{"sequential-write magic", h(func(h *Header) { h.Magic = FDT_SW_MAGIC })},
		{"version 15", h(func(h *Header) { h.Version, h.LastCompVersion = 15, 15 })},
		{"last_comp_version 18", h(func(h *Header) { h.Version, h.LastCompVersion = 18, 18 })},
		{"version below last_comp_version", h(func(h *Header) { h.Version, h.LastCompVersion = 16, 17 })},
		{"totalsize beyond the bytes", h(func(h *Header) { h.TotalSize++ })},
		{"totalsize below the header", h(func(h *Header) { h.TotalSize = 39 })},
		{"totalsize 4 GiB", h(func(h *Header) { h.TotalSize = 0xffffffff })},
		{"rsvmap inside the header", h(func(h *Header) { h.OffMemRsvmap = 32 })},
		{"rsvmap beyond totalsize", h(func(h *Header) { h.OffMemRsvmap = h.TotalSize + 8 })},
		{"rsvmap misaligned", h(func(h *Header) { h.OffMemRsvmap = 44 })},
		{"rsvmap without terminator", h(func(h *Header) { h.OffMemRsvmap = h.TotalSize - 8 })},
		{"struct inside the header", h(func(h *Header) { h.OffDtStruct = 36 })},
		{"struct misaligned", h(func(h *Header) { h.OffDtStruct = 57; h.SizeDtStruct-- })},
		{"struct past totalsize", h(func(h *Header) { h.SizeDtStruct += 3 })},
		{"struct size wraps", h(func(h *Header) { h.SizeDtStruct = 0xfffffff0 })},
		{"strings past totalsize", h(func(h *Header) { h.SizeDtStrings++ })},
		{"strings offset wraps", h(func(h *Header) { h.OffDtStrings = 0xffffffff })},
		{"strings overlap struct", h(func(h *Header) { h.OffDtStrings = 56 })},
		{"strings overlap rsvmap", h(func(h *Header) { h.OffDtStrings, h.SizeDtStrings = 40, 16 })},
		{"struct overlaps rsvmap", raw(cat(nop, nop, okStruct), okStrs, func(h *Header) { h.OffMemRsvmap = 56 })},
		{"struct without FDT_END", raw(okStruct[:len(okStruct)-4], okStrs, nil)},
		{"struct cut in a token", raw(okStruct[:len(okStruct)-2], okStrs, nil)},
		{"empty struct", raw(nil, okStrs, nil)},
		{"unknown token", raw(cat(beginNode(""), tok(7), endNode, end), okStrs, nil)},
		{"FDT_END only", raw(end, nil, nil)},
		{"NOPs and FDT_END", raw(cat(nop, nop, end), nil, nil)},
		{"node name runs past struct", raw(cat(tok(FDT_BEGIN_NODE), []byte("abcd")), nil, nil)},
		{"name padding runs past struct", raw(cat(tok(FDT_BEGIN_NODE), []byte{0}), nil, nil)},
		{"root with a name", raw(cat(beginNode("r"), endNode, end), nil, nil)},
		{"two roots", raw(cat(beginNode(""), endNode, beginNode(""), endNode, end), nil, nil)},
		{"NOP after the root", raw(cat(beginNode(""), endNode, nop, end), nil, nil)},
		{"END_NODE after the root", raw(cat(beginNode(""), endNode, endNode, end), nil, nil)},
		{"END_NODE first", raw(cat(endNode, end), nil, nil)},
		{"FDT_END inside a node", raw(cat(beginNode(""), beginNode("a"), endNode, end), nil, nil)},
		{"property outside a node", raw(cat(propTok(0, nil), beginNode(""), endNode, end), okStrs, nil)},
		{"property after a subnode", raw(cat(beginNode(""), beginNode("a"), endNode, propTok(0, nil), endNode, end), okStrs, nil)},
		{"property header cut", raw(cat(beginNode(""), tok(FDT_PROP, 0)), okStrs, nil)},
		{"property value past struct", raw(cat(beginNode(""), tok(FDT_PROP, 1000, 0), endNode, endNode, end), okStrs, nil)},
		{"property value length 4 GiB", raw(cat(beginNode(""), tok(FDT_PROP, 0xfffffffc, 0), endNode, end), okStrs, nil)},
		{"name offset past strings", raw(cat(beginNode(""), propTok(2, nil), endNode, end), okStrs, nil)},
		{"name offset 4 GiB", raw(cat(beginNode(""), propTok(0xffffffff, nil), endNode, end), okStrs, nil)},
		{"name without NUL", raw(cat(beginNode(""), propTok(0, nil), endNode, end), []byte("p"), nil)},
		{"name too long", raw(cat(beginNode(""), propTok(0, nil), endNode, end), long, nil)},
		{"too deep", raw(nested(MaxDepth+1), nil, nil)},
		{"version 16 without FDT_END", raw(okStruct[:len(okStruct)-4], nil, func(h *Header) { h.Version = 16 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.blob)
			if f != nil || !isErrno(err, errno.EBADMSG) {
				t.Fatalf("Open: %v, %v; want EBADMSG", f, err)
			}
			if !strings.Contains(err.Error(), "FDT_ERR_") {
				t.Fatalf("error %q names no FDT_ERR code", err)
			}
			var w bytes.Buffer
			if err := Dump(&w, tc.blob); !isErrno(err, errno.EBADMSG) || w.Len() != 0 {
				t.Fatalf("Dump: %v, wrote %d bytes", err, w.Len())
			}
		})
	}
}

// TestOpenAccepts covers legal blobs the writer does not produce.
func TestOpenAccepts(t *testing.T) {
	name255 := append(bytes.Repeat([]byte("p"), MaxNameLen), 0)
	for _, tc := range []struct {
		name  string
		blob  []byte
		nodes int
		root  int
	}{
		{"NOPs everywhere", raw(cat(nop, beginNode(""), nop, propTok(0, nil), nop, beginNode("a"), nop, endNode, nop, endNode, end), okStrs, nil), 2, 4},
		{"deepest", raw(nested(MaxDepth), nil, nil), MaxDepth, 0},
		{"255-byte property name", raw(cat(beginNode(""), propTok(0, nil), endNode, end), name255, nil), 1, 0},
		{"bytes after totalsize", append(raw(okStruct, okStrs, nil), 1, 2, 3), 2, 0},
		{"struct block longer than used", raw(cat(okStruct, []byte{0xff, 0xff, 0xff, 0xff}), okStrs, nil), 2, 0},
		{"version 16", raw(okStruct, okStrs, func(h *Header) { h.Version = 16; h.SizeDtStruct = 0xffffffff }), 2, 0},
		{"version 16 strings first", func() []byte {
			// header, rsvmap, strings at 56, struct after.
			b := raw(nil, nil, nil)[:56]
			h := Header{Magic: FDT_MAGIC, OffMemRsvmap: 40, OffDtStrings: 56, SizeDtStrings: 4,
				OffDtStruct: 60, Version: 16, LastCompVersion: 16}
			h.TotalSize = 60 + uint32(len(okStruct))
			h.put(b)
			binary.BigEndian.PutUint32(b[36:], 0xdeadbeef) // not a v16 field
			return cat(b, []byte("p\x00\x00\x00"), okStruct)
		}(), 2, 0},
		{"last_comp_version 2", raw(okStruct, okStrs, func(h *Header) { h.LastCompVersion = 2 }), 2, 0},
		{"empty strings block", raw(cat(beginNode(""), endNode, end), nil, nil), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.blob)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(slices.Collect(f.Nodes())); n != tc.nodes || f.Root() != tc.root {
				t.Fatalf("%d nodes, root at %d; want %d at %d", n, f.Root(), tc.nodes, tc.root)
			}
			if off, err := f.PathOffset("/"); off != tc.root || err != nil {
				t.Fatalf("PathOffset(/) = %d, %v", off, err)
			}
			if err := Dump(new(bytes.Buffer), tc.blob); err != nil {
				t.Fatalf("Dump: %v", err)
			}
		})
	}
}

// lookupTree has aliases, unit addresses, duplicate-looking names and an
// unnamed node.
func lookupTree() *tnode {
	return &tnode{props: []tprop{{"compatible", strlist("kho-v1")}}, kids: []*tnode{
		{name: "aliases", props: []tprop{
			{"box", str("/fdbox/vm1")},
			{"cpu", str("/cpus/cpu@1")},
			{"rel", str("fdbox")},
			{"two", strlist("/fdbox", "/cpus")},
			{"unterminated", []byte("/fdbox")},
			{"empty", nil},
		}},
		{name: "cpus", kids: []*tnode{{name: "cpu@0"}, {name: "cpu@1"}, {name: "cpu"}, {name: "@2"}}},
		{name: "fdbox", props: []tprop{{"compatible", strlist("fdbox-v1", "x")}}, kids: []*tnode{
			{name: "vm1", kids: []*tnode{{name: "", props: []tprop{{"mem", khoMem(2, 0x1000)}}}}},
			{name: "vm10"},
		}},
	}}
}

func TestLookups(t *testing.T) {
	b := mustBuild(t, lookupTree())
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets by path, found by walking.
	at := map[string]int{}
	for n := range f.Nodes() {
		p, err := f.GetPath(n)
		if err != nil {
			t.Fatal(err)
		}
		at[p] = n
	}
	if len(at) != 11 {
		t.Fatalf("paths: %v", at)
	}
	for _, tc := range []struct {
		path string
		want string // path of the node found, "" for an error
		err  errno.Errno
	}{
		{"/", "/", 0},
		{"/fdbox", "/fdbox", 0},
		{"//fdbox///vm1/", "/fdbox/vm1", 0},
		{"/fdbox/vm1", "/fdbox/vm1", 0},
		{"/fdbox/vm10", "/fdbox/vm10", 0},
		{"/fdbox/vm", "", errno.ENOENT},
		{"/cpus/cpu@1", "/cpus/cpu@1", 0},
		{"/cpus/cpu", "/cpus/cpu@0", 0}, // fdt_nodename_eq_: no unit address matches any
		{"/cpus/cpu@", "", errno.ENOENT},
		{"/cpus/cpu@2", "", errno.ENOENT},
		{"/cpus/@2", "/cpus/@2", 0},
		{"/nope", "", errno.ENOENT},
		{"/fdbox/vm1/x", "", errno.ENOENT},
		{"box", "/fdbox/vm1", 0},
		{"box/", "/fdbox/vm1", 0},
		{"cpu", "/cpus/cpu@1", 0},
		{"box/x", "", errno.ENOENT},
		{"", "", errno.EINVAL},
		{"nope", "", errno.EINVAL},
		{"nope/fdbox", "", errno.EINVAL},
		{"rel", "", errno.EINVAL},
		{"two", "", errno.EINVAL},
		{"unterminated", "", errno.EINVAL},
		{"empty", "", errno.EINVAL},
	} {
		off, err := f.PathOffset(tc.path)
		if tc.err != 0 {
			if !isErrno(err, tc.err) {
				t.Errorf("PathOffset(%q) = %d, %v; want %v", tc.path, off, err, tc.err)
			}
			continue
		}
		if err != nil || off != at[tc.want] {
			t.Errorf("PathOffset(%q) = %d, %v; want %d", tc.path, off, err, at[tc.want])
		}
	}

	vm1 := at["/fdbox/vm1"]
	unnamed := at["/fdbox/vm1/"]
	if off, err := f.SubnodeOffset(vm1, ""); off != unnamed || err != nil {
		t.Fatalf("SubnodeOffset(vm1, \"\") = %d, %v", off, err)
	}
	if _, err := f.SubnodeOffset(at["/fdbox"], "vm2"); !isErrno(err, errno.ENOENT) {
		t.Fatalf("SubnodeOffset(vm2): %v", err)
	}
	for path, n := range at {
		if name, err := f.GetName(n); err != nil || name != path[strings.LastIndexByte(path, '/')+1:] {
			t.Errorf("GetName(%s) = %q, %v", path, name, err)
		}
		wantDepth := strings.Count(path, "/")
		if path == "/" {
			wantDepth = 0
		}
		if d, err := f.NodeDepth(n); err != nil || d != wantDepth {
			t.Errorf("NodeDepth(%s) = %d, %v", path, d, err)
		}
		p, err := f.ParentOffset(n)
		if path == "/" {
			if !isErrno(err, errno.ENOENT) {
				t.Errorf("ParentOffset(/) = %d, %v", p, err)
			}
			continue
		}
		wantParent := path[:strings.LastIndexByte(path, '/')]
		if wantParent == "" {
			wantParent = "/"
		}
		if err != nil || p != at[wantParent] {
			t.Errorf("ParentOffset(%s) = %d, %v; want %d", path, p, err, at[wantParent])
		}
		if pathOK(path) && path != "/cpus/cpu" {
			if got, err := f.PathOffset(path); err != nil || got != n {
				t.Errorf("PathOffset(GetPath) of %s = %d, %v", path, got, err)
			}
		}
	}
	if name, _ := f.GetName(unnamed); name != "" {
		t.Fatalf("unnamed node named %q", name)
	}

	// Subnodes and NextSubnode agree.
	var kids []string
	for c := range f.Subnodes(at["/cpus"]) {
		n, _ := f.GetName(c)
		kids = append(kids, n)
	}
	if fmt.Sprint(kids) != "[cpu@0 cpu@1 cpu @2]" {
		t.Fatalf("Subnodes(/cpus) = %q", kids)
	}
	for range f.Subnodes(at["/cpus"]) {
		break // early stop must not panic
	}
	if _, err := f.FirstSubnode(at["/cpus/cpu"]); !isErrno(err, errno.ENOENT) {
		t.Fatalf("FirstSubnode(leaf): %v", err)
	}
	if _, err := f.NextSubnode(at["/cpus/@2"]); !isErrno(err, errno.ENOENT) {
		t.Fatalf("NextSubnode(last): %v", err)
	}
	if _, err := f.NextSubnode(f.Root()); !isErrno(err, errno.ENOENT) {
		t.Fatalf("NextSubnode(root): %v", err)
	}

	// Properties.
	for _, tc := range []struct {
		node, compat string
		ok           bool
		err          errno.Errno
	}{
		{"/", "kho-v1", true, 0},
		{"/", "kho", false, 0},
		{"/fdbox", "fdbox-v1", true, 0},
		{"/fdbox", "x", true, 0},
		{"/fdbox", "fdbox-v1\x00x", false, 0},
		{"/fdbox", "", false, 0},
		{"/cpus", "x", false, errno.ENOENT},
	} {
		ok, err := f.NodeCheckCompatible(at[tc.node], tc.compat)
		if ok != tc.ok || tc.err == 0 && err != nil || tc.err != 0 && !isErrno(err, tc.err) {
			t.Errorf("NodeCheckCompatible(%s, %q) = %v, %v", tc.node, tc.compat, ok, err)
		}
	}
	if v, err := f.GetProp(unnamed, "mem"); err != nil || !bytes.Equal(v, khoMem(2, 0x1000)) || cap(v) != len(v) {
		t.Fatalf("GetProp(mem) = %x, %v", v, err)
	}
	if _, err := f.GetProp(unnamed, "me"); !isErrno(err, errno.ENOENT) {
		t.Fatalf("GetProp(me): %v", err)
	}
	if _, err := f.GetProp(unnamed, "memory"); !isErrno(err, errno.ENOENT) {
		t.Fatalf("GetProp(memory): %v", err)
	}
	if _, err := f.FirstPropertyOffset(at["/cpus"]); !isErrno(err, errno.ENOENT) {
		t.Fatalf("FirstPropertyOffset(no props): %v", err)
	}
	var names []string
	for name, v := range f.Properties(at["/aliases"]) {
		names = append(names, fmt.Sprintf("%s:%d", name, len(v)))
	}
	if fmt.Sprint(names) != "[box:11 cpu:12 rel:6 two:13 unterminated:6 empty:0]" {
		t.Fatalf("Properties(/aliases) = %v", names)
	}
	for range f.Properties(at["/aliases"]) {
		break
	}
}

func TestStringListContains(t *testing.T) {
	for _, tc := range []struct {
		list string
		s    string
		want bool
	}{
		{"a\x00b\x00", "a", true},
		{"a\x00b\x00", "b", true},
		{"a\x00b\x00", "", false},
		{"a\x00\x00b\x00", "", true},
		{"ab\x00", "a", false},
		{"a\x00b", "b", false}, // unterminated last string
		{"", "", false},
		{"kho-v1\x00", "kho-v1", true},
		{"kho-v1\x00", "kho-v1\x00", false},
	} {
		if got := StringListContains([]byte(tc.list), tc.s); got != tc.want {
			t.Errorf("StringListContains(%q, %q) = %v", tc.list, tc.s, got)
		}
	}
}

func TestBadOffsets(t *testing.T) {
	b := mustBuild(t, lookupTree())
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	node, _ := f.PathOffset("/fdbox")
	poff, _ := f.FirstPropertyOffset(node)
	for _, off := range []int{-1, -4, 1, 2, node + 4, poff, len(f.st) - 4, len(f.st), 1 << 40, -1 << 62} {
		for name, err := range map[string]error{
			"GetName":             second(f.GetName(off)),
			"GetPath":             second(f.GetPath(off)),
			"ParentOffset":        second(f.ParentOffset(off)),
			"NodeDepth":           second(f.NodeDepth(off)),
			"FirstSubnode":        second(f.FirstSubnode(off)),
			"NextSubnode":         second(f.NextSubnode(off)),
			"SubnodeOffset":       second(f.SubnodeOffset(off, "vm1")),
			"GetProp":             second(f.GetProp(off, "compatible")),
			"NodeCheckCompatible": second(f.NodeCheckCompatible(off, "fdbox-v1")),
			"FirstPropertyOffset": second(f.FirstPropertyOffset(off)),
		} {
			if !isErrno(err, errno.EINVAL) || !strings.Contains(err.Error(), "FDT_ERR_BADOFFSET") {
				t.Errorf("%s(%d): %v, want EINVAL", name, off, err)
			}
		}
		if n := len(slices.Collect(f.Subnodes(off))); n != 0 {
			t.Errorf("Subnodes(%d) yielded %d", off, n)
		}
		for range f.Properties(off) {
			t.Errorf("Properties(%d) yielded", off)
		}
	}
	for _, off := range []int{-1, 0, node, poff + 4, poff - 4, 1 << 40} {
		if _, err := f.NextPropertyOffset(off); !isErrno(err, errno.EINVAL) {
			t.Errorf("NextPropertyOffset(%d): %v", off, err)
		}
		if _, _, err := f.GetPropByOffset(off); !isErrno(err, errno.EINVAL) {
			t.Errorf("GetPropByOffset(%d): %v", off, err)
		}
	}
	// Last property of a node followed by a subnode: no next property.
	p2, err := f.NextPropertyOffset(poff)
	if !isErrno(err, errno.ENOENT) {
		t.Fatalf("NextPropertyOffset(last of /fdbox) = %d, %v", p2, err)
	}
}

// TestWalkCollectsMem walks a KHO tree the way the next kernel does,
// collecting every "mem" property.
func TestWalkCollectsMem(t *testing.T) {
	b := mustBuild(t, khoTree())
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	nprops := 0
	err = f.Walk(func(node int, name string, v []byte) error {
		nprops++
		if name != "mem" {
			return nil
		}
		p, err := f.GetPath(node)
		if err != nil {
			return err
		}
		if len(v)%16 != 0 {
			return fmt.Errorf("%s: mem of %d bytes", p, len(v))
		}
		for i := 0; i < len(v); i += 16 {
			got = append(got, fmt.Sprintf("%s:%#x+%#x", p, binary.LittleEndian.Uint64(v[i:]), binary.LittleEndian.Uint64(v[i+8:])))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/fdbox/vm1/guest-ram/:0x100000+0x1000", "/fdbox/vm1/guest-ram/:0x102000+0x1000",
		"/fdbox/vm1/guest-ram/:0x104000+0x1000", "/fdbox/vm1/guest-ram/:0x106000+0x1000",
		"/fdbox/vm1/state/:0x900000+0x1000", "/fdbox/vm1/state/:0x902000+0x1000",
		"/fdbox/vm2/guest-ram/:0x4000000+0x1000",
	}
	if !slices.Equal(got, want) || nprops != 16 {
		t.Fatalf("got %d properties, mem %q", nprops, got)
	}
	stop := errors.New("stop")
	n := 0
	if err := f.Walk(func(int, string, []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	}); err != stop || n != 3 {
		t.Fatalf("Walk stopped with %v after %d", err, n)
	}
}

// TestChangedAfterOpen corrupts a blob after Open: reads must fail (or
// return garbage), never panic.
func TestChangedAfterOpen(t *testing.T) {
	b := mustBuild(t, khoTree())
	mem := func(f *FDT) int {
		off, err := f.PathOffset("/fdbox/vm1/guest-ram")
		if err != nil {
			t.Fatal(err)
		}
		u, err := f.SubnodeOffset(off, "")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, tc := range []struct {
		name    string
		want    errno.Errno // from GetProp(mem)
		corrupt func(f *FDT, st []byte)
	}{
		{"value length", errno.EBADMSG, func(f *FDT, st []byte) {
			p, _ := f.FirstPropertyOffset(mem(f))
			binary.BigEndian.PutUint32(st[p+4:], 0xfffffff0)
		}},
		{"name offset", errno.ENOENT, func(f *FDT, st []byte) {
			p, _ := f.FirstPropertyOffset(mem(f))
			binary.BigEndian.PutUint32(st[p+8:], 0xfffffff0)
		}},
		{"strings", errno.ENOENT, func(f *FDT, st []byte) {
			for i := range f.strs {
				f.strs[i] = 'x'
			}
		}},
		{"everything", errno.EBADMSG, func(f *FDT, st []byte) {
			for i := range f.blob {
				f.blob[i] = 0xff
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := slices.Clone(b)
			f, err := Open(blob)
			if err != nil {
				t.Fatal(err)
			}
			u := mem(f)
			tc.corrupt(f, f.st)
			_, err = f.GetProp(u, "mem")
			_ = f.Walk(func(int, string, []byte) error { return nil })
			for range f.Properties(u) {
			}
			_, _, _ = f.GetPropByOffset(int(f.props[0]))
			for n := range f.Nodes() {
				_, _ = f.GetPath(n)
				_, _ = f.GetProp(n, "compatible")
				_, _ = f.NodeCheckCompatible(n, "x")
			}
			_ = f.dump(new(bytes.Buffer))
			if !isErrno(err, tc.want) {
				t.Fatalf("GetProp after corruption: %v", err)
			}
		})
	}
}

// TestErrorMessages: errors name the libfdt function and FDT_ERR code and
// carry their errno.
func TestErrorMessages(t *testing.T) {
	f, err := Open(mustBuild(t, lookupTree()))
	if err != nil {
		t.Fatal(err)
	}
	fdbox, _ := f.PathOffset("/fdbox")
	cpu, _ := f.PathOffset("/cpus/cpu")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{second(f.PathOffset("/fdbox/vm2/x")), `fdt: fdt_path_offset: no node "vm2" in path "/fdbox/vm2/x" (FDT_ERR_NOTFOUND): ENOENT`},
		{second(f.GetProp(fdbox, "mem")), fmt.Sprintf(`fdt: fdt_getprop: no property "mem" in node at offset %d (FDT_ERR_NOTFOUND): ENOENT`, fdbox)},
		{second(f.SubnodeOffset(fdbox, "vm2")), fmt.Sprintf(`fdt: fdt_subnode_offset: no subnode "vm2" in node at offset %d (FDT_ERR_NOTFOUND): ENOENT`, fdbox)},
		{second(f.FirstSubnode(cpu)), fmt.Sprintf(`fdt: fdt_first_subnode: no subnode of node at offset %d (FDT_ERR_NOTFOUND): ENOENT`, cpu)},
		{second(f.ParentOffset(0)), `fdt: fdt_parent_offset: no parent of the root node at offset 0 (FDT_ERR_NOTFOUND): ENOENT`},
		{second(f.GetName(3)), `fdt: fdt_get_name: offset 3 (FDT_ERR_BADOFFSET): EINVAL`},
		{second(f.PathOffset("nope/x")), `fdt: fdt_path_offset: path "nope/x": no alias "nope" (FDT_ERR_BADPATH): EINVAL`},
		{second(Open([]byte("\xd0\x0d\xfe\xed"))), `fdt: fdt_check_header: blob of 4 bytes (FDT_ERR_TRUNCATED): EBADMSG`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("got  %v\nwant %s", tc.err, tc.want)
		}
		if errno.Of(tc.err) == errno.EIO {
			t.Errorf("%v carries no errno", tc.err)
		}
	}
	w, _ := Create(make([]byte, 100))
	_ = w.FinishReserveMap()
	_ = w.BeginNode("")
	if w.Depth() != 1 {
		t.Fatalf("Depth %d", w.Depth())
	}
	err = w.Property("mem", make([]byte, 100))
	if want := `fdt: fdt_property: property "mem" of 100 bytes, 28 left in a 100-byte buffer (FDT_ERR_NOSPACE): ENOSPC`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	n := 0
	for range f.Nodes() {
		n++
		break
	}
	if n != 1 {
		t.Fatal("Nodes did not stop")
	}
}
