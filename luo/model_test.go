package luo

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
	"khosim/kernel"
)

// TestModel drives LUO with random sequences of the calls of its UAPI —
// open and close the device, create and close sessions, make, write,
// truncate and close memfds, preserve, kexec (sometimes with a luo_freeze
// fault), retrieve sessions and files, finish — and compares every errno
// and every byte read with a model of the session/file state machine.
// After every step the audit holds; at the end everything is closed and
// no frame is left beyond what a fresh kernel uses.

// mFile is a model memfd.
type mFile struct {
	data      []byte
	fd        int      // its fd in the current process, or -1 (closed: LUO may still hold it)
	session   *mOut    // preserved in, or nil
	retrieved *mInSess // retrieved from this incoming session, not yet finished
}

func (f *mFile) frozen() bool { return f.session != nil }

// mOut is a model outgoing session.
type mOut struct {
	name   string
	fd     int
	tokens []uint64
	files  []*mFile
}

// mInSess is a model incoming session.
type mInSess struct {
	name      string
	fd        int // -1 until retrieved
	retrieved bool
	files     map[uint64][]byte // unretrieved: contents as handed over
	got       map[uint64]*mFile // retrieved
}

type model struct {
	w        *world
	p        *kernel.Task
	dev      int // -1 when closed
	files    []*mFile
	out      []*mOut
	in       []*mInSess
	kexecs   int
	expected int // actions whose result matched
}

var (
	sessionNames = []string{"a", "b", "c", "", strings.Repeat("x", 64)}
	tokenPool    = []uint64{1, 2, 3}
)

func (m *model) check(t *rapid.T, what string, got error, want errno.Errno) {
	t.Helper()
	if errOf(got) != want {
		t.Fatalf("%s: got %v, want %v\n%s", what, got, want, m.w.l.Dump())
	}
	m.expected++
}

func (m *model) audit(t *rapid.T) {
	m.w.audit()
	for _, f := range m.files {
		if f.fd < 0 {
			continue
		}
		got, err := preadAll(m.p, f.fd, 0, int64(len(f.data))+4096)
		require.NoError(t, err)
		if !bytes.Equal(got, f.data) {
			t.Fatalf("memfd fd %d: %d bytes, want %d bytes (contents differ)", f.fd, len(got), len(f.data))
		}
	}
}

func (m *model) openFiles() []*mFile {
	var out []*mFile
	for _, f := range m.files {
		if f.fd >= 0 {
			out = append(out, f)
		}
	}
	return out
}

func (m *model) retrievedSessions() []*mInSess {
	var out []*mInSess
	for _, s := range m.in {
		if s.retrieved {
			out = append(out, s)
		}
	}
	return out
}

// drop forgets a file no fd and no LUO reference holds any more.
func (m *model) drop(f *mFile) {
	if f.fd < 0 && f.session == nil && f.retrieved == nil {
		m.files = slices.DeleteFunc(m.files, func(g *mFile) bool { return g == f })
	}
}

