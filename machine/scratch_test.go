package machine

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
)

// TestScratchTooSmallForNextBoot (issue 16 #6): on a 4 GiB machine with
// 16 MiB of scratch the next kernel cannot place its 64 MiB memmap, so
// activation is refused with ENOSPC and a message with both sizes; with
// the check off (Linux's behaviour) it hands over and the next kernel
// panics in early boot, saying why.
func TestScratchTooSmallForNextBoot(t *testing.T) {
	for _, linux := range []bool{false, true} {
		w := newWorld(t, Config{Memory: 4 * GiB, ScratchBytes: 16 * MiB, NoScratchCheck: linux}, "")
		p := w.proc("vmm")
		fd := w.memfd(p, "ram", 0)
		w.pwrite(p, fd, 0, 64*KiB, 3)
		box := w.createBox(p, "vm")
		w.put(p, box, fd, "ram")
		w.seal(p, box)
		err := w.m.KHOActivate()
		if !linux {
			wantErr(t, errno.ENOSPC, err)
			require.True(t, w.logHas("scratch of 16384 KiB cannot hold the next kernel's early allocations (65536 KiB"))
			require.True(t, w.m.FDBox().Box("vm").Sealed(), "nothing changed")
			w.check()
			continue
		}
		require.NoError(t, err)
		err = w.m.Kexec(w.m.Build())
		require.ErrorIs(t, err, errno.ENOMEM)
		require.ErrorContains(t, err, "kernel panic: failed to allocate")
		require.Nil(t, w.m.Kernel())
	}
}

// TestRevivedNamesLogged (issue 16 #9): box and fd node names are not
// covered by the storage node's checksum (the RFC's box and fd formats),
// so a corrupted name revives under the corrupted name: the next kernel
// says which names it revived.
func TestRevivedNamesLogged(t *testing.T) {
	w := newWorld(t, Config{}, "")
	p := w.proc("vmm")
	fd := w.memfd(p, "ram", 0)
	w.pwrite(p, fd, 0, 8*KiB, 3)
	box := w.createBox(p, "vm1")
	w.put(p, box, fd, "ram")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	blob, err := w.m.HandoverFDT()
	require.NoError(t, err)
	off := bytes.Index(blob, []byte("vm1\x00"))
	require.Positive(t, off)
	require.NoError(t, w.m.CorruptFDT(uint64(off+2), 1)) // "vm1" -> "vm\xce"
	w.kexec()
	require.True(t, w.logHas(`fdbox: recovered box "vm\xce"`))
	require.True(t, w.logHas(`fdbox: recovered fd "ram" of box "vm\xce": memfd:ram, 8192 bytes`), "%v", w.k().Log())
	w.check()
}
