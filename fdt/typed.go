package fdt

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"

	"khosim/uapi"
)

// This file knows the formats of the handovers khosim writes, so that a
// dump can show each property in its real type rather than as the
// big-endian cells device-tree source assumes: KHO's root ("kho-v1",
// "kho-v2": compatible, preserved-memory-map), kho_add_subtree() nodes
// ("fdt"/"preserved-data" and "size"), the arrays tracker's "mem"
// properties (struct kho_mem), and FDBox's storage nodes ("fdbox,shmem-v1",
// "-v2" and "-v3": pos, size, seals, mode, mem, indices, flags, checksum,
// file-name). Integers in these are little endian: the kernel memcpy()s
// them into the property on x86-64. The strings are repeated here (the
// packages that write them sit above fdt); a test of package report checks
// them against the writers' constants.

// PropType is how a property's value is read.
type PropType uint8

// The property types.
const (
	// TypeRaw: no known format; shown by the shape of the bytes (strings,
	// big-endian cells, bytes) as dtc shows them.
	TypeRaw PropType = iota
	TypeString
	TypeU64        // a u64 LE number (a file position)
	TypeAddr       // a u64 LE physical address
	TypeSize       // a u64 LE byte count
	TypeChecksum   // a u64 LE hash
	TypeSeals      // a u32 LE of F_SEAL_* bits
	TypeMode       // a u32 LE of permission bits
	TypeKHOMem     // struct kho_mem {u64 addr; u64 size;} LE, repeated
	TypeU64Array   // u64 LE, repeated (page-cache indices)
	TypeFolioFlags // u8, repeated: bit 0 uptodate, bit 1 dirty
)

var typeNames = [...]string{"raw", "string", "u64", "address", "size", "checksum", "seals", "mode", "kho_mem[]", "u64[]", "folio-flags[]"}

func (t PropType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("PropType(%d)", int(t))
}

// Compatibles and names of the formats khosim writes (see the file
// comment).
const (
	compatKHOv1   = "kho-v1"
	compatKHOv2   = "kho-v2"
	compatShmemV1 = "fdbox,shmem-v1"
	compatShmemV2 = "fdbox,shmem-v2"
	compatShmemV3 = "fdbox,shmem-v3"
	propMemMap    = "preserved-memory-map"
)

// KnownCompatibles lists the compatible strings whose layout the typed
// dump knows: KHO roots and FDBox storage nodes.
func KnownCompatibles() []string {
	return []string{compatKHOv1, compatKHOv2, compatShmemV1, compatShmemV2, compatShmemV3}
}

// nodeCtx is what the schema needs to know of a node.
type nodeCtx struct {
	kho    bool   // the tree is a KHO handover (root kho-v1 or kho-v2)
	depth  int    // 0 for the root
	compat []byte // the node's compatible, or nil
	props  func(name string) bool
}

// propType returns the type of property name of a node: the schema of
// khosim's handovers, TypeRaw outside them.
func propType(c nodeCtx, name string) PropType {
	if !c.kho {
		return TypeRaw
	}
	if name == "compatible" {
		return TypeString
	}
	if StringListContains(c.compat, compatShmemV1) || StringListContains(c.compat, compatShmemV2) || StringListContains(c.compat, compatShmemV3) {
		switch name {
		case "pos":
			return TypeU64
		case "size":
			return TypeSize
		case "seals":
			return TypeSeals
		case "mode":
			return TypeMode
		case "mem":
			return TypeKHOMem
		case "indices":
			return TypeU64Array
		case "flags":
			return TypeFolioFlags
		case "checksum":
			return TypeChecksum
		case "file-name":
			return TypeString
		}
		return TypeRaw
	}
	switch {
	case c.depth == 0 && name == propMemMap:
		return TypeAddr
	case c.depth == 1 && (name == "fdt" || name == "preserved-data"):
		return TypeAddr
	case c.depth == 1 && name == "size" && (c.props("fdt") || c.props("preserved-data")):
		return TypeSize
	case name == "mem":
		// KHO v4's record, in any node.
		return TypeKHOMem
	}
	return TypeRaw
}

