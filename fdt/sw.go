package fdt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"khosim/errno"
)

// swState is the state of libfdt's sequential-write state machine.
type swState uint8

const (
	swMemrsv swState = iota // after fdt_create: reservation map entries
	swStruct                // after fdt_finish_reservemap: nodes and properties
	swDone                  // after fdt_finish: nothing
)

// Writer builds a blob in a caller-provided buffer with libfdt's
// sequential-write API (fdt_sw.c). Its methods fail without changing
// anything: after an error (ENOSPC, a misuse, an injected fault) the caller
// may go on as if the failed call had not been made.
//
// The whole buffer is scratch until Finish, which leaves the blob in
// buf[:TotalSize()].
type Writer struct {
	// Fault, when not nil, is called by every operation that libfdt can
	// fail with -FDT_ERR_NOSPACE (AddReserveMapEntry, FinishReserveMap,
	// BeginNode, every Property method, EndNode and Finish), after the
	// call's arguments and state have been validated and before anything
	// is written. If it returns an error the operation fails with that
	// error, wrapped. KHO plugs its "fdt" fault-injection site in here.
	Fault func() error

	buf        []byte
	state      swState
	structOff  int // off_dt_struct: start of the structure block in buf
	structSize int // size_dt_struct so far
	strSize    int // size_dt_strings so far, at the end of buf
	total      int // totalsize after Finish

	depth    int            // open nodes
	rootDone bool           // the root node has been ended
	hasChild [MaxDepth]bool // hasChild[d]: the open node at depth d has a subnode
	props    []int32        // structure offsets of every FDT_PROP, to fix nameoff
	scratch  []byte         // name + NUL, for the strings search
}

// Create starts a blob in buf: fdt_create. Like fdt_create it zeroes the
// whole buffer (of which at most 2^31-1 bytes are used) and fails with
// ENOSPC when buf cannot hold the 48-byte header.
func Create(buf []byte) (*Writer, error) {
	if len(buf) > maxBlobSize {
		buf = buf[:maxBlobSize]
	}
	if len(buf) < swHeaderSize {
		return nil, fdtErr(errno.ENOSPC, "fdt_create", "FDT_ERR_NOSPACE",
			"buffer of %d bytes, header needs %d", len(buf), swHeaderSize)
	}
	clear(buf)
	w := &Writer{buf: buf, structOff: swHeaderSize}
	h := Header{
		Magic:        FDT_SW_MAGIC,
		TotalSize:    uint32(len(buf)),
		OffDtStruct:  swHeaderSize,
		OffMemRsvmap: swHeaderSize,
		Version:      FDT_LAST_SUPPORTED_VERSION,
	}
	h.put(buf)
	return w, nil
}

func (w *Writer) badState(fn, format string, args ...any) error {
	return fdtErr(errno.EINVAL, fn, "FDT_ERR_BADSTATE", format, args...)
}

// fault runs the Fault hook for fn.
func (w *Writer) fault(fn string) error {
	if w.Fault == nil {
		return nil
	}
	if err := w.Fault(); err != nil {
		return fmt.Errorf("fdt: %s: %w", fn, err)
	}
	return nil
}

// spaceLeft is what fdt_grab_space_ may still hand out.
func (w *Writer) spaceLeft() int { return len(w.buf) - w.structOff - w.structSize - w.strSize }

func (w *Writer) noSpace(fn string, need int) error {
	return fdtErr(errno.ENOSPC, fn, "FDT_ERR_NOSPACE",
		"%d bytes needed, %d left in a %d-byte buffer", need, w.spaceLeft(), len(w.buf))
}

// AddReserveMapEntry adds a memory reservation: fdt_add_reservemap_entry.
func (w *Writer) AddReserveMapEntry(addr, size uint64) error {
	const fn = "fdt_add_reservemap_entry"
	if w.state != swMemrsv {
		return w.badState(fn, "reservation map already finished")
	}
	if err := w.fault(fn); err != nil {
		return err
	}
	if w.structOff+rsvEntrySize > len(w.buf) {
		return w.noSpace(fn, rsvEntrySize)
	}
	binary.BigEndian.PutUint64(w.buf[w.structOff:], addr)
	binary.BigEndian.PutUint64(w.buf[w.structOff+8:], size)
	w.structOff += rsvEntrySize
	return nil
}

