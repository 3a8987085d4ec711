package kernel

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// Offsets at the end of the largest file (MAX_LFS_FILESIZE, tmpfs's
// s_maxbytes): its last byte, its last page and its last 2 MiB extent.
// The end of that page and of that extent is 2^63, which no int64 holds
// (issue 16 #2).
const (
	maxLFS       = int64(maxLFSFileSize)     // 0x7fffffffffffffff
	lastByte     = maxLFS - 1                // 0x7ffffffffffffffe
	lastPage     = maxLFS &^ (modelPage - 1) // 0x7ffffffffffff000
	lastHuge     = maxLFS &^ (2<<20 - 1)     // 0x7fffffffffe00000
	lastMmapPage = lastPage - modelPage      // the last page file_mmap_ok lets a mapping reach
	hugeSize     = int64(physmem.PageSize) << physmem.HPageOrder
)

// lfsFile is a memfd of one task on a machine booted with cmdline.
type lfsFile struct {
	*machine
	p  *Task
	fd int
}

func newLFSFile(t *testing.T, cmdline string, size int64) *lfsFile {
	t.Helper()
	m := bootMachine(t, machineOpts{swap: 16 << 20, cmdline: cmdline})
	x := &lfsFile{machine: m, p: m.task("p", 1000)}
	var err error
	x.fd, err = x.p.MemfdCreate("big", uapi.MFD_ALLOW_SEALING)
	require.NoError(t, err)
	require.NoError(t, x.p.Ftruncate(x.fd, size))
	return x
}

// pread reads n bytes at off, requiring the sink to see consecutive
// offsets, and returns what it got and the error.
func (x *lfsFile) pread(t *testing.T, off, n int64) ([]byte, error) {
	t.Helper()
	var out []byte
	got, err := x.p.Pread(x.fd, off, n, func(b []byte, o int64) error {
		require.Equal(t, off+int64(len(out)), o, "sink offset")
		out = append(out, b...)
		return nil
	})
	require.Equal(t, got, int64(len(out)), "pread returned %d but handed %d bytes", got, len(out))
	return out, err
}

// want is what the file holds at [off, off+n): seed's pattern where
// written is true, zeros elsewhere.
func want(off, n int64, seed byte, written func(o int64) bool) []byte {
	b := make([]byte, n)
	for i := range b {
		if o := off + int64(i); written(o) {
			b[i] = patternByte(seed, o)
		}
	}
	return b
}

// requireBytes compares without dumping megabytes: the first difference.
func requireBytes(t *testing.T, want, got []byte, format string, args ...any) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at byte %d", fmt.Sprintf(format, args...), len(got), len(want), i)
}

func (x *lfsFile) size() int64 { return mustFD(x.tb, x.p, x.fd).Inode.Size }

func TestMaxLFSPread(t *testing.T) {
	x := newLFSFile(t, "", maxLFS)
	for _, c := range []struct {
		off, n, want int64
		err          errno.Errno
	}{
		{maxLFS - 16, 5, 5, 0}, // issue 16 #2: returned 262144
		{maxLFS - 16, 16, 16, 0},
		{maxLFS - 16, 17, 0, errno.EINVAL}, // rw_verify_area: pos + count overflows
		{lastByte, 1, 1, 0},
		{maxLFS, 0, 0, 0},
		{maxLFS, 1, 0, errno.EINVAL},
		{lastPage, 4095, 4095, 0},
		{lastPage, 4096, 0, errno.EINVAL},
		{lastHuge, hugeSize - 1, hugeSize - 1, 0},
		{lastHuge - hugeSize, 2*hugeSize - 1, 2*hugeSize - 1, 0},
		{lastHuge - hugeSize, 2 * hugeSize, 0, errno.EINVAL},
		{math.MinInt64, 1, 0, errno.EINVAL},
	} {
		got, err := x.pread(t, c.off, c.n)
		require.Equal(t, c.err, errno.Of(err), "pread(%#x, %d): %v", c.off, c.n, err)
		require.Equal(t, c.want, int64(len(got)), "pread(%#x, %d)", c.off, c.n)
		requireBytes(t, make([]byte, c.want), got, "pread(%#x, %d) of a sparse file", c.off, c.n)
	}

	// The last page cached: pread(last page, 4095) returned 4096.
	n, err := x.p.Pwrite(x.fd, lastPage, 4095, pattern(3))
	require.NoError(t, err)
	require.Equal(t, int64(4095), n)
	inLast := func(o int64) bool { return o >= lastPage }
	got, err := x.pread(t, lastPage, 4095)
	require.NoError(t, err)
	requireBytes(t, want(lastPage, 4095, 3, inLast), got, "content")
	got, err = x.pread(t, lastPage-100, 200)
	require.NoError(t, err)
	requireBytes(t, want(lastPage-100, 200, 3, inLast), got, "content")
	got, err = x.pread(t, lastByte, 1)
	require.NoError(t, err)
	requireBytes(t, want(lastByte, 1, 3, inLast), got, "content")

	// read(2) at f_pos up to the end.
	pos, err := x.p.Lseek(x.fd, maxLFS-10, uapi.SEEK_SET)
	require.NoError(t, err)
	require.Equal(t, maxLFS-10, pos)
	n, err = x.p.Read(x.fd, 10, nil)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	require.Equal(t, maxLFS, mustFD(t, x.p, x.fd).Pos)
	n, err = x.p.Read(x.fd, 0, nil)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = x.p.Read(x.fd, 1, nil)
	require.Equal(t, errno.EINVAL, errno.Of(err))
	x.check()
}

