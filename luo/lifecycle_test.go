package luo

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/kernel"
	"khosim/uapi"
)

// carried boots a world, preserves in session "s" memfds of the given
// sizes (token i+1, pattern data seeded by i) and kexecs. It returns the
// world and a process of the new kernel with the device open.
func carried(t *testing.T, sizes ...int64) (*world, *kernel.Task, int) {
	w := newWorld(t, 128*mib, luoBuild(t))
	p := w.proc("p")
	lu, err := luoOpen(p)
	require.NoError(t, err)
	s, err := createSession(p, lu, "s")
	require.NoError(t, err)
	for i, n := range sizes {
		fd := patternMemfd(t, p, n, byte(i))
		require.NoError(t, preserveFD(p, s, fd, uint64(i+1)))
		require.NoError(t, p.Close(fd))
	}
	w.mustKexec()
	p = w.proc("p2")
	lu, err = luoOpen(p)
	require.NoError(t, err)
	return w, p, lu
}

// patternMemfd makes a memfd of n bytes of pattern(seed).
func patternMemfd(t *testing.T, p *kernel.Task, n int64, seed byte) int {
	fd, err := p.MemfdCreate(fmt.Sprintf("m%d", seed), 0)
	require.NoError(t, err)
	require.NoError(t, p.Ftruncate(fd, n))
	if n > 0 {
		got, err := p.Pwrite(fd, 0, n, pattern(seed))
		require.NoError(t, err)
		require.Equal(t, n, got)
	}
	return fd
}

func pattern(seed byte) kernel.DataSource {
	return func(dst []byte, off int64) {
		for i := range dst {
			o := off + int64(i)
			dst[i] = byte(o*131+o>>9) ^ seed
		}
	}
}

