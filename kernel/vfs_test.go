package kernel

import (
	"bytes"
	"testing"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

func TestReadWritePosition(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("pos", 0)
	must(t, err)
	if n, err := p.Write(fd, 5000, pattern(1)); n != 5000 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if pos, _ := p.Lseek(fd, 0, uapi.SEEK_CUR); pos != 5000 {
		t.Fatalf("pos %d after write", pos)
	}
	_, err = p.Lseek(fd, 100, uapi.SEEK_SET)
	must(t, err)
	var got []byte
	n, err := p.Read(fd, 10000, func(b []byte, off int64) error { got = append(got, b...); return nil })
	if n != 4900 || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	want := make([]byte, 5000)
	pattern(1)(want, 0)
	if !bytes.Equal(got, want[100:]) {
		t.Fatal("read content")
	}
	if n, err := p.Read(fd, 10, nil); n != 0 || err != nil {
		t.Fatalf("read at EOF: %d, %v", n, err)
	}
	if pos, _ := p.Lseek(fd, -1000, uapi.SEEK_END); pos != 4000 {
		t.Fatalf("SEEK_END: %d", pos)
	}
	// pread and pwrite leave the position alone.
	_, err = p.Pwrite(fd, 0, 10, nil)
	must(t, err)
	_, err = p.Pread(fd, 0, 10, nil)
	must(t, err)
	if pos, _ := p.Lseek(fd, 0, uapi.SEEK_CUR); pos != 4000 {
		t.Fatalf("pos %d after pread/pwrite", pos)
	}
	// A write past the end leaves a hole that reads as zeros.
	_, err = p.Pwrite(fd, 3<<20, 1, pattern(2))
	must(t, err)
	hole := readAll(t, p, fd, 5000, 3<<20-5000)
	if !bytes.Equal(hole, make([]byte, len(hole))) {
		t.Fatal("hole does not read as zeros")
	}
	m.check()
}

func TestAppend(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.Open("/tmp/log", uapi.O_CREAT|uapi.O_WRONLY|uapi.O_APPEND)
	must(t, err)
	_, err = p.Write(fd, 100, pattern(1))
	must(t, err)
	// pwrite on an O_APPEND file appends too, as Linux does.
	_, err = p.Pwrite(fd, 0, 50, pattern(2))
	must(t, err)
	f := mustFD(t, p, fd)
	if f.Inode.Size != 150 || f.Pos != 100 {
		t.Fatalf("size %d pos %d", f.Inode.Size, f.Pos)
	}
	fl, _ := p.Fcntl(fd, uapi.F_GETFL, 0)
	if fl != uapi.O_WRONLY|uapi.O_APPEND|uapi.O_LARGEFILE {
		t.Fatalf("F_GETFL %#x", fl)
	}
	_, err = p.Fcntl(fd, uapi.F_SETFL, 0)
	must(t, err)
	_, err = p.Write(fd, 10, pattern(3))
	must(t, err)
	if f.Inode.Size != 150 || f.Pos != 110 {
		t.Fatalf("after clearing O_APPEND: size %d pos %d", f.Inode.Size, f.Pos)
	}
	m.check()
}

func TestSeekDataHole(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("sparse", 0)
	must(t, err)
	must(t, p.Ftruncate(fd, 10*4096))
	_, err = p.Pwrite(fd, 2*4096+10, 10, nil) // data: page 2
	must(t, err)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_KEEP_SIZE, 4*4096, 4096)) // page 4: fallocated, a hole
	_, err = p.Pwrite(fd, 6*4096, 8192, nil)                         // data: pages 6-7
	must(t, err)
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
		err    error
	}{
		{0, uapi.SEEK_DATA, 2 * 4096, nil},
		{2*4096 + 100, uapi.SEEK_DATA, 2*4096 + 100, nil},
		{3 * 4096, uapi.SEEK_DATA, 6 * 4096, nil},
		{8 * 4096, uapi.SEEK_DATA, 0, errno.ENXIO},
		{0, uapi.SEEK_HOLE, 0, nil},
		{2 * 4096, uapi.SEEK_HOLE, 3 * 4096, nil},
		{6 * 4096, uapi.SEEK_HOLE, 8 * 4096, nil},
		{9 * 4096, uapi.SEEK_HOLE, 9 * 4096, nil},
		{10 * 4096, uapi.SEEK_HOLE, 0, errno.ENXIO},
	} {
		got, err := p.Lseek(fd, c.off, c.whence)
		if got != c.want || err != c.err {
			t.Errorf("lseek(%d, %d) = %d, %v; want %d, %v", c.off, c.whence, got, err, c.want, c.err)
		}
	}
}