// FinishReserveMap ends the reservation map with its zero entry and starts
// the structure block: fdt_finish_reservemap.
func (w *Writer) FinishReserveMap() error {
	const fn = "fdt_finish_reservemap"
	if w.state != swMemrsv {
		return w.badState(fn, "reservation map already finished")
	}
	if err := w.fault(fn); err != nil {
		return err
	}
	if w.structOff+rsvEntrySize > len(w.buf) {
		return w.noSpace(fn, rsvEntrySize)
	}
	clear(w.buf[w.structOff : w.structOff+rsvEntrySize])
	w.structOff += rsvEntrySize
	w.state = swStruct
	return nil
}

// checkStruct is FDT_SW_PROBE_STRUCT.
func (w *Writer) checkStruct(fn string) error {
	switch w.state {
	case swMemrsv:
		return w.badState(fn, "reservation map not finished (call FinishReserveMap)")
	case swDone:
		return w.badState(fn, "blob already finished")
	}
	return nil
}

// BeginNode opens a node: fdt_begin_node. The first node is the root and
// must be named ""; a tree has one root. Other names are empty or
// node-name[@unit-address] in the Devicetree Specification's characters
// (see checkNodeName), at most MaxNameLen bytes; nesting is limited to
// MaxDepth nodes.
func (w *Writer) BeginNode(name string) error {
	const fn = "fdt_begin_node"
	if err := w.checkStruct(fn); err != nil {
		return err
	}
	if w.depth == 0 && w.rootDone {
		return w.badState(fn, "node %q after the root node was ended", name)
	}
	if w.depth == 0 && name != "" {
		return w.badState(fn, "root node named %q, must be \"\"", name)
	}
	if w.depth >= MaxDepth {
		return w.badState(fn, "node %q would nest deeper than %d", name, MaxDepth)
	}
	if err := checkNodeName(name); err != nil {
		return fdtErr(errno.EINVAL, fn, "", "%v", err)
	}
	if err := w.fault(fn); err != nil {
		return err
	}
	n := FDT_TAGSIZE + tagAlign(len(name)+1)
	if n > w.spaceLeft() {
		return w.noSpace(fn, n)
	}
	p := w.buf[w.structOff+w.structSize:][:n]
	binary.BigEndian.PutUint32(p, FDT_BEGIN_NODE)
	clear(p[FDT_TAGSIZE+copy(p[FDT_TAGSIZE:], name):])
	w.structSize += n
	if w.depth > 0 {
		w.hasChild[w.depth-1] = true
	}
	w.hasChild[w.depth] = false
	w.depth++
	return nil
}

// EndNode closes the innermost open node: fdt_end_node.
func (w *Writer) EndNode() error {
	const fn = "fdt_end_node"
	if err := w.checkStruct(fn); err != nil {
		return err
	}
	if w.depth == 0 {
		return w.badState(fn, "no open node")
	}
	if err := w.fault(fn); err != nil {
		return err
	}
	if FDT_TAGSIZE > w.spaceLeft() {
		return w.noSpace(fn, FDT_TAGSIZE)
	}
	binary.BigEndian.PutUint32(w.buf[w.structOff+w.structSize:], FDT_END_NODE)
	w.structSize += FDT_TAGSIZE
	w.depth--
	if w.depth == 0 {
		w.rootDone = true
	}
	return nil
}

// PropertyPlaceholder adds a property of n bytes to the open node and
// returns its value, zeroed, for the caller to fill in:
// fdt_property_placeholder. The slice aliases the buffer and stays valid
// after Finish. Property names are 1 to MaxNameLen bytes of the
// Devicetree Specification's characters; a node's properties must come
// before its subnodes. The name is stored once in the strings block: as
// fdt_find_add_string_ does, an existing string that ends with the name is
// reused.
func (w *Writer) PropertyPlaceholder(name string, n int) ([]byte, error) {
	return w.placeholder("fdt_property_placeholder", name, n)
}

