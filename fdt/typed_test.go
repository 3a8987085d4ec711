package fdt

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// shmemTree is a handover with one storage node of every property, named
// storage (as the proposed named-node format would write it) or unnamed
// (as fdbox,shmem-v2 does), a subtree node and a bitmap-style root.
func shmemTree(storage string) *tnode {
	mem := le64(0x100000, 0x1000, 0x200000, 0x200000)
	return &tnode{props: []tprop{{"compatible", str("kho-v1")}, {"preserved-memory-map", le64(0x7000000)}}, kids: []*tnode{
		{name: "fdbox", props: []tprop{{"compatible", str("fdbox-v1")}}, kids: []*tnode{
			{name: "vm1", props: []tprop{{"compatible", str("fdbox,box-v1")}}, kids: []*tnode{
				{name: "ram", props: []tprop{{"compatible", str("fdbox,memfd-v1")}}, kids: []*tnode{
					{name: storage, props: []tprop{
						{"compatible", str("fdbox,shmem-v2")},
						{"file-name", str("memfd:guest-ram")},
						{"pos", le64(4096)},
						{"size", le64(3 << 20)},
						{"seals", le32(0x5)},
						{"mode", le32(0o644)},
						{"mem", mem},
						{"indices", le64(0, 512)},
						{"flags", []byte{3, 1}},
						{"checksum", le64(0x0123456789abcdef)},
					}},
				}},
			}},
		}},
		{name: "luo", props: []tprop{{"fdt", le64(0x5000000)}, {"size", le64(8192)}}},
	}}
}

func TestDumpTypedStorageNode(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, Dump(&out, mustBuild(t, shmemTree(""))))
	want := `/dts-v1/;

/ {
	compatible = "kho-v1";
	preserved-memory-map = /* address 0x7000000 */ [00 00 00 07 00 00 00 00];

	fdbox {
		compatible = "fdbox-v1";

		vm1 {
			compatible = "fdbox,box-v1";

			ram {
				compatible = "fdbox,memfd-v1";

				/* unnamed */ {
					compatible = "fdbox,shmem-v2";
					file-name = "memfd:guest-ram";
					pos = /* u64 4096 */ [00 10 00 00 00 00 00 00];
					size = /* size 3145728 (3 MiB) */ [00 00 30 00 00 00 00 00];
					seals = /* seals 0x5 F_SEAL_SEAL|F_SEAL_GROW */ [05 00 00 00];
					mode = /* mode 0644 */ [a4 01 00 00];
					mem = /* 2 x kho_mem {addr, size}, 2.0 MiB */ [
						/* 0x100000 +4 KiB */ 00 00 10 00 00 00 00 00 00 10 00 00 00 00 00 00
						/* 0x200000 +2 MiB */ 00 00 20 00 00 00 00 00 00 00 20 00 00 00 00 00
					];
					indices = /* 2 x u64 */ [
						/* 0 */ 00 00 00 00 00 00 00 00
						/* 512 */ 00 02 00 00 00 00 00 00
					];
					flags = /* 2 x folio flags */ [
						/* uptodate|dirty */ 03
						/* uptodate */ 01
					];
					checksum = /* checksum 0x123456789abcdef */ [ef cd ab 89 67 45 23 01];
				};
			};
		};
	};

	luo {
		fdt = /* address 0x5000000 */ [00 00 00 05 00 00 00 00];
		size = /* size 8192 (8 KiB) */ [00 20 00 00 00 00 00 00];
	};
};
`
	require.Equal(t, want, out.String())
}

// TestDumpTypedLeavesOtherTreesAlone: the schema applies to KHO handovers
// only, and a value of the wrong shape prints raw.
func TestDumpTypedLeavesOtherTreesAlone(t *testing.T) {
	root := shmemTree("shmem")
	root.props[0].val = str("vendor,board")
	var out bytes.Buffer
	require.NoError(t, Dump(&out, mustBuild(t, root)))
	require.Contains(t, out.String(), "pos = <0x100000 0x00>;")
	require.Contains(t, out.String(), "shmem {")

	root = shmemTree("shmem")
	st := root.kids[0].kids[0].kids[0].kids[0]
	st.props[3].val = []byte{1, 2, 3} // size: 3 bytes, no u64
	out.Reset()
	require.NoError(t, Dump(&out, mustBuild(t, root)))
	require.Contains(t, out.String(), "size = [01 02 03];")
}

func TestDumpTypedCutsLongArrays(t *testing.T) {
	root := shmemTree("shmem")
	st := root.kids[0].kids[0].kids[0].kids[0]
	st.props[6].val = khoMem(1000, 0x100000)
	var out bytes.Buffer
	require.NoError(t, Dump(&out, mustBuild(t, root)))
	s := out.String()
	require.Contains(t, s, "mem = /* 1000 x kho_mem {addr, size}, 3.9 MiB */ [")
	require.Equal(t, DumpMaxValue/16, strings.Count(s, " +4 KiB */"))
	require.Contains(t, s, "/* ... 984 more entries, 16000 bytes in all */")
}

