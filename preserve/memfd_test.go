package preserve

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/uapi"
)

func buildWith(t *testing.T, kv ...string) kbuild.Build {
	b := kbuild.Default()
	for i := 0; i < len(kv); i += 2 {
		var err error
		b, err = b.With(kv[i], kv[i+1])
		require.NoError(t, err)
	}
	return b
}

func memfdOf(t *testing.T, w *world) Handler {
	h := w.l.Handler(MemfdHandlerName)
	require.NotNil(t, h)
	return h
}

// sealsOf returns the seals of fd.
func sealsOf(t *testing.T, w *world, fd int) uint32 {
	s, err := w.task.Fcntl(fd, uapi.F_GET_SEALS, 0)
	require.NoError(t, err)
	return uint32(s)
}

// TestFDTRoundTrip: a memfd preserved the FDBox way (provisional
// migrations, a node in the FDT, detached at commit) comes back in the
// next kernel whole: contents with a hole, size, pos, seals, mode; every
// frame is accounted for on both sides.
func TestFDTRoundTrip(t *testing.T) {
	for _, huge := range []string{"never", "always"} {
		t.Run(huge, func(t *testing.T) {
			w := newWorld(t, 256*testMiB, buildWith(t, "shmem_huge", huge))
			ext := [][2]int64{{0, 3 * testMiB}, {6 * testMiB, 5000}}
			size := int64(8 * testMiB)
			fd, f := w.memfd("guest-ram", uapi.MFD_ALLOW_SEALING, size, 9, ext...)
			_, err := w.task.Lseek(fd, 12345, uapi.SEEK_SET)
			require.NoError(t, err)
			_, err = w.task.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
			require.NoError(t, err)
			h := memfdOf(t, w)
			require.True(t, h.CanPreserve(f))
			p, err := h.Preserve(f, How{Provisional: true})
			require.NoError(t, err)
			w.files["ram"], w.order = p, []string{"ram"}
			w.audit()
			require.NoError(t, w.kho.Activate())
			w.audit()
			require.Zero(t, f.Inode.Size-size, "the file keeps its size")
			require.Zero(t, kernel.ShmemInode(f).Mapping().NrPages(), "detached at commit")

			var got *kernel.File
			w.atBoot = func(w *world) {
				fo := w.kho.GetFDT()
				require.NotNil(t, fo)
				off, err := fo.PathOffset("/test/ram")
				require.NoError(t, err)
				in, err := memfdOf(t, w).ReadFDT(fo, off, "ram")
				require.NoError(t, err)
				require.Equal(t, "memfd:guest-ram", in.Name())
				got, err = in.Restore()
				require.NoError(t, err)
			}
			w.kexec(w.build)
			require.NotNil(t, got)
			nfd, err := w.task.InstallFD(got, false)
			require.NoError(t, err)
			require.Equal(t, size, got.Inode.Size)
			require.Equal(t, int64(12345), got.Pos)
			require.Equal(t, uint32(uapi.F_SEAL_GROW), sealsOf(t, w, nfd))
			w.checkContent(nfd, size, 9, ext...)
			w.audit()
			require.Zero(t, w.k.FrameCounts().Preserved)
			require.NoError(t, w.task.Close(nfd))
			require.Zero(t, w.used(), "closing the file frees every frame it had")
		})
	}
}

// TestDeactivatePutsEverythingBack: after an activation is aborted the
// file has the very same folios, with the same flags, and nothing is
// preserved any more.
func TestDeactivatePutsEverythingBack(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	fd, f := w.memfd("m", 0, 4*testMiB, 3, [2]int64{4096, 3 * testMiB})
	require.NoError(t, w.task.Fallocate(fd, uapi.FALLOC_FL_KEEP_SIZE, 0, 8*testMiB))
	info := kernel.ShmemInode(f)
	before := snapshotCache(w, info)
	fallocend := info.Fallocend()
	p, err := memfdOf(t, w).Preserve(f, How{Provisional: true})
	require.NoError(t, err)
	w.files["m"], w.order = p, []string{"m"}
	require.NoError(t, w.kho.Activate())
	require.NoError(t, w.kho.Deactivate())
	require.NoError(t, p.Reattach())
	p.Unpreserve()
	require.Equal(t, before, snapshotCache(w, info))
	require.Equal(t, fallocend, info.Fallocend())
	require.Zero(t, w.kho.PreservedFolios())
	require.Empty(t, w.l.Live())
	w.checkContent(fd, 4*testMiB, 3, [2]int64{4096, 3 * testMiB})
	w.audit()
}

