package machine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"

	"khosim/errno"
	"khosim/fdbox"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// The tests' only contact with system calls: they read like the scenarios
// they model (process, memfd_create, pwrite, ioctl ..., kho activate,
// kexec, expect ...).

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// gen is the rand(SEED) data generator of the scenario language: the byte
// at absolute file offset o depends only on (seed, o).
func gen(seed uint64) kernel.DataSource {
	return func(dst []byte, off int64) {
		fillRand(seed, dst, uint64(off))
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// fillRand writes the stream bytes [off, off+len(dst)) into dst.
func fillRand(seed uint64, dst []byte, off uint64) {
	i := 0
	for i < len(dst) {
		o := off + uint64(i)
		w := splitmix(seed*0x100000001b3 ^ o/8)
		if o%8 == 0 && len(dst)-i >= 8 {
			binary.LittleEndian.PutUint64(dst[i:], w)
			i += 8
			continue
		}
		dst[i] = byte(w >> (8 * (o % 8)))
		i++
	}
}

// world is a booted machine with helpers.
type world struct {
	t testing.TB
	m *Machine
}

func newWorld(t testing.TB, cfg Config, huge string) *world {
	t.Helper()
	if cfg.Memory == 0 {
		cfg.Memory = 256 * MiB
	}
	m, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	b := kbuild.Default()
	b.ShmemHuge = huge
	require.NoError(t, m.Boot(b))
	return &world{t: t, m: m}
}

func (w *world) check() {
	w.t.Helper()
	require.NoError(w.t, w.m.CheckInvariants())
}

func (w *world) k() *kernel.Kernel { return w.m.Kernel() }

// proc starts a root process.
func (w *world) proc(name string) *kernel.Task {
	return w.k().NewTask(name, kernel.Cred{UID: 0, Caps: uapi.CapAll})
}

func (w *world) memfd(t *kernel.Task, name string, flags uint) int {
	w.t.Helper()
	fd, err := t.MemfdCreate(name, flags|uapi.MFD_NOEXEC_SEAL)
	require.NoError(w.t, err)
	return fd
}

func (w *world) pwrite(t *kernel.Task, fd int, off, n int64, seed uint64) {
	w.t.Helper()
	got, err := t.Pwrite(fd, off, n, gen(seed))
	require.NoError(w.t, err)
	require.Equal(w.t, n, got)
}

// content checks that the file's bytes [off, off+n) are the stream seed
// (or zeros for seed 0).
func (w *world) content(t *kernel.Task, fd int, off, n int64, seed uint64) {
	w.t.Helper()
	var want []byte
	var bad error
	got, err := t.Pread(fd, off, n, func(src []byte, o int64) error {
		if bad != nil {
			return bad
		}
		if cap(want) < len(src) {
			want = make([]byte, len(src))
		}
		want := want[:len(src)]
		if seed == 0 {
			clear(want)
		} else {
			fillRand(seed, want, uint64(o))
		}
		if !bytes.Equal(src, want) {
			i := 0
			for src[i] == want[i] {
				i++
			}
			bad = fmt.Errorf("byte %#x is %#x, want %#x", o+int64(i), src[i], want[i])
			return bad
		}
		return nil
	})
	require.NoError(w.t, bad)
	require.NoError(w.t, err)
	require.Equal(w.t, n, got)
}

// hash returns the xxh3 of the file's bytes [off, off+n).
func (w *world) hash(t *kernel.Task, fd int, off, n int64) uint64 {
	w.t.Helper()
	h := xxh3.New()
	got, err := t.Pread(fd, off, n, func(src []byte, _ int64) error {
		_, _ = h.Write(src)
		return nil
	})
	require.NoError(w.t, err)
	require.Equal(w.t, n, got)
	return h.Sum64()
}

func (w *world) open(t *kernel.Task, path string) int {
	w.t.Helper()
	fd, err := t.Open(path, uapi.O_RDWR)
	require.NoError(w.t, err)
	return fd
}

func (w *world) createBox(t *kernel.Task, name string) int {
	w.t.Helper()
	ctl := w.open(t, "/dev/fdbox/fdbox")
	var a uapi.FdboxCreateBox
	uapi.SetName(&a.Name, name)
	_, err := t.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &a)
	require.NoError(w.t, err)
	require.NoError(w.t, t.Close(ctl))
	return w.open(t, "/dev/fdbox/"+name)
}

func (w *world) put(t *kernel.Task, box, fd int, name string) {
	w.t.Helper()
	a := uapi.FdboxPutFD{FD: uint32(fd)}
	uapi.SetName(&a.Name, name)
	_, err := t.Ioctl(box, uapi.FDBOX_PUT_FD, &a)
	require.NoError(w.t, err)
}

func (w *world) get(t *kernel.Task, box int, name string) (int, error) {
	var a uapi.FdboxGetFD
	uapi.SetName(&a.Name, name)
	fd, err := t.Ioctl(box, uapi.FDBOX_GET_FD, &a)
	return int(fd), err
}

func (w *world) mustGet(t *kernel.Task, box int, name string) int {
	w.t.Helper()
	fd, err := w.get(t, box, name)
	require.NoError(w.t, err)
	return fd
}

func (w *world) seal(t *kernel.Task, box int) {
	w.t.Helper()
	_, err := t.Ioctl(box, uapi.FDBOX_SEAL, nil)
	require.NoError(w.t, err)
}

func (w *world) unseal(t *kernel.Task, box int) {
	w.t.Helper()
	_, err := t.Ioctl(box, uapi.FDBOX_UNSEAL, nil)
	require.NoError(w.t, err)
}

// openBox opens a recovered box and unseals it.
func (w *world) openBox(t *kernel.Task, name string) int {
	w.t.Helper()
	box := w.open(t, "/dev/fdbox/"+name)
	w.unseal(t, box)
	return box
}

func (w *world) kexec() {
	w.t.Helper()
	require.NoError(w.t, w.m.Kexec(w.m.Build()))
	w.check()
	require.Zero(w.t, w.m.FrameCounts()["preserved"], "frames(preserved) after boot")
}

func (w *world) file(t *kernel.Task, fd int) *kernel.File {
	w.t.Helper()
	f, err := t.FD(fd)
	require.NoError(w.t, err)
	return f
}

func (w *world) size(t *kernel.Task, fd int) int64 { return w.file(t, fd).Inode.Size }
func (w *world) pos(t *kernel.Task, fd int) int64  { return w.file(t, fd).Pos }
func (w *world) seals(t *kernel.Task, fd int) uint64 {
	w.t.Helper()
	s, err := t.Fcntl(fd, uapi.F_GET_SEALS, 0)
	require.NoError(w.t, err)
	return uint64(s)
}

// folioOrder returns the order of the folio caching page index of the
// file, or -1 if none.
func (w *world) folioOrder(t *kernel.Task, fd int, index uint64) int {
	pfn, _, _, ok := w.k().FolioAt(w.file(t, fd), index)
	if !ok {
		return -1
	}
	return int(w.k().MM.FolioOrder(physmem.Folio(pfn)))
}

// wantErr checks that err carries the errno want.
func wantErr(t testing.TB, want errno.Errno, err error) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, want, errno.Of(err), "%v", err)
}

// logHas reports whether the running kernel logged a line containing s.
func (w *world) logHas(s string) bool {
	for _, l := range w.k().Log() {
		if bytes.Contains([]byte(l.Text), []byte(s)) {
			return true
		}
	}
	return false
}

// fdboxHandlerForDevNull makes /dev/null files boxable, without KHO
// methods: the RFC's case of a file kind that "won't be saved across
// kexec".
func fdboxHandlerForDevNull() *fdbox.FileHandler {
	return &fdbox.FileHandler{
		Compatible:  "khosim,test-null-v1",
		CanPreserve: func(f *kernel.File) bool { return f.Name == "/dev/null" },
	}
}
