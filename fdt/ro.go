package fdt

import (
	"bytes"
	"encoding/binary"
	"iter"
	"math/bits"
	"strings"

	"khosim/errno"
)

// FDT is a checked, read-only view of a blob: libfdt's read-only functions
// (fdt_ro.c) over bytes that Open has checked. Values it returns alias the
// blob (capacity-limited, so appending to them copies).
type FDT struct {
	blob   []byte // blob[:totalsize]
	hdr    Header
	rsvOff int
	nrsv   int
	st     []byte // the structure block
	strs   []byte // the strings block

	nodes []nodeRec // every node, in blob order
	props []int32   // structure offset of every FDT_PROP, in blob order

	steps int // work done (tokens, bytes scanned, lookups): the tests bound it
}

// nodeRec records one node. A node's properties are
// props[prop0:nodes[i+1].prop0] (props[prop0:] for the last node): Open
// rejects properties after subnodes, so they are contiguous.
type nodeRec struct {
	off    int32 // structure offset of FDT_BEGIN_NODE
	parent int32 // index of the parent, -1 for the root
	next   int32 // index of the first node after this node's subtree
	prop0  int32 // index in props of the first property
}

// Open checks b and returns a view of the blob at its start: fdt_check_header
// followed by fdt_check_full. Beyond libfdt's checks it requires offsets in
// the header to be aligned (the reservation map to 8 bytes, the structure
// block to 4), the three blocks not to overlap, exactly one root node,
// properties before subnodes, nesting of at most MaxDepth nodes, property
// names of at most MaxNameLen bytes, and versions 16 or 17. Bytes after
// totalsize are ignored. Errors carry errno.EBADMSG. Open works in time
// linear in the blob and keeps a record of at most 1.34 times its structure
// block (see the package documentation).
func Open(b []byte) (*FDT, error) {
	f := &FDT{}
	if err := f.checkHeader(b); err != nil {
		return nil, err
	}
	if err := f.checkFull(); err != nil {
		return nil, err
	}
	return f, nil
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// checkBlock is libfdt's check_block_: [off, off+size) inside [base, total).
func checkBlock(base, total int, off, size uint32) bool {
	return int64(off) >= int64(base) && int64(off)+int64(size) <= int64(total)
}

// checkHeader is fdt_check_header, with the block alignment checks.
func (f *FDT) checkHeader(b []byte) error {
	const fn = "fdt_check_header"
	if len(b) < 8 {
		return errTruncated(fn, "blob of %d bytes", len(b))
	}
	h := &f.hdr
	h.Magic = be32(b)
	switch h.Magic {
	case FDT_MAGIC:
	case FDT_SW_MAGIC:
		return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADMAGIC", "unfinished sequential-write blob")
	default:
		return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADMAGIC", "magic %#08x", h.Magic)
	}
	if len(b) < 28 {
		return errTruncated(fn, "blob of %d bytes", len(b))
	}
	h.Version = be32(b[20:])
	h.LastCompVersion = be32(b[24:])
	if h.Version < FirstReadVersion || h.LastCompVersion > FDT_LAST_SUPPORTED_VERSION ||
		h.Version < h.LastCompVersion {
		return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADVERSION",
			"version %d, last_comp_version %d", h.Version, h.LastCompVersion)
	}
	hdrSize := headerSizeV16
	if h.Version >= 17 {
		hdrSize = headerSizeV17
	}
	if len(b) < hdrSize {
		return errTruncated(fn, "blob of %d bytes, header needs %d", len(b), hdrSize)
	}
	h.TotalSize = be32(b[4:])
	h.OffDtStruct = be32(b[8:])
	h.OffDtStrings = be32(b[12:])
	h.OffMemRsvmap = be32(b[16:])
	h.BootCPUIDPhys = be32(b[28:])
	h.SizeDtStrings = be32(b[32:])
	if hdrSize >= headerSizeV17 {
		h.SizeDtStruct = be32(b[36:])
	}
	if h.TotalSize < uint32(hdrSize) || h.TotalSize > maxBlobSize {
		return errTruncated(fn, "totalsize %d", h.TotalSize)
	}
	total := int(h.TotalSize)
	if total > len(b) {
		return errTruncated(fn, "totalsize %d, only %d bytes", total, len(b))
	}
	f.blob = b[:total:total]

	if !checkBlock(hdrSize, total, h.OffMemRsvmap, 0) {
		return errTruncated(fn, "off_mem_rsvmap %d", h.OffMemRsvmap)
	}
	if h.OffMemRsvmap%8 != 0 {
		return fdtErr(errno.EBADMSG, fn, "FDT_ERR_ALIGNMENT", "off_mem_rsvmap %d", h.OffMemRsvmap)
	}
	if h.Version < 17 {
		if !checkBlock(hdrSize, total, h.OffDtStruct, 0) {
			return errTruncated(fn, "off_dt_struct %d", h.OffDtStruct)
		}
		h.SizeDtStruct = h.TotalSize - h.OffDtStruct // until FDT_END is found
	} else if !checkBlock(hdrSize, total, h.OffDtStruct, h.SizeDtStruct) {
		return errTruncated(fn, "structure block [%d, +%d) outside totalsize %d",
			h.OffDtStruct, h.SizeDtStruct, total)
	}
	if h.OffDtStruct%FDT_TAGSIZE != 0 {
		return fdtErr(errno.EBADMSG, fn, "FDT_ERR_ALIGNMENT", "off_dt_struct %d", h.OffDtStruct)
	}
	if !checkBlock(hdrSize, total, h.OffDtStrings, h.SizeDtStrings) {
		return errTruncated(fn, "strings block [%d, +%d) outside totalsize %d",
			h.OffDtStrings, h.SizeDtStrings, total)
	}
	f.st = f.blob[h.OffDtStruct : h.OffDtStruct+h.SizeDtStruct]
	f.strs = f.blob[h.OffDtStrings : h.OffDtStrings+h.SizeDtStrings]

	// fdt_num_mem_rsv: entries up to the zero one, inside totalsize.
	f.rsvOff = int(h.OffMemRsvmap)
	for off := f.rsvOff; ; off += rsvEntrySize {
		f.steps++
		if off+rsvEntrySize > total {
			return errTruncated("fdt_num_mem_rsv", "reservation map runs past totalsize %d", total)
		}
		e := f.blob[off : off+rsvEntrySize]
		if binary.BigEndian.Uint64(e) == 0 && binary.BigEndian.Uint64(e[8:]) == 0 {
			break
		}
		f.nrsv++
	}
	return nil
}