type cacheEntry struct {
	index uint64
	pfn   physmem.PFN
	flags physmem.PageFlags
	refs  int32
}

func snapshotCache(w *world, info *kernel.ShmemInodeInfo) []cacheEntry {
	var out []cacheEntry
	for e := range info.Mapping().Range(0, math.MaxUint64) {
		pfn := e.Entry.PFN()
		out = append(out, cacheEntry{e.Index, pfn, w.k.MM.Page(pfn).Flags(), w.k.MM.FolioRefCount(physmem.Folio(pfn))})
	}
	return out
}

// TestBlobRoundTrip: a memfd preserved the LUO way (pinned, holes filled,
// inode frozen) with its record in preserved memory (memfd-v1, memfd-v2)
// comes back from that record alone; memfd-v1 carries no seals.
func TestBlobRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		memfd, tracker string
		wantSeals      uint32
		wantName       string
	}{
		{"v1", "arrays", uapi.F_SEAL_SEAL, "memfd:"},
		{"v2", "arrays", uapi.F_SEAL_SHRINK | uapi.F_SEAL_WRITE, "memfd:"},
	} {
		t.Run(tc.memfd+"/"+tc.tracker, func(t *testing.T) {
			b := buildWith(t, "memfd", tc.memfd, "kho", tc.tracker)
			w := newWorld(t, 256*testMiB, b)
			ext := [][2]int64{{0, 40000}, {2 * testMiB, 3 * 4096}}
			size := int64(3 * testMiB)
			fd, f := w.memfd("vm", uapi.MFD_ALLOW_SEALING, size, 5, ext...)
			_, err := w.task.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_SHRINK|uapi.F_SEAL_WRITE)
			require.NoError(t, err)
			_, err = w.task.Lseek(fd, 77, uapi.SEEK_SET)
			require.NoError(t, err)
			h := memfdOf(t, w)
			p, err := h.Preserve(f, How{Pin: true, FreezeInode: true})
			require.NoError(t, err)
			require.Equal(t, uint64(size/4096), p.Pages(), "every page up to i_size, holes filled")
			phys, err := p.WriteBlob()
			require.NoError(t, err)
			w.audit()
			require.NoError(t, w.kho.AddSubtree(kexec.Subtree{Name: "memfd", Blob: kexec.Mem{Addr: phys, Size: physmem.PageSize},
				Size: memfdLUOSerV2Size, Records: p.Mems}))
			require.NoError(t, p.Freeze())
			require.NoError(t, w.kho.Activate())
			w.audit()

			var in Incoming
			w.atBoot = func(w *world) {
				blob, _, err := w.kho.GetSubtree("memfd")
				require.NoError(t, err)
				in, err = memfdOf(t, w).ReadBlob(h.BlobCompatible(), blob)
				require.NoError(t, err)
			}
			w.kexec(w.build)
			require.NotNil(t, in)
			require.Zero(t, w.k.FrameCounts().Preserved, "claimed at boot")
			w.audit()
			got, err := in.Restore()
			require.NoError(t, err)
			nfd, err := w.task.InstallFD(got, false)
			require.NoError(t, err)
			require.Equal(t, tc.wantName, got.Name)
			require.Equal(t, size, got.Inode.Size)
			require.Equal(t, int64(77), got.Pos)
			require.Equal(t, tc.wantSeals, sealsOf(t, w, nfd))
			w.checkContent(nfd, size, 5, ext...)
			w.audit()
			require.NoError(t, w.task.Close(nfd))
			require.Zero(t, w.used())
		})
	}
}