func (w *Writer) placeholder(fn, name string, n int) ([]byte, error) {
	if err := w.checkStruct(fn); err != nil {
		return nil, err
	}
	if w.depth == 0 {
		return nil, w.badState(fn, "property %q outside a node", name)
	}
	if w.hasChild[w.depth-1] {
		return nil, w.badState(fn, "property %q after a subnode", name)
	}
	if err := checkPropName(name); err != nil {
		return nil, fdtErr(errno.EINVAL, fn, "", "%v", err)
	}
	if n < 0 {
		return nil, fdtErr(errno.EINVAL, fn, "", "property %q of negative length %d", name, n)
	}
	if err := w.fault(fn); err != nil {
		return nil, err
	}
	// fdt_find_add_string_: the strings block is buf[len-strSize:].
	w.scratch = append(append(w.scratch[:0], name...), 0)
	strtab := w.buf[len(w.buf)-w.strSize:]
	nameoff := 0 // relative to the end of the buffer, as libfdt keeps it
	addStr := 0
	if i := bytes.Index(strtab, w.scratch); i >= 0 {
		nameoff = i - w.strSize
	} else {
		addStr = len(w.scratch)
		nameoff = -(w.strSize + addStr)
	}
	// n <= spaceLeft < 2^31-64 keeps the sums below from overflowing.
	if n > w.spaceLeft() {
		return nil, fdtErr(errno.ENOSPC, fn, "FDT_ERR_NOSPACE", "property %q of %d bytes, %d left in a %d-byte buffer",
			name, n, w.spaceLeft(), len(w.buf))
	}
	need := propHdrSize + tagAlign(n)
	if need+addStr > w.spaceLeft() {
		return nil, w.noSpace(fn, need+addStr)
	}
	if addStr > 0 {
		copy(w.buf[len(w.buf)-w.strSize-addStr:], w.scratch)
		w.strSize += addStr
	}
	off := w.structOff + w.structSize
	p := w.buf[off : off+need]
	binary.BigEndian.PutUint32(p[0:], FDT_PROP)
	binary.BigEndian.PutUint32(p[4:], uint32(n))
	binary.BigEndian.PutUint32(p[8:], uint32(int32(nameoff)))
	clear(p[propHdrSize:])
	w.props = append(w.props, int32(w.structSize))
	w.structSize += need
	return p[propHdrSize : propHdrSize+n : propHdrSize+n], nil
}

// Property adds a property with a raw value to the open node: fdt_property.
func (w *Writer) Property(name string, val []byte) error {
	p, err := w.placeholder("fdt_property", name, len(val))
	if err == nil {
		copy(p, val)
	}
	return err
}

// PropertyString adds a NUL-terminated string property:
// fdt_property_string. s must not contain NUL (EINVAL).
func (w *Writer) PropertyString(name, s string) error {
	const fn = "fdt_property_string"
	if strings.IndexByte(s, 0) >= 0 {
		return fdtErr(errno.EINVAL, fn, "", "property %q: string contains NUL", name)
	}
	p, err := w.placeholder(fn, name, len(s)+1)
	if err == nil {
		copy(p, s)
	}
	return err
}

// PropertyStringList adds a string-list property ("a\0b\0"), as a
// compatible property is written; libfdt callers build the value and call
// fdt_property. No string may contain NUL (EINVAL).
func (w *Writer) PropertyStringList(name string, ss ...string) error {
	const fn = "fdt_property"
	n := 0
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return fdtErr(errno.EINVAL, fn, "", "property %q: string contains NUL", name)
		}
		n += len(s) + 1
	}
	p, err := w.placeholder(fn, name, n)
	if err == nil {
		for _, s := range ss {
			p = p[copy(p, s)+1:]
		}
	}
	return err
}

