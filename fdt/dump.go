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
// Unlike dtc, a string list prints as "a", "b" (dtc 1.6 writes "a\0b"), an
// unnamed node other than the root prints as "/* unnamed */ {" (dtc writes
// "/ {", which it cannot read back: source cannot name a node ""), and a
// value longer than DumpMaxValue bytes is cut, e.g.
// `mem = <...> /* 4194304 bytes, 256 shown */;`. Bytes that are not
// printable in a node or property name print as \xNN. Without unnamed
// nodes and cut values the output compiles back with dtc into the same
// tree. Dump writes nothing when Open fails, and returns the first write
// error.
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
	if err := f.dumpNode(bw, 0, 0); err != nil {
		return err
	}
	return bw.Flush()
}

func tabs(w *bufio.Writer, n int) {
	for range n {
		w.WriteByte('\t')
	}
}

func (f *FDT) dumpNode(w *bufio.Writer, i, depth int) error {
	const fn = "dump"
	f.steps++
	tabs(w, depth)
	name, err := f.name(fn, i)
	if err != nil {
		return err
	}
	switch {
	case i == 0:
		w.WriteString("/")
	case len(name) == 0:
		w.WriteString("/* unnamed */")
	default:
		writeName(w, name)
	}
	w.WriteString(" {\n")
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
		tabs(w, depth+1)
		writeName(w, pn)
		f.writeValue(w, v)
		w.WriteString(";\n")
	}
	for c := i + 1; c < len(f.nodes) && int(f.nodes[c].parent) == i; c = int(f.nodes[c].next) {
		w.WriteByte('\n')
		if err := f.dumpNode(w, c, depth+1); err != nil {
			return err
		}
	}
	tabs(w, depth)
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