func TestDevNull(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.Open("/dev/null", uapi.O_RDWR)
	must(t, err)
	if n, err := p.Write(fd, 3<<30, nil); n != maxRWCount || err != nil {
		t.Fatalf("write of 3 GiB: %d, %v; want MAX_RW_COUNT", n, err)
	}
	if n, err := p.Read(fd, 100, nil); n != 0 || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	if pos, err := p.Lseek(fd, 1234, uapi.SEEK_END); pos != 0 || err != nil {
		t.Fatalf("lseek: %d, %v; null_lseek always gives 0", pos, err)
	}
	if f := mustFD(t, p, fd); f.Pos != 0 {
		t.Fatalf("pos %d", f.Pos)
	}
	m.check()
}

func TestFDTable(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	a, _ := p.Open("/dev/null", uapi.O_RDONLY)
	b, _ := p.MemfdCreate("b", uapi.MFD_CLOEXEC)
	if a != 0 || b != 1 {
		t.Fatalf("fds %d %d", a, b)
	}
	if ce, _ := p.CloseOnExec(b); !ce {
		t.Fatal("MFD_CLOEXEC did not set close-on-exec")
	}
	must(t, p.Close(a))
	c, _ := p.Dup(b)
	if c != 0 {
		t.Fatalf("dup took %d, not the lowest free fd", c)
	}
	if ce, _ := p.CloseOnExec(c); ce {
		t.Fatal("dup copied close-on-exec")
	}
	d, err := p.Fcntl(b, uapi.F_DUPFD, 10)
	if d != 10 || err != nil {
		t.Fatalf("F_DUPFD 10: %d, %v", d, err)
	}
	e, _ := p.Fcntl(b, fDupfdCloexec, 0)
	if ce, _ := p.CloseOnExec(int(e)); e != 2 || !ce {
		t.Fatalf("F_DUPFD_CLOEXEC: %d", e)
	}
	_, err = p.Ioctl(c, fioclex, nil)
	must(t, err)
	if fd, _ := p.Fcntl(c, uapi.F_GETFD, 0); fd != uapi.FD_CLOEXEC {
		t.Fatalf("F_GETFD after FIOCLEX: %d", fd)
	}
	_, err = p.Fcntl(c, uapi.F_SETFD, 0)
	must(t, err)
	if fd, _ := p.Fcntl(c, uapi.F_GETFD, 0); fd != 0 {
		t.Fatalf("F_GETFD after F_SETFD 0: %d", fd)
	}
	if f := mustFD(t, p, b); f.Refs() != 4 {
		t.Fatalf("file refs %d, want one per fd", f.Refs())
	}
	m.check()
}

