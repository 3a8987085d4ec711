package luo

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/uapi"
)

// The memfd behaviour tests: what a memfd preserved through LUO can still
// do before the kexec and what it is after. Each is a kexec round trip
// under every tracker, ending with nothing leaked.

// roundTrip runs before on a fresh kernel of build b with one session "s"
// (before preserves what it likes and may keep using its fds), kexecs,
// retrieves the session and gives after the process and session fd.
func roundTrip(t *testing.T, b kbuild.Build, before func(w *world, p *kernel.Task, s int), after func(w *world, p *kernel.Task, s int)) {
	w := newWorld(t, 128*mib, b)
	p := w.proc("p")
	lu, err := luoOpen(p)
	require.NoError(t, err)
	s, err := createSession(p, lu, "s")
	require.NoError(t, err)
	before(w, p, s)
	w.audit()
	w.mustKexec()
	p = w.proc("p2")
	lu, err = luoOpen(p)
	require.NoError(t, err)
	s, err = retrieveSession(p, lu, "s")
	require.NoError(t, err)
	after(w, p, s)
	require.NoError(t, finish(p, s))
	require.NoError(t, p.Close(s))
	for _, fd := range p.FDs() {
		require.NoError(t, p.Close(fd))
	}
	w.noLeak()
}

func forEachTracker(t *testing.T, f func(t *testing.T, b kbuild.Build)) {
	for _, tr := range trackers() {
		t.Run(string(tr), func(t *testing.T) { f(t, luoBuild(t, "kho", string(tr))) })
	}
}

// TestMemfd1MiBRandom: 1 MiB of random data comes back byte for byte.
func TestMemfd1MiBRandom(t *testing.T) {
	forEachTracker(t, func(t *testing.T, b kbuild.Build) {
		data := make([]byte, mib)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		roundTrip(t, b, func(w *world, p *kernel.Task, s int) {
			fd, err := p.MemfdCreate("random", 0)
			require.NoError(t, err)
			n, err := p.Write(fd, mib, bytesSource(data))
			require.NoError(t, err)
			require.Equal(t, int64(mib), n)
			require.NoError(t, preserveFD(p, s, fd, 1))
		}, func(w *world, p *kernel.Task, s int) {
			fd, err := retrieveFD(p, s, 1)
			require.NoError(t, err)
			got, err := preadAll(p, fd, 0, 2*mib)
			require.NoError(t, err)
			require.Equal(t, data, got)
			f, _ := p.FD(fd)
			require.Equal(t, int64(mib), f.Pos, "f_pos as the freeze recorded it")
			require.Equal(t, "memfd:", f.Name, "memfd_alloc_file(\"\", 0)")
		})
	})
}

// TestMemfdEmpty: an empty memfd is carried as an empty memfd.
func TestMemfdEmpty(t *testing.T) {
	forEachTracker(t, func(t *testing.T, b kbuild.Build) {
		roundTrip(t, b, func(w *world, p *kernel.Task, s int) {
			fd, err := p.MemfdCreate("empty", 0)
			require.NoError(t, err)
			require.NoError(t, preserveFD(p, s, fd, 1))
			require.Zero(t, w.layer.Live()[0].Folios())
		}, func(w *world, p *kernel.Task, s int) {
			fd, err := retrieveFD(p, s, 1)
			require.NoError(t, err)
			size, err := p.Lseek(fd, 0, uapi.SEEK_END)
			require.NoError(t, err)
			require.Zero(t, size)
			n, err := p.Pwrite(fd, 0, 100, pattern(1))
			require.NoError(t, err, "an ordinary memfd in the new kernel")
			require.Equal(t, int64(100), n)
		})
	})
}

// TestMemfdWritesAfterPreserve: after PRESERVE_FD the inode is frozen:
// writes inside the size (write, pwrite, a shared mapping) land in the
// preserved pages and arrive; a write at or past the size, a size change
// (shrinking or growing ftruncate) and fallocate get EPERM; a write
// straddling the size stops at it.
func TestMemfdWritesAfterPreserve(t *testing.T) {
	const size = 16 * 4096
	forEachTracker(t, func(t *testing.T, b kbuild.Build) {
		roundTrip(t, b, func(w *world, p *kernel.Task, s int) {
			fd := patternMemfd(t, p, size, 1)
			v, err := p.Mmap(fd, 0, size, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			require.NoError(t, err)
			require.NoError(t, preserveFD(p, s, fd, 1), "a mapped memfd can be preserved (unlike FDBox)")
			_, err = p.Pwrite(fd, 4096, 4096, pattern(2))
			require.NoError(t, err)
			_, err = p.Store(v, 8*4096, 4096, pattern(3))
			require.NoError(t, err)
			for _, tc := range []struct {
				name string
				err  error
			}{
				{"shrink", p.Ftruncate(fd, 4096)},
				{"grow", p.Ftruncate(fd, 2*size)},
				{"fallocate", p.Fallocate(fd, 0, 0, 4096)},
				{"punch", p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 0, 4096)},
				{"write at size", func() error { _, err := p.Pwrite(fd, size, 1, pattern(4)); return err }()},
				{"write past size", func() error { _, err := p.Pwrite(fd, size+4096, 1, pattern(4)); return err }()},
			} {
				require.Equal(t, errno.EPERM, errOf(tc.err), tc.name)
			}
			n, err := p.Pwrite(fd, size-10, 20, pattern(5))
			require.NoError(t, err)
			require.Equal(t, int64(10), n, "cut short at i_size")
			require.NoError(t, p.Ftruncate(fd, size), "the same size is no change")
			_, err = p.Lseek(fd, 77, uapi.SEEK_SET)
			require.NoError(t, err)
		}, func(w *world, p *kernel.Task, s int) {
			fd, err := retrieveFD(p, s, 1)
			require.NoError(t, err)
			got, err := preadAll(p, fd, 0, 2*size)
			require.NoError(t, err)
			want := make([]byte, size)
			pattern(1)(want, 0)
			pattern(2)(want[4096:2*4096], 4096)
			pattern(3)(want[8*4096:9*4096], 8*4096)
			pattern(5)(want[size-10:], size-10)
			require.Equal(t, want, got)
			f, _ := p.FD(fd)
			require.Equal(t, int64(77), f.Pos, "the freeze recorded f_pos as of the kexec")
		})
	})
}

