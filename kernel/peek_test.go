package kernel

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/pagecache"
	"khosim/physmem"
	"khosim/uapi"
)

// sysState is everything a read could change: frames, swap, vmstat,
// fault plans, and per file its size, position, accounting, page cache
// and the reference counts of its folios.
type sysState struct {
	frames  FrameCounts
	swap    uint64
	slots   int
	vmstat  string
	armed   bool
	fired   int
	files   []fileState
	tmpDir  int
	nrFiles int
}

type fileState struct {
	size, pos        int64
	alloced, swapped int64
	counts           pagecache.Counts
	refs             []string
}

func snapshot(t *testing.T, m *machine, files ...*File) sysState {
	t.Helper()
	s := sysState{
		frames: m.k.FrameCounts(), swap: m.k.NrSwapPages(), vmstat: fmt.Sprint(m.k.VMStat()),
		armed: m.faults.Armed(fault.PageAlloc), fired: m.faults.Fired(fault.PageAlloc),
		tmpDir: len(m.k.tmpDir), nrFiles: len(m.k.files),
	}
	if m.swap != nil {
		s.slots = m.swap.StoredSlots()
	}
	for _, f := range files {
		fs := fileState{pos: f.Pos}
		if info := ShmemInode(f); info != nil {
			fs.size, fs.alloced, fs.swapped = info.inode.Size, info.alloced, info.swapped
			fs.counts = info.mapping.Counts()
			for e := range info.mapping.Range(0, ^uint64(0)) {
				if !e.Entry.IsValue() {
					p := m.k.MM.Page(e.Entry.PFN())
					fs.refs = append(fs.refs, fmt.Sprintf("%#x:%d/%d/%v", e.Index, p.RefCount(), m.k.FolioMapcount(physmem.Folio(e.Entry.PFN())), p.Flags()))
				} else {
					fs.refs = append(fs.refs, fmt.Sprintf("%#x:%v", e.Index, e.Entry))
				}
			}
		}
		s.files = append(s.files, fs)
	}
	return s
}