// TestDumpTypedCompilesWithDtc: a typed dump of a handover with a named
// storage node is source dtc compiles back to the same tree, and fdtget
// reaches the storage node by path (which it cannot for the unnamed node
// of fdbox,shmem-v2).
func TestDumpTypedCompilesWithDtc(t *testing.T) {
	dtc := needTool(t, "dtc")
	fdtget := needTool(t, "fdtget")
	root := shmemTree("shmem")
	dir := t.TempDir()
	if d := diffTree("", root, dtsRoundTrip(t, dtc, dir, mustBuild(t, root))); d != "" {
		t.Fatal(d)
	}
	file := filepath.Join(dir, "h.dtb")
	require.NoError(t, os.WriteFile(file, mustBuild(t, root), 0o644))
	got, _ := run(t, fdtget, "-t", "bx", file, "/fdbox/vm1/ram/shmem", "pos")
	require.Equal(t, "0 10 0 0 0 0 0 0\n", got)
}

func TestDumpNode(t *testing.T) {
	for _, name := range []string{"", "shmem"} {
		f, err := Open(mustBuild(t, shmemTree(name)))
		require.NoError(t, err)
		off, err := f.PathOffset("/fdbox/vm1/ram")
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, f.DumpNode(&out, off, 1))
		s := out.String()
		require.True(t, strings.HasPrefix(s, "/fdbox/vm1/ram {\n\tcompatible = \"fdbox,memfd-v1\";\n"), s)
		require.Contains(t, s, "\t\tpos = /* u64 4096 */ [00 10 00 00 00 00 00 00];\n", "typed below the top node (%q)", name)
		sub, err := f.FirstSubnode(off)
		require.NoError(t, err)
		out.Reset()
		require.NoError(t, f.DumpNode(&out, sub, 0))
		require.Contains(t, out.String(), "seals = /* seals 0x5 F_SEAL_SEAL|F_SEAL_GROW */")
		out.Reset()
		require.NoError(t, f.DumpNode(&out, f.Root(), 0))
		require.Contains(t, out.String(), "\tfdbox { ... };\n")
	}
	f, err := Open(mustBuild(t, shmemTree("")))
	require.NoError(t, err)
	require.Error(t, f.DumpNode(new(bytes.Buffer), 3, 0), "a bad offset")
}

func TestDecode(t *testing.T) {
	for _, name := range []string{"", "shmem"} {
		n, err := Decode(mustBuild(t, shmemTree(name)), 1)
		require.NoError(t, err)
		require.Equal(t, "preserved-memory-map", n.Props[1].Name)
		require.Equal(t, TypeAddr, n.Props[1].Value.Type)
		require.Equal(t, uint64(0x7000000), n.Props[1].Value.Num)
		st := n.Children[0].Children[0].Children[0].Children[0]
		require.Equal(t, name, st.Name)
		mem := st.Prop("mem").Value
		require.Equal(t, TypeKHOMem, mem.Type)
		require.Equal(t, 2, mem.Count)
		require.Equal(t, []MemRange{{0x100000, 0x1000}}, mem.Mems, "at most one entry kept")
		require.Equal(t, uint64(0x201000), mem.MemBytes)
		require.Equal(t, map[int]int{0: 1, 9: 1}, mem.MemOrders)
		require.Equal(t, "0x5 F_SEAL_SEAL|F_SEAL_GROW", st.Prop("seals").Value.Summary())
		require.Equal(t, "0644", st.Prop("mode").Value.Summary())
		require.Equal(t, "3145728 (3 MiB)", st.Prop("size").Value.Summary())
		require.Equal(t, `"memfd:guest-ram"`, st.Prop("file-name").Value.Summary())
		require.Equal(t, "uptodate|dirty", st.Prop("flags").Value.Entry(0))
		require.Equal(t, TypeAddr, n.Children[1].Prop("fdt").Value.Type)
		require.Equal(t, TypeSize, n.Children[1].Prop("size").Value.Type)
		require.Nil(t, st.Prop("nope"))
	}
	_, err := Decode([]byte("not a dtb"), 1)
	require.Error(t, err)
}

func TestNames(t *testing.T) {
	require.Equal(t, "0", SealNames(0))
	require.Equal(t, "F_SEAL_WRITE|F_SEAL_EXEC|0x40", SealNames(0x68))
	require.Equal(t, "dirty|0x4", FolioFlagNames(6))
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 4096: "4 KiB", 1536: "1.5 KiB", 64 << 30: "64 GiB"} {
		require.Equal(t, want, HumanBytes(n))
	}
}

// FuzzDecode: Decode and the typed Dump never panic on any blob, and
// agree on whether it opens.
func FuzzDecode(f *testing.F) {
	f.Add(mustBuild(f, shmemTree("")))
	f.Add(mustBuild(f, shmemTree("shmem")))
	f.Add(mustBuild(f, khoTree()))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, derr := Decode(b, 4)
		_, oerr := Open(b)
		if (derr == nil) != (oerr == nil) {
			t.Fatalf("Decode: %v, Open: %v", derr, oerr)
		}
		if oerr == nil {
			_ = Dump(new(bytes.Buffer), b)
		}
	})
}
