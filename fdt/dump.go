package fdt

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// DumpMaxValue is the most bytes of one property value Dump prints; a
// longer value is cut there and followed by a comment giving its length.
const DumpMaxValue = 256

// Dump checks blob with Open and prints it as device-tree source, the way
// `dtc -I dtb -O dts` does: "/dts-v1/;", /memreserve/ lines, then the tree
// with one tab per level, a blank line before every subnode, and each
// value as
//
//	name;                       empty
//	name = "a", "b";            non-empty strings of printable ASCII
//	name = <0x01 0x1000>;       otherwise, when the length is a multiple of 4
//	name = [01 02 03];          otherwise
//
// — except in a KHO handover (root compatible "kho-v1" or "kho-v2"), whose
// properties Dump reads by the formats khosim writes (typed.go): their
// integers are little endian, which big-endian cells would show
// byte-swapped. Such a value prints as the byte string it is, which dtc
// compiles back to the same bytes, after a comment that reads it:
//
//	pos = /* u64 4096 */ [00 10 00 00 00 00 00 00];
//	seals = /* seals 0x5 F_SEAL_SEAL|F_SEAL_GROW */ [05 00 00 00];
//	mem = /* 2 x kho_mem, 8 KiB {addr, size} */ [
//		/* 0x100000 +4 KiB */ 00 00 10 00 00 00 00 00 00 10 00 00 00 00 00 00
//		/* 0x200000 +4 KiB */ 00 00 20 00 00 00 00 00 00 10 00 00 00 00 00 00
//	];
//
// A value whose bytes do not have its type's shape (a corrupt node) prints
// raw, as outside a handover.
//
// Unlike dtc, a string list prints as "a", "b" (dtc 1.6 writes "a\0b"), an
// unnamed node other than the root prints as "/* unnamed */ {" (dtc writes
// "/ {", which it cannot read back: source cannot name a node ""), and a
// value longer than DumpMaxValue bytes is cut, e.g.
// `mem = <...> /* 4194304 bytes, 256 shown */;` (a typed array after
// DumpMaxValue bytes of entries: `/* ... 262128 more entries, 4194304
// bytes in all */`). Bytes that are not printable in a node or property
// name print as \xNN. Without unnamed nodes and cut values the output
// compiles back with dtc into the same tree. Dump writes nothing when Open
// fails, and returns the first write error.
func Dump(w io.Writer, blob []byte) error {
	f, err := Open(blob)
	if err != nil {
		return err
	}
	return f.dump(w)
}

func (f *FDT) dump(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("/dts-v1/;\n\n")
	for n := 0; n < f.nrsv; n++ {
		addr, size, _ := f.GetMemRsv(n)
		fmt.Fprintf(bw, "/memreserve/\t0x%016x 0x%016x;\n", addr, size)
	}
	if err := f.dumpNode(bw, 0, dumpPos{limit: -1}); err != nil {
		return err
	}
	return bw.Flush()
}

func tabs(w *bufio.Writer, n int) {
	for range n {
		w.WriteByte('\t')
	}
}

// dumpPos is where dumpNode is: the indentation, the node's depth in the
// tree (for the schema), how many levels below may still print (-1: all),
// and whether this is the top node of a DumpNode (named by its path).
type dumpPos struct {
	indent, tree, limit int
	top                 bool
}

