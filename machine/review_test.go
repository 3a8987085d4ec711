package machine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdbox"
	"khosim/fdt"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/preserve"
	"khosim/uapi"
)

// The review's tests: hostile but well-formed handovers (property values
// rewritten with the shmem-v2 checksum recomputed, so that the checksum
// does not simply reject them), activation atomicity, and multi-hop
// handovers of recovered-then-modified files.

// tnode is an FDT node as a tree, to rewrite a handover structurally.
type tnode struct {
	name  string
	props []tprop
	kids  []*tnode
}

type tprop struct {
	name string
	val  []byte
}

func readTree(f *fdt.FDT, off int) *tnode {
	n := &tnode{}
	n.name, _ = f.GetName(off)
	for name, v := range f.Properties(off) {
		n.props = append(n.props, tprop{name, slices.Clone(v)})
	}
	for sub := range f.Subnodes(off) {
		n.kids = append(n.kids, readTree(f, sub))
	}
	return n
}

func (n *tnode) write(w *fdt.Writer) error {
	if err := w.BeginNode(n.name); err != nil {
		return err
	}
	for _, p := range n.props {
		if err := w.Property(p.name, p.val); err != nil {
			return err
		}
	}
	for _, k := range n.kids {
		if err := k.write(w); err != nil {
			return err
		}
	}
	return w.EndNode()
}

func (n *tnode) clone() *tnode {
	c := &tnode{name: n.name}
	for _, p := range n.props {
		c.props = append(c.props, tprop{p.name, slices.Clone(p.val)})
	}
	for _, k := range n.kids {
		c.kids = append(c.kids, k.clone())
	}
	return c
}

// at returns the node at a path of names below n ("" is the unnamed
// storage node).
func (n *tnode) at(t testing.TB, names ...string) *tnode {
	t.Helper()
	for _, name := range names {
		i := slices.IndexFunc(n.kids, func(k *tnode) bool { return k.name == name })
		require.GreaterOrEqual(t, i, 0, "no node %q under %q", name, n.name)
		n = n.kids[i]
	}
	return n
}

func (n *tnode) get(name string) []byte {
	for _, p := range n.props {
		if p.name == name {
			return p.val
		}
	}
	return nil
}