// TestMemfdFallocateThenWrite: fallocated, never written pages are
// preserved (every page up to i_size is pinned); a write after the
// preserve lands in them; the rest reads as zeros.
func TestMemfdFallocateThenWrite(t *testing.T) {
	const size = 32 * 4096
	forEachTracker(t, func(t *testing.T, b kbuild.Build) {
		roundTrip(t, b, func(w *world, p *kernel.Task, s int) {
			fd, err := p.MemfdCreate("falloc", 0)
			require.NoError(t, err)
			require.NoError(t, p.Fallocate(fd, 0, 0, size))
			require.NoError(t, preserveFD(p, s, fd, 1))
			require.Equal(t, uint64(size/4096), w.layer.Live()[0].Pages())
			_, err = p.Pwrite(fd, 5*4096+3, 3*4096, pattern(7))
			require.NoError(t, err)
		}, func(w *world, p *kernel.Task, s int) {
			fd, err := retrieveFD(p, s, 1)
			require.NoError(t, err)
			got, err := preadAll(p, fd, 0, size)
			require.NoError(t, err)
			want := make([]byte, size)
			pattern(7)(want[5*4096+3:8*4096+3], 5*4096+3)
			require.Equal(t, want, got)
		})
	})
}

// TestMemfdHolesFilled: a sparse memfd is preserved whole (holes filled,
// as memfd_pin_folios does), with 2 MiB folios where the build makes
// them.
func TestMemfdHolesFilled(t *testing.T) {
	for _, huge := range []string{"never", "always"} {
		t.Run(huge, func(t *testing.T) {
			const size = 6 * mib
			roundTrip(t, luoBuild(t, "shmem_huge", huge), func(w *world, p *kernel.Task, s int) {
				fd, err := p.MemfdCreate("sparse", 0)
				require.NoError(t, err)
				require.NoError(t, p.Ftruncate(fd, size))
				_, err = p.Pwrite(fd, 2*mib, 2*mib, pattern(1))
				require.NoError(t, err)
				require.NoError(t, preserveFD(p, s, fd, 1))
				require.Equal(t, uint64(size/4096), w.layer.Live()[0].Pages(), "every page up to i_size")
				if huge == "always" {
					require.Equal(t, 1+1024, w.layer.Live()[0].Folios(), "the written 2 MiB are one folio, the holes filled with pages")
				}
			}, func(w *world, p *kernel.Task, s int) {
				fd, err := retrieveFD(p, s, 1)
				require.NoError(t, err)
				got, err := preadAll(p, fd, 0, size)
				require.NoError(t, err)
				want := make([]byte, size)
				pattern(1)(want[2*mib:4*mib], 2*mib)
				require.Equal(t, want, got)
				if huge == "always" {
					f, _ := p.FD(fd)
					_, refs, _, ok := w.k.FolioAt(f, 2*mib/4096+7)
					require.True(t, ok)
					require.Equal(t, 512, refs, "still one 2 MiB folio (the page cache's folio_nr_pages references)")
				}
			})
		})
	}
}

