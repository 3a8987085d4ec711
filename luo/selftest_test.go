package luo

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/kernel"
	"khosim/uapi"
)

// The selftests of tools/testing/selftests/liveupdate, as Go tests: the
// device and session cases of liveupdate.c, then the two-stage kexec
// tests (luo_kexec_simple.c, luo_multi_session.c, luo_stress_sessions.c,
// luo_stress_files.c) with luo_test()'s stage detection. Each ends with
// the audit; the kexec tests also check that nothing leaked.

// fixture is liveupdate.c's FIXTURE(liveupdate_device): a kernel and a
// process that opens the device.
func fixture(t *testing.T) (*world, *kernel.Task) {
	w := newWorld(t, 128*mib, luoBuild(t))
	return w, w.proc("selftest")
}

func TestSelftestBasicOpenClose(t *testing.T) {
	w, p := fixture(t)
	fd, err := luoOpen(p)
	require.NoError(t, err)
	require.NoError(t, p.Close(fd))
	w.audit()
}

func TestSelftestExclusiveOpen(t *testing.T) {
	w, p := fixture(t)
	fd1, err := luoOpen(p)
	require.NoError(t, err)
	_, err = luoOpen(p)
	require.Equal(t, errno.EBUSY, errOf(err))
	_, err = luoOpen(w.proc("other"))
	require.Equal(t, errno.EBUSY, errOf(err), "one opener machine-wide")
	require.NoError(t, p.Close(fd1))
	fd2, err := luoOpen(p)
	require.NoError(t, err, "closing the device lets it be opened again")
	require.NoError(t, p.Close(fd2))
	w.audit()
}

func TestSelftestCreateDuplicateSession(t *testing.T) {
	w, p := fixture(t)
	lu, err := luoOpen(p)
	require.NoError(t, err)
	s1, err := createSession(p, lu, "duplicate-session-test")
	require.NoError(t, err)
	_, err = createSession(p, lu, "duplicate-session-test")
	require.Equal(t, errno.EEXIST, errOf(err))
	require.NoError(t, p.Close(s1))
	s2, err := createSession(p, lu, "duplicate-session-test")
	require.NoError(t, err, "a closed session's name is free again")
	require.NoError(t, p.Close(s2))
	w.audit()
}

func TestSelftestCreateDistinctSessions(t *testing.T) {
	w, p := fixture(t)
	lu, err := luoOpen(p)
	require.NoError(t, err)
	s1, err := createSession(p, lu, "distinct-session-1")
	require.NoError(t, err)
	s2, err := createSession(p, lu, "distinct-session-2")
	require.NoError(t, err)
	require.NoError(t, p.Close(lu), "closing the device does not close sessions")
	require.Len(t, w.l.Outgoing(), 2)
	require.NoError(t, p.Close(s1))
	require.NoError(t, p.Close(s2))
	require.Empty(t, w.l.Outgoing())
	w.audit()
}

// memfdWith makes a memfd holding str (written, not mapped).
func memfdWith(t *testing.T, p *kernel.Task, name, str string) int {
	fd, err := p.MemfdCreate(name, 0)
	require.NoError(t, err)
	if str != "" {
		n, err := p.Write(fd, int64(len(str)), bytesSource([]byte(str)))
		require.NoError(t, err)
		require.Equal(t, int64(len(str)), n)
	}
	return fd
}

// readBack is the selftests' lseek(0) + read.
func readBack(t *testing.T, p *kernel.Task, fd int) string {
	_, err := p.Lseek(fd, 0, uapi.SEEK_SET)
	require.NoError(t, err)
	b, err := readAll(p, fd)
	require.NoError(t, err)
	return string(b)
}

func TestSelftestPreserveMemfd(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "preserve-memfd-test")
	require.NoError(t, err)
	mfd := memfdWith(t, p, "test-memfd", "hello liveupdate")
	require.NoError(t, preserveFD(p, s, mfd, 0x1234))
	w.audit()
	require.NoError(t, p.Close(s))
	require.Equal(t, "hello liveupdate", readBack(t, p, mfd))
	require.NoError(t, p.Ftruncate(mfd, 1), "unpreserved by the close: an ordinary memfd again")
	require.NoError(t, p.Close(mfd))
	w.noLeak()
}