func TestMaxLFSWrite(t *testing.T) {
	x := newLFSFile(t, "", 0)
	for _, c := range []struct {
		off, n, want int64
		err          errno.Errno
	}{
		{lastByte, 1, 1, 0},
		{lastByte, 2, 0, errno.EINVAL}, // pos + count overflows: rw_verify_area
		{maxLFS, 0, 0, 0},
		{maxLFS, 1, 0, errno.EINVAL},
		{lastPage, 4095, 4095, 0},
		{lastHuge, hugeSize - 1, hugeSize - 1, 0},
	} {
		n, err := x.p.Pwrite(x.fd, c.off, c.n, pattern(4))
		require.Equal(t, c.err, errno.Of(err), "pwrite(%#x, %d): %v", c.off, c.n, err)
		require.Equal(t, c.want, n, "pwrite(%#x, %d)", c.off, c.n)
	}
	require.Equal(t, maxLFS, x.size())
	got, err := x.pread(t, lastHuge, hugeSize-1)
	require.NoError(t, err)
	requireBytes(t, want(lastHuge, hugeSize-1, 4, func(int64) bool { return true }), got, "content")

	// generic_write_checks with O_APPEND: the write goes to i_size, is
	// cut at s_maxbytes, and is EFBIG at it.
	require.NoError(t, x.p.Ftruncate(x.fd, maxLFS-10))
	_, err = x.p.Fcntl(x.fd, uapi.F_SETFL, uapi.O_APPEND)
	require.NoError(t, err)
	n, err := x.p.Pwrite(x.fd, 0, 100, pattern(5))
	require.NoError(t, err)
	require.Equal(t, int64(10), n, "short write up to MAX_LFS_FILESIZE")
	require.Equal(t, maxLFS, x.size())
	_, err = x.p.Pwrite(x.fd, 0, 1, pattern(5))
	require.Equal(t, errno.EFBIG, errno.Of(err))
	_, err = x.p.Write(x.fd, 1, pattern(5))
	require.Equal(t, errno.EFBIG, errno.Of(err))
	n, err = x.p.Write(x.fd, 0, pattern(5))
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = x.p.Fcntl(x.fd, uapi.F_SETFL, 0)
	require.NoError(t, err)

	// write(2) at f_pos.
	_, err = x.p.Lseek(x.fd, maxLFS-5, uapi.SEEK_SET)
	require.NoError(t, err)
	n, err = x.p.Write(x.fd, 5, pattern(6))
	require.NoError(t, err)
	require.Equal(t, int64(5), n)
	require.Equal(t, maxLFS, mustFD(t, x.p, x.fd).Pos)
	_, err = x.p.Write(x.fd, 1, pattern(6))
	require.Equal(t, errno.EINVAL, errno.Of(err))
	got, err = x.pread(t, maxLFS-20, 20)
	require.NoError(t, err)
	exp := want(maxLFS-20, 10, 4, func(int64) bool { return true })
	exp = append(exp, want(maxLFS-10, 5, 5, func(int64) bool { return true })...)
	exp = append(exp, want(maxLFS-5, 5, 6, func(int64) bool { return true })...)
	requireBytes(t, exp, got, "the last 20 bytes")
	x.check()
}