func (n *tnode) set(name string, v []byte) {
	for i, p := range n.props {
		if p.name == name {
			n.props[i].val = v
			return
		}
	}
	n.props = append(n.props, tprop{name, v})
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// resum recomputes a shmem-v2 node's checksum as fdbox writes it: the fd
// node's name, then every other property as name, NUL, LE64 length,
// value.
func (n *tnode) resum(fdName string) {
	h := xxh3.New()
	prop := func(name string, v []byte) {
		_, _ = h.WriteString(name)
		_, _ = h.Write([]byte{0})
		_, _ = h.Write(le64(uint64(len(v))))
		_, _ = h.Write(v)
	}
	prop("", []byte(fdName))
	for _, p := range n.props {
		if p.name != "checksum" {
			prop(p.name, p.val)
		}
	}
	n.set("checksum", le64(h.Sum64()))
}

func encodeTree(t testing.TB, root *tnode, size int) []byte {
	t.Helper()
	w, err := fdt.Create(make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, w.FinishReserveMap())
	require.NoError(t, root.write(w))
	blob, err := w.Finish()
	require.NoError(t, err)
	return slices.Clone(blob)
}

// kexecWithFDT is Machine.Kexec with the handover FDT replaced: the
// active FDT is parsed into a tree, rewrite changes it (knowing the
// physical address the new FDT will have), and the result is placed in
// fresh frames of the old kernel, outside scratch, which the kexec keeps
// instead of the real FDT. Everything else (the preserved folios kept,
// the scrub, the poison, the boot) is what Kexec does.
func (m *Machine) kexecWithFDT(t testing.TB, rewrite func(root *tnode, fdtAddr physmem.PhysAddr)) error {
	t.Helper()
	_, blob, ok := m.kho.FDT()
	require.True(t, ok, "KHO must be active")
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	root := readTree(f, f.Root())
	const size = 4 << 20 // room for rewrites that grow the tree
	order := uint(bits.Len64(uint64(size-1) >> physmem.PageShift))
	old := m.k
	pfn, err := old.MM.AllocPages(physmem.GFPKernel, order)
	require.NoError(t, err)
	addr := pfn.Phys()
	rewrite(root, addr)
	nb := encodeTree(t, root, size)
	_, err = m.frames.WriteAt(nb, addr)
	require.NoError(t, err)

	ho, keep := m.kho.PrepareKexec()
	oldFDT := ho.FDTAddr
	ho.FDTAddr, ho.FDTSize = addr, uint64(len(nb))
	keep = slices.DeleteFunc(keep, func(r kexec.Mem) bool { return r.Addr == oldFDT })
	keep = append(keep, kexec.Mem{Addr: addr, Size: (uint64(len(nb)) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)})
	slices.SortFunc(keep, func(a, b kexec.Mem) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	m.lastFDT, m.lastFDTAt = slices.Clone(nb), nil
	m.stats.HandedOver = true
	m.stats.ScrubbedFrames = kexec.Scrub(old, keep)
	old.Poison("kexec")
	m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
	m.stats.Kexecs++
	return m.bootKernel(ho, m.build)
}

// storeOf returns the shmem storage node of box/fd.
func storeOf(t testing.TB, root *tnode, box, fd string) *tnode {
	return root.at(t, fdbox.FdboxNode, box, fd, preserve.ShmemNodeName)
}

// mems decodes a storage node's "mem".
func mems(t testing.TB, s *tnode) []kexec.Mem {
	t.Helper()
	ms, err := kexec.DecodeMems(s.get("mem"))
	require.NoError(t, err)
	return ms
}

func indices(s *tnode) []uint64 {
	v := s.get("indices")
	out := make([]uint64, len(v)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(v[8*i:])
	}
	return out
}

func setIndices(s *tnode, idx []uint64) {
	var b []byte
	for _, i := range idx {
		b = binary.LittleEndian.AppendUint64(b, i)
	}
	s.set("indices", b)
}

// usedAfterClean is the frames(used) of a kernel kexec'd without a
// handover and with every box deleted: the baseline no hostile handover
// may raise once everything it revived is released.
func usedAfterClean(t *testing.T) uint64 {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.Kexec(fx.m.Build()))
	return fx.m.FrameCounts()["used"]
}

// releaseAll unseals and deletes every box of the running kernel, so that
// every revived file is released.
func (w *world) releaseAll() {
	w.t.Helper()
	p := w.proc(fmt.Sprintf("release%d", w.k().BootID))
	ctl := w.open(p, "/dev/fdbox/fdbox")
	for _, b := range w.m.FDBox().Boxes() {
		fd := w.open(p, b.Path())
		if b.Sealed() {
			w.unseal(p, fd)
		}
		require.NoError(w.t, p.Close(fd))
		var a uapi.FdboxDeleteBox
		uapi.SetName(&a.Name, b.Name())
		_, err := p.Ioctl(ctl, uapi.FDBOX_DELETE_BOX, &a)
		require.NoError(w.t, err)
	}
	require.NoError(w.t, p.Close(ctl))
	p.Exit()
}

// hostile runs one rewrite of the fixture's handover and checks what must
// hold whatever a well-formed but hostile FDT says: the boot survives, the
// full audit holds, every preserved range was claimed exactly once or
// returned, every file whose node was not rewritten comes back with its
// contents, the rewritten ones (touched) come back exactly when *back says
// so and can be read (back nil: any file may be lost, but one that comes
// back from an untouched node is intact), and once every box is
// deleted no frame is left used beyond a clean kexec's.
func hostile(t *testing.T, baseline uint64, rewrite func(t *testing.T, root *tnode, fdtAddr physmem.PhysAddr), back *bool, touched ...string) *fixture {
	t.Helper()
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	require.NoError(t, fx.m.kexecWithFDT(t, func(root *tnode, a physmem.PhysAddr) { rewrite(t, root, a) }))
	require.NoError(t, fx.m.CheckInvariants())
	c := fx.m.FrameCounts()
	require.Zero(t, c["preserved"])
	require.Equal(t, c["total"], c["free"]+c["used"]+c["slab"]+c["tracker"]+c["reserved"])
	s := fx.m.Stats().Incoming
	require.Equal(t, s.Ranges, s.Claimed+s.Returned)

	p := fx.proc("check")
	for i, f := range fx.files {
		box := fx.m.FDBox().Box(f.box)
		wasTouched := slices.Contains(touched, f.box+"/"+f.name)
		if box == nil || box.FD(f.name) == nil {
			// With back nil any file may be lost: a rewritten node can
			// take another file's range before that file claims it.
			require.True(t, back == nil || wasTouched && !*back, "%s/%s did not come back", f.box, f.name)
			continue
		}
		require.True(t, !wasTouched || back == nil || *back, "%s/%s came back", f.box, f.name)
		file := box.FD(f.name).File()
		fd, err := p.InstallFD(file.Get(), false)
		require.NoError(t, err)
		if !wasTouched {
			require.Equal(t, f.size, file.Inode.Size, "%s/%s", f.box, f.name)
			require.Equal(t, int64(i)*1000, file.Pos)
			fx.content(p, fd, 0, f.written, f.seed)
			fx.content(p, fd, f.written, f.size-f.written, 0)
		} else {
			n := min(file.Inode.Size, 8*MiB)
			_, err := p.Pread(fd, 0, n, func([]byte, int64) error { return nil })
			require.NoError(t, err)
		}
		require.NoError(t, p.Close(fd))
	}
	p.Exit()
	require.NoError(t, fx.m.CheckInvariants())
	fx.releaseAll()
	require.NoError(t, fx.m.CheckInvariants())
	require.Equal(t, baseline, fx.m.FrameCounts()["used"], "frames left used once every box is deleted")
	return fx
}

func setMems(s *tnode, ms []kexec.Mem) { s.set("mem", kexec.EncodeMems(ms)) }

// editMem rewrites entry i of box/fd's "mem" and re-signs the node.
func editMem(box, fd string, i int, fn func(m *kexec.Mem, fdtAddr physmem.PhysAddr)) func(*testing.T, *tnode, physmem.PhysAddr) {
	return func(t *testing.T, root *tnode, a physmem.PhysAddr) {
		s := storeOf(t, root, box, fd)
		ms := mems(t, s)
		fn(&ms[i], a)
		setMems(s, ms)
		s.resum(fd)
	}
}

// editProp replaces a property of box/fd's storage node and re-signs it.
func editProp(box, fd, name string, v []byte) func(*testing.T, *tnode, physmem.PhysAddr) {
	return func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
		s := storeOf(t, root, box, fd)
		s.set(name, v)
		s.resum(fd)
	}
}

