package fdt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"khosim/errno"
)

func TestDumpGolden(t *testing.T) {
	root := &tnode{props: []tprop{{"compatible", str("kho-v1")}}, kids: []*tnode{
		{name: "fdbox", props: []tprop{
			{"compatible", strlist("fdbox-v1", "x")},
			{"sealed", nil},
			{"esc", str("a\"b\\c\td\n\a\b\v\f\r")},
			{"cells", be32s(1, 0xffffffff, 0x1000)},
			{"bytes", []byte{1, 2, 0xab}},
			{"nulls", []byte{0, 0, 0}},
			{"zero", []byte{0, 0, 0, 0}},
			{"emptystr", str("")},
			{"emptyinlist", strlist("a", "", "b")},
			{"nonascii", str("caf\xc3\xa9")},
			{"unterminated", []byte("abc")},
			{"le", le64(0x1000)},
		}, kids: []*tnode{
			{name: "vm1", kids: []*tnode{{name: "", props: []tprop{{"mem", khoMem(1, 0x200000)}}}}},
			{name: "cpu@0"},
		}},
	}}
	b := mustBuild(t, root, [2]uint64{0x1000, 0x2000})
	var out bytes.Buffer
	if err := Dump(&out, b); err != nil {
		t.Fatal(err)
	}
	want := `/dts-v1/;

/memreserve/	0x0000000000001000 0x0000000000002000;
/ {
	compatible = "kho-v1";

	fdbox {
		compatible = "fdbox-v1", "x";
		sealed;
		esc = "a\"b\\c\td\n\a\b\v\f\r";
		cells = <0x01 0xffffffff 0x1000>;
		bytes = [01 02 ab];
		nulls = [00 00 00];
		zero = <0x00>;
		emptystr = [00];
		emptyinlist = [61 00 00 62 00];
		nonascii = [63 61 66 c3 a9 00];
		unterminated = [61 62 63];
		le = <0x100000 0x00>;

		vm1 {

			/* unnamed */ {
				mem = /* 1 x kho_mem {addr, size}, 4 KiB */ [
					/* 0x200000 +4 KiB */ 00 00 20 00 00 00 00 00 00 10 00 00 00 00 00 00
				];
			};
		};

		cpu@0 {
		};
	};
};
`
	if got := out.String(); got != want {
		t.Fatalf("Dump:\n%s\nwant:\n%s", got, want)
	}
}

func TestDumpAbbreviates(t *testing.T) {
	root := &tnode{props: []tprop{
		{"mem", khoMem(262144, 0)},
		{"str", str(strings.Repeat("s", 300))},
		{"bytes", bytes.Repeat([]byte{7}, 301)},
		{"exact", bytes.Repeat([]byte{7}, DumpMaxValue)},
	}}
	b, err := buildTree(5<<20, root)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Dump(&out, b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 9 || out.Len() > 8192 {
		t.Fatalf("%d lines, %d bytes:\n%s", len(lines), out.Len(), out.String())
	}
	for i, tc := range []struct{ prefix, suffix string }{
		{"\tmem = <0x00 0x00 0x100000 0x00 0x200000 0x00 ", "> /* 4194304 bytes, 256 shown */;"},
		{"\tstr = \"sss", "sss\" /* 301 bytes, 256 shown */;"},
		{"\tbytes = [07 07 ", "07] /* 301 bytes, 256 shown */;"},
		{"\texact = <0x7070707 ", "0x7070707>;"},
	} {
		l := lines[3+i]
		if !strings.HasPrefix(l, tc.prefix) || !strings.HasSuffix(l, tc.suffix) {
			t.Errorf("line %q", l)
		}
	}
	if n := strings.Count(lines[3], "0x"); n != 64 {
		t.Errorf("mem shows %d cells", n)
	}
	if !strings.Contains(lines[4], `"`+strings.Repeat("s", 256)+`"`) {
		t.Errorf("str does not show 256 bytes")
	}
}

// TestDumpOddNames prints names the writer refuses, from a raw blob.
func TestDumpOddNames(t *testing.T) {
	b := raw(cat(beginNode(""), propTok(0, tok(1)), beginNode("a\nb c\xff"), endNode, endNode, end), []byte("p\x01q\x00"), nil)
	var out bytes.Buffer
	if err := Dump(&out, b); err != nil {
		t.Fatal(err)
	}
	want := "/dts-v1/;\n\n/ {\n\tp\\x01q = <0x01>;\n\n\ta\\x0ab\\x20c\\xff {\n\t};\n};\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		n := w.n
		w.n = 0
		return n, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestDumpWriteError(t *testing.T) {
	b := mustBuild(t, khoTree())
	full := new(bytes.Buffer)
	if err := Dump(full, b); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 10, full.Len() - 1} {
		if err := Dump(&failWriter{n}, b); err == nil || err.Error() != "disk full" {
			t.Errorf("writer failing after %d bytes: %v", n, err)
		}
	}
	if err := Dump(&failWriter{full.Len()}, b); err != nil {
		t.Errorf("writer with exactly enough room: %v", err)
	}
}

func TestDumpChangedAfterOpen(t *testing.T) {
	b := mustBuild(t, khoTree())
	f, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.st {
		f.st[i] = 0xff
	}
	if err := f.dump(new(bytes.Buffer)); !isErrno(err, errno.EBADMSG) {
		t.Fatalf("dump of a clobbered blob: %v", err)
	}
}

func ExampleDump() {
	buf := make([]byte, 4096)
	w, _ := Create(buf)
	_ = w.FinishReserveMap()
	_ = w.BeginNode("")
	_ = w.PropertyString("compatible", "kho-v1")
	_ = w.BeginNode("fdbox")
	_ = w.PropertyLE64("mem", 0x100000, 0x1000)
	_ = w.EndNode()
	_ = w.EndNode()
	blob, _ := w.Finish()
	if err := Dump(stdout{}, blob); err != nil {
		fmt.Println(err)
	}
	// Output:
	// /dts-v1/;
	//
	// / {
	// 	compatible = "kho-v1";
	//
	// 	fdbox {
	// 		mem = /* 1 x kho_mem {addr, size}, 4 KiB */ [
	// 			/* 0x100000 +4 KiB */ 00 00 10 00 00 00 00 00 00 10 00 00 00 00 00 00
	// 		];
	// 	};
	// };
}

type stdout struct{}

func (stdout) Write(p []byte) (int, error) { fmt.Print(string(p)); return len(p), nil }