// checkFull is fdt_check_full's walk of the structure block; it also
// records every node and property and checks the layout.
func (f *FDT) checkFull() error {
	const fn = "fdt_check_full"
	var (
		stack     [MaxDepth]int32
		hasChild  [MaxDepth]bool
		depth     int
		expectEnd bool
		off       int
	)
	for {
		f.steps++
		tag, next, err := f.nextTag(off)
		if err != nil {
			return err
		}
		if expectEnd && tag != FDT_END {
			return errStructure(fn, "token %#x after the root node at offset %d", tag, off)
		}
		switch tag {
		case FDT_NOP:
		case FDT_BEGIN_NODE:
			if depth == MaxDepth {
				return errStructure(fn, "nodes nested deeper than %d at offset %d", MaxDepth, off)
			}
			parent := int32(-1)
			if depth == 0 {
				if f.st[off+FDT_TAGSIZE] != 0 {
					return errStructure(fn, "root node has a name")
				}
			} else {
				parent = stack[depth-1]
				hasChild[depth-1] = true
			}
			f.nodes = append(f.nodes, nodeRec{off: int32(off), parent: parent, prop0: int32(len(f.props))})
			stack[depth] = int32(len(f.nodes) - 1)
			hasChild[depth] = false
			depth++
		case FDT_END_NODE:
			if depth == 0 {
				return errStructure(fn, "FDT_END_NODE outside a node at offset %d", off)
			}
			depth--
			f.nodes[stack[depth]].next = int32(len(f.nodes))
			expectEnd = depth == 0
		case FDT_PROP:
			if depth == 0 {
				return errStructure(fn, "property outside a node at offset %d", off)
			}
			if hasChild[depth-1] {
				return errStructure(fn, "property after a subnode at offset %d", off)
			}
			if _, err := f.propName(be32(f.st[off+8:])); err != nil {
				return err
			}
			f.props = append(f.props, int32(off))
		case FDT_END:
			if !expectEnd {
				if depth > 0 {
					return errStructure(fn, "FDT_END inside a node at offset %d", off)
				}
				return errStructure(fn, "no root node")
			}
			return f.checkLayout(next)
		default:
			return errStructure(fn, "unknown token %#x at offset %d", tag, off)
		}
		off = next
	}
}