// TestFreezeRules: a frozen inode (shmem_freeze) refuses size changes,
// writes at or past i_size and every fallocate, cuts a straddling write
// short, and lets writes inside the size land in the preserved folios;
// unpreserving unfreezes it.
func TestFreezeRules(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	size := int64(64 * 1024)
	fd, f := w.memfd("f", 0, size, 1, [2]int64{0, size})
	p, err := memfdOf(t, w).Preserve(f, How{Pin: true, FreezeInode: true})
	require.NoError(t, err)
	pfn := pfnAt(t, f, 3)
	require.True(t, w.kho.IsPreserved(physmem.Folio(pfn)))
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"shrink", func() error { return w.task.Ftruncate(fd, 4096) }},
		{"grow", func() error { return w.task.Ftruncate(fd, 2*size) }},
		{"fallocate", func() error { return w.task.Fallocate(fd, 0, 0, 4096) }},
		{"punch", func() error {
			return w.task.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 0, 4096)
		}},
		{"write at size", func() error { _, err := w.task.Pwrite(fd, size, 10, pattern(2)); return err }},
		{"write past size", func() error { _, err := w.task.Pwrite(fd, size+4096, 10, pattern(2)); return err }},
	} {
		require.Equal(t, errno.EPERM, errno.Of(tc.call()), tc.name)
	}
	require.NoError(t, w.task.Ftruncate(fd, size), "the same size is no change")
	n, err := w.task.Pwrite(fd, size-5, 10, pattern(2))
	require.NoError(t, err)
	require.Equal(t, int64(5), n, "a write straddling i_size stops at it")
	_, err = w.task.Pwrite(fd, 3*4096, 100, pattern(4))
	require.NoError(t, err)
	require.Equal(t, pfn, pfnAt(t, f, 3), "the write landed in the preserved folio")
	w.audit()
	p.Unpreserve()
	require.NoError(t, w.task.Ftruncate(fd, 2*size), "unfrozen")
	w.audit()
}

// TestPreserveErrors: what Preserve refuses, and that a refusal changes
// nothing.
func TestPreserveErrors(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	h := memfdOf(t, w)
	null, err := w.task.Open("/dev/null", uapi.O_RDWR)
	require.NoError(t, err)
	nf, _ := w.task.FD(null)
	require.False(t, h.CanPreserve(nf))
	_, err = h.Preserve(nf, How{})
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(err))

	tmp, err := w.task.Open("/tmp/linked", uapi.O_RDWR|uapi.O_CREAT)
	require.NoError(t, err)
	tf, _ := w.task.FD(tmp)
	require.False(t, h.CanPreserve(tf), "a linked tmpfs file (shmem_file && !i_nlink)")

	// After finalize (arrays), KHO refuses new preservations.
	_, f := w.memfd("late", 0, 8192, 1, [2]int64{0, 8192})
	require.NoError(t, w.kho.Activate())
	used := w.used()
	_, err = h.Preserve(f, How{Pin: true, FreezeInode: true})
	require.Equal(t, errno.EBUSY, errno.Of(err))
	require.False(t, kernel.ShmemFrozen(kernel.ShmemInode(f)), "a failed preserve unfreezes")
	require.Equal(t, used, w.used())
	require.Empty(t, w.l.Live())
	require.NoError(t, w.kho.Deactivate())
	w.audit()
}

// TestPreserveFaults: a page_alloc fault at every allocation a pinning
// preserve makes (hole fills, the record's pages) leaves nothing
// preserved, nothing leaked and the file's contents as they were.
func TestPreserveFaults(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	h := memfdOf(t, w)
	size := int64(40 * 4096)
	fd, f := w.memfd("f", 0, size, 8, [2]int64{0, 4096}, [2]int64{20 * 4096, 4096})
	attempt := func(nth int) error {
		require.NoError(t, w.faults.Arm(fault.PageAlloc, nth, 1))
		p, err := h.Preserve(f, How{Pin: true, FreezeInode: true})
		if err == nil {
			if _, err = p.WriteBlob(); err == nil {
				w.faults.Disarm(fault.PageAlloc)
			}
			p.Unpreserve()
		}
		if err != nil {
			require.Equal(t, errno.ENOMEM, errno.Of(err))
			require.Empty(t, w.l.Live())
			require.Zero(t, w.kho.PreservedFolios())
			require.False(t, kernel.ShmemFrozen(kernel.ShmemInode(f)))
			w.checkContent(fd, size, 8, [2]int64{0, 4096}, [2]int64{20 * 4096, 4096})
			w.audit()
		}
		return err
	}
	fired := 0
	for nth := 1; attempt(nth) != nil; nth++ {
		fired++
	}
	// A failed attempt's hole fills stay (as memfd_pin_folios leaves
	// them), so attempt n fills n-1 more holes: 38 holes take 9 attempts.
	require.Equal(t, 9, fired)
	require.Equal(t, uint64(40), kernel.ShmemInode(f).Mapping().NrPages())
	// Without holes the record's allocations fail one by one: its block,
	// its array page and the array's chunk page.
	fired = 0
	for nth := 1; attempt(nth) != nil; nth++ {
		fired++
	}
	require.Equal(t, 3, fired)
	w.audit()
}