func (m *model) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"": m.audit,
		"openDev": func(t *rapid.T) {
			fd, err := luoOpen(m.p)
			if m.dev >= 0 {
				m.check(t, "open", err, errno.EBUSY)
				return
			}
			m.check(t, "open", err, 0)
			m.dev = fd
		},
		"closeDev": func(t *rapid.T) {
			if m.dev < 0 {
				t.Skip("closed")
			}
			m.check(t, "close dev", m.p.Close(m.dev), 0)
			m.dev = -1
		},
		"createSession": func(t *rapid.T) {
			if m.dev < 0 {
				t.Skip("no device")
			}
			name := rapid.SampledFrom(sessionNames).Draw(t, "name")
			fd, err := createSession(m.p, m.dev, name)
			switch {
			case name == "" || len(name) >= 64:
				m.check(t, "create "+name, err, errno.EINVAL)
			case slices.ContainsFunc(m.out, func(s *mOut) bool { return s.name == name }):
				m.check(t, "create "+name, err, errno.EEXIST)
			default:
				m.check(t, "create "+name, err, 0)
				m.out = append(m.out, &mOut{name: name, fd: fd})
			}
		},
		"closeSession": func(t *rapid.T) {
			if len(m.out) == 0 {
				t.Skip("no session")
			}
			s := rapid.SampledFrom(m.out).Draw(t, "session")
			m.check(t, "close session", m.p.Close(s.fd), 0)
			m.out = slices.DeleteFunc(m.out, func(o *mOut) bool { return o == s })
			for _, f := range s.files {
				f.session = nil
				m.drop(f)
			}
		},
		"memfd": func(t *rapid.T) {
			n := rapid.SampledFrom([]int64{0, 100, 4096, 3*4096 + 5}).Draw(t, "size")
			seed := byte(rapid.IntRange(0, 255).Draw(t, "seed"))
			fd := patternMemfdT(t, m.p, n, seed)
			data := make([]byte, n)
			pattern(seed)(data, 0)
			m.files = append(m.files, &mFile{data: data, fd: fd})
		},
		"write": func(t *rapid.T) {
			fs := m.openFiles()
			if len(fs) == 0 {
				t.Skip("no memfd")
			}
			f := rapid.SampledFrom(fs).Draw(t, "file")
			off := int64(rapid.IntRange(0, 4*4096).Draw(t, "off"))
			n := int64(rapid.IntRange(1, 5000).Draw(t, "n"))
			seed := byte(rapid.IntRange(0, 255).Draw(t, "seed"))
			got, err := m.p.Pwrite(f.fd, off, n, pattern(seed))
			size := int64(len(f.data))
			if f.frozen() {
				if off >= size {
					m.check(t, "frozen write", err, errno.EPERM)
					return
				}
				n = min(n, size-off)
			}
			m.check(t, "write", err, 0)
			if got != n {
				t.Fatalf("write of %d bytes at %d wrote %d", n, off, got)
			}
			if off+n > size {
				f.data = append(f.data, make([]byte, off+n-size)...)
			}
			pattern(seed)(f.data[off:off+n], off)
		},
		"truncate": func(t *rapid.T) {
			fs := m.openFiles()
			if len(fs) == 0 {
				t.Skip("no memfd")
			}
			f := rapid.SampledFrom(fs).Draw(t, "file")
			n := int64(rapid.SampledFrom([]int{0, 10, 4096, 9000}).Draw(t, "len"))
			err := m.p.Ftruncate(f.fd, n)
			if f.frozen() && n != int64(len(f.data)) {
				m.check(t, "frozen truncate", err, errno.EPERM)
				return
			}
			m.check(t, "truncate", err, 0)
			if n < int64(len(f.data)) {
				f.data = f.data[:n]
			} else {
				f.data = append(f.data, make([]byte, n-int64(len(f.data)))...)
			}
		},
		"closeMemfd": func(t *rapid.T) {
			fs := m.openFiles()
			if len(fs) == 0 {
				t.Skip("no memfd")
			}
			f := rapid.SampledFrom(fs).Draw(t, "file")
			m.check(t, "close memfd", m.p.Close(f.fd), 0)
			f.fd = -1
			m.drop(f)
		},
		"preserve": func(t *rapid.T) {
			if len(m.out) == 0 {
				t.Skip("no session")
			}
			s := rapid.SampledFrom(m.out).Draw(t, "session")
			token := rapid.SampledFrom(tokenPool).Draw(t, "token")
			fs := m.openFiles()
			var f *mFile
			fd := 999
			if len(fs) > 0 && rapid.IntRange(0, 5).Draw(t, "badfd") > 0 {
				f = rapid.SampledFrom(fs).Draw(t, "file")
				fd = f.fd
			}
			err := preserveFD(m.p, s.fd, fd, token)
			switch {
			case slices.Contains(s.tokens, token):
				m.check(t, "preserve: token in use", err, errno.EEXIST)
			case f == nil:
				m.check(t, "preserve: bad fd", err, errno.EBADF)
			case f.session != nil || f.retrieved != nil:
				m.check(t, "preserve: already preserved", err, errno.EBUSY)
			default:
				m.check(t, "preserve", err, 0)
				s.tokens = append(s.tokens, token)
				s.files = append(s.files, f)
				f.session = s
			}
		},
		"kexec": func(t *rapid.T) {
			nfiles := 0
			for _, s := range m.out {
				nfiles += len(s.files)
			}
			nth := 0
			if rapid.IntRange(0, 3).Draw(t, "fault") == 0 {
				nth = rapid.IntRange(1, nfiles+1).Draw(t, "nth")
				require.NoError(t, m.w.faults.Arm(fault.LUOFreeze, nth, 1))
			}
			err := m.w.kexec(m.w.build)
			m.w.faults.Disarm(fault.LUOFreeze)
			if nth > 0 && nth <= nfiles {
				m.check(t, "kexec with luo_freeze", err, errno.EIO)
				return
			}
			m.check(t, "kexec", err, 0)
			m.kexecs++
			m.in = nil
			for _, s := range m.out {
				in := &mInSess{name: s.name, fd: -1, files: map[uint64][]byte{}, got: map[uint64]*mFile{}}
				for i, f := range s.files {
					in.files[s.tokens[i]] = slices.Clone(f.data)
				}
				m.in = append(m.in, in)
			}
			m.out, m.files, m.dev = nil, nil, -1
			m.p = m.w.proc(fmt.Sprintf("p%d", m.kexecs))
		},
		"retrieveSession": func(t *rapid.T) {
			if m.dev < 0 {
				t.Skip("no device")
			}
			name := rapid.SampledFrom(sessionNames[:3]).Draw(t, "name")
			fd, err := retrieveSession(m.p, m.dev, name)
			i := slices.IndexFunc(m.in, func(s *mInSess) bool { return s.name == name })
			switch {
			case i < 0:
				m.check(t, "retrieve session "+name, err, errno.ENOENT)
			case m.in[i].retrieved:
				m.check(t, "retrieve session twice", err, errno.EINVAL)
			default:
				m.check(t, "retrieve session", err, 0)
				m.in[i].retrieved, m.in[i].fd = true, fd
			}
		},
		"retrieveFD": func(t *rapid.T) {
			ss := m.retrievedSessions()
			if len(ss) == 0 {
				t.Skip("no retrieved session")
			}
			s := rapid.SampledFrom(ss).Draw(t, "session")
			token := rapid.SampledFrom(tokenPool).Draw(t, "token")
			fd, err := retrieveFD(m.p, s.fd, token)
			if f := s.got[token]; f != nil {
				m.check(t, "retrieve again", err, 0)
				if f.fd >= 0 {
					require.NoError(t, m.p.Close(fd), "the model keeps one fd per file")
					return
				}
				f.fd = fd
				return
			}
			data, ok := s.files[token]
			if !ok {
				m.check(t, "retrieve unknown token", err, errno.ENOENT)
				return
			}
			m.check(t, "retrieve", err, 0)
			delete(s.files, token)
			f := &mFile{data: data, fd: fd, retrieved: s}
			s.got[token] = f
			m.files = append(m.files, f)
		},
		"finish": func(t *rapid.T) {
			ss := m.retrievedSessions()
			if len(ss) == 0 {
				t.Skip("no retrieved session")
			}
			s := rapid.SampledFrom(ss).Draw(t, "session")
			m.check(t, "finish", finish(m.p, s.fd), 0)
			m.finished(s)
		},
		"closeRetrieved": func(t *rapid.T) {
			ss := m.retrievedSessions()
			if len(ss) == 0 {
				t.Skip("no retrieved session")
			}
			s := rapid.SampledFrom(ss).Draw(t, "session")
			m.check(t, "close retrieved", m.p.Close(s.fd), 0)
			m.finished(s)
			m.in = slices.DeleteFunc(m.in, func(o *mInSess) bool { return o == s })
		},
	}
}