// checkLayout checks that the reservation map, the structure block (used
// bytes, for version 16) and the strings block do not overlap.
func (f *FDT) checkLayout(structUsed int) error {
	h := &f.hdr
	if h.Version < 17 {
		h.SizeDtStruct = uint32(structUsed)
		f.st = f.st[:structUsed]
	}
	type block struct {
		name     string
		lo, size int
	}
	bl := [3]block{
		{"reservation map", f.rsvOff, (f.nrsv + 1) * rsvEntrySize},
		{"structure block", int(h.OffDtStruct), int(h.SizeDtStruct)},
		{"strings block", int(h.OffDtStrings), int(h.SizeDtStrings)},
	}
	for i := range bl {
		for j := i + 1; j < len(bl); j++ {
			a, b := bl[i], bl[j]
			if a.size > 0 && b.size > 0 && a.lo < b.lo+b.size && b.lo < a.lo+a.size {
				return fdtErr(errno.EBADMSG, "fdt_check_full", "FDT_ERR_BADLAYOUT",
					"%s [%d, +%d) overlaps %s [%d, +%d)", a.name, a.lo, a.size, b.name, b.lo, b.size)
			}
		}
	}
	return nil
}

// nextTag is fdt_next_tag: the token at structure offset off and the
// offset of the one after it, everything bounds-checked.
func (f *FDT) nextTag(off int) (tag uint32, next int, err error) {
	const fn = "fdt_next_tag"
	st := f.st
	if off < 0 || off > len(st)-FDT_TAGSIZE {
		return 0, 0, errTruncated(fn, "token at offset %d outside the %d-byte structure block", off, len(st))
	}
	tag = be32(st[off:])
	next = off + FDT_TAGSIZE
	switch tag {
	case FDT_BEGIN_NODE:
		i := bytes.IndexByte(st[next:], 0)
		if i < 0 {
			f.steps += len(st) - next
			return 0, 0, errTruncated(fn, "name of node at offset %d runs past the structure block", off)
		}
		f.steps += i + 1
		next = tagAlign(next + i + 1)
	case FDT_PROP:
		if next+8 > len(st) {
			return 0, 0, errTruncated(fn, "property at offset %d runs past the structure block", off)
		}
		n := be32(st[next:])
		if int64(n) > int64(len(st)-off-propHdrSize) {
			return 0, 0, errTruncated(fn, "value of %d bytes of property at offset %d runs past the structure block", n, off)
		}
		next = tagAlign(off + propHdrSize + int(n))
	}
	return tag, next, nil
}

// propName is fdt_get_string for a property name: NUL-terminated within
// the strings block and at most MaxNameLen bytes.
func (f *FDT) propName(nameoff uint32) ([]byte, error) {
	const fn = "fdt_get_string"
	if int64(nameoff) >= int64(len(f.strs)) {
		return nil, errStructure(fn, "name offset %d outside the %d-byte strings block", nameoff, len(f.strs))
	}
	s := f.strs[nameoff:]
	s = s[:min(len(s), MaxNameLen+1)]
	i := bytes.IndexByte(s, 0)
	if i < 0 {
		f.steps += len(s)
		return nil, errStructure(fn, "name at offset %d longer than %d bytes or not NUL-terminated", nameoff, MaxNameLen)
	}
	f.steps += i + 1
	return s[:i:i], nil
}