// TestMigratesOutOfScratch: folios in KHO scratch are migrated before they
// are preserved; a provisional migration is undone by Unpreserve (the very
// same folios come back), a pinning one is final.
func TestMigratesOutOfScratch(t *testing.T) {
	for _, how := range []How{{Provisional: true}, {Pin: true}} {
		w := newWorld(t, 256*testMiB, kbuild.Default())
		_, filler := w.memfd("filler", 0, 0, 0)
		free := int64(w.k.MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
		fillFD := fdOf(t, w, filler)
		require.NoError(t, w.task.Ftruncate(fillFD, free))
		_, err := w.task.Pwrite(fillFD, 0, free, pattern(1)) // normal memory is full
		require.NoError(t, err)
		fd, f := w.memfd("victim", 0, 64*1024, 6, [2]int64{0, 64 * 1024})
		info := kernel.ShmemInode(f)
		inScratch := 0
		for e := range info.Mapping().Range(0, math.MaxUint64) {
			if w.kho.InScratch(e.Entry.PFN(), 1) {
				inScratch++
			}
		}
		require.Equal(t, 16, inScratch, "the victim lies in scratch")
		require.NoError(t, w.task.Ftruncate(fillFD, free-8*testMiB)) // room outside scratch
		before := snapshotCache(w, info)
		p, err := memfdOf(t, w).Preserve(f, how)
		require.NoError(t, err)
		require.Equal(t, uint64(16), w.l.Stats().Migrated)
		for e := range info.Mapping().Range(0, math.MaxUint64) {
			require.False(t, w.kho.InScratch(e.Entry.PFN(), 1))
		}
		w.audit()
		p.Unpreserve()
		if how.Provisional {
			require.Equal(t, before, snapshotCache(w, info), "the very same folios")
		} else {
			require.NotEqual(t, before, snapshotCache(w, info), "a pin's migration is final")
		}
		w.checkContent(fd, 64*1024, 6, [2]int64{0, 64 * 1024})
		w.audit()
	}
}

func fdOf(t *testing.T, w *world, f *kernel.File) int {
	for _, fd := range w.task.FDs() {
		if g, _ := w.task.FD(fd); g == f {
			return fd
		}
	}
	t.Fatalf("no fd for %v", f)
	return -1
}

// TestRebuild: a detached record (FDBox seal: the file was dropped) makes
// a new file in the same kernel, and the folios are no longer preserved.
func TestRebuild(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	size := int64(5 * 4096)
	fd, f := w.memfd("seal-me", uapi.MFD_ALLOW_SEALING, size, 2, [2]int64{0, size})
	_, err := w.task.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_SHRINK)
	require.NoError(t, err)
	p, err := memfdOf(t, w).Preserve(f, How{})
	require.NoError(t, err)
	p.Detach()
	require.NoError(t, w.task.Close(fd)) // the file is gone; KHO holds the folios
	w.audit()
	require.Equal(t, 5, w.kho.PreservedFolios())

	got, err := p.Rebuild()
	require.NoError(t, err)
	nfd, err := w.task.InstallFD(got, false)
	require.NoError(t, err)
	require.Equal(t, "memfd:seal-me", got.Name)
	require.Equal(t, uint32(uapi.F_SEAL_SHRINK), sealsOf(t, w, nfd))
	w.checkContent(nfd, size, 2, [2]int64{0, size})
	require.Equal(t, 5, w.kho.PreservedFolios(), "still preserved until Unpreserve")
	w.audit()

	// Dropping the rebuilt file leaves the record as it was; a second
	// rebuild works, and Unpreserve leaves the folios to the new file.
	require.NoError(t, w.task.Close(nfd))
	w.audit()
	got, err = p.Rebuild()
	require.NoError(t, err)
	nfd, err = w.task.InstallFD(got, false)
	require.NoError(t, err)
	p.Unpreserve()
	require.Zero(t, w.kho.PreservedFolios())
	require.Empty(t, w.l.Live())
	w.checkContent(nfd, size, 2, [2]int64{0, size})
	w.audit()
	require.NoError(t, w.task.Close(nfd))
	require.Zero(t, w.used())
}