// TestReviewHostileHandover feeds the next kernel well-formed handovers
// whose contents lie: every shmem-v2 node rewritten here carries a valid
// checksum, so only the validation of the values themselves stands
// between it and the kernel (the existing fuzz tests flip bytes, which
// the checksum catches). Whatever the FDT says, the boot survives, no
// frame is lost or claimed twice, the audit holds, and deleting every box
// leaves no frame used.
func TestReviewHostileHandover(t *testing.T) {
	base := usedAfterClean(t)
	const memTop = 128 * MiB
	cases := []struct {
		name    string
		rewrite func(*testing.T, *tnode, physmem.PhysAddr)
		touched []string
		back    bool // the touched files come back
	}{
		{"index-duplicated", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			idx := indices(s)
			idx[1] = idx[0]
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm2/ram"}, false},
		{"indices-reversed", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			idx := indices(s)
			slices.Reverse(idx)
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm2/ram"}, true},
		{"index-beyond-max-lfs", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			idx := indices(s)
			idx[0] = math.MaxInt64>>physmem.PageShift + 1
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm2/ram"}, false},
		{"index-max-lfs", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			// The page holding byte 2^63-1, MAX_LFS_FILESIZE's last: legal.
			s := storeOf(t, root, "vm2", "ram")
			idx := indices(s)
			idx[0] = math.MaxInt64 >> physmem.PageShift
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm2/ram"}, true},
		{"index-last-page", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			idx := indices(s)
			idx[0] = math.MaxInt64>>physmem.PageShift - 1
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm2/ram"}, true},
		{"index-misaligned-for-order", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm1", "ram")
			idx := indices(s)
			idx[1]++ // a 2 MiB folio at an odd index
			setIndices(s, idx)
			s.resum("ram")
		}, []string{"vm1/ram"}, false},
		{"mem-duplicated-in-node", editMem("vm2", "ram", 1, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr -= physmem.PageSize }), []string{"vm2/ram"}, false},
		{"mem-of-another-file", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			other := mems(t, storeOf(t, root, "vm1", "state"))[0]
			editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { *m = other })(t, root, 0)
		}, []string{"vm2/ram"}, false},
		{"mem-in-scratch", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr = memTop - 16*MiB }), []string{"vm2/ram"}, false},
		{"mem-in-kernel-image", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr = 16 * MiB }), []string{"vm2/ram"}, false},
		{"mem-at-zero", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr = 0 }), []string{"vm2/ram"}, false},
		{"mem-on-the-fdt", editMem("vm2", "ram", 0, func(m *kexec.Mem, a physmem.PhysAddr) { m.Addr = a }), []string{"vm2/ram"}, false},
		{"mem-beyond-memory", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr = memTop }), []string{"vm2/ram"}, false},
		{"mem-wraps", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr, m.Size = ^physmem.PhysAddr(0)-4095, 8192 }), []string{"vm2/ram"}, false},
		{"mem-size-2^63", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Size = 1 << 63 }), []string{"vm2/ram"}, false},
		{"mem-misaligned", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr++ }), []string{"vm2/ram"}, false},
		{"mem-size-zero", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Size = 0 }), []string{"vm2/ram"}, false},
		{"mem-three-pages", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Size = 3 * physmem.PageSize }), []string{"vm2/ram"}, false},
		{"mem-order-above-max", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Addr, m.Size = 64*MiB, 8*MiB }), []string{"vm2/ram"}, false},
		{"mem-two-folios-as-one", editMem("vm2", "ram", 0, func(m *kexec.Mem, _ physmem.PhysAddr) { m.Size = 2 * physmem.PageSize }), []string{"vm2/ram"}, false},
		{"mem-odd-length", editProp("vm2", "ram", "mem", make([]byte, 17)), []string{"vm2/ram"}, false},
		{"mem-huge-count", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			ms := mems(t, s)
			var bm []kexec.Mem
			var bi []uint64
			for i := range 40000 {
				bm = append(bm, ms[i%len(ms)])
				bi = append(bi, uint64(i))
			}
			setMems(s, bm)
			setIndices(s, bi)
			s.set("flags", bytesOf(len(bm), 3))
			s.resum("ram")
		}, []string{"vm2/ram"}, false},
		{"size-2^63", editProp("vm2", "ram", "size", le64(1<<63)), []string{"vm2/ram"}, false},
		{"size-max-lfs", editProp("vm2", "ram", "size", le64(math.MaxInt64)), []string{"vm2/ram"}, true},
		{"pos-negative", editProp("vm2", "ram", "pos", le64(^uint64(0))), []string{"vm2/ram"}, false},
		{"pos-max-lfs", editProp("vm2", "ram", "pos", le64(math.MaxInt64)), []string{"vm2/ram"}, true},
		{"seals-unknown-bits", editProp("vm2", "ram", "seals", le32(0xffffffff)), []string{"vm2/ram"}, false},
		{"mode-all-bits", editProp("vm2", "ram", "mode", le32(0o7777)), []string{"vm2/ram"}, true},
		{"mode-type-bits", editProp("vm2", "ram", "mode", le32(0o170777)), []string{"vm2/ram"}, false},
		{"flags-unknown-bits", editProp("vm2", "ram", "flags", bytesOf(24, 0xff)), []string{"vm2/ram"}, true},
		{"flags-none", editProp("vm2", "ram", "flags", bytesOf(24, 0)), []string{"vm2/ram"}, true},
		{"file-name-without-nul", editProp("vm2", "ram", "file-name", []byte("memfd:x")), []string{"vm2/ram"}, false},
		{"file-name-long", editProp("vm2", "ram", "file-name", append([]byte(strings.Repeat("x", 100000)), 0)), []string{"vm2/ram"}, false},
		{"file-name-path", editProp("vm2", "ram", "file-name", []byte("../../etc/passwd\x00")), []string{"vm2/ram"}, true},
		{"compatible-v1-with-large-folios", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			storeOf(t, root, "vm1", "ram").set("compatible", []byte(preserve.ShmemCompatibleV1+"\x00"))
		}, []string{"vm1/ram"}, false},
		{"compatible-v1", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			storeOf(t, root, "vm2", "ram").set("compatible", []byte(preserve.ShmemCompatibleV1+"\x00"))
		}, []string{"vm2/ram"}, true},
		{"shmem-v3-unnamed", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			storeOf(t, root, "vm2", "ram").name = ""
		}, []string{"vm2/ram"}, false},
		{"shmem-v3-misnamed", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			storeOf(t, root, "vm2", "ram").name = "folios"
		}, []string{"vm2/ram"}, false},
		{"compatible-v2-named", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			s.set("compatible", []byte(preserve.ShmemCompatibleV2+"\x00"))
			s.resum("ram")
		}, []string{"vm2/ram"}, true},
		{"compatible-v2-unnamed", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, "vm2", "ram")
			s.set("compatible", []byte(preserve.ShmemCompatibleV2+"\x00"))
			s.resum("ram")
			s.name = ""
		}, []string{"vm2/ram"}, true},
		{"two-storage-nodes", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			fd := root.at(t, fdbox.FdboxNode, "vm2", "ram")
			fd.kids = append(fd.kids, fd.kids[0].clone())
		}, []string{"vm2/ram"}, false},
		{"duplicate-box-name", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.at(t, fdbox.FdboxNode, "vm2").name = "vm1"
		}, []string{"vm2/ram"}, false},
		{"duplicate-fd-name", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			n := root.at(t, fdbox.FdboxNode, "vm1", "state")
			n.name = "ram"
			storeOf(t, root, "vm1", "ram").resum("ram")
		}, []string{"vm1/state"}, false},
		{"box-named-fdbox", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.at(t, fdbox.FdboxNode, "vm2").name = "fdbox"
		}, []string{"vm2/ram"}, false},
		{"fd-named-dotdot", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.at(t, fdbox.FdboxNode, "vm2", "ram").name = ".."
		}, []string{"vm2/ram"}, false},
		{"same-fd-node-1000-times", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			box := root.at(t, fdbox.FdboxNode, "vm2")
			for i := range 1000 {
				c := box.kids[0].clone()
				c.name = fmt.Sprintf("copy%d", i)
				c.kids[0].resum(c.name)
				box.kids = append(box.kids, c)
			}
		}, nil, true},
		{"deep-chain-with-mem", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			n := storeOf(t, root, "vm2", "ram")
			for i := range fdt.MaxDepth - 6 {
				c := &tnode{name: fmt.Sprintf("d%d", i)}
				n.kids = append(n.kids, c)
				n = c
			}
			n.set("mem", kexec.EncodeMems([]kexec.Mem{{Addr: 64 * MiB, Size: 2 * MiB}}))
		}, nil, true},
		{"root-mem-over-a-file", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.props = append(root.props, tprop{"mem", kexec.EncodeMems(mems(t, storeOf(t, root, "vm1", "state")))})
		}, nil, true},
		{"root-mem-of-free-memory", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.props = append(root.props, tprop{"mem", kexec.EncodeMems([]kexec.Mem{{Addr: 64 * MiB, Size: 4 * MiB}, {Addr: 80 * MiB, Size: 12345 * physmem.PageSize}})})
		}, nil, true},
		{"fdbox-compatible-wrong", func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			root.at(t, fdbox.FdboxNode).set("compatible", []byte("fdbox-v9\x00"))
		}, []string{"vm1/ram", "vm1/state", "vm2/ram"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { hostile(t, base, c.rewrite, &c.back, c.touched...) })
	}
}