// fits reports whether a value of n bytes has the shape of type t.
func (t PropType) fits(v []byte) bool {
	switch t {
	case TypeString:
		return isStringList(v)
	case TypeU64, TypeAddr, TypeSize, TypeChecksum:
		return len(v) == 8
	case TypeSeals, TypeMode:
		return len(v) == 4
	case TypeKHOMem:
		return len(v)%16 == 0
	case TypeU64Array:
		return len(v)%8 == 0
	}
	return true
}

// entrySize is the bytes of one entry of an array type (0 for scalars).
func (t PropType) entrySize() int {
	switch t {
	case TypeKHOMem:
		return 16
	case TypeU64Array:
		return 8
	case TypeFolioFlags:
		return 1
	}
	return 0
}

// MemRange is one struct kho_mem.
type MemRange struct{ Addr, Size uint64 }

// Value is a property value decoded by its type.
type Value struct {
	Type PropType
	// Raw is the value's bytes (aliasing the blob Decode read).
	Raw []byte
	// Bad is set when the bytes do not have the shape the type wants
	// (a corrupt or foreign node): the value is then shown raw.
	Bad string
	// Strings of TypeString; Num of the scalar types.
	Strings []string
	Num     uint64
	// Count is the number of entries of an array type; Mems, Nums (u64
	// and flag entries) hold the first MaxEntries of them.
	Count int
	Mems  []MemRange
	Nums  []uint64
	// MemBytes sums the sizes of every kho_mem entry, MemOrders counts
	// the entries of each folio order (size = 4 KiB << order; -1 for a
	// size that is no power of two of pages).
	MemBytes  uint64
	MemOrders map[int]int
}

// decodeValue decodes v as t, keeping at most maxEntries array entries.
func decodeValue(t PropType, v []byte, maxEntries int) Value {
	val := Value{Type: t, Raw: v}
	if !t.fits(v) {
		val.Bad = fmt.Sprintf("%d bytes are not a %v", len(v), t)
		val.Type = TypeRaw
		return val
	}
	le := binary.LittleEndian
	switch t {
	case TypeString:
		val.Strings = strings.Split(string(v[:len(v)-1]), "\x00")
	case TypeU64, TypeAddr, TypeSize, TypeChecksum:
		val.Num = le.Uint64(v)
	case TypeSeals, TypeMode:
		val.Num = uint64(le.Uint32(v))
	case TypeKHOMem:
		val.Count = len(v) / 16
		val.MemOrders = map[int]int{}
		for i := range val.Count {
			m := MemRange{le.Uint64(v[16*i:]), le.Uint64(v[16*i+8:])}
			val.MemBytes += m.Size
			val.MemOrders[memOrder(m.Size)]++
			if i < maxEntries {
				val.Mems = append(val.Mems, m)
			}
		}
	case TypeU64Array:
		val.Count = len(v) / 8
		for i := range min(val.Count, maxEntries) {
			val.Nums = append(val.Nums, le.Uint64(v[8*i:]))
		}
	case TypeFolioFlags:
		val.Count = len(v)
		for i := range min(val.Count, maxEntries) {
			val.Nums = append(val.Nums, uint64(v[i]))
		}
	}
	return val
}

// memOrder is the folio order of a kho_mem size, or -1.
func memOrder(size uint64) int {
	if size < 4096 || bits.OnesCount64(size) != 1 {
		return -1
	}
	return bits.TrailingZeros64(size) - 12
}