// TestLastLegalIndex (issue 16 #1): a folio of every order at the last
// index MAX_LFS_FILESIZE allows is written, read back and restored; one
// order-aligned step beyond is refused with the range returned.
func TestLastLegalIndex(t *testing.T) {
	for order := uint(0); order <= physmem.MaxPageOrder; order++ {
		w := newWorld(t, 256*testMiB, kbuild.Default())
		fd, f := w.memfd("big", 0, math.MaxInt64, 0)
		info := kernel.ShmemInode(f)
		folio, err := w.k.MM.FolioAlloc(physmem.GFPKernel, order)
		require.NoError(t, err)
		w.k.MM.Frames.Fill(folio.PFN(), 1<<order, 0x1234)
		index := uint64(maxLFSIndex) + 1 - 1<<order
		require.NoError(t, w.k.ShmemRestoreFolio(info, folio, index, true, true))
		w.k.MM.FolioPut(folio)
		p, err := memfdOf(t, w).Preserve(f, How{Provisional: true})
		require.NoError(t, err)
		w.files["big"], w.order = p, []string{"big"}
		require.NoError(t, w.kho.Activate())
		var got *kernel.File
		w.atBoot = func(w *world) {
			fo := w.kho.GetFDT()
			off, err := fo.PathOffset("/test/big")
			require.NoError(t, err)
			in, err := memfdOf(t, w).ReadFDT(fo, off, "big")
			require.NoError(t, err)
			got, err = in.Restore()
			require.NoError(t, err, "order %d at index %#x", order, index)
		}
		w.kexec(w.build)
		e, ok := kernel.ShmemInode(got).Mapping().Lookup(index)
		require.True(t, ok, "order %d", order)
		require.Equal(t, index, e.Index)
		require.Equal(t, uint64(0x34), uint64(w.k.MM.Frames.Frame(e.Entry.PFN())[0]))
		got.Put()
		w.audit()
		_ = fd

		// One step beyond: refused, nothing inserted, nothing claimed.
		in := &memfdIncoming{h: memfdOf(t, w).(*memfdHandler), meta: memfdMeta{size: math.MaxInt64},
			src: pfolios{{index: index + 1<<order, pfn: 1 << 14, order: uint8(order)}}}
		_, err = in.build(func(kexec.Mem) (physmem.Folio, error) {
			t.Fatalf("claimed a folio beyond MAX_LFS_FILESIZE")
			return 0, nil
		})
		require.Equal(t, errno.EINVAL, errno.Of(err), "order %d", order)
		w.audit()
	}
}

// TestReadFDTRefusesCorruptNodes: a node whose shape or checksum is wrong
// is refused as ErrBadRecord (its memory is left to KHO's late pass).
func TestReadFDTRefusesCorruptNodes(t *testing.T) {
	w := newWorld(t, 256*testMiB, kbuild.Default())
	_, f := w.memfd("c", 0, 8192, 1, [2]int64{0, 8192})
	p, err := memfdOf(t, w).Preserve(f, How{})
	require.NoError(t, err)
	buf := make([]byte, 64*1024)
	write := func(fdName string, extra func(fw *fdt.Writer) error) *fdt.FDT {
		fw, err := fdt.Create(buf)
		require.NoError(t, err)
		require.NoError(t, fw.FinishReserveMap())
		require.NoError(t, fw.BeginNode(""))
		require.NoError(t, fw.BeginNode("n"))
		if extra != nil {
			require.NoError(t, extra(fw))
		} else {
			require.NoError(t, p.WriteFDT(fw, fdName))
		}
		require.NoError(t, fw.EndNode())
		require.NoError(t, fw.EndNode())
		blob, err := fw.Finish()
		require.NoError(t, err)
		fo, err := fdt.Open(append([]byte(nil), blob...))
		require.NoError(t, err)
		return fo
	}
	h := memfdOf(t, w)
	fo := write("n", nil)
	off, _ := fo.PathOffset("/n")
	_, err = h.ReadFDT(fo, off, "n")
	require.NoError(t, err)
	_, err = h.ReadFDT(fo, off, "other")
	require.ErrorIs(t, err, ErrBadRecord, "the checksum covers the fd name")
	require.ErrorContains(t, err, "checksum")
	fo = write("n", func(fw *fdt.Writer) error { return fw.PropertyString("compatible", "fdbox,memfd-v9") })
	off, _ = fo.PathOffset("/n")
	_, err = h.ReadFDT(fo, off, "n")
	require.ErrorIs(t, err, ErrBadRecord)
	p.Unpreserve()
	w.audit()
}

// pfnAt returns the PFN caching page index of f.
func pfnAt(t *testing.T, f *kernel.File, index uint64) physmem.PFN {
	e, ok := kernel.ShmemInode(f).Mapping().Lookup(index)
	require.True(t, ok)
	return e.Entry.PFN() + physmem.PFN(index-e.Index)
}