// propNameIs reports whether the property name at nameoff is name.
func (f *FDT) propNameIs(nameoff uint32, name string) bool {
	f.steps += len(name) + 1
	if int64(nameoff)+int64(len(name)) >= int64(len(f.strs)) {
		return false
	}
	s := f.strs[nameoff:]
	return s[len(name)] == 0 && string(s[:len(name)]) == name
}

// errChanged reports a blob that no longer matches what Open checked.
func errChanged(fn string, off int) error {
	return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADSTRUCTURE", "blob changed after Open at structure offset %d", off)
}

// node returns the index of the node at structure offset off.
func (f *FDT) node(fn string, off int) (int, error) {
	lo, hi := 0, len(f.nodes)
	f.steps += bits.Len(uint(hi)) + 1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(f.nodes[m].off) < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(f.nodes) || int(f.nodes[lo].off) != off {
		return 0, errBadOffset(fn, off)
	}
	return lo, nil
}

// propRange is the range in f.props of node i's properties.
func (f *FDT) propRange(i int) (int, int) {
	end := len(f.props)
	if i+1 < len(f.nodes) {
		end = int(f.nodes[i+1].prop0)
	}
	return int(f.nodes[i].prop0), end
}

// prop reads property k: its name offset and value.
func (f *FDT) prop(fn string, k int) (uint32, []byte, error) {
	off := int(f.props[k])
	n := be32(f.st[off+4:])
	if int64(n) > int64(len(f.st)-off-propHdrSize) {
		return 0, nil, errChanged(fn, off)
	}
	v := off + propHdrSize
	return be32(f.st[off+8:]), f.st[v : v+int(n) : v+int(n)], nil
}

// name returns the name of node i.
func (f *FDT) name(fn string, i int) ([]byte, error) {
	off := int(f.nodes[i].off)
	s := f.st[off+FDT_TAGSIZE:]
	n := bytes.IndexByte(s, 0)
	if n < 0 {
		f.steps += len(s)
		return nil, errChanged(fn, off)
	}
	f.steps += n + 1
	return s[:n:n], nil
}

// nodenameEq is fdt_nodename_eq_: the node name is s, or s has no unit
// address and the name is s@unit-address.
func (f *FDT) nodenameEq(i int, s string) bool {
	off := int(f.nodes[i].off) + FDT_TAGSIZE
	f.steps += len(s) + 1
	if len(s) >= len(f.st)-off {
		return false
	}
	p := f.st[off:]
	if string(p[:len(s)]) != s {
		return false
	}
	switch p[len(s)] {
	case 0:
		return true
	case '@':
		return strings.IndexByte(s, '@') < 0
	}
	return false
}

// Blob returns the blob, b[:totalsize] of the b given to Open.
func (f *FDT) Blob() []byte { return f.blob }

// Header returns the blob's header (fdt_totalsize, fdt_version, ...). For
// a version 16 blob SizeDtStruct is the structure block's used size.
func (f *FDT) Header() Header { return f.hdr }

// TotalSize is fdt_totalsize.
func (f *FDT) TotalSize() int { return len(f.blob) }

// NumMemRsv is fdt_num_mem_rsv: the number of reservation map entries.
func (f *FDT) NumMemRsv() int { return f.nrsv }

// GetMemRsv is fdt_get_mem_rsv: reservation map entry n.
func (f *FDT) GetMemRsv(n int) (addr, size uint64, err error) {
	if n < 0 || n >= f.nrsv {
		return 0, 0, errBadOffset("fdt_get_mem_rsv", n)
	}
	e := f.blob[f.rsvOff+n*rsvEntrySize:]
	return binary.BigEndian.Uint64(e), binary.BigEndian.Uint64(e[8:]), nil
}