// checkPattern checks that fd holds n bytes of pattern(seed).
func checkPattern(t *testing.T, p *kernel.Task, fd int, n int64, seed byte) {
	t.Helper()
	want := make([]byte, 0, 1<<16)
	var bad error
	_, err := p.Pread(fd, 0, n, func(src []byte, off int64) error {
		want = want[:len(src)]
		pattern(seed)(want, off)
		for i := range src {
			if src[i] != want[i] && bad == nil {
				bad = fmt.Errorf("byte %#x is %#x, want %#x", off+int64(i), src[i], want[i])
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, bad)
	size, err := p.Lseek(fd, 0, uapi.SEEK_END)
	require.NoError(t, err)
	require.Equal(t, n, size)
}

// TestCloseUnpreserves: closing an outgoing session's last fd, or the exit
// of the last process holding it, unpreserves its files: unfrozen, no
// longer preserved, ordinary memfds again; a second fd keeps the session.
func TestCloseUnpreserves(t *testing.T) {
	w := newWorld(t, 128*mib, luoBuild(t))
	p := w.proc("p")
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "s")
	require.NoError(t, err)
	fds := []int{patternMemfd(t, p, 3*4096, 1), patternMemfd(t, p, 0, 2), patternMemfd(t, p, 5000, 3)}
	for i, fd := range fds {
		require.NoError(t, preserveFD(p, s, fd, uint64(i)))
	}
	require.Equal(t, errno.EPERM, errOf(p.Ftruncate(fds[0], 0)), "frozen")
	dup, err := p.Dup(s)
	require.NoError(t, err)
	require.NoError(t, p.Close(s))
	require.Len(t, w.layer.Live(), 3, "the dup keeps the session")
	require.NoError(t, p.Close(dup))
	require.Empty(t, w.layer.Live())
	require.Zero(t, w.kho.PreservedFolios()-2, "only LUO's FDT page and session array stay preserved")
	require.NoError(t, p.Ftruncate(fds[0], 0), "an ordinary memfd again")
	checkPattern(t, p, fds[2], 5000, 3)
	w.audit()

	// The exit of the last process holding a session.
	q := w.proc("q")
	require.NoError(t, p.Close(lu))
	lu2, err := luoOpen(q)
	require.NoError(t, err)
	s2, err := createSession(q, lu2, "s")
	require.NoError(t, err)
	m := patternMemfd(t, q, 8192, 4)
	require.NoError(t, preserveFD(q, s2, m, 1))
	q.Exit()
	require.Empty(t, w.layer.Live())
	require.Empty(t, w.l.Outgoing())
	for _, fd := range fds {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

// TestRetrieveTwiceSameFile: a second retrieve of a token is another fd of
// the same struct file; the file is a new memfd, not frozen.
func TestRetrieveTwiceSameFile(t *testing.T) {
	w, p, lu := carried(t, 3*4096)
	s, err := retrieveSession(p, lu, "s")
	require.NoError(t, err)
	a, err := retrieveFD(p, s, 1)
	require.NoError(t, err)
	b, err := retrieveFD(p, s, 1)
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	fa, _ := p.FD(a)
	fb, _ := p.FD(b)
	require.Same(t, fa, fb)
	require.Equal(t, int64(3), fa.Refs(), "two fds and LUO's")
	cloexec, _ := p.CloseOnExec(a)
	require.True(t, cloexec, "get_unused_fd_flags(O_CLOEXEC)")
	checkPattern(t, p, a, 3*4096, 0)
	require.NoError(t, p.Ftruncate(a, 4096), "not frozen")
	require.NoError(t, finish(p, s))
	require.Equal(t, int64(2), fa.Refs(), "FINISH drops LUO's reference")
	for _, fd := range []int{a, b, s} {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

// TestFinishDiscards: FINISH before every token is retrieved discards the
// rest and frees its memory; afterwards the session has no files.
func TestFinishDiscards(t *testing.T) {
	w, p, lu := carried(t, 64*4096, 16*4096)
	s, err := retrieveSession(p, lu, "s")
	require.NoError(t, err)
	a, err := retrieveFD(p, s, 1)
	require.NoError(t, err)
	before := w.used()
	require.NoError(t, finish(p, s))
	require.GreaterOrEqual(t, before-w.used(), uint64(16), "token 2's 16 pages are freed")
	_, err = retrieveFD(p, s, 2)
	require.Equal(t, errno.ENOENT, errOf(err))
	require.NoError(t, finish(p, s), "a second FINISH has nothing to do")
	checkPattern(t, p, a, 64*4096, 0)
	require.Equal(t, 1, w.l.Stats().FilesDiscarded)
	require.NoError(t, p.Close(s))
	require.NoError(t, p.Close(a))
	w.noLeak()
}

// TestCloseRetrievedFinishes: closing a retrieved session's fd finishes
// it: unretrieved files are discarded, retrieved ones stay their fds'.
func TestCloseRetrievedFinishes(t *testing.T) {
	w, p, lu := carried(t, 4096, 8192)
	s, err := retrieveSession(p, lu, "s")
	require.NoError(t, err)
	a, err := retrieveFD(p, s, 2)
	require.NoError(t, err)
	require.NoError(t, p.Close(s))
	require.Empty(t, w.l.Incoming())
	_, err = retrieveSession(p, lu, "s")
	require.Equal(t, errno.ENOENT, errOf(err))
	checkPattern(t, p, a, 8192, 1)
	m := patternMemfd(t, p, 4096, 9)
	s2, err := createSession(p, lu, "s")
	require.NoError(t, err, "the name is free for an outgoing session")
	a2, err := p.Dup(a)
	require.NoError(t, err)
	require.NoError(t, preserveFD(p, s2, a2, 1), "finished: the retrieved file can be preserved again")
	require.NoError(t, p.Close(s2))
	require.NoError(t, p.Close(a))
	require.NoError(t, p.Close(a2))
	require.NoError(t, p.Close(m))
	w.noLeak()
}

// TestUnretrievedNotCarried: what the second kernel neither retrieved nor
// finished (an unretrieved session, a retrieved session not finished) is
// not carried by a further kexec, and nothing of it leaks.
func TestUnretrievedNotCarried(t *testing.T) {
	w, p, lu := carried(t, 32*4096, 4096)
	s, err := retrieveSession(p, lu, "s")
	require.NoError(t, err)
	_, err = retrieveFD(p, s, 1)
	require.NoError(t, err)
	require.Greater(t, w.used(), w.baseline)
	w.mustKexec()
	require.Empty(t, w.l.Incoming())
	require.Equal(t, uint64(2), w.l.LiveupdateNumber())
	require.Zero(t, w.kho.Incoming().Returned)
	w.noLeak()
}

// TestChainedUpdates: a file retrieved and finished in one kernel is
// preserved again and carried to the next; liveupdate-number counts.
func TestChainedUpdates(t *testing.T) {
	w, p, lu := carried(t, 5*4096+100)
	for gen := 2; gen <= 4; gen++ {
		s, err := retrieveSession(p, lu, "s")
		require.NoError(t, err)
		fd, err := retrieveFD(p, s, 1)
		require.NoError(t, err)
		checkPattern(t, p, fd, 5*4096+100, 0)
		require.NoError(t, finish(p, s))
		require.NoError(t, p.Close(s))
		out, err := createSession(p, lu, "s")
		require.NoError(t, err)
		require.NoError(t, preserveFD(p, out, fd, 1))
		require.NoError(t, p.Close(fd))
		w.mustKexec()
		require.Equal(t, uint64(gen), w.l.LiveupdateNumber())
		p = w.proc(fmt.Sprintf("gen%d", gen))
		lu, err = luoOpen(p)
		require.NoError(t, err)
	}
	s, err := retrieveSession(p, lu, "s")
	require.NoError(t, err)
	require.NoError(t, p.Close(s))
	w.noLeak()
}

// TestEmptyHandover: a LUO kernel hands over even with no session (as
// liveupdate_reboot finalizes KHO), and the next kernel finds nothing.
func TestEmptyHandover(t *testing.T) {
	for _, tr := range trackers() {
		t.Run(string(tr), func(t *testing.T) {
			w := newWorld(t, 128*mib, luoBuild(t, "kho", string(tr)))
			p := w.proc("p")
			lu, _ := luoOpen(p)
			s, err := createSession(p, lu, "closed-before-kexec")
			require.NoError(t, err)
			m := patternMemfd(t, p, 4096, 1)
			require.NoError(t, preserveFD(p, s, m, 1))
			require.NoError(t, p.Close(s), "sessions whose fds were closed are not carried")
			w.mustKexec()
			require.NotNil(t, w.kho.GetFDT(), "handed over")
			require.Equal(t, uint64(1), w.l.LiveupdateNumber())
			require.Empty(t, w.l.Incoming())
			w.noLeak()
		})
	}
}

// TestReleasedWhileFinalized: under a tracker that finalizes, a session
// closed after `kho activate` keeps its files preserved (nothing can be
// unpreserved) until `kho deactivate`; a kexec before that does not carry
// them, and the next kernel returns their memory.
func TestReleasedWhileFinalized(t *testing.T) {
	for _, deactivate := range []bool{true, false} {
		t.Run(fmt.Sprintf("deactivate=%v", deactivate), func(t *testing.T) {
			w := newWorld(t, 128*mib, luoBuild(t))
			p := w.proc("p")
			lu, _ := luoOpen(p)
			s, err := createSession(p, lu, "s")
			require.NoError(t, err)
			keep, err := createSession(p, lu, "keep")
			require.NoError(t, err)
			m := patternMemfd(t, p, 4*4096, 1)
			k := patternMemfd(t, p, 4096, 2)
			require.NoError(t, preserveFD(p, s, m, 1))
			require.NoError(t, preserveFD(p, keep, k, 1))
			require.NoError(t, w.kho.Activate())
			if !w.kho.Finalized() {
				t.Skip("the tracker does not finalize")
			}
			late, err := createSession(p, lu, "late")
			require.NoError(t, err, "the session array has room")
			require.NoError(t, p.Close(s))
			require.Len(t, w.layer.Live(), 2, "still preserved while KHO is finalized")
			require.Equal(t, errno.EPERM, errOf(p.Ftruncate(m, 0)))
			w.audit()
			if deactivate {
				require.NoError(t, w.kho.Deactivate())
				require.Len(t, w.layer.Live(), 1)
				require.NoError(t, p.Ftruncate(m, 0))
				w.audit()
			}
			require.NoError(t, p.Close(late))
			w.mustKexec()
			if !deactivate {
				require.Positive(t, w.kho.Incoming().Returned, "the released session's memory came back through the late pass")
			}
			p2 := w.proc("p2")
			lu2, err := luoOpen(p2)
			require.NoError(t, err)
			_, err = retrieveSession(p2, lu2, "s")
			require.Equal(t, errno.ENOENT, errOf(err))
			ks, err := retrieveSession(p2, lu2, "keep")
			require.NoError(t, err)
			fd, err := retrieveFD(p2, ks, 1)
			require.NoError(t, err)
			checkPattern(t, p2, fd, 4096, 2)
			require.NoError(t, p2.Close(ks))
			require.NoError(t, p2.Close(fd))
			w.noLeak()
		})
	}
}
