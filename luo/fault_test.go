package luo

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/kernel"
)

// Fault sweeps: each site armed at its nth hit for every n it is reached,
// on a fresh kernel each time. Whatever fails returns the site's errno,
// and nothing is lost (what succeeded arrives intact) or leaked.

// sweepFile is one memfd of the sweeps' workload.
type sweepFile struct {
	session string
	token   uint64
	size    int64
	seed    byte
}

var sweepFiles = []sweepFile{
	{"a", 1, 5 * 4096, 1},
	{"a", 2, 0, 2},
	{"b", 3, 3*4096 + 11, 3},
	{"b", 4, 64 * 4096, 4},
}

// sweepWorld boots a kernel with sessions a, b and the empty session c,
// and a memfd per sweepFile (open in p, not yet preserved).
func sweepWorld(t *testing.T) (w *world, p *kernel.Task, sessions map[string]int, fds []int) {
	w = newWorld(t, 128*mib, luoBuild(t))
	p = w.proc("p")
	lu, err := luoOpen(p)
	require.NoError(t, err)
	sessions = map[string]int{}
	for _, name := range []string{"a", "b", "c"} {
		sessions[name], err = createSession(p, lu, name)
		require.NoError(t, err)
	}
	for _, f := range sweepFiles {
		fds = append(fds, patternMemfd(t, p, f.size, f.seed))
	}
	return w, p, sessions, fds
}

// checkArrived retrieves, in the new kernel, every file of want and
// checks its contents, then finishes and closes everything: nothing may
// be left.
func checkArrived(t *testing.T, w *world, want []sweepFile) {
	p := w.proc("after")
	lu, err := luoOpen(p)
	require.NoError(t, err)
	got := map[string]int{}
	for _, s := range w.l.Incoming() {
		got[s.Name()], err = retrieveSession(p, lu, s.Name())
		require.NoError(t, err)
	}
	n := 0
	for _, f := range want {
		fd, err := retrieveFD(p, got[f.session], f.token)
		require.NoError(t, err, "token %d", f.token)
		checkPattern(t, p, fd, f.size, f.seed)
		require.NoError(t, p.Close(fd))
		n++
	}
	require.Equal(t, n, w.l.Stats().IncomingFiles, "nothing else was carried")
	for _, fd := range got {
		require.NoError(t, finish(p, fd))
		require.NoError(t, p.Close(fd))
	}
	p.Exit()
	w.noLeak()
}

// TestSweepLUOPreserve: luo_preserve fails the nth PRESERVE_FD with
// ENOMEM; that file stays an ordinary memfd, the others go through.
func TestSweepLUOPreserve(t *testing.T) {
	for nth := 1; nth <= len(sweepFiles); nth++ {
		t.Run(fmt.Sprint(nth), func(t *testing.T) {
			w, p, sessions, fds := sweepWorld(t)
			require.NoError(t, w.faults.Arm(fault.LUOPreserve, nth, 1))
			var ok []sweepFile
			for i, f := range sweepFiles {
				err := preserveFD(p, sessions[f.session], fds[i], f.token)
				if i+1 == nth {
					require.Equal(t, errno.ENOMEM, errOf(err))
					require.NoError(t, p.Ftruncate(fds[i], f.size+1), "not frozen")
					require.NoError(t, p.Ftruncate(fds[i], f.size))
					w.audit()
					continue
				}
				require.NoError(t, err)
				ok = append(ok, f)
			}
			require.Len(t, w.layer.Live(), len(ok))
			for _, fd := range fds {
				require.NoError(t, p.Close(fd))
			}
			w.mustKexec()
			checkArrived(t, w, ok)
		})
	}
}

// TestSweepPageAllocPreserve: every page allocation of a PRESERVE_FD (the
// file array, the memfd record and its folio array) fails in turn with
// ENOMEM and leaves nothing behind; the next try succeeds.
func TestSweepPageAllocPreserve(t *testing.T) {
	fired := 0
	for nth := 1; ; nth++ {
		w, p, sessions, fds := sweepWorld(t)
		before := w.used()
		require.NoError(t, w.faults.Arm(fault.PageAlloc, nth, 1))
		err := preserveFD(p, sessions["b"], fds[3], 4)
		if err == nil {
			w.faults.Disarm(fault.PageAlloc)
			w.audit()
			break
		}
		fired++
		require.Equal(t, errno.ENOMEM, errOf(err), "allocation %d", nth)
		require.Empty(t, w.layer.Live())
		require.Equal(t, before, w.used(), "allocation %d: nothing left allocated", nth)
		require.NoError(t, p.Ftruncate(fds[3], 1), "not frozen")
		w.audit()
		require.NoError(t, preserveFD(p, sessions["b"], fds[3], 4), "retry after allocation %d failed", nth)
		w.audit()
	}
	require.GreaterOrEqual(t, fired, 3, "the file array, the memfd_luo_ser block, the folio array")
}