// Root is the offset of the root node, fdt_path_offset(fdt, "/"): 0 unless
// the structure block starts with FDT_NOP.
func (f *FDT) Root() int { return int(f.nodes[0].off) }

// subnode is fdt_subnode_offset_namelen on node indexes: the first child
// of node i matching name, or -1.
func (f *FDT) subnode(i int, name string) int {
	for c := i + 1; c < len(f.nodes) && int(f.nodes[c].parent) == i; c = int(f.nodes[c].next) {
		f.steps++
		if f.nodenameEq(c, name) {
			return c
		}
	}
	return -1
}

// SubnodeOffset is fdt_subnode_offset: the first subnode of the node at
// parent named name, or, when name has no unit address, named
// name@unit-address. ENOENT when there is none.
func (f *FDT) SubnodeOffset(parent int, name string) (int, error) {
	const fn = "fdt_subnode_offset"
	i, err := f.node(fn, parent)
	if err != nil {
		return 0, err
	}
	c := f.subnode(i, name)
	if c < 0 {
		return 0, &notFound{fn: fn, what: "subnode", name: name, off: parent, lookup: true}
	}
	return int(f.nodes[c].off), nil
}

// PathOffset is fdt_path_offset: the node at path, "/" being the root.
// Components match as in SubnodeOffset; repeated slashes are skipped, so
// an unnamed node cannot be reached by path (use SubnodeOffset(off, "")).
// A path not starting with '/' starts with an alias, a property of
// /aliases whose value is an absolute path. ENOENT when a component is not
// found, EINVAL (FDT_ERR_BADPATH) when the alias is not.
func (f *FDT) PathOffset(path string) (int, error) {
	const fn = "fdt_path_offset"
	i := 0
	p := path
	if !strings.HasPrefix(p, "/") {
		name := p
		if q := strings.IndexByte(p, '/'); q >= 0 {
			name, p = p[:q], p[q:]
		} else {
			p = ""
		}
		alias, ok := f.alias(name)
		if !ok {
			return 0, fdtErr(errno.EINVAL, fn, "FDT_ERR_BADPATH", "path %q: no alias %q", path, name)
		}
		var err error
		if i, err = f.walkPath(fn, 0, alias, alias); err != nil {
			return 0, err
		}
	}
	i, err := f.walkPath(fn, i, p, path)
	if err != nil {
		return 0, err
	}
	return int(f.nodes[i].off), nil
}

// walkPath follows the components of p from node i; whole is the path
// for messages.
func (f *FDT) walkPath(fn string, i int, p, whole string) (int, error) {
	for len(p) > 0 {
		f.steps++
		if p[0] == '/' {
			p = p[1:]
			continue
		}
		comp := p
		if q := strings.IndexByte(p, '/'); q >= 0 {
			comp, p = p[:q], p[q:]
		} else {
			p = ""
		}
		f.steps += len(comp)
		c := f.subnode(i, comp)
		if c < 0 {
			return 0, &notFound{fn: fn, what: "node", name: comp, path: whole, lookup: true}
		}
		i = c
	}
	return i, nil
}

// alias is fdt_get_alias: the value of /aliases/name when it is a single
// NUL-terminated absolute path.
func (f *FDT) alias(name string) (string, bool) {
	a := f.subnode(0, "aliases")
	if a < 0 {
		return "", false
	}
	v, err := f.getProp("fdt_get_alias", a, name)
	if err != nil || len(v) < 2 || v[0] != '/' || bytes.IndexByte(v, 0) != len(v)-1 {
		return "", false
	}
	return string(v[:len(v)-1]), true
}

// FirstSubnode is fdt_first_subnode: the first subnode of the node at off,
// ENOENT when it has none.
func (f *FDT) FirstSubnode(off int) (int, error) {
	const fn = "fdt_first_subnode"
	i, err := f.node(fn, off)
	if err != nil {
		return 0, err
	}
	if i+1 < len(f.nodes) && int(f.nodes[i+1].parent) == i {
		return int(f.nodes[i+1].off), nil
	}
	return 0, &notFound{fn: fn, what: "no subnode of node", off: off}
}