func TestMemfdCreate(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("guest-ram\x00ignored", 0)
	must(t, err)
	f := mustFD(t, p, fd)
	if f.Name != "memfd:guest-ram" || !IsMemfd(f) || f.Flags != uapi.O_RDWR|uapi.O_LARGEFILE || f.Inode.UID != 1000 {
		t.Fatalf("memfd %v flags %#x uid %d", f, f.Flags, f.Inode.UID)
	}
	if s, _ := p.Fcntl(fd, uapi.F_GET_SEALS, 0); s != uapi.F_SEAL_SEAL {
		t.Fatalf("seals %#x without MFD_ALLOW_SEALING", s)
	}
	fd, err = p.MemfdCreate("noexec", uapi.MFD_NOEXEC_SEAL)
	must(t, err)
	f = mustFD(t, p, fd)
	if s, _ := p.Fcntl(fd, uapi.F_GET_SEALS, 0); s != uapi.F_SEAL_EXEC || f.Inode.Mode&0o111 != 0 {
		t.Fatalf("MFD_NOEXEC_SEAL: seals %#x mode %o", s, f.Inode.Mode)
	}
	tmp, err := p.Open("/tmp/t", uapi.O_CREAT|uapi.O_RDWR)
	must(t, err)
	if IsMemfd(mustFD(t, p, tmp)) || !IsShmemFile(mustFD(t, p, tmp)) {
		t.Fatal("a tmpfs file is not a memfd but is shmem")
	}
	if s, _ := p.Fcntl(tmp, uapi.F_GET_SEALS, 0); s != uapi.F_SEAL_SEAL {
		t.Fatalf("tmpfs seals %#x", s)
	}
}