func TestSelftestPreserveMultipleMemfds(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "preserve-multi-memfd-test")
	require.NoError(t, err)
	m1 := memfdWith(t, p, "test-memfd-1", "data for memfd one")
	m2 := memfdWith(t, p, "test-memfd-2", "data for memfd two")
	require.NoError(t, preserveFD(p, s, m1, 0xAAAA))
	require.NoError(t, preserveFD(p, s, m2, 0xBBBB))
	require.Equal(t, "data for memfd one", readBack(t, p, m1))
	require.Equal(t, "data for memfd two", readBack(t, p, m2))
	require.Equal(t, []uint64{0xAAAA, 0xBBBB}, w.l.Outgoing()[0].Tokens())
	w.audit()
	require.NoError(t, p.Close(m1))
	require.NoError(t, p.Close(m2))
	w.audit()
	require.NoError(t, p.Close(s))
	w.noLeak()
}

func TestSelftestPreserveComplexScenario(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s1, err := createSession(p, lu, "complex-session-1")
	require.NoError(t, err)
	s2, err := createSession(p, lu, "complex-session-2")
	require.NoError(t, err)
	d1 := memfdWith(t, p, "data1", "data for session 1")
	e1 := memfdWith(t, p, "empty1", "")
	d2 := memfdWith(t, p, "data2", "data for session 2")
	e2 := memfdWith(t, p, "empty2", "")
	require.NoError(t, preserveFD(p, s1, d1, 0x1111))
	require.NoError(t, preserveFD(p, s1, e1, 0x2222))
	require.NoError(t, preserveFD(p, s2, d2, 0x3333))
	require.NoError(t, preserveFD(p, s2, e2, 0x4444))
	require.Equal(t, "data for session 1", readBack(t, p, d1))
	require.Equal(t, "data for session 2", readBack(t, p, d2))
	require.Equal(t, "", readBack(t, p, e1))
	require.Equal(t, "", readBack(t, p, e2))
	w.audit()
	for _, fd := range []int{d1, e1, d2, e2, s1, s2} {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

func TestSelftestPreserveUnsupportedFD(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "unsupported-fd-test")
	require.NoError(t, err)
	null, err := p.Open("/dev/null", uapi.O_RDWR)
	require.NoError(t, err)
	require.Equal(t, errno.ENOENT, errOf(preserveFD(p, s, null, 0xDEAD)))
	require.NoError(t, p.Close(null))
	require.NoError(t, p.Close(s))
	w.noLeak()
}

func TestSelftestPreventDoublePreservation(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s1, err := createSession(p, lu, "double-preserve-session-1")
	require.NoError(t, err)
	s2, err := createSession(p, lu, "double-preserve-session-2")
	require.NoError(t, err)
	mfd := memfdWith(t, p, "test-memfd", "")
	require.NoError(t, preserveFD(p, s1, mfd, 0x1111))
	require.Equal(t, errno.EBUSY, errOf(preserveFD(p, s2, mfd, 0x2222)), "another session")
	require.Equal(t, errno.EBUSY, errOf(preserveFD(p, s1, mfd, 0x3333)), "the same session, another token")
	dup, err := p.Dup(mfd)
	require.NoError(t, err)
	require.Equal(t, errno.EBUSY, errOf(preserveFD(p, s2, dup, 0x4444)), "another fd of the same file")
	w.audit()
	for _, fd := range []int{mfd, dup, s1, s2} {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

func TestSelftestCreateSessionNoNullTermination(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	a := &uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
	for i := range a.Name {
		a.Name[i] = 'X'
	}
	_, err := p.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, a)
	require.Equal(t, errno.EINVAL, errOf(err))
	w.audit()
}

func TestSelftestCreateSessionEmptyName(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	_, err := createSession(p, lu, "")
	require.Equal(t, errno.EINVAL, errOf(err))
	long := strings.Repeat("A", uapi.LIVEUPDATE_SESSION_NAME_LENGTH-1)
	s, err := createSession(p, lu, long)
	require.NoError(t, err, "63 bytes and the NUL fit")
	require.Equal(t, long, w.l.Outgoing()[0].Name())
	require.NoError(t, p.Close(s))
	w.audit()
}

func TestSelftestPreserveManySessions(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	const n = 2000
	p.NoFile = n + 32 // luo_ensure_nofile_limit
	var fds []int
	for i := range n {
		fd, err := createSession(p, lu, fmt.Sprintf("many-session-%d", i))
		require.NoError(t, err, "session %d", i)
		fds = append(fds, fd)
	}
	require.Greater(t, n, sessionCap(block{b: make([]byte, sessionPgcnt*4096)}), "beyond mainline 6.19's fixed array")
	w.audit()
	for _, fd := range fds {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

func TestSelftestPreserveManyFiles(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "many-files-test")
	require.NoError(t, err)
	const n = 500
	p.NoFile = n + 10 + 32
	var fds []int
	for i := range n {
		fd, err := p.MemfdCreate("test-memfd", 0)
		require.NoError(t, err)
		require.NoError(t, preserveFD(p, s, fd, uint64(i)), "file %d", i)
		fds = append(fds, fd)
	}
	w.audit()
	for _, fd := range fds {
		require.NoError(t, p.Close(fd))
	}
	require.NoError(t, p.Close(s))
	w.noLeak()
}

// luoTest is luo_test(): open the device, detect the stage by whether
// the state session exists (ENOENT: stage 1), and run it. stage1 returns
// with its sessions held open by its process (daemonize_and_wait).
func luoTest(t *testing.T, w *world, stateSession string, stage1 func(p *kernel.Task, lu int), stage2 func(p *kernel.Task, lu, state int)) {
	run := func(want int) {
		p := w.proc(fmt.Sprintf("stage-%d", want))
		lu, err := luoOpen(p)
		require.NoError(t, err)
		state, err := retrieveSession(p, lu, stateSession)
		got := 2
		if errOf(err) == errno.ENOENT {
			got = 1
		} else {
			require.NoError(t, err, "checking for the state session")
		}
		require.Equal(t, want, got, "stage mismatch")
		if want == 1 {
			stage1(p, lu)
			return
		}
		stage2(p, lu, state)
		require.NoError(t, p.Close(lu))
		p.Exit()
	}
	run(1)
	w.audit()
	folios, carried := w.filePages()
	w.mustKexec()
	in := w.kho.Incoming()
	require.Zero(t, in.Returned, "LUO claimed every range at boot: KHO's late pass returned nothing")
	require.Zero(t, w.k.FrameCounts().Preserved)
	require.NoError(t, w.l.IncomingErr())
	// What the files preserved is used now, held for them: their folios
	// and records (less the vmalloc chunk pages, freed once read); LUO's
	// own blocks were freed once read.
	require.LessOrEqual(t, folios, w.used()-w.baseline)
	require.GreaterOrEqual(t, carried, w.used()-w.baseline)
	run(2)
	w.noLeak()
}

// createStateFile is create_state_file: a session holding a memfd with the
// next stage's number; its fd stays open.
func createStateFile(t *testing.T, w *world, p *kernel.Task, lu int, name string, token uint64, next int) {
	s, err := createSession(p, lu, name)
	require.NoError(t, err)
	require.NoError(t, createAndPreserveMemfd(w, p, s, token, strconv.Itoa(next)))
}

// restoreAndReadStage is restore_and_read_stage.
func restoreAndReadStage(t *testing.T, w *world, p *kernel.Task, state int, token uint64) int {
	mfd, err := restoreAndVerifyMemfd(w, p, state, token, nil)
	require.NoError(t, err)
	b, err := readAll(p, mfd)
	require.NoError(t, err)
	str, _ := cString(b)
	n, err := strconv.Atoi(str)
	require.NoError(t, err)
	require.NoError(t, p.Close(mfd))
	return n
}

func TestSelftestKexecSimple(t *testing.T) {
	for _, tr := range trackers() {
		t.Run(string(tr), func(t *testing.T) {
			w := newWorld(t, 128*mib, luoBuild(t, "kho", string(tr)))
			const token, data = 0x1A, "hello kexec world"
			luoTest(t, w, "kexec_simple_state", func(p *kernel.Task, lu int) {
				createStateFile(t, w, p, lu, "kexec_simple_state", 999, 2)
				s, err := createSession(p, lu, "test-session")
				require.NoError(t, err)
				require.NoError(t, createAndPreserveMemfd(w, p, s, token, data))
				require.NoError(t, p.Close(lu))
			}, func(p *kernel.Task, lu, state int) {
				require.Equal(t, 2, restoreAndReadStage(t, w, p, state, 999))
				s, err := retrieveSession(p, lu, "test-session")
				require.NoError(t, err)
				d := data
				mfd, err := restoreAndVerifyMemfd(w, p, s, token, &d)
				require.NoError(t, err)
				require.NoError(t, p.Close(mfd))
				require.NoError(t, finish(p, s))
				require.NoError(t, p.Close(s))
				require.NoError(t, finish(p, state))
				require.NoError(t, p.Close(state))
			})
			require.Equal(t, uint64(1), w.l.LiveupdateNumber())
		})
	}
}

func TestSelftestMultiSession(t *testing.T) {
	w := newWorld(t, 128*mib, luoBuild(t))
	files := []struct {
		session string
		token   uint64
		data    string
	}{
		{"multi-test-files-1", 0x1001, "Data for session files 1"},
		{"multi-test-files-2", 0x2002, "First file for session files 2"},
		{"multi-test-files-2", 0x3003, "Second file for session files 2"},
	}
	sessions := []string{"multi-test-empty-1", "multi-test-empty-2", "multi-test-files-1", "multi-test-files-2"}
	luoTest(t, w, "kexec_multi_state", func(p *kernel.Task, lu int) {
		createStateFile(t, w, p, lu, "kexec_multi_state", 998, 2)
		fds := map[string]int{}
		for _, name := range sessions {
			s, err := createSession(p, lu, name)
			require.NoError(t, err)
			fds[name] = s
		}
		for _, f := range files {
			require.NoError(t, createAndPreserveMemfd(w, p, fds[f.session], f.token, f.data))
		}
		require.NoError(t, p.Close(lu))
	}, func(p *kernel.Task, lu, state int) {
		require.Equal(t, 2, restoreAndReadStage(t, w, p, state, 998))
		fds := map[string]int{}
		for _, name := range sessions {
			s, err := retrieveSession(p, lu, name)
			require.NoError(t, err, name)
			fds[name] = s
		}
		for _, f := range files {
			d := f.data
			mfd, err := restoreAndVerifyMemfd(w, p, fds[f.session], f.token, &d)
			require.NoError(t, err)
			require.NoError(t, p.Close(mfd))
		}
		for _, name := range sessions {
			require.NoError(t, finish(p, fds[name]))
			require.NoError(t, p.Close(fds[name]))
		}
		require.NoError(t, finish(p, state))
		require.NoError(t, p.Close(state))
	})
}

func TestSelftestStressSessions(t *testing.T) {
	w := newWorld(t, 128*mib, luoBuild(t))
	const n = 2000
	luoTest(t, w, "kexec_many_state", func(p *kernel.Task, lu int) {
		p.NoFile = n + 32
		createStateFile(t, w, p, lu, "kexec_many_state", 999, 2)
		for i := range n {
			_, err := createSession(p, lu, fmt.Sprintf("many-test-%d", i))
			require.NoError(t, err, "session %d", i)
		}
		require.NoError(t, p.Close(lu))
	}, func(p *kernel.Task, lu, state int) {
		require.Equal(t, n+1, w.l.Stats().IncomingSessions)
		require.Equal(t, 2, restoreAndReadStage(t, w, p, state, 999))
		for i := range n {
			s, err := retrieveSession(p, lu, fmt.Sprintf("many-test-%d", i))
			require.NoError(t, err, "session %d", i)
			require.NoError(t, finish(p, s))
			require.NoError(t, p.Close(s))
		}
		require.NoError(t, finish(p, state))
		require.NoError(t, p.Close(state))
	})
}

func TestSelftestStressFiles(t *testing.T) {
	w := newWorld(t, 128*mib, luoBuild(t))
	const n = 500
	luoTest(t, w, "kexec_many_files_state", func(p *kernel.Task, lu int) {
		createStateFile(t, w, p, lu, "kexec_many_files_state", 9999, 2)
		s, err := createSession(p, lu, "many_files_session")
		require.NoError(t, err)
		for i := range n {
			require.NoError(t, createAndPreserveMemfd(w, p, s, uint64(i), fmt.Sprintf("file-data-%d", i)), "file %d", i)
		}
		require.NoError(t, p.Close(lu))
	}, func(p *kernel.Task, lu, state int) {
		require.Equal(t, 2, restoreAndReadStage(t, w, p, state, 9999))
		s, err := retrieveSession(p, lu, "many_files_session")
		require.NoError(t, err)
		for i := range n {
			d := fmt.Sprintf("file-data-%d", i)
			fd, err := restoreAndVerifyMemfd(w, p, s, uint64(i), &d)
			require.NoError(t, err, "file %d", i)
			require.NoError(t, p.Close(fd))
		}
		require.NoError(t, finish(p, s))
		require.NoError(t, p.Close(s))
		require.NoError(t, finish(p, state))
		require.NoError(t, p.Close(state))
	})
}