func bytesOf(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

var hostileBaseline struct {
	once sync.Once
	used uint64
}

// FuzzHostileHandover rewrites one value of one memfd's storage node —
// a kho_mem address or size, an index, a folio's flags, size, pos,
// seals, mode, the arrays' length, or entries swapped with another file's
// — and re-signs the node, so that the next kernel sees a well-formed,
// checksummed node whose values lie. FuzzCorruptHandover's byte flips
// almost always end at the checksum; this reaches the validation behind
// it. The checks are hostile's; the rewritten file may or may not come
// back.
func FuzzHostileHandover(f *testing.F) {
	for _, s := range []struct {
		file, what uint8
		elem       uint16
		val        uint64
		op         uint8
	}{
		{2, 0, 0, 0x1000, 1}, {2, 0, 3, 0x6802000, 0}, {1, 0, 7, 0x7000000, 0}, {0, 0, 0, 0x200000, 1},
		{0, 1, 0, 0x400000, 0}, {2, 1, 1, 0x2000, 0}, {1, 2, 5, 4, 0}, {0, 2, 1, 1, 2},
		{2, 2, 0, 1 << 51, 0}, {1, 3, 9, 0xff, 0}, {2, 4, 0, 1 << 63, 0}, {2, 4, 0, math.MaxInt64, 0},
		{0, 5, 0, ^uint64(0), 0}, {1, 6, 0, 0x40, 0}, {2, 7, 0, 0o4755, 0}, {1, 8, 100, 0, 0},
		{2, 9, 3, 0, 0}, {0, 9, 1, 2, 0}, {1, 10, 4, 0, 0}, {0, 10, 0, 0, 0},
	} {
		f.Add(s.file, s.what, s.elem, s.val, s.op)
	}
	f.Fuzz(func(t *testing.T, file, what uint8, elem uint16, val uint64, op uint8) {
		hostileBaseline.once.Do(func() { hostileBaseline.used = usedAfterClean(t) })
		files := [][2]string{{"vm1", "ram"}, {"vm1", "state"}, {"vm2", "ram"}}
		target := files[int(file)%len(files)]
		other := files[(int(file)+1)%len(files)]
		apply := func(old uint64) uint64 {
			switch op % 3 {
			case 1:
				return old ^ val
			case 2:
				return old + val
			}
			return val
		}
		rewrite := func(t *testing.T, root *tnode, _ physmem.PhysAddr) {
			s := storeOf(t, root, target[0], target[1])
			ms, idx, fl := mems(t, s), indices(s), slices.Clone(s.get("flags"))
			if len(ms) == 0 {
				return
			}
			i := int(elem) % len(ms)
			le := binary.LittleEndian
			switch what % 11 {
			case 0:
				ms[i].Addr = physmem.PhysAddr(apply(uint64(ms[i].Addr)))
			case 1:
				ms[i].Size = apply(ms[i].Size)
			case 2:
				idx[i] = apply(idx[i])
			case 3:
				fl[i] = byte(apply(uint64(fl[i])))
			case 4:
				s.set("size", le64(apply(le.Uint64(s.get("size")))))
			case 5:
				s.set("pos", le64(apply(le.Uint64(s.get("pos")))))
			case 6:
				s.set("seals", le32(uint32(apply(uint64(le.Uint32(s.get("seals")))))))
			case 7:
				s.set("mode", le32(uint32(apply(uint64(le.Uint32(s.get("mode")))))))
			case 8:
				ms, idx, fl = ms[:i], idx[:i], fl[:i]
			case 9:
				o := storeOf(t, root, other[0], other[1])
				oms := mems(t, o)
				if len(oms) > 0 {
					j := int(val % uint64(len(oms)))
					ms[i], oms[j] = oms[j], ms[i]
					setMems(o, oms)
					o.resum(other[1])
				}
			case 10:
				ms[(i+1)%len(ms)] = ms[i]
			}
			setMems(s, ms)
			setIndices(s, idx)
			s.set("flags", fl)
			s.resum(target[1])
		}
		touched := []string{target[0] + "/" + target[1]}
		if what%11 == 9 {
			touched = append(touched, other[0]+"/"+other[1])
		}
		hostile(t, hostileBaseline.used, rewrite, nil, touched...)
	})
}

// TestReviewFailedActivationPutsMigratedFoliosBack: a boxed memfd lies in
// KHO scratch and normal memory has room for only part of it. A failure
// at every point of the activation (each page_alloc: the FDT buffer and
// each migration out of scratch; each FDT write; the kho_write site) must
// leave the file with the very same folios — not with the ones already
// migrated — and the same frame counts. Once the activation succeeds, a
// deactivation keeps the migrated folios where they went (documented),
// with the same contents.
func TestReviewFailedActivationPutsMigratedFoliosBack(t *testing.T) {
	for _, site := range []fault.Site{fault.PageAlloc, fault.FDT, fault.KHOWrite} {
		t.Run(string(site), func(t *testing.T) {
			w := newWorld(t, Config{Memory: 256 * MiB}, "")
			p := w.proc("p")
			room := w.memfd(p, "room", 0)
			w.pwrite(p, room, 0, 4*physmem.PageSize, 2)
			filler := w.memfd(p, "filler", 0)
			free := int64(w.k().MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
			require.NoError(t, p.Ftruncate(filler, free))
			w.pwrite(p, filler, 0, free, 1) // normal memory is full
			fd := w.memfd(p, "victim", 0)
			w.pwrite(p, fd, 0, 64*KiB, 77) // in scratch
			// Room for the box's records (kernel memory, never in scratch).
			require.NoError(t, p.Close(room))
			box := w.createBox(p, "b")
			w.put(p, box, fd, "victim")
			w.seal(p, box)
			require.NoError(t, p.Ftruncate(filler, free-8*MiB)) // room outside scratch
			before := w.snapshot()
			frames := w.m.FrameCounts()
			info, _ := fault.Lookup(string(site))
			fired := 0
			for nth := 1; ; nth++ {
				require.NoError(t, w.m.Faults().Arm(site, nth, 1))
				err := w.m.KHOActivate()
				if err == nil {
					disarm(w.m.Faults(), site)
					break
				}
				fired++
				wantErr(t, info.Errno, err)
				requireSameFiles(t, before, w.snapshot())
				require.Equal(t, frames, w.m.FrameCounts())
				w.check()
				require.Less(t, nth, 200)
			}
			if site == fault.PageAlloc {
				require.Equal(t, 1+16, fired, "the FDT buffer and 16 migrations")
			}
			require.NoError(t, w.m.KHODeactivate())
			w.check()
			after := w.snapshot()
			require.Equal(t, before[0].Hash, after[0].Hash)
			for _, f := range after[0].Folios {
				require.NotEqual(t, physmem.MigrateCMA, w.k().MM.Zone.PageblockMigratetype(f.PFN))
			}
		})
	}
}

// fileModel is what a file's bytes must be: the test applies every write
// to it as it applies it to the file.
type fileModel struct{ data []byte }

func (fm *fileModel) write(off, n int64, seed uint64) {
	if end := off + n; end > int64(len(fm.data)) {
		fm.data = append(fm.data, make([]byte, end-int64(len(fm.data)))...)
	}
	fillRand(seed, fm.data[off:off+n], uint64(off))
}

func (fm *fileModel) truncate(size int64) {
	if size <= int64(len(fm.data)) {
		fm.data = fm.data[:size]
		return
	}
	fm.data = append(fm.data, make([]byte, size-int64(len(fm.data)))...)
}

func (fm *fileModel) punch(off, n int64) {
	end := min(off+n, int64(len(fm.data)))
	if off < end {
		clear(fm.data[off:end])
	}
}

// same checks that the file at fd holds exactly the model's bytes.
func (w *world) same(t *kernel.Task, fd int, fm *fileModel) {
	w.t.Helper()
	require.Equal(w.t, int64(len(fm.data)), w.size(t, fd))
	var bad error
	_, err := t.Pread(fd, 0, int64(len(fm.data)), func(src []byte, o int64) error {
		if bad == nil && !bytes.Equal(src, fm.data[o:o+int64(len(src))]) {
			bad = fmt.Errorf("bytes at %#x differ", o)
		}
		return nil
	})
	require.NoError(w.t, err)
	require.NoError(w.t, bad)
}

// TestReviewRecoveredFilesModifiedAndHandedOverAgain: files revived by
// one kexec are changed (writes inside a restored 2 MiB folio, a
// truncation that splits one, a hole punched, growth, a seal added, part
// of a file swapped out), handed over again, activated and deactivated
// (which must restore them exactly), and handed over a third time; every
// hop they hold exactly what was written.
func TestReviewRecoveredFilesModifiedAndHandedOverAgain(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB, Swap: 32 * MiB}, "always")
	p := w.proc("p0")
	a, b := &fileModel{}, &fileModel{}
	fa := w.memfd(p, "a", uapi.MFD_ALLOW_SEALING)
	w.pwrite(p, fa, 0, 5*MiB+100, 1)
	a.write(0, 5*MiB+100, 1)
	fb := w.memfd(p, "b", uapi.MFD_ALLOW_SEALING)
	require.NoError(t, p.Ftruncate(fb, 300*KiB))
	b.truncate(300 * KiB)
	require.NoError(t, p.Fallocate(fb, uapi.FALLOC_FL_KEEP_SIZE, 0, 4*MiB))
	w.pwrite(p, fb, 4096, 10000, 2)
	b.write(4096, 10000, 2)
	box := w.createBox(p, "b")
	w.put(p, box, fa, "a")
	w.put(p, box, fb, "b")
	w.seal(p, box)

	hop := func(modify func(p *kernel.Task, fa, fb int)) {
		t.Helper()
		require.NoError(t, w.m.KHOActivate())
		w.check()
		w.kexec()
		p = w.proc(fmt.Sprintf("p%d", w.k().BootID))
		box = w.openBox(p, "b")
		fa, fb = w.mustGet(p, box, "a"), w.mustGet(p, box, "b")
		w.same(p, fa, a)
		w.same(p, fb, b)
		modify(p, fa, fb)
		w.same(p, fa, a)
		w.same(p, fb, b)
		w.put(p, box, fa, "a")
		w.put(p, box, fb, "b")
		w.seal(p, box)
		w.check()
	}
	hop(func(p *kernel.Task, fa, fb int) {
		w.pwrite(p, fa, 3*MiB-10, MiB, 3) // across a restored 2 MiB folio's end
		a.write(3*MiB-10, MiB, 3)
		require.NoError(t, p.Ftruncate(fa, 3*MiB+5)) // splits the folio at 2 MiB
		a.truncate(3*MiB + 5)
		require.NoError(t, p.Fallocate(fb, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 8192, 4096))
		b.punch(8192, 4096)
		w.pwrite(p, fb, 300*KiB, 50*KiB, 4) // grow into fallocated folios
		b.write(300*KiB, 50*KiB, 4)
		_, err := p.Fcntl(fb, uapi.F_ADD_SEALS, uapi.F_SEAL_SHRINK)
		require.NoError(t, err)
	})
	// Activate and deactivate the revived, modified files: exactly as
	// before.
	before := w.snapshot()
	require.NoError(t, w.m.KHOActivate())
	require.NoError(t, w.m.KHODeactivate())
	requireSameFiles(t, before, w.snapshot())
	w.check()
	hop(func(p *kernel.Task, fa, fb int) {
		require.Equal(t, uint64(uapi.F_SEAL_SHRINK|uapi.F_SEAL_EXEC), w.seals(p, fb))
		wantErr(t, errno.EPERM, p.Ftruncate(fb, 0))
		// Swap part of a out: the next activation swaps it back in.
		v, err := p.Mmap(fa, 0, 2*MiB, uapi.PROT_READ, uapi.MAP_SHARED)
		require.NoError(t, err)
		_, err = p.Load(v, 0, 2*MiB, func([]byte, int64) error { return nil })
		require.NoError(t, err)
		require.NoError(t, p.Madvise(v, 0, 2*MiB, uapi.MADV_PAGEOUT))
		require.NoError(t, p.Munmap(v))
		require.Positive(t, kernel.ShmemInode(w.file(p, fa)).Swapped())
		w.pwrite(p, fa, 100, 200, 5)
		a.write(100, 200, 5)
	})
	hop(func(*kernel.Task, int, int) {})
	require.Equal(t, 3, w.m.Stats().Kexecs)
}