func TestSealGrowShortWrite(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("grow", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	must(t, p.Ftruncate(fd, 8192))
	_, err = p.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
	must(t, err)
	// shmem_write_begin refuses the chunk that would grow the file: the
	// write stops there, short.
	if n, err := p.Pwrite(fd, 4096, 8192, nil); n != 4096 || err != nil {
		t.Fatalf("pwrite across EOF: %d, %v; want the 4096 bytes before it", n, err)
	}
	if n, err := p.Pwrite(fd, 8192, 1, nil); n != 0 || err != errno.EPERM {
		t.Fatalf("pwrite at EOF: %d, %v", n, err)
	}
}

func TestSealFutureWriteKeepsMappings(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("fw", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	must(t, p.Ftruncate(fd, 8192))
	v, err := p.Mmap(fd, 0, 8192, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_FUTURE_WRITE)
	must(t, err)
	if _, err := p.Store(v, 0, 100, pattern(1)); err != nil {
		t.Fatalf("an existing mapping stopped writing after F_SEAL_FUTURE_WRITE: %v", err)
	}
	if _, err := p.Pwrite(fd, 0, 1, nil); err != errno.EPERM {
		t.Fatalf("write after F_SEAL_FUTURE_WRITE: %v", err)
	}
	must(t, p.Munmap(v))
	// With the writable mapping gone F_SEAL_WRITE succeeds.
	_, err = p.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_WRITE)
	must(t, err)
	m.check()
}

func TestTmpfs(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.Open("/tmp/a", uapi.O_CREAT|uapi.O_RDWR)
	must(t, err)
	_, err = p.Pwrite(fd, 0, 3*4096, pattern(1))
	must(t, err)
	must(t, p.Close(fd))
	fd, err = p.Open("/tmp/a", uapi.O_RDWR)
	must(t, err)
	if f := mustFD(t, p, fd); f.Inode.Size != 3*4096 || f.Inode.Mode != sIFREG|0o644 || f.Ops.Kind() != "tmpfs" {
		t.Fatalf("reopened %v mode %o", f, f.Inode.Mode)
	}
	used := m.k.tmp.usedBlocks
	fd2, err := p.Open("/tmp/a", uapi.O_RDWR|uapi.O_TRUNC)
	must(t, err)
	if f := mustFD(t, p, fd2); f.Inode.Size != 0 || m.k.tmp.usedBlocks != used-3 {
		t.Fatalf("O_TRUNC: size %d used %d", f.Inode.Size, m.k.tmp.usedBlocks)
	}
	_, err = p.Pwrite(fd, 0, 4096, pattern(2))
	must(t, err)
	// Unlinked but open: the data lives until the last close.
	must(t, p.Unlink("/tmp/a"))
	if _, err := p.Open("/tmp/a", uapi.O_RDWR); err != errno.ENOENT {
		t.Fatalf("open after unlink: %v", err)
	}
	if got := readAll(t, p, fd, 0, 4096); len(got) != 4096 {
		t.Fatal("unlinked file lost its data")
	}
	inodes := len(m.k.Inodes())
	must(t, p.Close(fd))
	must(t, p.Close(fd2))
	if len(m.k.Inodes()) != inodes-1 || m.k.tmp.usedBlocks != 0 {
		t.Fatalf("the last close did not evict: %d inodes, %d blocks", len(m.k.Inodes()), m.k.tmp.usedBlocks)
	}
	m.check()
}

func TestExitClosesAndUnmaps(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	must(t, p.Ftruncate(fd, 1<<20))
	v, err := p.Mmap(fd, 0, 1<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Store(v, 0, 1<<20, pattern(1))
	must(t, err)
	free := m.k.MM.Zone.NrFreePages()
	p.Exit()
	if len(m.k.Files()) != 0 || len(m.k.Inodes()) != 0 {
		t.Fatalf("after exit: %d files, %d inodes", len(m.k.Files()), len(m.k.Inodes()))
	}
	if got := m.k.MM.Zone.NrFreePages(); got != free+256 {
		t.Fatalf("free pages %d after exit, want %d", got, free+256)
	}
	m.check()
}

func TestLargeFolioPolicy(t *testing.T) {
	for _, c := range []struct {
		cmdline string
		off, n  int64
		size    int64 // ftruncate first (0: none)
		order   uint
	}{
		{"", 0, 2 << 20, 0, 0},
		{"transparent_hugepage_shmem=always", 0, 2 << 20, 0, physmem.HPageOrder},
		{"transparent_hugepage_shmem=always", 0, 4096, 0, 0},       // the write does not cover 2 MiB
		{"transparent_hugepage_shmem=always", 4096, 2 << 20, 0, 0}, // not aligned
		{"transparent_hugepage_shmem=within_size", 0, 2 << 20, 0, physmem.HPageOrder},
		{"transparent_hugepage_shmem=deny", 0, 2 << 20, 0, 0},
		{"transparent_hugepage_shmem=force", 0, 4096, 0, physmem.HPageOrder},
	} {
		m := bootMachine(t, machineOpts{cmdline: c.cmdline})
		p := m.task("p", 1000)
		fd, err := p.MemfdCreate("x", 0)
		must(t, err)
		_, err = p.Pwrite(fd, c.off, c.n, pattern(1))
		must(t, err)
		pfn, _, _, ok := m.k.FolioAt(mustFD(t, p, fd), uint64(c.off)>>physmem.PageShift)
		if !ok {
			t.Fatalf("%q: no folio", c.cmdline)
		}
		if got := m.k.MM.FolioOrder(m.k.MM.PageFolio(pfn)); got != c.order {
			t.Errorf("%q pwrite(%d, %d): order %d, want %d", c.cmdline, c.off, c.n, got, c.order)
		}
		m.check()
	}
}

func TestLargeFolioFallback(t *testing.T) {
	m := bootMachine(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	must(t, m.faults.Arm("page_alloc", 1, 1)) // the 2 MiB allocation fails
	if n, err := p.Pwrite(fd, 0, 2<<20, pattern(1)); n != 2<<20 || err != nil {
		t.Fatalf("pwrite: %d, %v", n, err)
	}
	pfn, _, _, _ := m.k.FolioAt(mustFD(t, p, fd), 0)
	if m.k.MM.FolioOrder(physmem.Folio(pfn)) != 0 || m.k.VMStat()["thp_file_fallback"] != 1 {
		t.Fatalf("no fallback to order 0: %v", m.k.VMStat())
	}
	m.check()
}