// NextSubnode is fdt_next_subnode: the next sibling of the node at off,
// ENOENT after the last one.
func (f *FDT) NextSubnode(off int) (int, error) {
	const fn = "fdt_next_subnode"
	i, err := f.node(fn, off)
	if err != nil {
		return 0, err
	}
	n := int(f.nodes[i].next)
	if f.nodes[i].parent >= 0 && n < len(f.nodes) && f.nodes[n].parent == f.nodes[i].parent {
		return int(f.nodes[n].off), nil
	}
	return 0, &notFound{fn: fn, what: "no sibling after node", off: off}
}

// Subnodes iterates over the subnodes of the node at off:
// fdt_for_each_subnode. A bad offset yields nothing.
func (f *FDT) Subnodes(off int) iter.Seq[int] {
	return func(yield func(int) bool) {
		i, err := f.node("fdt_for_each_subnode", off)
		if err != nil {
			return
		}
		for c := i + 1; c < len(f.nodes) && int(f.nodes[c].parent) == i; c = int(f.nodes[c].next) {
			f.steps++
			if !yield(int(f.nodes[c].off)) {
				return
			}
		}
	}
}

// Nodes iterates over every node in blob order, the root first, as a loop
// over fdt_next_node does.
func (f *FDT) Nodes() iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range f.nodes {
			f.steps++
			if !yield(int(f.nodes[i].off)) {
				return
			}
		}
	}
}

// ParentOffset is fdt_parent_offset; ENOENT for the root.
func (f *FDT) ParentOffset(off int) (int, error) {
	const fn = "fdt_parent_offset"
	i, err := f.node(fn, off)
	if err != nil {
		return 0, err
	}
	p := f.nodes[i].parent
	if p < 0 {
		return 0, &notFound{fn: fn, what: "no parent of the root node", off: off}
	}
	return int(f.nodes[p].off), nil
}

// NodeDepth is fdt_node_depth: 0 for the root.
func (f *FDT) NodeDepth(off int) (int, error) {
	i, err := f.node("fdt_node_depth", off)
	if err != nil {
		return 0, err
	}
	d := 0
	for p := f.nodes[i].parent; p >= 0; p = f.nodes[p].parent {
		f.steps++
		d++
	}
	return d, nil
}

// GetName is fdt_get_name: the node's name, "" for the root.
func (f *FDT) GetName(off int) (string, error) {
	const fn = "fdt_get_name"
	i, err := f.node(fn, off)
	if err != nil {
		return "", err
	}
	n, err := f.name(fn, i)
	return string(n), err
}

// GetPath is fdt_get_path: "/" for the root, "/fdbox/vm1" for a node; the
// path of an unnamed node ends in "/", as libfdt's does.
func (f *FDT) GetPath(off int) (string, error) {
	const fn = "fdt_get_path"
	i, err := f.node(fn, off)
	if err != nil {
		return "", err
	}
	return f.path(fn, i)
}

func (f *FDT) path(fn string, i int) (string, error) {
	if i == 0 {
		return "/", nil
	}
	var chain [MaxDepth]int
	d := 0
	for j := i; j > 0; j = int(f.nodes[j].parent) {
		chain[d] = j
		d++
	}
	var b strings.Builder
	for d--; d >= 0; d-- {
		n, err := f.name(fn, chain[d])
		if err != nil {
			return "", err
		}
		b.WriteByte('/')
		b.Write(n)
	}
	return b.String(), nil
}

// getProp is fdt_getprop on a node index.
func (f *FDT) getProp(fn string, i int, name string) ([]byte, error) {
	lo, hi := f.propRange(i)
	for k := lo; k < hi; k++ {
		f.steps++
		nameoff, v, err := f.prop(fn, k)
		if err != nil {
			return nil, err
		}
		if f.propNameIs(nameoff, name) {
			return v, nil
		}
	}
	return nil, &notFound{fn: fn, what: "property", name: name, off: int(f.nodes[i].off), lookup: true}
}

