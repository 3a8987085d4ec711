package luo

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
)

// activeObjs counts the slab objects in use over every cache
// (/proc/slabinfo's active_objs summed).
func (w *world) activeObjs() uint64 {
	var n uint64
	for _, c := range w.k.MM.SlabInfo() {
		n += c.ActiveObjs
	}
	return n
}

// TestSweepSlabCreateAndPreserve fails, in turn, every slab allocation of
// CREATE_SESSION followed by PRESERVE_FD (struct luo_session, the
// session's file, struct luo_file, whatever the memfd handler kmallocs):
// the failing call returns ENOMEM and leaves no object, frame or
// preservation behind; the retry succeeds and everything arrives.
func TestSweepSlabCreateAndPreserve(t *testing.T) {
	fired := 0
	f := sweepFiles[3]
	for nth := 1; ; nth++ {
		w := newWorld(t, 128*mib, luoBuild(t))
		p := w.proc("p")
		lu, err := luoOpen(p)
		require.NoError(t, err)
		fd := patternMemfd(t, p, f.size, f.seed)
		objs, used := w.activeObjs(), w.used()
		require.NoError(t, w.faults.Arm(fault.Slab, nth, 1))
		sfd, err := createSession(p, lu, f.session)
		if err == nil {
			err = preserveFD(p, sfd, fd, f.token)
		}
		w.faults.Disarm(fault.Slab)
		if err == nil {
			w.audit()
			require.NoError(t, p.Close(sfd))
			require.Equal(t, objs, w.activeObjs(), "closing the session frees its records")
			break
		}
		fired++
		require.Equal(t, errno.ENOMEM, errOf(err), "slab allocation %d", nth)
		if sfd >= 0 {
			require.NoError(t, p.Close(sfd))
		}
		require.Empty(t, w.layer.Live(), "slab allocation %d: nothing preserved", nth)
		require.Equal(t, objs, w.activeObjs(), "slab allocation %d: no object left", nth)
		require.Equal(t, used, w.used(), "slab allocation %d: no frame left", nth)
		w.audit()
		// The retry goes through, and the file arrives.
		sfd, err = createSession(p, lu, f.session)
		require.NoError(t, err)
		require.NoError(t, preserveFD(p, sfd, fd, f.token))
		require.NoError(t, p.Close(fd))
		w.mustKexec()
		checkArrived(t, w, []sweepFile{f})
	}
	t.Logf("%d slab allocations failed in turn", fired)
	require.GreaterOrEqual(t, fired, 3, "struct luo_session, its file, struct luo_file")
}
