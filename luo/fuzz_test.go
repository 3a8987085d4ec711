package luo

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
)

// FuzzIncoming corrupts LUO's records in preserved memory before the
// kexec — the LUO FDT, the session array or a file array, XORing the
// given bytes at the given offset — and boots the next kernel from them.
// Whatever the bytes, the boot survives, the audit holds, the state is
// either available (and everything in it can be retrieved and closed) or
// unavailable (open: EIO), and once everything is closed no frame is left
// beyond a fresh kernel's.
func FuzzIncoming(f *testing.F) {
	f.Add(uint8(0), uint16(0), []byte{0xff})         // the FDT magic
	f.Add(uint8(1), uint16(0), []byte{0x01})         // the session count
	f.Add(uint8(1), uint16(0), []byte{0x03})         // one session less
	f.Add(uint8(1), uint16(8), []byte{'z'})          // a session name
	f.Add(uint8(1), uint16(8+64), []byte{0, 0x10})   // a file array pointer
	f.Add(uint8(1), uint16(8+80+72), []byte{0x01})   // a file count
	f.Add(uint8(2), uint16(0), []byte{'x'})          // a compatible
	f.Add(uint8(2), uint16(48), []byte{0, 0x20})     // a record pointer
	f.Add(uint8(2), uint16(56), []byte{0x03})        // a token: duplicate
	f.Add(uint8(2), uint16(64+47), []byte{'q'})      // an unterminated compatible
	f.Add(uint8(0), uint16(100), []byte{1, 2, 3, 4}) // somewhere in the FDT
	f.Fuzz(func(t *testing.T, which uint8, off uint16, xor []byte) {
		w := newWorld(t, 128*mib, luoBuild(t))
		p := w.proc("p")
		lu, err := luoOpen(p)
		require.NoError(t, err)
		for i, name := range []string{"a", "b"} {
			s, err := createSession(p, lu, name)
			require.NoError(t, err)
			for j := range 2 {
				m := patternMemfd(t, p, int64(j+1)*4096, byte(i*2+j))
				require.NoError(t, preserveFD(p, s, m, uint64(j+1)))
				require.NoError(t, p.Close(m))
			}
		}
		need, err := w.l.Reboot()
		require.NoError(t, err)
		require.True(t, need)
		blocks := [][]byte{w.l.out.fdt.b, w.l.out.header.b, w.l.outgoing[0].arr.b}
		b := blocks[int(which)%len(blocks)]
		for i, x := range xor {
			if o := int(off) + i; o < len(b) {
				b[o] ^= x
			}
		}
		require.NoError(t, w.kho.Activate())
		w.handover(w.build)
		w.audit()
		p2 := w.proc("p2")
		lu2, err := luoOpen(p2)
		if w.l.IncomingErr() != nil {
			require.Equal(t, errno.EIO, errOf(err))
			w.noLeak()
			return
		}
		require.NoError(t, err)
		for _, s := range w.l.Incoming() {
			sfd, err := retrieveSession(p2, lu2, s.Name())
			require.NoError(t, err)
			for _, tok := range s.Tokens() {
				if fd, err := retrieveFD(p2, sfd, tok); err == nil {
					require.NoError(t, p2.Close(fd))
				}
			}
			require.NoError(t, p2.Close(sfd))
		}
		require.NoError(t, p2.Close(lu2))
		w.noLeak()
	})
}