// GetProp is fdt_getprop: the value of the node's first property named
// name, a slice of the blob. ENOENT when there is none.
func (f *FDT) GetProp(off int, name string) ([]byte, error) {
	const fn = "fdt_getprop"
	i, err := f.node(fn, off)
	if err != nil {
		return nil, err
	}
	return f.getProp(fn, i, name)
}

func badValue(fn, name, format string, args ...any) error {
	return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADVALUE", "property %q: "+format, append([]any{name}, args...)...)
}

// fixedProp returns the value of a property that must be exactly n bytes
// long; EBADMSG otherwise.
func (f *FDT) fixedProp(off int, name string, n int) ([]byte, error) {
	v, err := f.GetProp(off, name)
	if err != nil {
		return nil, err
	}
	if len(v) != n {
		return nil, badValue("fdt_getprop", name, "%d bytes, want %d", len(v), n)
	}
	return v, nil
}

// GetPropU32 reads a one-cell big-endian property (fdt32_to_cpu of
// fdt_getprop); EBADMSG unless it is 4 bytes long.
func (f *FDT) GetPropU32(off int, name string) (uint32, error) {
	v, err := f.fixedProp(off, name, 4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(v), nil
}

// GetPropU64 reads a big-endian 64-bit property (fdt64_to_cpu of
// fdt_getprop); EBADMSG unless it is 8 bytes long.
func (f *FDT) GetPropU64(off int, name string) (uint64, error) {
	v, err := f.fixedProp(off, name, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// GetPropLE64 reads a native little-endian 64-bit property, as the FDBox
// RFC reads pos and size (a u64 copied out of fdt_getprop); EBADMSG unless
// it is 8 bytes long.
func (f *FDT) GetPropLE64(off int, name string) (uint64, error) {
	v, err := f.fixedProp(off, name, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(v), nil
}

// GetPropStringList is fdt_stringlist_count and fdt_stringlist_get: the
// strings of a string-list property; EBADMSG unless the value is empty or
// ends with NUL.
func (f *FDT) GetPropStringList(off int, name string) ([]string, error) {
	const fn = "fdt_stringlist_get"
	v, err := f.GetProp(off, name)
	if err != nil {
		return nil, err
	}
	if len(v) > 0 && v[len(v)-1] != 0 {
		return nil, badValue(fn, name, "not NUL-terminated")
	}
	var out []string
	for len(v) > 0 {
		f.steps++
		i := bytes.IndexByte(v, 0)
		f.steps += i + 1
		out = append(out, string(v[:i]))
		v = v[i+1:]
	}
	return out, nil
}

// GetPropString is fdt_stringlist_get(..., 0): the first string of a
// string property; EBADMSG unless the value ends with NUL.
func (f *FDT) GetPropString(off int, name string) (string, error) {
	const fn = "fdt_stringlist_get"
	v, err := f.GetProp(off, name)
	if err != nil {
		return "", err
	}
	if len(v) == 0 || v[len(v)-1] != 0 {
		return "", badValue(fn, name, "not a NUL-terminated string")
	}
	i := bytes.IndexByte(v, 0)
	f.steps += i + 1
	return string(v[:i]), nil
}

// StringListContains is fdt_stringlist_contains: whether the string list
// (NUL-separated, as in a compatible property) holds s.
func StringListContains(list []byte, s string) bool {
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			return false // libfdt: an unterminated last string never matches
		}
		if string(list[:i]) == s {
			return true
		}
		list = list[i+1:]
	}
	return false
}

// NodeCheckCompatible is fdt_node_check_compatible: whether the node's
// compatible property lists compat. ENOENT when it has no compatible
// property.
func (f *FDT) NodeCheckCompatible(off int, compat string) (bool, error) {
	const fn = "fdt_node_check_compatible"
	i, err := f.node(fn, off)
	if err != nil {
		return false, err
	}
	v, err := f.getProp(fn, i, "compatible")
	if err != nil {
		return false, err
	}
	f.steps += len(v)
	return StringListContains(v, compat), nil
}

// FirstPropertyOffset is fdt_first_property_offset: the offset of the
// node's first property, ENOENT when it has none.
func (f *FDT) FirstPropertyOffset(off int) (int, error) {
	const fn = "fdt_first_property_offset"
	i, err := f.node(fn, off)
	if err != nil {
		return 0, err
	}
	lo, hi := f.propRange(i)
	if lo == hi {
		return 0, &notFound{fn: fn, what: "no property in node", off: off}
	}
	return int(f.props[lo]), nil
}

// propIndex returns the index in f.props of the property at poff and the
// node that holds it.
func (f *FDT) propIndex(fn string, poff int) (k, node int, err error) {
	lo, hi := 0, len(f.props)
	f.steps += 2*bits.Len(uint(hi)) + 2
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(f.props[m]) < poff {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(f.props) || int(f.props[lo]) != poff {
		return 0, 0, errBadOffset(fn, poff)
	}
	// The holder is the last node starting before the property.
	a, b := 0, len(f.nodes)
	for a < b {
		m := int(uint(a+b) >> 1)
		if int(f.nodes[m].off) < poff {
			a = m + 1
		} else {
			b = m
		}
	}
	return lo, a - 1, nil
}

// NextPropertyOffset is fdt_next_property_offset: the property after the
// one at poff in the same node, ENOENT after the last.
func (f *FDT) NextPropertyOffset(poff int) (int, error) {
	const fn = "fdt_next_property_offset"
	k, i, err := f.propIndex(fn, poff)
	if err != nil {
		return 0, err
	}
	if _, hi := f.propRange(i); k+1 < hi {
		return int(f.props[k+1]), nil
	}
	return 0, &notFound{fn: fn, what: "no property after property", off: poff}
}

// GetPropByOffset is fdt_getprop_by_offset: the name and value of the
// property at poff.
func (f *FDT) GetPropByOffset(poff int) (name string, value []byte, err error) {
	const fn = "fdt_getprop_by_offset"
	k, _, err := f.propIndex(fn, poff)
	if err != nil {
		return "", nil, err
	}
	nameoff, v, err := f.prop(fn, k)
	if err != nil {
		return "", nil, err
	}
	n, err := f.propName(nameoff)
	if err != nil {
		return "", nil, err
	}
	return string(n), v, nil
}

// Properties iterates over the node's properties, in blob order, as
// fdt_for_each_property_offset with fdt_getprop_by_offset. It stops at a
// bad offset or at a property it cannot read (only possible if the blob
// changed after Open); Walk reports such errors.
func (f *FDT) Properties(off int) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		i, err := f.node("fdt_for_each_property_offset", off)
		if err != nil {
			return
		}
		lo, hi := f.propRange(i)
		for k := lo; k < hi; k++ {
			name, v, err := f.propK(k)
			if err != nil || !yield(name, v) {
				return
			}
		}
	}
}

func (f *FDT) propK(k int) (string, []byte, error) {
	const fn = "fdt_getprop_by_offset"
	f.steps++
	nameoff, v, err := f.prop(fn, k)
	if err != nil {
		return "", nil, err
	}
	n, err := f.propName(nameoff)
	if err != nil {
		return "", nil, err
	}
	return string(n), v, nil
}

// Walk calls fn for every property of every node, in blob order (a node's
// properties, then its subnodes'), with the node's offset: the loop of
// fdt_next_node and fdt_for_each_property_offset. It stops at and returns
// the first error from fn, or from a property it cannot read. KHO's next kernel walks the handover
// this way to collect every "mem" property.
func (f *FDT) Walk(fn func(node int, name string, value []byte) error) error {
	for i := range f.nodes {
		lo, hi := f.propRange(i)
		for k := lo; k < hi; k++ {
			name, v, err := f.propK(k)
			if err != nil {
				return err
			}
			if err := fn(int(f.nodes[i].off), name, v); err != nil {
				return err
			}
		}
	}
	return nil
}