// finished models FINISH: unretrieved files are discarded, retrieved ones
// are their fds' alone.
func (m *model) finished(s *mInSess) {
	s.files = map[uint64][]byte{}
	for tok, f := range s.got {
		f.retrieved = nil
		m.drop(f)
		delete(s.got, tok)
	}
}

// teardown closes everything; then nothing may be left.
func (m *model) teardown(t *rapid.T) {
	for _, s := range m.in {
		if !s.retrieved {
			if m.dev < 0 {
				fd, err := luoOpen(m.p)
				require.NoError(t, err)
				m.dev = fd
			}
			fd, err := retrieveSession(m.p, m.dev, s.name)
			require.NoError(t, err)
			s.fd = fd
		}
		require.NoError(t, m.p.Close(s.fd))
	}
	for _, fd := range m.p.FDs() {
		require.NoError(t, m.p.Close(fd))
	}
	m.p.Exit()
	m.w.noLeak()
}

func patternMemfdT(t *rapid.T, p *kernel.Task, n int64, seed byte) int {
	fd, err := p.MemfdCreate("model", 0)
	require.NoError(t, err)
	require.NoError(t, p.Ftruncate(fd, n))
	if n > 0 {
		_, err = p.Pwrite(fd, 0, n, pattern(seed))
		require.NoError(t, err)
	}
	return fd
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, 128*mib, luoBuild(t))
		m := &model{w: w, p: w.proc("p0"), dev: -1}
		t.Repeat(m.actions())
		m.teardown(t)
	})
}
