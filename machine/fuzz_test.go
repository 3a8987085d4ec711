package machine

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"khosim/fdt"
)

// propValueOffset returns the offset in blob of the value of property
// name of the node at path (a trailing "/" names the node's unnamed
// subnode).
func propValueOffset(t testing.TB, blob []byte, path, name string) int {
	t.Helper()
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	var off int
	if path == "/" {
		off = f.Root()
	} else if p, ok := cutSuffix(path, "/"); ok {
		parent, err := f.PathOffset(p)
		require.NoError(t, err)
		off, err = f.FirstSubnode(parent)
		require.NoError(t, err)
	} else {
		off, err = f.PathOffset(path)
		require.NoError(t, err)
	}
	v, err := f.GetProp(off, name)
	require.NoError(t, err)
	return int(uintptr(unsafe.Pointer(&v[0])) - uintptr(unsafe.Pointer(&blob[0])))
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// corruptAndKexec overwrites bytes of the active handover FDT in
// physical memory, kexecs, and checks what must hold whatever the
// corruption: no panic, every preserved range claimed or returned (no
// frame lost), the full audit, and every file that came back under its
// name has exactly its contents.
func corruptAndKexec(t *testing.T, off uint32, data []byte, xor bool) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	_, blob, ok := fx.m.KHO().FDT()
	require.True(t, ok)
	if len(blob) == 0 || len(data) == 0 {
		return
	}
	o := int(off) % len(blob)
	data = data[:min(len(data), len(blob)-o)]
	for i, b := range data {
		if xor {
			blob[o+i] ^= b
		} else {
			blob[o+i] = b
		}
	}
	require.NoError(t, fx.m.Kexec(fx.m.Build()))
	require.NoError(t, fx.m.CheckInvariants())
	c := fx.m.FrameCounts()
	require.Zero(t, c["preserved"])
	require.Equal(t, c["total"], c["free"]+c["used"]+c["slab"]+c["tracker"]+c["reserved"])
	s := fx.m.Stats().Incoming
	require.Equal(t, s.Ranges, s.Claimed+s.Returned)

	// Every file that came back under its own box and name is intact.
	p := fx.proc("check")
	for i, f := range fx.files {
		box := fx.m.FDBox().Box(f.box)
		if box == nil || box.FD(f.name) == nil {
			continue
		}
		bfd := box.FD(f.name)
		file := bfd.File()
		require.Equal(t, f.size, file.Inode.Size, "%s/%s", f.box, f.name)
		require.Equal(t, int64(i)*1000, file.Pos)
		fd, err := p.InstallFD(file.Get(), false)
		require.NoError(t, err)
		fx.content(p, fd, 0, f.written, f.seed)
		fx.content(p, fd, f.written, f.size-f.written, 0)
		require.NoError(t, p.Close(fd))
	}
	require.NoError(t, fx.m.CheckInvariants())
}

// FuzzCorruptHandover corrupts bytes of a real handover FDT at a fuzzed
// offset; the next kernel must survive whatever it finds.
func FuzzCorruptHandover(f *testing.F) {
	// Seeds: the header, the structure block, the strings block, inside
	// "mem" arrays, whole-word overwrites with plausible addresses.
	for _, s := range []struct {
		off  uint32
		data []byte
	}{
		{0, []byte{0xff}}, {4, []byte{0x00, 0x00, 0x00, 0x01}}, {8, []byte{0x10}},
		{12, []byte{0xff, 0xff}}, {20, []byte{0x01}}, {36, []byte{0x02}},
		{56, []byte{0xff}}, {64, []byte{0x01, 0x02, 0x03}}, {100, []byte{0x80}},
		{200, []byte{0x01}}, {300, []byte{0xff, 0xff, 0xff, 0xff}}, {400, []byte{0x04}},
		{500, []byte{0x40}}, {600, []byte{0x00, 0x00, 0x20}}, {700, []byte{0xff}},
		{800, []byte{0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55}}, {900, []byte{0x01}},
		{1000, []byte{0x10, 0x00}}, {1100, []byte{0x3c}}, {1200, []byte{0xff}},
	} {
		f.Add(s.off, s.data)
	}
	f.Fuzz(func(t *testing.T, off uint32, data []byte) {
		corruptAndKexec(t, off, data, true)
	})
}

// TestCorruptEveryField flips each property value of a real handover in
// turn (the first byte of each, then a whole-value rewrite that points
// "mem" ranges at other memory), checking the same properties as the
// fuzz test.
func TestCorruptEveryField(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	blob, err := fx.m.HandoverFDT()
	require.NoError(t, err)
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	type target struct {
		where string
		off   int
		n     int
	}
	var targets []target
	require.NoError(t, f.Walk(func(node int, name string, v []byte) error {
		if len(v) == 0 {
			return nil
		}
		path, _ := f.GetPath(node)
		off := int(uintptr(unsafe.Pointer(&v[0])) - uintptr(unsafe.Pointer(&blob[0])))
		targets = append(targets, target{fmt.Sprintf("%s:%s", path, name), off, len(v)})
		return nil
	}))
	for _, tg := range targets {
		t.Run(tg.where+"/first", func(t *testing.T) { corruptAndKexec(t, uint32(tg.off), []byte{0x01}, true) })
		if strings.HasSuffix(tg.where, ":mem") {
			// Point the first kho_mem at the second's address, or a range
			// at the top of memory.
			ptr := []byte{0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0}
			t.Run(tg.where+"/rewrite", func(t *testing.T) { corruptAndKexec(t, uint32(tg.off), ptr, false) })
		}
	}
	if testing.Short() {
		return
	}
	// Structure tokens: a sample of the structure block's words turned
	// into FDT_PROP tokens.
	h := f.Header()
	for o := int(h.OffDtStruct); o < int(h.OffDtStruct+h.SizeDtStruct); o += 100 {
		t.Run(fmt.Sprintf("struct+%d", o), func(t *testing.T) { corruptAndKexec(t, uint32(o), []byte{0, 0, 0, 3}, false) })
	}
}