// TestSweepLUOFreeze: luo_freeze fails the reboot path at its nth file:
// the kexec gets EIO, the kernel runs on with every file still preserved
// and its inode frozen, nothing frozen by the reboot path; the next kexec
// carries everything.
func TestSweepLUOFreeze(t *testing.T) {
	for nth := 1; nth <= len(sweepFiles); nth++ {
		t.Run(fmt.Sprint(nth), func(t *testing.T) {
			w, p, sessions, fds := sweepWorld(t)
			for i, f := range sweepFiles {
				require.NoError(t, preserveFD(p, sessions[f.session], fds[i], f.token))
			}
			require.NoError(t, w.faults.Arm(fault.LUOFreeze, nth, 1))
			err := w.kexec(w.build)
			require.Equal(t, errno.EIO, errOf(err))
			require.False(t, w.k.Gone(), "the kernel runs on")
			require.False(t, w.kho.Active(), "nothing was handed over")
			require.False(t, w.l.frozen)
			for _, s := range w.l.Outgoing() {
				for _, lf := range s.files {
					require.False(t, lf.frozen, "unfrozen")
				}
			}
			require.Len(t, w.layer.Live(), len(sweepFiles), "still preserved")
			require.Zero(t, le.Uint64(w.l.out.header.b), "no session record left")
			for i, f := range sweepFiles {
				require.Equal(t, errno.EPERM, errOf(p.Ftruncate(fds[i], f.size+1)), "inode still frozen")
			}
			w.audit()
			require.NoError(t, w.faults.Arm(fault.LUOFreeze, 1000, 1))
			w.faults.Disarm(fault.LUOFreeze)
			w.mustKexec()
			checkArrived(t, w, sweepFiles)
		})
	}
}

// TestKexecFinalizeFails: a KHO finalize failure in the reboot path (the
// fdt fault while KHO writes the handover FDT) is EAGAIN; every session
// is unfrozen and the kernel runs on.
func TestKexecFinalizeFails(t *testing.T) {
	w, p, sessions, fds := sweepWorld(t)
	for i, f := range sweepFiles {
		require.NoError(t, preserveFD(p, sessions[f.session], fds[i], f.token))
	}
	require.NoError(t, w.faults.Arm(fault.FDT, 1, 1))
	require.Equal(t, errno.EAGAIN, errOf(w.kexec(w.build)))
	require.False(t, w.l.frozen)
	require.False(t, w.kho.Active())
	w.audit()
	w.mustKexec()
	checkArrived(t, w, sweepFiles)
}

// TestSweepLUORetrieve: luo_retrieve fails the nth retrieve with EIO, and
// every retrieve of that token after; its memory is freed at once; the
// other tokens come back.
func TestSweepLUORetrieve(t *testing.T) {
	for nth := 1; nth <= len(sweepFiles); nth++ {
		t.Run(fmt.Sprint(nth), func(t *testing.T) {
			w, p, sessions, fds := sweepWorld(t)
			for i, f := range sweepFiles {
				require.NoError(t, preserveFD(p, sessions[f.session], fds[i], f.token))
			}
			w.mustKexec()
			p = w.proc("after")
			lu, err := luoOpen(p)
			require.NoError(t, err)
			got := map[string]int{}
			for _, name := range []string{"a", "b", "c"} {
				got[name], err = retrieveSession(p, lu, name)
				require.NoError(t, err)
			}
			require.NoError(t, w.faults.Arm(fault.LUORetrieve, nth, 1))
			for i, f := range sweepFiles {
				before := w.used()
				fd, err := retrieveFD(p, got[f.session], f.token)
				if i+1 == nth {
					require.Equal(t, errno.EIO, errOf(err))
					require.GreaterOrEqual(t, before-w.used(), uint64(f.size+4095)/4096, "its memory is freed")
					_, err = retrieveFD(p, got[f.session], f.token)
					require.Equal(t, errno.EIO, errOf(err), "every time after")
					w.audit()
					continue
				}
				require.NoError(t, err)
				checkPattern(t, p, fd, f.size, f.seed)
				require.NoError(t, p.Close(fd))
			}
			for _, fd := range got {
				require.NoError(t, finish(p, fd))
				require.NoError(t, p.Close(fd))
			}
			w.noLeak()
		})
	}
}

// TestSweepKHOClaimAtBoot: a claim failing while LUO deserializes at boot
// makes the whole incoming state unavailable (open: EIO, every time) and
// loses nothing: what was claimed is freed, the rest returned by KHO's
// late pass.
func TestSweepKHOClaimAtBoot(t *testing.T) {
	for nth := 1; ; nth++ {
		w, p, sessions, fds := sweepWorld(t)
		for i, f := range sweepFiles {
			require.NoError(t, preserveFD(p, sessions[f.session], fds[i], f.token))
		}
		require.NoError(t, w.faults.Arm(fault.KHOClaim, nth, 1))
		w.mustKexec()
		if w.faults.Armed(fault.KHOClaim) {
			w.faults.Disarm(fault.KHOClaim)
			require.Greater(t, nth, len(sweepFiles)*3, "every claim was tried")
			checkArrived(t, w, sweepFiles)
			return
		}
		require.Error(t, w.l.IncomingErr(), "claim %d", nth)
		for range 2 {
			_, err := luoOpen(w.proc("p"))
			require.Equal(t, errno.EIO, errOf(err), "claim %d", nth)
		}
		w.noLeak()
	}
}

// TestPageAllocAtNextBoot: a page allocation failing in the next kernel's
// LUO setup (luo_late_startup) disables live update there (no
// /dev/liveupdate); what the previous kernel carried is returned.
func TestPageAllocAtNextBoot(t *testing.T) {
	w, p, sessions, fds := sweepWorld(t)
	require.NoError(t, preserveFD(p, sessions["a"], fds[0], 1))
	require.NoError(t, w.kho.Activate(), "finalize first: the reboot path allocates nothing then")
	require.NoError(t, w.faults.Arm(fault.PageAlloc, 1, 1))
	require.NoError(t, w.kexec(w.build))
	require.False(t, w.faults.Armed(fault.PageAlloc))
	require.False(t, w.l.Enabled(), "luo_late_startup failed: %s", logText(w.k))
	_, err := luoOpen(w.proc("p"))
	require.Equal(t, errno.ENOENT, errOf(err))
	require.Positive(t, w.kho.Incoming().Returned)
	w.baseline -= sessionPgcnt + 1
	w.noLeak()
}