func (f *FDT) dumpNode(w *bufio.Writer, i int, at dumpPos) error {
	const fn = "dump"
	f.steps++
	tabs(w, at.indent)
	name, err := f.name(fn, i)
	if err != nil {
		return err
	}
	switch {
	case at.top:
		p, err := f.path(fn, i)
		if err != nil {
			return err
		}
		writeName(w, []byte(p))
		if len(name) == 0 && i != 0 {
			w.WriteString(" /* unnamed */")
		}
	case i == 0:
		w.WriteString("/")
	case len(name) == 0:
		w.WriteString("/* unnamed */")
	default:
		writeName(w, name)
	}
	w.WriteString(" {\n")
	c := f.ctx(i, at.tree, f.isKHO())
	lo, hi := f.propRange(i)
	for k := lo; k < hi; k++ {
		f.steps++
		nameoff, v, err := f.prop(fn, k)
		if err != nil {
			return err
		}
		pn, err := f.propName(nameoff)
		if err != nil {
			return err
		}
		tabs(w, at.indent+1)
		writeName(w, pn)
		if t := propType(c, string(pn)); t != TypeRaw && t != TypeString && len(v) > 0 && t.fits(v) {
			f.writeTyped(w, t, v, at.indent+1)
		} else {
			f.writeValue(w, v)
		}
		w.WriteString(";\n")
	}
	for ch := i + 1; ch < len(f.nodes) && int(f.nodes[ch].parent) == i; ch = int(f.nodes[ch].next) {
		w.WriteByte('\n')
		if at.limit == 0 {
			f.steps++
			tabs(w, at.indent+1)
			cn, err := f.name(fn, ch)
			if err != nil {
				return err
			}
			if len(cn) == 0 {
				w.WriteString("/* unnamed */")
			} else {
				writeName(w, cn)
			}
			w.WriteString(" { ... };\n")
			continue
		}
		next := dumpPos{indent: at.indent + 1, tree: at.tree + 1, limit: at.limit - 1}
		if at.limit < 0 {
			next.limit = -1
		}
		if err := f.dumpNode(w, ch, next); err != nil {
			return err
		}
	}
	tabs(w, at.indent)
	w.WriteString("};\n")
	return nil
}

func writeName(w *bufio.Writer, name []byte) {
	for _, c := range name {
		if c > ' ' && c < 0x7f {
			w.WriteByte(c)
		} else {
			fmt.Fprintf(w, `\x%02x`, c)
		}
	}
}

// isStringList reports whether v is one or more non-empty NUL-terminated
// strings of printable ASCII or C escapes.
func isStringList(v []byte) bool {
	if len(v) == 0 || v[len(v)-1] != 0 || v[0] == 0 {
		return false
	}
	for i, c := range v {
		switch {
		case c == 0:
			if v[i-1] == 0 {
				return false
			}
		case c >= ' ' && c < 0x7f, c >= '\a' && c <= '\r':
		default:
			return false
		}
	}
	return true
}

func (f *FDT) writeValue(w *bufio.Writer, v []byte) {
	if len(v) == 0 {
		return
	}
	f.steps += len(v)
	str := isStringList(v)
	shown := v
	if len(v) > DumpMaxValue {
		shown = v[:DumpMaxValue]
	}
	w.WriteString(" = ")
	switch {
	case str:
		w.WriteByte('"')
		for i, c := range shown {
			switch c {
			case 0:
				if i < len(shown)-1 {
					w.WriteString(`", "`)
				}
				continue
			case '"', '\\':
				w.WriteByte('\\')
				w.WriteByte(c)
				continue
			}
			if c >= ' ' {
				w.WriteByte(c)
			} else {
				w.WriteByte('\\')
				w.WriteByte("abtnvfr"[c-'\a'])
			}
		}
		w.WriteByte('"')
	case len(v)%4 == 0:
		w.WriteByte('<')
		for i := 0; i+4 <= len(shown); i += 4 {
			if i > 0 {
				w.WriteByte(' ')
			}
			fmt.Fprintf(w, "0x%02x", binary.BigEndian.Uint32(shown[i:]))
		}
		w.WriteByte('>')
	default:
		w.WriteByte('[')
		for i, c := range shown {
			if i > 0 {
				w.WriteByte(' ')
			}
			fmt.Fprintf(w, "%02x", c)
		}
		w.WriteByte(']')
	}
	if len(shown) < len(v) {
		fmt.Fprintf(w, " /* %d bytes, %d shown */", len(v), len(shown))
	}
}
