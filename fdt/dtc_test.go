package fdt

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// needTool skips the test when a device-tree-compiler tool is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not in PATH (install device-tree-compiler): %v", name, err)
	}
	return p
}

func run(t fataler, prog string, args ...string) (string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// TestDtcDecodesKHOTree checks that dtc and fdtdump decode the writer's
// KHO-shaped handover, unnamed storage nodes included.
func TestDtcDecodesKHOTree(t *testing.T) {
	dtc := needTool(t, "dtc")
	fdtdump := needTool(t, "fdtdump")
	b := mustBuild(t, khoTree(), [2]uint64{0x1000, 0x1000})
	file := filepath.Join(t.TempDir(), "kho.dtb")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dts, _ := run(t, dtc, "-I", "dtb", "-O", "dts", file)
	dump, _ := run(t, fdtdump, file)
	for _, want := range []string{
		`compatible = "kho-v1"`, `compatible = "fdbox-v1"`, "fdbox {", "vm1 {", "vm2 {",
		"guest-ram {", "state {", "mem = <0x1000 0x00 0x100000 0x00 ", "pos = <",
		"/memreserve/", "sealed;",
	} {
		if !strings.Contains(dts, want) {
			t.Errorf("dtc output lacks %q:\n%s", want, dts)
		}
		if !strings.Contains(dump, strings.ReplaceAll(want, "0x1000 0x00 0x100000 0x00", "0x00001000 0x00000000 0x00100000 0x00000000")) {
			t.Errorf("fdtdump output lacks %q:\n%s", want, dump)
		}
	}
	// dtc prints an unnamed node as "/ {"; three of them here.
	if n := strings.Count(dts, "/ {"); n != 4 {
		t.Errorf("dtc printed %d nodes as \"/ {\", want the root and 3 unnamed:\n%s", n, dts)
	}
	// dtc -O dtb re-encodes it to the same tree.
	out := filepath.Join(t.TempDir(), "kho2.dtb")
	run(t, dtc, "-I", "dtb", "-O", "dtb", "-o", out, file)
	b2, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(b2)
	if err != nil {
		t.Fatalf("Open(dtc output): %v", err)
	}
	if d := diffTree("", khoTree(), readTree(t, f, f.Root())); d != "" {
		t.Fatalf("dtc's re-encoding differs: %s", d)
	}
}

// dtsRoundTrip compiles Dump's output of b with dtc and returns the tree
// dtc wrote.
func dtsRoundTrip(t fataler, dtc, dir string, b []byte) *tnode {
	var src bytes.Buffer
	if err := Dump(&src, b); err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "t.dts"), filepath.Join(dir, "t.dtb")
	if err := os.WriteFile(in, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dtc, "-q", "-I", "dts", "-O", "dtb", "-o", out, in)
	b2, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(b2)
	if err != nil {
		t.Fatalf("Open(dtc output): %v\nsource:\n%s", err, src.String())
	}
	return readTree(t, f, f.Root())
}

// TestDumpCompilesWithDtc: Dump's output is device-tree source that dtc
// compiles back to the same tree.
func TestDumpCompilesWithDtc(t *testing.T) {
	dtc := needTool(t, "dtc")
	dir := t.TempDir()
	root := lookupTree()
	root.kids[2].kids[0].kids = nil // source cannot name an unnamed node
	root.props = append(root.props,
		tprop{"esc", str("a\"b\\c\td\n\a\b\v\f\r")}, tprop{"cells", be32s(1, 0xffffffff)},
		tprop{"bytes", []byte{1, 2, 0xab}}, tprop{"empty", nil}, tprop{"nulls", []byte{0, 0, 0, 0}},
		tprop{"strs", strlist("x", "y z", "#")}, tprop{"#size-cells", be32s(2)})
	if d := diffTree("", root, dtsRoundTrip(t, dtc, dir, mustBuild(t, root))); d != "" {
		t.Fatal(d)
	}

	// Random trees: names and values of every shape Dump prints.
	rapid.Check(t, func(rt *rapid.T) {
		root := genNode(rt, "", 0)
		b, err := buildTree(1<<20, root)
		if err != nil {
			rt.Fatalf("build: %v", err)
		}
		if d := diffTree("", root, dtsRoundTrip(rt, dtc, dir, b)); d != "" {
			rt.Fatal(d)
		}
	})
}

func genValue(rt *rapid.T, label string) []byte {
	switch rapid.IntRange(0, 4).Draw(rt, label+"kind") {
	case 0:
		return nil
	case 1:
		ss := rapid.SliceOfN(rapid.StringMatching("[ -~\t\n]{1,12}"), 1, 3).Draw(rt, label+"strs")
		return strlist(ss...)
	case 2:
		return be32s(rapid.SliceOfN(rapid.Uint32(), 1, 6).Draw(rt, label+"cells")...)
	default:
		return rapid.SliceOfN(rapid.Byte(), 1, 20).Draw(rt, label+"bytes")
	}
}

func genNode(rt *rapid.T, name string, depth int) *tnode {
	n := &tnode{name: name}
	np := rapid.IntRange(0, 4).Draw(rt, "nprops")
	for i := range np {
		// Unique names (source merges duplicates), never "name" or
		// "phandle", which dtc treats specially.
		pn := rapid.StringMatching(`[a-z#][a-z0-9,._+?#-]{0,8}`).Draw(rt, "pname") + fmt.Sprintf("-%d", i)
		n.props = append(n.props, tprop{pn, genValue(rt, pn)})
	}
	if depth < 3 {
		nk := rapid.IntRange(0, 3).Draw(rt, "nkids")
		for i := range nk {
			kn := rapid.StringMatching(`[a-z][a-z0-9,._+-]{0,8}`).Draw(rt, "kname") + fmt.Sprintf("-%d", i)
			if rapid.Bool().Draw(rt, "unit") {
				kn += fmt.Sprintf("@%x", rapid.Uint16().Draw(rt, "addr"))
			}
			n.kids = append(n.kids, genNode(rt, kn, depth+1))
		}
	}
	return n
}