// TestReviewWhileActive: what userspace can and cannot do between
// activation and kexec. The driver is frozen (no SEAL/UNSEAL, sealed
// boxes cannot be deleted), unsealed boxes stay usable and are not handed
// over, tasks may exit and close box fds; the kexec hands over exactly
// what was serialized.
func TestReviewWhileActive(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "kept", 0)
	w.pwrite(p, fd, 0, MiB, 1)
	sealed := w.createBox(p, "sealed")
	w.put(p, sealed, fd, "kept")
	w.seal(p, sealed)
	loose := w.createBox(p, "loose")
	lfd := w.memfd(p, "loose", 0)
	w.pwrite(p, lfd, 0, 64*KiB, 2)
	w.put(p, loose, lfd, "x")
	require.NoError(t, w.m.KHOActivate())
	w.check()

	_, err := p.Ioctl(sealed, uapi.FDBOX_UNSEAL, nil)
	wantErr(t, errno.EBUSY, err)
	_, err = p.Ioctl(loose, uapi.FDBOX_SEAL, nil)
	wantErr(t, errno.EBUSY, err)
	_, err = w.get(p, sealed, "kept")
	wantErr(t, errno.EBUSY, err)
	ctl := w.open(p, "/dev/fdbox/fdbox")
	del := func(name string) error {
		var a uapi.FdboxDeleteBox
		uapi.SetName(&a.Name, name)
		_, err := p.Ioctl(ctl, uapi.FDBOX_DELETE_BOX, &a)
		return err
	}
	wantErr(t, errno.EBUSY, del("sealed"))
	// The unsealed box still works, and can be deleted.
	x := w.mustGet(p, loose, "x")
	w.content(p, x, 0, 64*KiB, 2)
	w.put(p, loose, x, "x")
	require.NoError(t, del("loose"))
	late := w.createBox(p, "late")
	_, err = p.Ioctl(late, uapi.FDBOX_SEAL, nil)
	wantErr(t, errno.EBUSY, err)
	// A task exits with box fds open; another closes its own.
	q := w.proc("q")
	w.open(q, "/dev/fdbox/sealed")
	q.Exit()
	require.NoError(t, p.Close(sealed))
	require.NoError(t, p.Close(ctl))
	w.check()
	w.kexec()
	require.Equal(t, []string{"sealed"}, boxNames(w.m.FDBox()))
	p2 := w.proc("p2")
	w.content(p2, w.mustGet(p2, w.openBox(p2, "sealed"), "kept"), 0, MiB, 1)
	w.check()
}

