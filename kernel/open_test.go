package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/uapi"
)

// TestOpenFlags checks open(2)'s flag handling against build_open_how()
// and build_open_flags() (fs/open.c), which run before getname() and
// get_unused_fd_flags(), and the O_PATH, O_DIRECTORY, O_TMPFILE and
// O_NOATIME paths of path_openat().
func TestOpenFlags(t *testing.T) {
	other := func(e *env) *Task { return e.machine.task("other", 1001) }
	cases := []struct {
		name string
		run  func(t *testing.T, e *env) error
		want errno.Errno
	}{
		// issue 16 #7: every bit set. build_open_how() keeps the flags
		// open(2) knows, and O_PATH beats them: an O_PATH|O_DIRECTORY
		// open, which /dev/null fails as a non-directory.
		{"0xffffffff /dev/null", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null", 0xffffffff); return err }, errno.ENOTDIR},
		{"0xffffffff /tmp", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", 0xffffffff); return err }, 0},
		{"0xffffffff missing", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/none", 0xffffffff); return err }, errno.ENOENT},
		{"unknown flags ignored", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/dev/null", uapi.O_RDWR|0x80000000|0x1000000)
			return err
		}, 0},

		// build_open_flags, in order, before getname and the fd table.
		{"O_CREAT|O_DIRECTORY", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp/new", uapi.O_CREAT|oDirectory|uapi.O_RDWR)
			return err
		}, errno.EINVAL},
		{"O_CREAT|O_DIRECTORY before empty path", func(t *testing.T, e *env) error {
			_, err := e.p.Open("", uapi.O_CREAT|oDirectory)
			return err
		}, errno.EINVAL},
		{"O_CREAT|O_DIRECTORY before EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.Open("/tmp/new", uapi.O_CREAT|oDirectory)
			return err
		}, errno.EINVAL},
		{"O_TMPFILE|O_CREAT", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp", oTmpfileU|uapi.O_CREAT|uapi.O_RDWR)
			return err
		}, errno.EINVAL},
		{"__O_TMPFILE without O_DIRECTORY", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp", oTmpfile|uapi.O_RDWR)
			return err
		}, errno.EINVAL},
		{"O_TMPFILE read-only", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", oTmpfileU); return err }, errno.EINVAL},
		{"O_TMPFILE read-only with O_TRUNC", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp", oTmpfileU|uapi.O_TRUNC)
			return err
		}, errno.EINVAL},
		{"O_TMPFILE read-only before EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.Open("", oTmpfileU)
			return err
		}, errno.EINVAL},

		// O_TMPFILE (do_tmpfile)
		{"O_TMPFILE /tmp", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", oTmpfileU|uapi.O_RDWR); return err }, 0},
		{"O_TMPFILE O_WRONLY", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/", oTmpfileU|uapi.O_WRONLY); return err }, 0},
		{"O_TMPFILE on a file", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/ro", oTmpfileU|uapi.O_RDWR); return err }, errno.ENOTDIR},
		{"O_TMPFILE on a device", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null", oTmpfileU|uapi.O_RDWR); return err }, errno.ENOTDIR},
		{"O_TMPFILE missing", func(t *testing.T, e *env) error { _, err := e.p.Open("/nodir", oTmpfileU|uapi.O_RDWR); return err }, errno.ENOENT},
		{"O_TMPFILE in /", func(t *testing.T, e *env) error { _, err := e.p.Open("/", oTmpfileU|uapi.O_RDWR); return err }, errno.EACCES},
		{"O_TMPFILE in /dev", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev", oTmpfileU|uapi.O_RDWR); return err }, errno.EACCES},
		{"O_TMPFILE EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.Open("/tmp", oTmpfileU|uapi.O_RDWR)
			return err
		}, errno.EMFILE},

		// O_DIRECTORY
		{"O_DIRECTORY device", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null", oDirectory); return err }, errno.ENOTDIR},
		{"O_DIRECTORY file", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/ro", oDirectory); return err }, errno.ENOTDIR},
		{"O_DIRECTORY missing", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/none", oDirectory); return err }, errno.ENOENT},
		{"O_DIRECTORY dir", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev", oDirectory); return err }, 0},
		{"O_DIRECTORY dir for write", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", oDirectory|uapi.O_RDWR); return err }, errno.EISDIR},

		// O_PATH (do_o_path): no permission needed, other flags dropped.
		{"O_PATH unreadable file", func(t *testing.T, e *env) error {
			_, err := other(e).Open("/tmp/ro", oPath|uapi.O_RDWR|uapi.O_TRUNC)
			return err
		}, 0},
		{"O_PATH|O_RDWR dir", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", oPath|uapi.O_RDWR); return err }, 0},
		{"O_PATH|O_CREAT missing", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/new", oPath|uapi.O_CREAT); return err }, errno.ENOENT},
		{"O_PATH|O_CREAT|O_DIRECTORY", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp", oPath|uapi.O_CREAT|oDirectory)
			return err
		}, 0},
		{"O_PATH|O_TMPFILE", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", oPath|oTmpfileU); return err }, 0},
		{"O_PATH device trailing slash", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null/", oPath); return err }, errno.ENOTDIR},

		// O_NOATIME (may_open): the owner or CAP_FOWNER only.
		{"O_NOATIME owner", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/ro", oNoatime); return err }, 0},
		{"O_NOATIME not owner", func(t *testing.T, e *env) error { _, err := other(e).Open("/tmp/ro", oNoatime); return err }, errno.EPERM},
		{"O_NOATIME root", func(t *testing.T, e *env) error { _, err := e.root.Open("/tmp/ro", oNoatime); return err }, 0},
		{"O_NOATIME /dev/null", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null", oNoatime); return err }, errno.EPERM},
		{"O_NOATIME new file", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/new", oNoatime|uapi.O_CREAT); return err }, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			err := c.run(t, e)
			if c.want == 0 {
				require.NoError(t, err)
			} else {
				require.Equal(t, c.want, errno.Of(err), "got %v", err)
			}
			e.check()
		})
	}
}

// TestOPathFile checks what an O_PATH fd can do: close, dup and the
// fcntl commands of check_fcntl_cmd(); everything that uses fdget() gets
// EBADF.
func TestOPathFile(t *testing.T) {
	e := newEnv(t)
	fd, err := e.p.Open("/tmp/ro", oPath|uapi.O_RDWR)
	require.NoError(t, err)
	fl, err := e.p.Fcntl(fd, uapi.F_GETFL, 0)
	require.NoError(t, err)
	require.Equal(t, int64(oPath|uapi.O_LARGEFILE), fl)
	v := e.mapMfd(t, uapi.PROT_READ)
	for name, run := range map[string]func() error{
		"read":       func() error { _, err := e.p.Read(fd, 1, nil); return err },
		"pread":      func() error { _, err := e.p.Pread(fd, 0, 1, nil); return err },
		"write":      func() error { _, err := e.p.Write(fd, 1, nil); return err },
		"pwrite":     func() error { _, err := e.p.Pwrite(fd, 0, 1, nil); return err },
		"lseek":      func() error { _, err := e.p.Lseek(fd, 0, uapi.SEEK_SET); return err },
		"ftruncate":  func() error { return e.p.Ftruncate(fd, 0) },
		"fallocate":  func() error { return e.p.Fallocate(fd, 0, 0, 1) },
		"mmap":       func() error { _, err := e.p.Mmap(fd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED); return err },
		"ioctl":      func() error { _, err := e.p.Ioctl(fd, 0x1234, nil); return err },
		"fget":       func() error { _, err := e.p.Fget(fd); return err },
		"F_SETFL":    func() error { _, err := e.p.Fcntl(fd, uapi.F_SETFL, 0); return err },
		"F_GET_SEAL": func() error { _, err := e.p.Fcntl(fd, uapi.F_GET_SEALS, 0); return err },
		"unknown":    func() error { _, err := e.p.Fcntl(fd, 9999, 0); return err },
	} {
		require.Equal(t, errno.EBADF, errno.Of(run()), name)
	}
	_, err = e.p.Fcntl(fd, uapi.F_SETFD, uapi.FD_CLOEXEC)
	require.NoError(t, err)
	dup, err := e.p.Fcntl(fd, uapi.F_DUPFD, 0)
	require.NoError(t, err)
	require.NoError(t, e.p.Close(int(dup)))
	require.NoError(t, e.p.Munmap(v))
	require.NoError(t, e.p.Close(fd))
	e.check()
}

// TestOTmpfile checks that an O_TMPFILE file is a working, unnamed file
// that is freed when its last fd closes.
func TestOTmpfile(t *testing.T) {
	e := newEnv(t)
	before := e.k.FrameCounts()
	fd, err := e.p.Open("/tmp", oTmpfileU|uapi.O_RDWR)
	require.NoError(t, err)
	_, err = e.p.Pwrite(fd, 0, 3*4096, pattern(5))
	require.NoError(t, err)
	got := readAll(t, e.p, fd, 0, 3*4096)
	for i, b := range got {
		require.Equal(t, patternByte(5, int64(i)), b)
	}
	_, err = e.p.Open("/tmp/ro", uapi.O_RDONLY) // the name space is unchanged
	require.NoError(t, err)
	require.Len(t, e.k.tmpDir, 1)
	require.NoError(t, e.p.Close(fd))
	require.Equal(t, before.Used, e.k.FrameCounts().Used, "the unnamed file's pages are freed at close")
	e.check()
}