func TestMaxLFSLseek(t *testing.T) {
	x := newLFSFile(t, "", maxLFS)
	seek := func(off int64, whence int) (int64, errno.Errno) {
		pos, err := x.p.Lseek(x.fd, off, whence)
		return pos, errno.Of(err)
	}
	type c struct {
		off    int64
		whence int
		want   int64
		err    errno.Errno
	}
	run := func(what string, cases []c) {
		t.Helper()
		for _, c := range cases {
			pos, err := seek(c.off, c.whence)
			require.Equal(t, c.err, err, "%s: lseek(%#x, %d)", what, c.off, c.whence)
			require.Equal(t, c.want, pos, "%s: lseek(%#x, %d)", what, c.off, c.whence)
		}
	}
	run("sparse", []c{
		{maxLFS, uapi.SEEK_SET, maxLFS, 0},
		{-1, uapi.SEEK_SET, 0, errno.EINVAL},
		{0, uapi.SEEK_END, maxLFS, 0},
		{1, uapi.SEEK_END, 0, errno.EINVAL}, // wraps: vfs_setpos refuses a negative offset
		{-maxLFS, uapi.SEEK_END, 0, 0},
		{math.MinInt64, uapi.SEEK_END, 0, errno.EINVAL},
		{maxLFS, uapi.SEEK_CUR, maxLFS, 0}, // from 0
		{0, uapi.SEEK_CUR, maxLFS, 0},
		{1, uapi.SEEK_CUR, 0, errno.EINVAL},
		{-maxLFS, uapi.SEEK_CUR, 0, 0},
		{lastPage, uapi.SEEK_HOLE, lastPage, 0},
		{lastByte, uapi.SEEK_HOLE, lastByte, 0},
		{maxLFS, uapi.SEEK_HOLE, 0, errno.ENXIO},
		{lastPage, uapi.SEEK_DATA, 0, errno.ENXIO},
		{-1, uapi.SEEK_DATA, 0, errno.ENXIO},
	})
	_, err := x.p.Pwrite(x.fd, lastByte, 1, pattern(1))
	require.NoError(t, err)
	run("last page cached", []c{
		{lastPage, uapi.SEEK_HOLE, maxLFS, 0}, // issue 16 #2: EINVAL
		{lastByte, uapi.SEEK_HOLE, maxLFS, 0},
		{lastPage - 1, uapi.SEEK_HOLE, lastPage - 1, 0},
		{0, uapi.SEEK_DATA, lastPage, 0},
		{lastPage + 7, uapi.SEEK_DATA, lastPage + 7, 0},
		{lastByte, uapi.SEEK_DATA, lastByte, 0},
		{maxLFS, uapi.SEEK_DATA, 0, errno.ENXIO},
	})
	// On swap, the last page is still data.
	x.swapOut(t, lastPage)
	run("last page on swap", []c{
		{lastPage, uapi.SEEK_HOLE, maxLFS, 0},
		{0, uapi.SEEK_DATA, lastPage, 0},
	})
	x.check()
}

// swapOut puts the page at off on swap as reclaim would (shrink_folio_list
// on the isolated folio): file_mmap_ok keeps every mapping off the last
// page, so MADV_PAGEOUT cannot reach it.
func (x *lfsFile) swapOut(t *testing.T, off int64) {
	t.Helper()
	info := ShmemInode(mustFD(t, x.p, x.fd))
	e, ok := info.mapping.Lookup(uint64(off) >> physmem.PageShift)
	require.True(t, ok)
	f := physmem.Folio(e.Entry.PFN())
	x.k.MM.FolioGet(f)
	x.k.shrinkFolio(f) // what reclaim does with a folio off the LRU
	x.k.MM.FolioPut(f)
	e, _ = info.mapping.Lookup(uint64(off) >> physmem.PageShift)
	require.True(t, e.Entry.IsValue(), "the page went to swap")
}