func boxNames(d *fdbox.Driver) []string {
	var out []string
	for _, b := range d.Boxes() {
		out = append(out, b.Name())
	}
	return out
}

// TestReviewActivateWithoutSealedBoxes: an activation with nothing to
// preserve hands over an FDT with an empty /fdbox; the next kernel has no
// box and no preserved range, and can hand over again.
func TestReviewActivateWithoutSealedBoxes(t *testing.T) {
	w := newWorld(t, Config{Memory: 128 * MiB}, "")
	p := w.proc("p")
	w.createBox(p, "empty-unsealed")
	require.NoError(t, w.m.KHOActivate())
	require.Zero(t, w.m.Stats().PreservedFolios)
	w.kexec()
	require.True(t, w.m.Stats().HandedOver)
	require.Empty(t, w.m.FDBox().Boxes())
	require.Zero(t, w.m.Stats().Incoming.Ranges)
	require.NoError(t, w.m.KHOActivate())
	w.kexec()
	w.check()
}

// TestReviewHandoverWithoutScratchRefused: a handover that carries no
// scratch ranges makes the new kernel boot like a cold one, its memmap
// placed before it knows what is preserved; it must refuse the handover
// (no range reserved, a clear message) rather than trust ranges its own
// early allocations may overlap.
func TestReviewHandoverWithoutScratchRefused(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	m := fx.m
	old := m.k
	ho, keep := m.kho.PrepareKexec()
	ho.Scratch = nil
	kexec.Scrub(old, keep)
	old.Poison("kexec")
	m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
	require.NoError(t, m.bootKernel(ho, m.build))
	require.True(t, fx.logHas("no KHO scratch ranges; nothing is handed over"))
	require.Zero(t, m.Stats().Incoming.Ranges)
	require.Empty(t, m.FDBox().Boxes())
	fx.check()
}