// PropertyU32 adds a one-cell big-endian property: fdt_property_u32.
func (w *Writer) PropertyU32(name string, v uint32) error {
	p, err := w.placeholder("fdt_property_u32", name, 4)
	if err == nil {
		binary.BigEndian.PutUint32(p, v)
	}
	return err
}

// PropertyU64 adds a big-endian 64-bit (two-cell) property:
// fdt_property_u64.
func (w *Writer) PropertyU64(name string, v uint64) error {
	p, err := w.placeholder("fdt_property_u64", name, 8)
	if err == nil {
		binary.BigEndian.PutUint64(p, v)
	}
	return err
}

// PropertyCells adds big-endian 32-bit cells (<a b c> in DTS): the value
// libfdt callers build with cpu_to_fdt32 and pass to fdt_property.
func (w *Writer) PropertyCells(name string, cells ...uint32) error {
	p, err := w.placeholder("fdt_property", name, 4*len(cells))
	if err == nil {
		for i, c := range cells {
			binary.BigEndian.PutUint32(p[4*i:], c)
		}
	}
	return err
}

// PropertyLE64 adds native little-endian 64-bit words: the FDBox RFC and
// KHO write pos, size and struct kho_mem {u64 addr; u64 size} arrays with
// fdt_property(fdt, name, &val, sizeof(val)) of x86-64 integers.
func (w *Writer) PropertyLE64(name string, v ...uint64) error {
	p, err := w.placeholder("fdt_property", name, 8*len(v))
	if err == nil {
		for i, x := range v {
			binary.LittleEndian.PutUint64(p[8*i:], x)
		}
	}
	return err
}

// Finish ends the blob: fdt_finish. It appends FDT_END, moves the strings
// block after the structure block, fixes every property's nameoff and
// writes the final header. The root node must have been ended (EINVAL
// otherwise, including for a tree without a root node). It returns the
// blob, buf[:TotalSize()].
func (w *Writer) Finish() ([]byte, error) {
	const fn = "fdt_finish"
	if err := w.checkStruct(fn); err != nil {
		return nil, err
	}
	if w.depth != 0 {
		return nil, w.badState(fn, "%d node(s) still open", w.depth)
	}
	if !w.rootDone {
		return nil, w.badState(fn, "no root node")
	}
	if err := w.fault(fn); err != nil {
		return nil, err
	}
	if FDT_TAGSIZE > w.spaceLeft() {
		return nil, w.noSpace(fn, FDT_TAGSIZE)
	}
	binary.BigEndian.PutUint32(w.buf[w.structOff+w.structSize:], FDT_END)
	w.structSize += FDT_TAGSIZE

	strOff := w.structOff + w.structSize
	copy(w.buf[strOff:], w.buf[len(w.buf)-w.strSize:])
	st := w.buf[w.structOff : w.structOff+w.structSize]
	for _, p := range w.props {
		// The offsets are the writer's own: in bounds whatever the
		// caller may have written into the buffer.
		f := st[p+8 : p+12]
		binary.BigEndian.PutUint32(f, binary.BigEndian.Uint32(f)+uint32(w.strSize))
	}
	w.total = strOff + w.strSize
	h := Header{
		Magic:           FDT_MAGIC,
		TotalSize:       uint32(w.total),
		OffDtStruct:     uint32(w.structOff),
		OffDtStrings:    uint32(strOff),
		OffMemRsvmap:    swHeaderSize,
		Version:         FDT_LAST_SUPPORTED_VERSION,
		LastCompVersion: FDT_LAST_COMPATIBLE_VERSION,
		SizeDtStrings:   uint32(w.strSize),
		SizeDtStruct:    uint32(w.structSize),
	}
	h.put(w.buf)
	w.state = swDone
	w.props = nil
	return w.buf[:w.total:w.total], nil
}

// TotalSize is the blob's totalsize once Finish has succeeded, 0 before.
func (w *Writer) TotalSize() int { return w.total }

// Depth is the number of open nodes (libfdt keeps no such count; KHO's
// callers can check it is 0 before Finish).
func (w *Writer) Depth() int { return w.depth }