func TestMaxLFSFtruncate(t *testing.T) {
	x := newLFSFile(t, "", 0)
	_, err := x.p.Pwrite(x.fd, lastPage, 4095, pattern(2))
	require.NoError(t, err)
	all := func(o int64) bool { return o >= lastPage }
	// Truncating to the same size keeps the last byte.
	require.NoError(t, x.p.Ftruncate(x.fd, maxLFS))
	got, err := x.pread(t, lastPage, 4095)
	require.NoError(t, err)
	requireBytes(t, want(lastPage, 4095, 2, all), got, "content")
	// Shrinking by a byte zeroes it; growing back reads it as zero.
	require.NoError(t, x.p.Ftruncate(x.fd, lastByte))
	require.NoError(t, x.p.Ftruncate(x.fd, maxLFS))
	got, err = x.pread(t, lastPage, 4095)
	require.NoError(t, err)
	requireBytes(t, want(lastPage, 4095, 2, func(o int64) bool { return all(o) && o < lastByte }), got, "content")
	// A mapping of the last mappable page: a size inside the page keeps
	// it mapped, one at its start unmaps it.
	_, err = x.p.Pwrite(x.fd, lastMmapPage, 4096, pattern(3))
	require.NoError(t, err)
	v, err := x.p.Mmap(x.fd, lastMmapPage, 4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	require.NoError(t, err)
	_, err = x.p.Load(v, 0, 1, nil)
	require.NoError(t, err)
	idx := uint64(lastMmapPage) >> physmem.PageShift
	mapcount := func() int { _, _, mc, _ := x.k.FolioAt(mustFD(t, x.p, x.fd), idx); return mc }
	require.Equal(t, 1, mapcount())
	require.NoError(t, x.p.Ftruncate(x.fd, lastMmapPage+1))
	require.Equal(t, 1, mapcount())
	require.NoError(t, x.p.Ftruncate(x.fd, lastMmapPage))
	require.Equal(t, 0, mapcount())
	require.NoError(t, x.p.Munmap(v))
	require.Zero(t, x.k.FrameCounts().Used-x.baseUsed(t), "truncation freed every page")
	x.check()
}

// baseUsed is the frames a fresh kernel of the same machine uses.
func (x *lfsFile) baseUsed(t *testing.T) uint64 {
	m := bootMachine(t, machineOpts{swap: 16 << 20})
	return m.k.FrameCounts().Used
}

func TestMaxLFSFallocate(t *testing.T) {
	x := newLFSFile(t, "", 0)
	const (
		punch     = uapi.FALLOC_FL_PUNCH_HOLE | uapi.FALLOC_FL_KEEP_SIZE
		keep      = uapi.FALLOC_FL_KEEP_SIZE
		zeroRange = fallocFlZeroRange
	)
	for _, c := range []struct {
		mode      int
		off, n    int64
		err       errno.Errno
		wantSize  int64
		wantAlloc int64
	}{
		{0, maxLFS, 1, errno.EFBIG, 0, 0},
		{0, lastPage, 4097, errno.EFBIG, 0, 0},
		{0, 1, maxLFS, errno.EFBIG, 0, 0},
		{keep, lastPage, 4096, errno.EFBIG, 0, 0},
		{zeroRange, maxLFS, 1, errno.EFBIG, 0, 0}, // vfs_fallocate's EFBIG before shmem's EOPNOTSUPP
		{zeroRange, lastByte, 1, errno.EOPNOTSUPP, 0, 0},
		{fallocFlCollapseRange, lastByte, 1, errno.EOPNOTSUPP, 0, 0},
		{fallocFlInsertRange, lastByte, 1, errno.EOPNOTSUPP, 0, 0},
		{fallocFlUnshareRange, lastByte, 1, errno.EOPNOTSUPP, 0, 0},
		{uapi.FALLOC_FL_PUNCH_HOLE, lastByte, 1, errno.EOPNOTSUPP, 0, 0},
		{keep, lastPage, 4095, 0, 0, 1},
		{0, lastByte, 1, 0, maxLFS, 1},
		{0, lastHuge, hugeSize - 1, 0, maxLFS, 512},
		{punch, lastHuge, hugeSize - 1, 0, maxLFS, 1}, // the last page is only partly covered: it stays
		{punch, lastPage, 4095, 0, maxLFS, 1},
		{punch, lastByte, 1, 0, maxLFS, 1},
		{punch, maxLFS, 1, errno.EFBIG, maxLFS, 1},
		{punch, math.MinInt64, 1, errno.EINVAL, maxLFS, 1},
	} {
		err := x.p.Fallocate(x.fd, c.mode, c.off, c.n)
		require.Equal(t, c.err, errno.Of(err), "fallocate(%#x, %#x, %d): %v", c.mode, c.off, c.n, err)
		require.Equal(t, c.wantSize, x.size(), "fallocate(%#x, %#x, %d)", c.mode, c.off, c.n)
		require.Equal(t, c.wantAlloc, ShmemInode(mustFD(t, x.p, x.fd)).Alloced(), "fallocate(%#x, %#x, %d)", c.mode, c.off, c.n)
		x.check()
	}
	got, err := x.pread(t, lastHuge, hugeSize-1)
	require.NoError(t, err)
	requireBytes(t, make([]byte, hugeSize-1), got, "content")
	// Fallocated pages are holes, but the second fallocate of the last
	// page made it uptodate, and a punch only zeroes part of it.
	pos, err := x.p.Lseek(x.fd, lastHuge, uapi.SEEK_DATA)
	require.NoError(t, err)
	require.Equal(t, lastPage, pos)
	// Data in the last page, then a hole punched over its last byte.
	_, err = x.p.Pwrite(x.fd, lastPage, 4095, pattern(8))
	require.NoError(t, err)
	require.NoError(t, x.p.Fallocate(x.fd, punch, lastByte, 1))
	got, err = x.pread(t, lastPage, 4095)
	require.NoError(t, err)
	requireBytes(t, want(lastPage, 4095, 8, func(o int64) bool { return o < lastByte }), got, "content")
	x.check()
}

func TestMaxLFSMmap(t *testing.T) {
	x := newLFSFile(t, "", maxLFS)
	for _, c := range []struct {
		off, n int64
		err    errno.Errno
	}{
		{lastPage, 4096, errno.EOVERFLOW},
		{lastMmapPage, 8192, errno.EOVERFLOW},
		{lastMmapPage, 4097, errno.EOVERFLOW},
		{math.MinInt64, 4096, errno.EOVERFLOW}, // pgoff 2^51: beyond the largest file
		{-4096, 4096, errno.EOVERFLOW},
	} {
		_, err := x.p.Mmap(x.fd, c.off, c.n, uapi.PROT_READ, uapi.MAP_SHARED)
		require.Equal(t, c.err, errno.Of(err), "mmap(%#x, %d): %v", c.off, c.n, err)
	}
	v, err := x.p.Mmap(x.fd, lastMmapPage, 4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	require.NoError(t, err)
	n, err := x.p.Store(v, 0, 4096, pattern(9))
	require.NoError(t, err)
	require.Equal(t, int64(4096), n)
	_, err = x.p.Store(v, 4095, 2, pattern(9))
	require.Equal(t, errno.EFAULT, errno.Of(err), "beyond the mapping")
	_, err = x.p.Store(v, maxLFS, 1, pattern(9))
	require.Equal(t, errno.EFAULT, errno.Of(err))
	_, err = x.p.Load(v, math.MinInt64, 1, nil)
	require.Equal(t, errno.EFAULT, errno.Of(err))
	var loaded []byte
	_, err = x.p.Load(v, 0, 4096, func(b []byte, o int64) error {
		require.Equal(t, lastMmapPage+int64(len(loaded)), o, "file offset of the load")
		loaded = append(loaded, b...)
		return nil
	})
	require.NoError(t, err)
	inPage := func(o int64) bool { return o >= lastMmapPage && o < lastPage }
	requireBytes(t, want(lastMmapPage, 4096, 9, inPage), loaded, "content")
	got, err := x.pread(t, lastMmapPage, 4096)
	require.NoError(t, err)
	requireBytes(t, want(lastMmapPage, 4096, 9, inPage), got, "content")

	// madvise: MADV_PAGEOUT swaps it out, a load swaps it back,
	// MADV_REMOVE punches it.
	require.NoError(t, x.p.Madvise(v, 0, 4096, uapi.MADV_PAGEOUT))
	require.Equal(t, int64(1), ShmemInode(mustFD(t, x.p, x.fd)).Swapped())
	pos, err := x.p.Lseek(x.fd, 0, uapi.SEEK_DATA)
	require.NoError(t, err)
	require.Equal(t, lastMmapPage, pos)
	loaded = loaded[:0]
	_, err = x.p.Load(v, 0, 4096, func(b []byte, o int64) error { loaded = append(loaded, b...); return nil })
	require.NoError(t, err)
	requireBytes(t, want(lastMmapPage, 4096, 9, inPage), loaded, "content")
	require.Equal(t, errno.EINVAL, errno.Of(x.p.Madvise(v, 0, -1, uapi.MADV_DONTNEED)))
	require.Equal(t, errno.ENOMEM, errno.Of(x.p.Madvise(v, 0, math.MaxInt64, uapi.MADV_DONTNEED)), "2^63 bytes: beyond the mapping")
	require.NoError(t, x.p.Madvise(v, 0, 4096, madvRemove))
	require.Zero(t, ShmemInode(mustFD(t, x.p, x.fd)).Alloced())
	got, err = x.pread(t, lastMmapPage, 4096)
	require.NoError(t, err)
	requireBytes(t, make([]byte, 4096), got, "content")
	require.NoError(t, x.p.Munmap(v))
	x.check()
}

// TestMaxLFSHugeFolios checks the last 2 MiB extents with PMD-sized
// folios: with shmem_huge=always a write can fill the extent before the
// last one (one that reaches the very end is shorter than 2 MiB, so
// shmem_mapping_size_orders allows no PMD folio, and file_mmap_ok keeps
// mappings off it); with force the last extent gets one too, whose end
// is 2^63.
func TestMaxLFSHugeFolios(t *testing.T) {
	for _, c := range []struct {
		huge string
		off  int64
	}{
		{"always", lastHuge - hugeSize},
		{"force", lastHuge},
	} {
		t.Run(c.huge, func(t *testing.T) {
			x := newLFSFile(t, "transparent_hugepage_shmem="+c.huge, 0)
			n := min(hugeSize, maxLFS-c.off)
			_, err := x.p.Pwrite(x.fd, c.off, n, pattern(11))
			require.NoError(t, err)
			info := ShmemInode(mustFD(t, x.p, x.fd))
			e, ok := info.mapping.Lookup(uint64(c.off) >> physmem.PageShift)
			require.True(t, ok)
			require.Equal(t, uint8(physmem.HPageOrder), e.Order, "a PMD-sized folio")
			if c.huge == "always" { // a size beyond the folio
				require.NoError(t, x.p.Ftruncate(x.fd, maxLFS))
			}
			written := func(o int64) bool { return o >= c.off && o < c.off+n }
			check := func(what string, written func(int64) bool) {
				t.Helper()
				for _, r := range [][2]int64{{c.off, n}, {lastHuge, hugeSize - 1}, {lastByte, 1}, {lastPage, 4095}, {c.off - 10, 20}} {
					got, err := x.pread(t, r[0], r[1])
					require.NoError(t, err, what)
					requireBytes(t, want(r[0], r[1], 11, written), got, "%s: pread(%#x, %d)", what, r[0], r[1])
				}
				x.check()
			}
			check("written", written)
			pos, err := x.p.Lseek(x.fd, c.off, uapi.SEEK_HOLE)
			require.NoError(t, err)
			require.Equal(t, c.off+n, pos)
			pos, err = x.p.Lseek(x.fd, c.off+n-1, uapi.SEEK_DATA)
			require.NoError(t, err)
			require.Equal(t, c.off+n-1, pos)

			// A hole in the folio's last page splits it.
			split := x.k.VMStat()["thp_split_page"]
			end := c.off + hugeSize - 1 // the folio's last byte (maxLFS for the last folio: never in the file)
			require.NoError(t, x.p.Fallocate(x.fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, end-100, min(101, maxLFS-(end-100))))
			require.Equal(t, split+1, x.k.VMStat()["thp_split_page"])
			written = func(o int64) bool { return o >= c.off && o < c.off+n && o < end-100 }
			check("punched", written)
			// Truncating into the folio's first page drops the rest.
			require.NoError(t, x.p.Ftruncate(x.fd, c.off+1))
			require.Equal(t, int64(1), info.Alloced())
			require.NoError(t, x.p.Ftruncate(x.fd, maxLFS))
			check("truncated", func(o int64) bool { return o == c.off })
		})
	}
}
