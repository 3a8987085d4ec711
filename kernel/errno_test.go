package kernel

import (
	"strings"
	"testing"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// env is the fixture of the errno table: a machine, a user task and a
// root task, and a few files.
type env struct {
	*machine
	p, root *Task
	mfd     int // memfd, MFD_ALLOW_SEALING, 8 KiB of data
	plain   int // memfd without MFD_ALLOW_SEALING
	ro      int // /tmp/ro opened O_RDONLY (created by p, mode 0644)
	wo      int // /tmp/ro opened O_WRONLY
	null    int // /dev/null O_RDWR
	dir     int // /tmp opened O_RDONLY
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := bootMachine(t, machineOpts{swap: 16 << 20})
	e := &env{machine: m, p: m.task("user", 1000), root: m.task("root", 0)}
	var err error
	e.mfd, err = e.p.MemfdCreate("m", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	_, err = e.p.Pwrite(e.mfd, 0, 8192, pattern(1))
	must(t, err)
	e.plain, err = e.p.MemfdCreate("plain", 0)
	must(t, err)
	fd, err := e.p.Open("/tmp/ro", uapi.O_CREAT|uapi.O_RDWR)
	must(t, err)
	_, err = e.p.Pwrite(fd, 0, 100, pattern(2))
	must(t, err)
	must(t, e.p.Close(fd))
	e.ro, err = e.p.Open("/tmp/ro", uapi.O_RDONLY)
	must(t, err)
	e.wo, err = e.p.Open("/tmp/ro", uapi.O_WRONLY)
	must(t, err)
	e.null, err = e.p.Open("/dev/null", uapi.O_RDWR)
	must(t, err)
	e.dir, err = e.p.Open("/tmp", uapi.O_RDONLY)
	must(t, err)
	return e
}

func (e *env) seal(t *testing.T, seals uint64) {
	t.Helper()
	_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, seals)
	must(t, err)
}

func (e *env) mapMfd(t *testing.T, prot int) *VMA {
	t.Helper()
	v, err := e.p.Mmap(e.mfd, 0, 8192, prot, uapi.MAP_SHARED)
	must(t, err)
	return v
}

// fillFDs uses every fd up to a limit of n.
func (e *env) fillFDs(t *testing.T, n int) {
	t.Helper()
	e.p.NoFile = n
	for {
		if _, err := e.p.Dup(e.null); err != nil {
			return
		}
	}
}

const bad = 99 // an fd that is not open

func TestErrno(t *testing.T) {
	long := strings.Repeat("a", mfdNameMaxLen+1)
	cases := []struct {
		name string
		run  func(t *testing.T, e *env) error
		want errno.Errno
	}{
		// memfd_create
		{"memfd unknown flag", func(t *testing.T, e *env) error { _, err := e.p.MemfdCreate("x", 0x100); return err }, errno.EINVAL},
		{"memfd EXEC|NOEXEC_SEAL", func(t *testing.T, e *env) error {
			_, err := e.p.MemfdCreate("x", uapi.MFD_EXEC|uapi.MFD_NOEXEC_SEAL)
			return err
		}, errno.EINVAL},
		{"memfd HUGETLB", func(t *testing.T, e *env) error { _, err := e.p.MemfdCreate("x", uapi.MFD_HUGETLB); return err }, errno.EINVAL},
		{"memfd HUGETLB bad size bits", func(t *testing.T, e *env) error {
			_, err := e.p.MemfdCreate("x", uapi.MFD_HUGETLB|1<<31)
			return err
		}, errno.EINVAL},
		{"memfd name 250", func(t *testing.T, e *env) error { _, err := e.p.MemfdCreate(long, 0); return err }, errno.EINVAL},
		{"memfd name 249", func(t *testing.T, e *env) error { _, err := e.p.MemfdCreate(long[1:], 0); return err }, 0},
		{"memfd EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.MemfdCreate("x", 0)
			return err
		}, errno.EMFILE},
		{"memfd bad name before EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.MemfdCreate(long, 0)
			return err
		}, errno.EINVAL},

		// open
		{"open empty path", func(t *testing.T, e *env) error { _, err := e.p.Open("", uapi.O_RDONLY); return err }, errno.ENOENT},
		{"open missing", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/none", uapi.O_RDWR); return err }, errno.ENOENT},
		{"open missing dir", func(t *testing.T, e *env) error { _, err := e.p.Open("/nodir/x", uapi.O_RDONLY); return err }, errno.ENOENT},
		{"open missing device", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/none", uapi.O_RDWR); return err }, errno.ENOENT},
		{"open O_EXCL existing", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp/ro", uapi.O_CREAT|uapi.O_EXCL|uapi.O_RDWR)
			return err
		}, errno.EEXIST},
		{"open O_EXCL device", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/dev/null", uapi.O_CREAT|uapi.O_EXCL|uapi.O_RDWR)
			return err
		}, errno.EEXIST},
		{"open file as dir", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/ro/x", uapi.O_RDONLY); return err }, errno.ENOTDIR},
		{"open device as dir", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/null/x", uapi.O_CREAT); return err }, errno.ENOTDIR},
		{"open name too long", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp/"+strings.Repeat("n", 256), uapi.O_CREAT|uapi.O_RDWR)
			return err
		}, errno.ENAMETOOLONG},
		{"open path too long", func(t *testing.T, e *env) error {
			_, err := e.p.Open("/tmp/"+strings.Repeat("a/", 2100), uapi.O_RDONLY)
			return err
		}, errno.ENAMETOOLONG},
		{"open create in /", func(t *testing.T, e *env) error { _, err := e.p.Open("/x", uapi.O_CREAT|uapi.O_RDWR); return err }, errno.EACCES},
		{"open create in /dev", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/x", uapi.O_CREAT|uapi.O_RDWR); return err }, errno.EACCES},
		{"open dir for write", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp", uapi.O_RDWR); return err }, errno.EISDIR},
		{"open dir O_CREAT", func(t *testing.T, e *env) error { _, err := e.p.Open("/tmp/", uapi.O_CREAT); return err }, errno.EISDIR},
		{"open other's file for write", func(t *testing.T, e *env) error {
			_, err := e.machine.task("other", 1001).Open("/tmp/ro", uapi.O_RDWR)
			return err
		}, errno.EACCES},
		{"open other's file O_TRUNC read-only", func(t *testing.T, e *env) error {
			_, err := e.machine.task("other", 1001).Open("/tmp/ro", uapi.O_RDONLY|uapi.O_TRUNC)
			return err
		}, errno.EACCES},
		{"open other's file read-only", func(t *testing.T, e *env) error {
			_, err := e.machine.task("other", 1001).Open("/tmp/ro", uapi.O_RDONLY)
			return err
		}, 0},
		{"open root overrides", func(t *testing.T, e *env) error { _, err := e.root.Open("/tmp/ro", uapi.O_RDWR); return err }, 0},
		{"open EMFILE before ENOENT", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.Open("/tmp/none", uapi.O_RDWR)
			return err
		}, errno.EMFILE},
		{"open dot-dot", func(t *testing.T, e *env) error { _, err := e.p.Open("/dev/../tmp/./ro", uapi.O_RDONLY); return err }, 0},

		// close, dup
		{"close bad fd", func(t *testing.T, e *env) error { return e.p.Close(bad) }, errno.EBADF},
		{"close negative fd", func(t *testing.T, e *env) error { return e.p.Close(-1) }, errno.EBADF},
		{"dup bad fd", func(t *testing.T, e *env) error { _, err := e.p.Dup(bad); return err }, errno.EBADF},
		{"dup EMFILE", func(t *testing.T, e *env) error { e.fillFDs(t, 10); _, err := e.p.Dup(e.mfd); return err }, errno.EMFILE},

		// ftruncate
		{"ftruncate negative before EBADF", func(t *testing.T, e *env) error { return e.p.Ftruncate(bad, -1) }, errno.EINVAL},
		{"ftruncate bad fd", func(t *testing.T, e *env) error { return e.p.Ftruncate(bad, 0) }, errno.EBADF},
		{"ftruncate read-only", func(t *testing.T, e *env) error { return e.p.Ftruncate(e.ro, 0) }, errno.EINVAL},
		{"ftruncate /dev/null", func(t *testing.T, e *env) error { return e.p.Ftruncate(e.null, 0) }, errno.EINVAL},
		{"ftruncate SHRINK", func(t *testing.T, e *env) error { e.seal(t, uapi.F_SEAL_SHRINK); return e.p.Ftruncate(e.mfd, 4096) }, errno.EPERM},
		{"ftruncate GROW", func(t *testing.T, e *env) error { e.seal(t, uapi.F_SEAL_GROW); return e.p.Ftruncate(e.mfd, 1<<20) }, errno.EPERM},
		{"ftruncate same size sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_GROW|uapi.F_SEAL_SHRINK)
			return e.p.Ftruncate(e.mfd, 8192)
		}, 0},
		{"ftruncate WRITE-sealed", func(t *testing.T, e *env) error { e.seal(t, uapi.F_SEAL_WRITE); return e.p.Ftruncate(e.mfd, 100) }, 0},

		// fallocate
		{"fallocate bad fd", func(t *testing.T, e *env) error { return e.p.Fallocate(bad, 0, -1, 0) }, errno.EBADF},
		{"fallocate negative offset", func(t *testing.T, e *env) error { return e.p.Fallocate(e.mfd, 0, -1, 10) }, errno.EINVAL},
		{"fallocate zero length", func(t *testing.T, e *env) error { return e.p.Fallocate(e.mfd, 0, 0, 0) }, errno.EINVAL},
		{"fallocate PUNCH without KEEP_SIZE", func(t *testing.T, e *env) error {
			return e.p.Fallocate(e.mfd, uapi.FALLOC_FL_PUNCH_HOLE, 0, 10)
		}, errno.EOPNOTSUPP},
		{"fallocate unknown bit", func(t *testing.T, e *env) error { return e.p.Fallocate(e.mfd, 0x04, 0, 10) }, errno.EOPNOTSUPP},
		{"fallocate ZERO_RANGE", func(t *testing.T, e *env) error { return e.p.Fallocate(e.mfd, fallocFlZeroRange, 0, 10) }, errno.EOPNOTSUPP},
		{"fallocate COLLAPSE|KEEP_SIZE", func(t *testing.T, e *env) error {
			return e.p.Fallocate(e.mfd, fallocFlCollapseRange|uapi.FALLOC_FL_KEEP_SIZE, 0, 4096)
		}, errno.EOPNOTSUPP},
		{"fallocate PUNCH|ZERO", func(t *testing.T, e *env) error {
			return e.p.Fallocate(e.mfd, uapi.FALLOC_FL_PUNCH_HOLE|fallocFlZeroRange|uapi.FALLOC_FL_KEEP_SIZE, 0, 10)
		}, errno.EOPNOTSUPP},
		{"fallocate read-only fd", func(t *testing.T, e *env) error { return e.p.Fallocate(e.ro, 0, 0, 10) }, errno.EBADF},
		{"fallocate directory", func(t *testing.T, e *env) error { return e.p.Fallocate(e.dir, 0, 0, 10) }, errno.EBADF},
		{"fallocate /dev/null", func(t *testing.T, e *env) error { return e.p.Fallocate(e.null, 0, 0, 10) }, errno.ENODEV},
		{"fallocate overflow", func(t *testing.T, e *env) error { return e.p.Fallocate(e.mfd, 0, 1<<62, 1<<62) }, errno.EFBIG},
		{"fallocate punch WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_WRITE)
			return e.p.Fallocate(e.mfd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 0, 10)
		}, errno.EPERM},
		{"fallocate punch FUTURE_WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_FUTURE_WRITE)
			return e.p.Fallocate(e.mfd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 0, 10)
		}, errno.EPERM},
		{"fallocate GROW-sealed beyond size", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_GROW)
			return e.p.Fallocate(e.mfd, uapi.FALLOC_FL_KEEP_SIZE, 4096, 8192)
		}, errno.EPERM},
		{"fallocate GROW-sealed within size", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_GROW)
			return e.p.Fallocate(e.mfd, 0, 0, 8192)
		}, 0},
		{"fallocate beyond /tmp size", func(t *testing.T, e *env) error {
			return e.p.Fallocate(e.wo, 0, 0, int64(e.k.tmp.maxBlocks+1)*physmem.PageSize)
		}, errno.ENOSPC},
		{"fallocate injected ENOMEM", func(t *testing.T, e *env) error {
			must(t, e.faults.Arm("page_alloc", 3, 1))
			return e.p.Fallocate(e.plain, 0, 0, 1<<20)
		}, errno.ENOMEM},

		// pwrite, pread, write, read
		{"pwrite negative offset before EBADF", func(t *testing.T, e *env) error { _, err := e.p.Pwrite(bad, -1, 1, nil); return err }, errno.EINVAL},
		{"pwrite bad fd", func(t *testing.T, e *env) error { _, err := e.p.Pwrite(bad, 0, 1, nil); return err }, errno.EBADF},
		{"pwrite read-only fd", func(t *testing.T, e *env) error { _, err := e.p.Pwrite(e.ro, 0, 1, nil); return err }, errno.EBADF},
		{"pwrite negative count", func(t *testing.T, e *env) error { _, err := e.p.Pwrite(e.mfd, 0, -1, nil); return err }, errno.EFAULT},
		{"pwrite overflow", func(t *testing.T, e *env) error { _, err := e.p.Pwrite(e.mfd, 1<<62, 1<<62, nil); return err }, errno.EINVAL},
		{"pwrite WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_WRITE)
			_, err := e.p.Pwrite(e.mfd, 0, 1, nil)
			return err
		}, errno.EPERM},
		{"pwrite FUTURE_WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_FUTURE_WRITE)
			_, err := e.p.Pwrite(e.mfd, 0, 1, nil)
			return err
		}, errno.EPERM},
		{"pwrite GROW-sealed beyond", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_GROW)
			_, err := e.p.Pwrite(e.mfd, 8192, 1, nil)
			return err
		}, errno.EPERM},
		{"pwrite zero bytes sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_WRITE)
			_, err := e.p.Pwrite(e.mfd, 0, 0, nil)
			return err
		}, 0},
		{"pwrite injected ENOMEM", func(t *testing.T, e *env) error {
			must(t, e.faults.Arm("page_alloc", 1, 1))
			_, err := e.p.Pwrite(e.plain, 0, 1, nil)
			return err
		}, errno.ENOMEM},
		{"pwrite /tmp ENOSPC", func(t *testing.T, e *env) error {
			e.k.tmp.maxBlocks = e.k.tmp.usedBlocks
			_, err := e.p.Pwrite(e.wo, 4096, 1, nil)
			return err
		}, errno.ENOSPC},
		{"pread negative offset before EBADF", func(t *testing.T, e *env) error { _, err := e.p.Pread(bad, -1, 1, nil); return err }, errno.EINVAL},
		{"pread bad fd", func(t *testing.T, e *env) error { _, err := e.p.Pread(bad, 0, 1, nil); return err }, errno.EBADF},
		{"pread write-only fd", func(t *testing.T, e *env) error { _, err := e.p.Pread(e.wo, 0, 1, nil); return err }, errno.EBADF},
		{"pread negative count", func(t *testing.T, e *env) error { _, err := e.p.Pread(e.mfd, 0, -5, nil); return err }, errno.EFAULT},
		{"pread overflow", func(t *testing.T, e *env) error { _, err := e.p.Pread(e.mfd, 1<<62, 1<<62, nil); return err }, errno.EINVAL},
		{"pread directory", func(t *testing.T, e *env) error { _, err := e.p.Pread(e.dir, 0, 1, nil); return err }, errno.EISDIR},
		{"read bad fd", func(t *testing.T, e *env) error { _, err := e.p.Read(bad, 1, nil); return err }, errno.EBADF},
		{"read write-only", func(t *testing.T, e *env) error { _, err := e.p.Read(e.wo, 1, nil); return err }, errno.EBADF},
		{"write read-only", func(t *testing.T, e *env) error { _, err := e.p.Write(e.ro, 1, nil); return err }, errno.EBADF},
		{"write negative count", func(t *testing.T, e *env) error { _, err := e.p.Write(e.mfd, -1, nil); return err }, errno.EFAULT},

		// lseek
		{"lseek bad fd", func(t *testing.T, e *env) error { _, err := e.p.Lseek(bad, 0, uapi.SEEK_SET); return err }, errno.EBADF},
		{"lseek bad whence", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.mfd, 0, 5); return err }, errno.EINVAL},
		{"lseek negative", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.mfd, -1, uapi.SEEK_SET); return err }, errno.EINVAL},
		{"lseek before start from end", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.mfd, -8193, uapi.SEEK_END); return err }, errno.EINVAL},
		{"lseek SEEK_DATA at EOF", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.mfd, 8192, uapi.SEEK_DATA); return err }, errno.ENXIO},
		{"lseek SEEK_HOLE negative", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.mfd, -1, uapi.SEEK_HOLE); return err }, errno.ENXIO},
		{"lseek /dev/null bad whence", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.null, 0, 7); return err }, errno.EINVAL},
		{"lseek directory SEEK_END", func(t *testing.T, e *env) error { _, err := e.p.Lseek(e.dir, 0, uapi.SEEK_END); return err }, errno.EINVAL},

		// fcntl and seals
		{"fcntl bad fd", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(bad, uapi.F_GETFD, 0); return err }, errno.EBADF},
		{"fcntl unknown cmd", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(e.mfd, 9999, 0); return err }, errno.EINVAL},
		{"F_DUPFD beyond limit", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(e.mfd, uapi.F_DUPFD, DefaultNoFile); return err }, errno.EINVAL},
		{"F_DUPFD EMFILE", func(t *testing.T, e *env) error {
			e.fillFDs(t, 10)
			_, err := e.p.Fcntl(e.mfd, uapi.F_DUPFD, 0)
			return err
		}, errno.EMFILE},
		{"F_ADD_SEALS sealing not allowed", func(t *testing.T, e *env) error {
			_, err := e.p.Fcntl(e.plain, uapi.F_ADD_SEALS, uapi.F_SEAL_SHRINK)
			return err
		}, errno.EPERM},
		{"F_ADD_SEALS after F_SEAL_SEAL", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_SEAL)
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
			return err
		}, errno.EPERM},
		{"F_ADD_SEALS unknown bit", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, 0x40); return err }, errno.EINVAL},
		{"F_ADD_SEALS read-only file", func(t *testing.T, e *env) error {
			_, err := e.p.Fcntl(e.ro, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
			return err
		}, errno.EPERM},
		{"F_ADD_SEALS read-only before unknown bit", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(e.ro, uapi.F_ADD_SEALS, 0x40); return err }, errno.EPERM},
		{"F_ADD_SEALS tmpfs file", func(t *testing.T, e *env) error {
			_, err := e.p.Fcntl(e.wo, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
			return err
		}, errno.EPERM},
		{"F_ADD_SEALS /dev/null", func(t *testing.T, e *env) error {
			_, err := e.p.Fcntl(e.null, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
			return err
		}, errno.EINVAL},
		{"F_GET_SEALS /dev/null", func(t *testing.T, e *env) error { _, err := e.p.Fcntl(e.null, uapi.F_GET_SEALS, 0); return err }, errno.EINVAL},
		{"F_SEAL_WRITE while writably mapped", func(t *testing.T, e *env) error {
			e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE)
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_WRITE)
			return err
		}, errno.EBUSY},
		{"F_SEAL_WRITE while shared-maywrite mapped read-only", func(t *testing.T, e *env) error {
			e.mapMfd(t, uapi.PROT_READ)
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_WRITE)
			return err
		}, errno.EBUSY},
		{"F_SEAL_FUTURE_WRITE while writably mapped", func(t *testing.T, e *env) error {
			e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE)
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_FUTURE_WRITE)
			return err
		}, 0},
		{"F_SEAL_EXEC implies F_SEAL_WRITE", func(t *testing.T, e *env) error {
			e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE)
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_EXEC)
			return err
		}, errno.EBUSY},
		{"F_SEAL_WRITE with a pinned page", func(t *testing.T, e *env) error {
			pfn, _, _, ok := e.k.FolioAt(mustFD(t, e.p, e.mfd), 0)
			if !ok {
				t.Fatal("no folio at index 0")
			}
			e.k.MM.FolioGet(physmem.Folio(pfn))
			defer e.k.MM.FolioPut(physmem.Folio(pfn))
			_, err := e.p.Fcntl(e.mfd, uapi.F_ADD_SEALS, uapi.F_SEAL_WRITE)
			return err
		}, errno.EBUSY},

		// mmap
		{"mmap unaligned offset before EBADF", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(bad, 1, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.EINVAL},
		{"mmap bad fd", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(bad, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.EBADF},
		{"mmap zero length", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, 0, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.EINVAL},
		{"mmap negative length", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, -4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.ENOMEM},
		{"mmap negative offset", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, -4096, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.EOVERFLOW},
		{"mmap PROT_WRITE read-only fd", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.ro, 0, 4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			return err
		}, errno.EACCES},
		{"mmap write-only fd", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.wo, 0, 4096, uapi.PROT_WRITE, uapi.MAP_SHARED)
			return err
		}, errno.EACCES},
		{"mmap /dev/null", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.null, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, errno.ENODEV},
		{"mmap no map type", func(t *testing.T, e *env) error { _, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, 0); return err }, errno.EINVAL},
		{"mmap MAP_PRIVATE", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, uapi.MAP_PRIVATE)
			return err
		}, errno.EINVAL},
		{"mmap MAP_FIXED", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED|uapi.MAP_FIXED)
			return err
		}, errno.EPERM},
		{"mmap MAP_SHARED_VALIDATE unknown flag", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, mapSharedValid|0x80000)
			return err
		}, errno.EOPNOTSUPP},
		{"mmap MAP_SHARED ignores unknown flag", func(t *testing.T, e *env) error {
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED|0x80000)
			return err
		}, 0},
		{"mmap writable WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_WRITE)
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			return err
		}, errno.EPERM},
		{"mmap writable FUTURE_WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_FUTURE_WRITE)
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_WRITE, uapi.MAP_SHARED)
			return err
		}, errno.EPERM},
		{"mmap read-only WRITE-sealed", func(t *testing.T, e *env) error {
			e.seal(t, uapi.F_SEAL_WRITE)
			_, err := e.p.Mmap(e.mfd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			return err
		}, 0},

		// store, load, munmap
		{"store beyond mapping", func(t *testing.T, e *env) error {
			_, err := e.p.Store(e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE), 8192, 1, nil)
			return err
		}, errno.EFAULT},
		{"store negative offset", func(t *testing.T, e *env) error {
			_, err := e.p.Store(e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE), -1, 1, nil)
			return err
		}, errno.EFAULT},
		{"store negative count", func(t *testing.T, e *env) error {
			_, err := e.p.Store(e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE), 0, -1, nil)
			return err
		}, errno.EINVAL},
		{"store read-only mapping", func(t *testing.T, e *env) error {
			_, err := e.p.Store(e.mapMfd(t, uapi.PROT_READ), 0, 1, nil)
			return err
		}, errno.EFAULT},
		{"load PROT_NONE", func(t *testing.T, e *env) error {
			_, err := e.p.Load(e.mapMfd(t, uapi.PROT_NONE), 0, 1, nil)
			return err
		}, errno.EFAULT},
		{"store beyond EOF", func(t *testing.T, e *env) error {
			v := e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE)
			must(t, e.p.Ftruncate(e.mfd, 4096))
			_, err := e.p.Store(v, 4096, 1, nil)
			return err
		}, errno.EFAULT},
		{"load after munmap", func(t *testing.T, e *env) error {
			v := e.mapMfd(t, uapi.PROT_READ)
			must(t, e.p.Munmap(v))
			_, err := e.p.Load(v, 0, 1, nil)
			return err
		}, errno.EFAULT},
		{"munmap twice", func(t *testing.T, e *env) error {
			v := e.mapMfd(t, uapi.PROT_READ)
			must(t, e.p.Munmap(v))
			return e.p.Munmap(v)
		}, 0},
		{"munmap another task's mapping", func(t *testing.T, e *env) error {
			v := e.mapMfd(t, uapi.PROT_READ)
			if err := e.root.Munmap(v); err != nil || !v.Mapped() {
				t.Fatalf("munmap by another task: %v, mapped %v", err, v.Mapped())
			}
			return nil
		}, 0},
		{"store injected OOM", func(t *testing.T, e *env) error {
			must(t, e.p.Ftruncate(e.plain, 4096))
			v, err := e.p.Mmap(e.plain, 0, 4096, uapi.PROT_WRITE, uapi.MAP_SHARED)
			must(t, err)
			must(t, e.faults.Arm("page_alloc", 1, 1))
			_, err = e.p.Store(v, 0, 1, nil)
			return err
		}, errno.ENOMEM},

		// madvise
		{"madvise unknown advice", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, 4096, 999)
		}, errno.EINVAL},
		{"madvise unaligned", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 1, 4096, uapi.MADV_PAGEOUT)
		}, errno.EINVAL},
		{"madvise negative length", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, -1, uapi.MADV_PAGEOUT)
		}, errno.EINVAL},
		{"madvise beyond mapping", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, 3*4096, uapi.MADV_PAGEOUT)
		}, errno.ENOMEM},
		{"madvise zero length", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, 0, uapi.MADV_PAGEOUT)
		}, 0},
		{"madvise MADV_REMOVE read-only file", func(t *testing.T, e *env) error {
			v, err := e.p.Mmap(e.ro, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
			must(t, err)
			return e.p.Madvise(v, 0, 4096, madvRemove)
		}, errno.EACCES},
		{"madvise MADV_REMOVE read-only mapping of a writable file", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, 4096, madvRemove) // vma_is_shared_maywrite
		}, 0},
		{"madvise MADV_REMOVE WRITE-sealed", func(t *testing.T, e *env) error {
			v := e.mapMfd(t, uapi.PROT_READ|uapi.PROT_WRITE)
			e.seal(t, uapi.F_SEAL_FUTURE_WRITE)
			return e.p.Madvise(v, 0, 4096, madvRemove)
		}, errno.EPERM},
		{"madvise POPULATE_WRITE read-only", func(t *testing.T, e *env) error {
			return e.p.Madvise(e.mapMfd(t, uapi.PROT_READ), 0, 4096, madvPopulateWrite)
		}, errno.EINVAL},

		// ioctl
		{"ioctl bad fd", func(t *testing.T, e *env) error { _, err := e.p.Ioctl(bad, 1, nil); return err }, errno.EBADF},
		{"ioctl /dev/null", func(t *testing.T, e *env) error { _, err := e.p.Ioctl(e.null, uapi.FDBOX_LIST, nil); return err }, errno.ENOTTY},
		{"ioctl memfd", func(t *testing.T, e *env) error { _, err := e.p.Ioctl(e.mfd, 1, nil); return err }, errno.ENOTTY},
		{"ioctl FIOCLEX", func(t *testing.T, e *env) error { _, err := e.p.Ioctl(e.mfd, fioclex, nil); return err }, 0},

		// unlink
		{"unlink missing", func(t *testing.T, e *env) error { return e.p.Unlink("/tmp/none") }, errno.ENOENT},
		{"unlink directory", func(t *testing.T, e *env) error { return e.p.Unlink("/tmp") }, errno.EISDIR},
		{"unlink device", func(t *testing.T, e *env) error { return e.p.Unlink("/dev/null") }, errno.EACCES},
		{"unlink other's file", func(t *testing.T, e *env) error { return e.machine.task("other", 1001).Unlink("/tmp/ro") }, errno.EPERM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			err := c.run(t, e)
			if got := errno.Of(err); got != c.want {
				t.Fatalf("got %v (%v), want %v", got, err, c.want)
			}
			e.check()
		})
	}
}