// SealNames spells F_SEAL_* bits: "F_SEAL_SEAL|F_SEAL_GROW", "0" for none,
// unknown bits in hex.
func SealNames(seals uint64) string {
	names := []struct {
		bit  uint64
		name string
	}{
		{uapi.F_SEAL_SEAL, "F_SEAL_SEAL"}, {uapi.F_SEAL_SHRINK, "F_SEAL_SHRINK"}, {uapi.F_SEAL_GROW, "F_SEAL_GROW"},
		{uapi.F_SEAL_WRITE, "F_SEAL_WRITE"}, {uapi.F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"}, {uapi.F_SEAL_EXEC, "F_SEAL_EXEC"},
	}
	return bitNames(seals, func(yield func(uint64, string) bool) {
		for _, n := range names {
			if !yield(n.bit, n.name) {
				return
			}
		}
	})
}

// FolioFlagNames spells a storage node's per-folio flags: "uptodate|dirty",
// "0" for none.
func FolioFlagNames(flags uint64) string {
	return bitNames(flags, func(yield func(uint64, string) bool) {
		_ = yield(1, "uptodate") && yield(2, "dirty")
	})
}

func bitNames(v uint64, names func(yield func(uint64, string) bool)) string {
	if v == 0 {
		return "0"
	}
	var parts []string
	for bit, name := range names {
		if v&bit != 0 {
			parts = append(parts, name)
			v &^= bit
		}
	}
	if v != 0 {
		parts = append(parts, fmt.Sprintf("%#x", v))
	}
	return strings.Join(parts, "|")
}

// HumanBytes prints a byte count in binary units: "4 KiB", "1.5 MiB",
// "100 B".
func HumanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i, d := 0, float64(n)
	for d >= 1024 && i < len(units)-1 {
		d /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	if d == float64(uint64(d)) {
		return fmt.Sprintf("%d %s", uint64(d), units[i])
	}
	return fmt.Sprintf("%.1f %s", d, units[i])
}

// Summary is a one-line reading of a decoded value: "4096", "0x1000000",
// "8388608 (8 MiB)", "F_SEAL_SEAL|F_SEAL_GROW", "0644", "3 x kho_mem,
// 12 KiB".
func (v Value) Summary() string {
	switch v.Type {
	case TypeString:
		q := make([]string, len(v.Strings))
		for i, s := range v.Strings {
			q[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(q, ", ")
	case TypeU64:
		return fmt.Sprintf("%d", v.Num)
	case TypeAddr, TypeChecksum:
		return fmt.Sprintf("%#x", v.Num)
	case TypeSize:
		return fmt.Sprintf("%d (%s)", v.Num, HumanBytes(v.Num))
	case TypeSeals:
		return fmt.Sprintf("%#x %s", v.Num, SealNames(v.Num))
	case TypeMode:
		return fmt.Sprintf("%#o", v.Num)
	case TypeKHOMem:
		return fmt.Sprintf("%d x kho_mem, %s", v.Count, HumanBytes(v.MemBytes))
	case TypeU64Array:
		return fmt.Sprintf("%d x u64", v.Count)
	case TypeFolioFlags:
		return fmt.Sprintf("%d x folio flags", v.Count)
	}
	if v.Bad != "" {
		return fmt.Sprintf("%d bytes (%s)", len(v.Raw), v.Bad)
	}
	return fmt.Sprintf("%d bytes", len(v.Raw))
}

// Entry reads array entry i (< len(Mems) or len(Nums)): "0x100000 +4 KiB",
// "42", "uptodate|dirty".
func (v Value) Entry(i int) string {
	switch v.Type {
	case TypeKHOMem:
		m := v.Mems[i]
		return fmt.Sprintf("%#x +%s", m.Addr, HumanBytes(m.Size))
	case TypeU64Array:
		return fmt.Sprintf("%d", v.Nums[i])
	case TypeFolioFlags:
		return FolioFlagNames(v.Nums[i])
	}
	return ""
}

// Node is a decoded node.
type Node struct {
	Name     string // "" for the root and for unnamed nodes
	Path     string
	Props    []Prop
	Children []*Node
}

// Prop is a decoded property.
type Prop struct {
	Name  string
	Value Value
}

// Prop returns the node's property of that name, or nil.
func (n *Node) Prop(name string) *Prop {
	for i := range n.Props {
		if n.Props[i].Name == name {
			return &n.Props[i]
		}
	}
	return nil
}

// Decode checks blob with Open and decodes its tree, each property by the
// type the handover formats give it (TypeRaw for the rest), keeping at
// most maxEntries entries of each array (every entry is still counted and
// summed). The values alias blob.
func Decode(blob []byte, maxEntries int) (*Node, error) {
	f, err := Open(blob)
	if err != nil {
		return nil, err
	}
	kho := f.isKHO()
	var walk func(i, depth int) (*Node, error)
	walk = func(i, depth int) (*Node, error) {
		name, err := f.name("decode", i)
		if err != nil {
			return nil, err
		}
		path, err := f.path("decode", i)
		if err != nil {
			return nil, err
		}
		n := &Node{Name: string(name), Path: path}
		c := f.ctx(i, depth, kho)
		lo, hi := f.propRange(i)
		for k := lo; k < hi; k++ {
			pn, v, err := f.propK(k)
			if err != nil {
				return nil, err
			}
			n.Props = append(n.Props, Prop{pn, decodeValue(propType(c, pn), v, maxEntries)})
		}
		for ch := i + 1; ch < len(f.nodes) && int(f.nodes[ch].parent) == i; ch = int(f.nodes[ch].next) {
			cn, err := walk(ch, depth+1)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, cn)
		}
		return n, nil
	}
	return walk(0, 0)
}

// isKHO reports whether the root is a KHO handover's.
func (f *FDT) isKHO() bool {
	c, err := f.getProp("kho", 0, "compatible")
	return err == nil && (StringListContains(c, compatKHOv1) || StringListContains(c, compatKHOv2))
}

// ctx returns the schema context of node i.
func (f *FDT) ctx(i, depth int, kho bool) nodeCtx {
	c, _ := f.getProp("kho", i, "compatible")
	return nodeCtx{kho: kho, depth: depth, compat: c, props: func(name string) bool {
		_, err := f.getProp("kho", i, name)
		return err == nil
	}}
}

// writeTyped writes a value of a known type as device-tree source that
// compiles back to the very same bytes — a byte string — preceded by a
// comment reading it: `pos = /* u64 4096 */ [00 10 00 00 00 00 00 00];`.
// Arrays print one entry a line with its reading; beyond DumpMaxValue
// bytes the entries are cut, as Dump cuts any value.
func (f *FDT) writeTyped(w *bufio.Writer, t PropType, v []byte, depth int) {
	val := decodeValue(t, v, DumpMaxValue)
	f.steps += len(v)
	w.WriteString(" = /* ")
	switch t {
	case TypeU64, TypeAddr, TypeSize, TypeChecksum, TypeSeals, TypeMode:
		w.WriteString(t.String() + " " + val.Summary())
		w.WriteString(" */ ")
		writeBytes(w, v)
		return
	}
	es := t.entrySize()
	if t == TypeKHOMem {
		fmt.Fprintf(w, "%d x kho_mem {addr, size}, %s", val.Count, HumanBytes(val.MemBytes))
	} else {
		w.WriteString(val.Summary())
	}
	w.WriteString(" */ [")
	shown := min(val.Count, DumpMaxValue/es)
	for i := range shown {
		w.WriteByte('\n')
		tabs(w, depth+1)
		fmt.Fprintf(w, "/* %s */ ", val.Entry(i))
		writeBytesBare(w, v[i*es:(i+1)*es])
	}
	if shown < val.Count {
		w.WriteByte('\n')
		tabs(w, depth+1)
		fmt.Fprintf(w, "/* ... %d more entries, %d bytes in all */", val.Count-shown, len(v))
	}
	w.WriteByte('\n')
	tabs(w, depth)
	w.WriteByte(']')
}

func writeBytes(w *bufio.Writer, v []byte) {
	w.WriteByte('[')
	writeBytesBare(w, v)
	w.WriteByte(']')
}

func writeBytesBare(w *bufio.Writer, v []byte) {
	for i, c := range v {
		if i > 0 {
			w.WriteByte(' ')
		}
		fmt.Fprintf(w, "%02x", c)
	}
}

// DumpNode prints the node at off of f as Dump prints it, named by its
// path, with its subnodes down to depth levels below it (deeper ones print
// as `name { ... };`): for failure messages that show one node of a
// handover, e.g. a storage node, whether named or unnamed. Properties are
// typed as in Dump. It returns the first write error.
func (f *FDT) DumpNode(w io.Writer, off int, depth int) error {
	i, err := f.node("dump", off)
	if err != nil {
		return err
	}
	treeDepth := 0
	for p := f.nodes[i].parent; p >= 0; p = f.nodes[p].parent {
		treeDepth++
	}
	bw := bufio.NewWriter(w)
	if err := f.dumpNode(bw, i, dumpPos{tree: treeDepth, limit: depth, top: true}); err != nil {
		return err
	}
	return bw.Flush()
}