// TestReviewHardBoundary: after a kexec the old kernel, its KHO and its
// FDBox driver fail loudly on any use; every frame the old kernel used
// that is neither preserved nor the FDT holds the poison pattern (an
// unboxed memfd's data is gone, a freed frame keeps its bytes); the new
// kernel's only boot-time allocations lie in scratch; and what it knows
// of the old kernel is the handover's addresses, not its objects.
func TestReviewHardBoundary(t *testing.T) {
	fx := newFixture(t, Config{})
	p := fx.p
	loose := fx.memfd(p, "loose", 0)
	fx.pwrite(p, loose, 0, 64*KiB, 9)
	lf := fx.file(p, loose)
	looseFrame, _, _, ok := fx.k().FolioAt(lf, 0)
	require.True(t, ok)
	// A frame freed before kexec keeps its bytes.
	freed := fx.memfd(p, "freed", 0)
	fx.pwrite(p, freed, 0, 4096, 10)
	freedFrame, _, _, ok := fx.k().FolioAt(fx.file(p, freed), 0)
	require.True(t, ok)
	require.NoError(t, p.Close(freed))
	var freedBytes [16]byte
	copy(freedBytes[:], fx.m.Frames().Frame(freedFrame))

	oldK, oldKHO, oldBox := fx.k(), fx.m.KHO(), fx.m.FDBox()
	require.NoError(t, fx.m.KHOActivate())
	_, blob, _ := oldKHO.FDT()
	fdtBytes := slices.Clone(blob)
	fx.kexec()
	fx.verify([]bool{true, true, true})

	// Stray uses of the old kernel's objects panic.
	for name, use := range map[string]func(){
		"task":        func() { _, _ = p.Pwrite(loose, 0, 1, gen(1)) },
		"kernel":      func() { oldK.NewTask("x", kernel.Cred{}) },
		"kho":         func() { _ = oldKHO.Activate() },
		"kho-kexec":   func() { oldKHO.PrepareKexec() },
		"kho-claim":   func() { _, _ = oldKHO.ClaimMem(kexec.Mem{}) },
		"fdbox-boxes": func() { oldBox.SealedBoxes() },
		"fdbox-reg":   func() { _ = oldBox.RegisterHandler(fdbox.MemfdHandler()) },
		"fdbox-audit": func() { _ = oldBox.CheckInvariants() },
	} {
		require.Panics(t, use, name)
	}
	require.True(t, oldK.Gone())
	require.Nil(t, oldK.MM)

	// The unboxed memfd's frame was used and not preserved: poisoned.
	poison := binary.LittleEndian.AppendUint64(nil, kexec.PoisonPattern)
	require.Equal(t, poison, fx.m.Frames().Frame(looseFrame)[:8])
	require.Equal(t, freedBytes[:], fx.m.Frames().Frame(freedFrame)[:16])
	// The FDT the new kernel got is byte for byte the one activated.
	got, err := fx.m.HandoverFDT()
	require.NoError(t, err)
	require.Equal(t, fdtBytes, got)

	// Boot-time reservations of the new kernel: low memory, the kernel
	// image, the incoming FDT, and early allocations — all in scratch.
	k := fx.k()
	ho := fx.m.KHO().Handover()
	require.NotNil(t, ho)
	fdtStart := ho.FDTAddr &^ (physmem.PageSize - 1)
	fdtEnd := (ho.FDTAddr + physmem.PhysAddr(ho.FDTSize) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	inScratch := func(r physmem.MemblockRegion) bool {
		return k.MM.Memblock.IsKHOScratch(r.Base, r.Size)
	}
	for r := range k.MM.Memblock.Reserved() {
		switch {
		case r.Flags&physmem.MemblockRsrvNoinit != 0: // preserved ranges
		case r.Base == 0 && r.Size == MiB, r.Base == 16*MiB && r.Size == 16*MiB:
		case r.Base == fdtStart && r.End() == fdtEnd:
		default:
			require.True(t, inScratch(r), "boot-time reservation %v outside scratch", r)
		}
	}
}