// TestMemfdSeals: memfd-v2 carries the seals; memfd-v1 does not (the file
// comes back named "memfd:", sealed F_SEAL_SEAL only).
func TestMemfdSeals(t *testing.T) {
	for _, tc := range []struct {
		memfd string
		want  uint64
	}{{"v2", uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW | uapi.F_SEAL_WRITE}, {"v1", uapi.F_SEAL_SEAL}} {
		t.Run(tc.memfd, func(t *testing.T) {
			roundTrip(t, luoBuild(t, "memfd", tc.memfd), func(w *world, p *kernel.Task, s int) {
				fd, err := p.MemfdCreate("sealed", uapi.MFD_ALLOW_SEALING)
				require.NoError(t, err)
				_, err = p.Pwrite(fd, 0, 5000, pattern(1))
				require.NoError(t, err)
				_, err = p.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_SHRINK|uapi.F_SEAL_GROW|uapi.F_SEAL_WRITE)
				require.NoError(t, err)
				require.NoError(t, preserveFD(p, s, fd, 1))
				require.Equal(t, "memfd-"+tc.memfd, w.l.Outgoing()[0].files[0].compat)
			}, func(w *world, p *kernel.Task, s int) {
				fd, err := retrieveFD(p, s, 1)
				require.NoError(t, err)
				seals, err := p.Fcntl(fd, uapi.F_GET_SEALS, 0)
				require.NoError(t, err)
				require.Equal(t, tc.want, uint64(seals))
				checkPattern(t, p, fd, 5000, 1)
			})
		})
	}
}

// TestVersionSkew: a kernel reads every memfd version up to its own. A
// record it cannot read (memfd-v2 into a memfd=v1 kernel) makes the whole
// LUO state unavailable: open gets EIO, every time, and the memory comes
// back (a documented difference: Linux leaks it). A kernel without LUO
// returns it all; a LUO kernel after one without finds nothing.
func TestVersionSkew(t *testing.T) {
	setup := func(t *testing.T, b kbuild.Build) *world {
		w := newWorld(t, 128*mib, b)
		p := w.proc("p")
		lu, _ := luoOpen(p)
		for i, name := range []string{"a", "b"} {
			s, err := createSession(p, lu, name)
			require.NoError(t, err)
			require.NoError(t, preserveFD(p, s, patternMemfd(t, p, 40*4096, byte(i)), 1))
		}
		return w
	}
	t.Run("v1 to v2", func(t *testing.T) {
		w := setup(t, luoBuild(t, "memfd", "v1"))
		require.NoError(t, w.kexec(luoBuild(t, "memfd", "v2")))
		p := w.proc("p2")
		lu, err := luoOpen(p)
		require.NoError(t, err)
		s, err := retrieveSession(p, lu, "b")
		require.NoError(t, err)
		fd, err := retrieveFD(p, s, 1)
		require.NoError(t, err)
		checkPattern(t, p, fd, 40*4096, 1)
		w.audit()
	})
	t.Run("v2 to v1", func(t *testing.T) {
		w := setup(t, luoBuild(t))
		require.NoError(t, w.kexec(luoBuild(t, "memfd", "v1")))
		require.ErrorIs(t, w.l.IncomingErr(), errno.ENOENT)
		require.Contains(t, logText(w.k), "No registered handler for compatible 'memfd-v2'")
		require.Contains(t, logText(w.k), "LUO/a/token 0x1")
		p := w.proc("p2")
		for range 3 {
			_, err := luoOpen(p)
			require.Equal(t, errno.EIO, errOf(err))
		}
		w.noLeak()
	})
	t.Run("luo=on to luo=off", func(t *testing.T) {
		w := setup(t, luoBuild(t))
		require.NoError(t, w.kexec(luoBuild(t, "luo", "off")))
		require.Positive(t, w.kho.Incoming().Returned)
		_, err := luoOpen(w.proc("p2"))
		require.Equal(t, errno.ENOENT, errOf(err))
		w.baseline -= sessionPgcnt + 1 // no LUO blocks in this kernel
		w.noLeak()
	})
	t.Run("luo=off to luo=on", func(t *testing.T) {
		w := newWorld(t, 128*mib, luoBuild(t, "luo", "off"))
		require.NoError(t, w.kexec(luoBuild(t)))
		require.Zero(t, w.l.LiveupdateNumber())
		require.NoError(t, w.l.IncomingErr())
		fd, err := luoOpen(w.proc("p"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, fd, 0)
		w.audit()
	})
}

// TestCorruptLUOFDT: an incoming LUO FDT of another ABI (luo-v2, a session
// node of another version) makes the state unavailable; its memory comes
// back.
func TestCorruptLUOFDT(t *testing.T) {
	for _, tc := range []struct{ from, to string }{
		{FDTCompatible, "luo-v9"},
		{SessionCompatible, "luo-session-v9"},
	} {
		t.Run(tc.to, func(t *testing.T) {
			w := newWorld(t, 128*mib, luoBuild(t))
			p := w.proc("p")
			lu, _ := luoOpen(p)
			s, err := createSession(p, lu, "s")
			require.NoError(t, err)
			require.NoError(t, preserveFD(p, s, patternMemfd(t, p, 8*4096, 1), 1))
			b := w.l.out.fdt.b
			i := indexOf(b, tc.from+"\x00")
			require.GreaterOrEqual(t, i, 0)
			copy(b[i:], tc.to)
			require.NoError(t, w.kexec(w.build))
			require.Error(t, w.l.IncomingErr())
			require.Contains(t, w.l.IncomingErr().Error(), tc.to)
			_, err = luoOpen(w.proc("p2"))
			require.Equal(t, errno.EIO, errOf(err))
			w.noLeak()
		})
	}
}

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

var _ = fmt.Sprint