// peekAll returns what PeekFile hands over for [off, off+n), checking
// that the offsets follow each other.
func peekAll(t *testing.T, k *Kernel, f *File, off, n int64) []byte {
	t.Helper()
	var out []byte
	got, err := k.PeekFile(f, off, n, func(b []byte, o int64) error {
		require.Equal(t, off+int64(len(out)), o, "sink offset")
		out = append(out, b...)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, got, int64(len(out)))
	return out
}

// peekFixture is a machine with swap and PMD-sized shmem folios, and one
// file of each shmem kind, each holding a PMD folio, a hole, fallocated
// pages, written small pages, pages out on swap, and a size beyond the
// last page.
type peekFixture struct {
	*machine
	p     *Task
	files []*File
	fds   []int
}

const peekSize = 5<<20 + 123

func newPeekFixture(t *testing.T) *peekFixture {
	t.Helper()
	m := bootMachine(t, machineOpts{swap: 32 << 20, cmdline: "transparent_hugepage_shmem=always transparent_hugepage_tmpfs=always"})
	x := &peekFixture{machine: m, p: m.task("p", 1000)}
	mfd, err := x.p.MemfdCreate("m", 0)
	require.NoError(t, err)
	tfd, err := x.p.Open("/tmp/f", uapi.O_CREAT|uapi.O_RDWR)
	require.NoError(t, err)
	sf, err := m.k.ShmemFileSetup("shmem", 0)
	require.NoError(t, err)
	sfd, err := x.p.InstallFD(sf, false)
	require.NoError(t, err)
	for i, fd := range []int{mfd, tfd, sfd} {
		seed := byte(10 * (i + 1))
		_, err = x.p.Pwrite(fd, 0, 2<<20, pattern(seed)) // a PMD folio
		require.NoError(t, err)
		// [2 MiB, 3 MiB) stays a hole.
		require.NoError(t, x.p.Fallocate(fd, 0, 3<<20, 8192))
		_, err = x.p.Pwrite(fd, 3<<20+16384, 40960, pattern(seed+1))
		require.NoError(t, err)
		require.NoError(t, x.p.Ftruncate(fd, peekSize))
		// Swap out four of the small pages and a page of the PMD
		// folio (which splits it).
		v, err := x.p.Mmap(fd, 0, 4<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
		require.NoError(t, err)
		_, err = x.p.Load(v, 3<<20+16384, 4*4096, nil)
		require.NoError(t, err)
		_, err = x.p.Load(v, 1<<20, 1, nil)
		require.NoError(t, err)
		require.NoError(t, x.p.Madvise(v, 3<<20+16384, 4*4096, uapi.MADV_PAGEOUT))
		require.NoError(t, x.p.Madvise(v, 1<<20, 4096, uapi.MADV_PAGEOUT)) // splits the PMD folio
		_, err = x.p.Load(v, 1<<20, 1, nil)
		require.NoError(t, err)
		require.NoError(t, x.p.Madvise(v, 1<<20, 4096, uapi.MADV_PAGEOUT))
		require.NoError(t, x.p.Munmap(v))
		f := mustFD(t, x.p, fd)
		require.Equal(t, int64(5), ShmemInode(f).Swapped(), "fixture: pages on swap")
		_, err = x.p.Lseek(fd, 777, uapi.SEEK_SET)
		require.NoError(t, err)
		x.fds = append(x.fds, fd)
		x.files = append(x.files, f)
	}
	require.NotZero(t, m.k.VMStat()["thp_split_page"])
	return x
}

// TestPeekFile checks that PeekFile returns what pread(2) would, for every
// shmem file kind and every kind of page, and changes nothing: frames,
// swap, vmstat, an armed fault, the page cache, folio references and
// flags, and f_pos are the same before and after (issue 16 #4).
func TestPeekFile(t *testing.T) {
	x := newPeekFixture(t)
	must(t, x.faults.Arm(fault.PageAlloc, 1, 1))
	ranges := [][2]int64{
		{0, peekSize + 4096},       // everything, and past the end
		{1<<20 - 100, 8292},        // across a swapped page of the former PMD folio
		{2<<20 - 7, 1<<20 + 30},    // into and through the hole
		{3 << 20, 8192},            // fallocated pages
		{3<<20 + 16384 + 5, 20000}, // swapped and resident small pages
		{peekSize - 1, 10},         // the last byte
		{peekSize, 10},             // at the end
		{peekSize + 100, 10},       // beyond
		{12345, 0},                 // nothing
	}
	before := snapshot(t, x.machine, x.files...)
	peeked := make([][][]byte, len(x.files))
	for i, f := range x.files {
		for _, r := range ranges {
			peeked[i] = append(peeked[i], peekAll(t, x.k, f, r[0], r[1]))
		}
	}
	require.Equal(t, before, snapshot(t, x.machine, x.files...), "PeekFile changed the system")
	x.check()
	require.True(t, x.faults.Armed(fault.PageAlloc), "the armed fault is still for the next system call")

	// The next system call that allocates gets the fault.
	_, err := x.p.Pwrite(x.fds[0], 6<<20, 4096, pattern(1))
	require.Equal(t, errno.ENOMEM, errno.Of(err))

	// pread(2) agrees (it swaps pages in, so it goes last).
	for i, fd := range x.fds {
		for j, r := range ranges {
			got := readAll(t, x.p, fd, r[0], r[1])
			if !bytes.Equal(got, peeked[i][j]) {
				t.Fatalf("file %d: PeekFile(%d, %d) gave %d bytes that differ from pread's %d", i, r[0], r[1], len(peeked[i][j]), len(got))
			}
		}
	}
	require.NotEqual(t, before.swap, x.k.NrSwapPages(), "pread swapped pages in: the check above compares something")
	x.check()
}

// TestPeekFileAllSwapped is issue 16 #4's case: a file with every page on
// swap. Hashing it with read(2) would swap 1024 pages in.
func TestPeekFileAllSwapped(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 8 << 20})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("m", 0)
	require.NoError(t, err)
	v, err := p.Mmap(fd, 0, 4<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	require.NoError(t, err)
	require.NoError(t, p.Ftruncate(fd, 4<<20))
	_, err = p.Store(v, 0, 4<<20, pattern(3))
	require.NoError(t, err)
	require.NoError(t, p.Madvise(v, 0, 4<<20, uapi.MADV_PAGEOUT))
	f := mustFD(t, p, fd)
	require.Equal(t, int64(1024), ShmemInode(f).Swapped())
	must(t, m.faults.Arm(fault.PageAlloc, 2, 1))
	before := snapshot(t, m, f)
	got := peekAll(t, m.k, f, 0, 4<<20)
	require.Equal(t, before, snapshot(t, m, f))
	want := make([]byte, 4<<20)
	pattern(3)(want, 0)
	require.True(t, bytes.Equal(want, got), "content")
	// The fault's count did not move: the first allocation passes, the
	// second fails.
	_, err = p.Load(v, 0, 4096, nil)
	require.NoError(t, err)
	_, err = p.Load(v, 4096, 4096, nil)
	require.Equal(t, errno.ENOMEM, errno.Of(err))
	require.NoError(t, p.Munmap(v))
	m.check()
}

// dataless is a driver file kind without read or write.
type dataless struct{}

func (dataless) Kind() string { return "dataless" }

func TestPeekFileKinds(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 0)
	require.NoError(t, m.k.RegisterDevice(&Device{Path: "/dev/ctl", Mode: 0o600,
		Open: func(*Task, int) (FileOps, any, error) { return dataless{}, nil, nil }}))
	lastFD := -1
	open := func(path string, flags int) *File {
		fd, err := p.Open(path, flags)
		require.NoError(t, err)
		lastFD = fd
		return mustFD(t, p, fd)
	}
	wo := open("/tmp/wo", uapi.O_CREAT|uapi.O_WRONLY)
	_, err := p.Pwrite(lastFD, 0, 10, pattern(4))
	require.NoError(t, err)
	for _, c := range []struct {
		f    *File
		off  int64
		n    int64
		want int64
		err  errno.Errno
	}{
		{open("/dev/null", uapi.O_RDWR), 0, 100, 0, 0},
		{open("/tmp", uapi.O_RDONLY), 0, 100, 0, errno.EISDIR},
		{open("/dev/ctl", uapi.O_RDWR), 0, 100, 0, errno.EINVAL},
		{wo, 0, 100, 10, 0}, // an observer may look at a write-only file
		{wo, -1, 1, 0, errno.EINVAL},
		{wo, 0, -1, 0, errno.EINVAL},
		{wo, 9, 1 << 62, 1, 0},
	} {
		before := snapshot(t, m, c.f)
		n, err := m.k.PeekFile(c.f, c.off, c.n, nil)
		require.Equal(t, c.err, errno.Of(err), "%s: %v", c.f.Ops.Kind(), err)
		require.Equal(t, c.want, n, c.f.Ops.Kind())
		require.Equal(t, before, snapshot(t, m, c.f))
	}
	// A sink's error stops the peek.
	stop := fmt.Errorf("enough")
	n, err := m.k.PeekFile(wo, 0, 10, func(b []byte, o int64) error { return stop })
	require.Equal(t, stop, err)
	require.Zero(t, n)
	m.check()
}
