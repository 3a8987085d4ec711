package kernel

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"khosim/errno"
	"khosim/invariant"
	"khosim/physmem"
	"khosim/uapi"
)

// recordingOps are the default undo ops, recording each call. failAt
// makes the n-th call (1-based) fail with EIO before doing anything; with
// keep, UndoFolio takes a reference on the folio before truncating it, as
// the RFC's shmem_fdbox_undo_folio does, and the test owns it.
type recordingOps struct {
	k      *Kernel
	calls  []string
	failAt int
	keep   bool
	kept   []physmem.Folio
}

func (o *recordingOps) hit(format string, args ...any) error {
	o.calls = append(o.calls, fmt.Sprintf(format, args...))
	if len(o.calls) == o.failAt {
		return errno.EIO
	}
	return nil
}

func (o *recordingOps) UndoSwap(info *ShmemInodeInfo, index uint64, old SwapEntry) (int64, error) {
	if err := o.hit("swap %d", index); err != nil {
		return 0, err
	}
	return ShmemFreeSwap(info, index, old), nil
}

func (o *recordingOps) UndoFolio(info *ShmemInodeInfo, f physmem.Folio) error {
	if err := o.hit("folio %d order %d", o.k.FolioIndex(f), o.k.MM.FolioOrder(f)); err != nil {
		return err
	}
	if o.keep {
		o.k.MM.FolioGet(f)
		o.kept = append(o.kept, f)
	}
	return TruncateInodeFolio(info, f)
}

func (o *recordingOps) UndoPartialFolio(info *ShmemInodeInfo, f physmem.Folio, lstart, lend int64) (bool, error) {
	if err := o.hit("partial %d order %d", o.k.FolioIndex(f), o.k.MM.FolioOrder(f)); err != nil {
		return false, err
	}
	return TruncateInodePartialFolio(info, f, lstart, lend), nil
}

// visit reports the kept references to the audit.
func (o *recordingOps) visit(v RefVisitor) {
	for _, f := range o.kept {
		v.Folio(f.PFN(), 1, "test ops")
	}
}

// undoFixture is a memfd with a byte model of its content.
type undoFixture struct {
	*machine
	p     *Task
	fd    int
	info  *ShmemInodeInfo
	model []byte
	ops   *recordingOps
}

func newUndoFixture(t *testing.T, o machineOpts, pages int) *undoFixture {
	t.Helper()
	m := bootMachine(t, o)
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("undo", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	x := &undoFixture{machine: m, p: p, fd: fd, info: ShmemInode(mustFD(t, p, fd)), ops: &recordingOps{k: m.k}}
	m.k.RegisterRefOwner("test-ops", x.ops.visit)
	x.write(t, 0, int64(pages)*physmem.PageSize, 7)
	return x
}

func (x *undoFixture) write(t *testing.T, off, n int64, seed byte) {
	t.Helper()
	if got, err := x.p.Pwrite(x.fd, off, n, pattern(seed)); err != nil || got != n {
		t.Fatalf("pwrite(%d, %d) = %d, %v", off, n, got, err)
	}
	if end := off + n; end > int64(len(x.model)) {
		x.model = append(x.model, make([]byte, end-int64(len(x.model)))...)
	}
	pattern(seed)(x.model[off:off+n], off)
}

// verify compares the file with the model and audits the kernel.
func (x *undoFixture) verify(t *testing.T) {
	t.Helper()
	if size := x.info.inode.Size; size != int64(len(x.model)) {
		t.Fatalf("size %d, model %d", size, len(x.model))
	}
	if got := readAll(t, x.p, x.fd, 0, int64(len(x.model))); !bytes.Equal(got, x.model) {
		t.Fatal("content differs from the model")
	}
	x.check()
}

func (x *undoFixture) undo(lstart, lend int64, unfalloc bool) error {
	return ShmemUndoRange(x.info, lstart, lend, unfalloc, x.ops)
}

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("undo ops calls:\n got  %q\n want %q", got, want)
	}
}

func TestShmemUndoRangeWholeFolios(t *testing.T) {
	x := newUndoFixture(t, machineOpts{}, 40) // more than one batch of 31
	must(t, x.undo(0, -1, false))
	var want []string
	for i := range 40 {
		want = append(want, fmt.Sprintf("folio %d order 0", i))
	}
	wantCalls(t, x.ops.calls, want...)
	clear(x.model) // the size stays: the pages read back as zeros
	x.verify(t)
	if x.info.Alloced() != 0 || x.info.Mapping().NrPages() != 0 {
		t.Fatalf("after undo: %v", x.info)
	}
}

func TestShmemUndoRangePartialEnds(t *testing.T) {
	x := newUndoFixture(t, machineOpts{}, 3)
	// [100, 8291]: page 1 whole, pages 0 and 2 partly.
	must(t, x.undo(100, 8291, false))
	wantCalls(t, x.ops.calls, "folio 1 order 0", "partial 0 order 0", "partial 2 order 0")
	clear(x.model[100:8292])
	x.verify(t)
	if n := x.info.Mapping().NrPages(); n != 2 {
		t.Fatalf("nrpages %d, want the two partial pages", n)
	}
}

func TestShmemUndoRangeWithinOnePage(t *testing.T) {
	x := newUndoFixture(t, machineOpts{}, 2)
	must(t, x.undo(100, 199, false))
	wantCalls(t, x.ops.calls, "partial 0 order 0")
	clear(x.model[100:200])
	x.verify(t)
}

func TestShmemUndoRangeSplitsLargeFolio(t *testing.T) {
	x := newUndoFixture(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"}, 512)
	if _, _, _, ok := x.k.FolioAt(mustFD(t, x.p, x.fd), 0); !ok || x.k.MM.FolioOrder(physmem.Folio(x.pfn(t, 0))) != physmem.HPageOrder {
		t.Fatal("the 2 MiB write did not make a PMD-sized folio")
	}
	// Punch two pages out of the middle: the large folio is split, then
	// the second pass removes the two order-0 folios.
	must(t, x.p.Fallocate(x.fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 1<<20, 8192))
	clear(x.model[1<<20 : 1<<20+8192])
	x.verify(t)
	if n := x.info.Mapping().NrPages(); n != 510 {
		t.Fatalf("nrpages %d, want 510", n)
	}
	if x.k.VMStat()["thp_split_page"] != 1 {
		t.Fatalf("vmstat %v", x.k.VMStat())
	}
	// Truncating into a large folio splits it and drops the pages past
	// the new end.
	x.write(t, 2<<20, 2<<20, 9)
	x.ops.calls = nil
	must(t, x.p.Ftruncate(x.fd, 3<<20+100))
	x.model = x.model[:3<<20+100]
	x.verify(t)
	if n := x.info.Mapping().NrPages(); n != 510+257 {
		t.Fatalf("nrpages %d, want %d", n, 510+257)
	}
}

func TestShmemUndoRangeUnsplittableFolio(t *testing.T) {
	x := newUndoFixture(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"}, 512)
	pin := physmem.Folio(x.pfn(t, 0))
	x.k.MM.FolioGet(pin) // a pin: split_folio() fails with EAGAIN
	x.ops.kept = append(x.ops.kept, pin)
	must(t, x.undo(1<<20+100, -1, false))
	wantCalls(t, x.ops.calls, "partial 0 order 9")
	// Still one large folio, zeroed past the range start.
	clear(x.model[1<<20+100:])
	x.verify(t)
	if x.info.Mapping().NrPages() != 512 || x.k.MM.FolioOrder(pin) != physmem.HPageOrder {
		t.Fatalf("the pinned folio changed: %v", x.info)
	}
	x.ops.kept = nil
	x.k.MM.FolioPut(pin)
	must(t, x.p.Ftruncate(x.fd, 1<<20+100))
	x.model = x.model[:1<<20+100]
	x.verify(t)
}

func TestShmemUndoRangeSwapEntries(t *testing.T) {
	x := newUndoFixture(t, machineOpts{swap: 16 << 20}, 8)
	v := x.mapAndPageout(t, 2, 4)
	must(t, x.undo(0, -1, false))
	wantCalls(t, x.ops.calls, "folio 0 order 0", "folio 1 order 0", "swap 2", "swap 3", "swap 4", "swap 5",
		"folio 6 order 0", "folio 7 order 0")
	if x.k.NrSwapPages() != x.k.TotalSwapPages() || x.info.Swapped() != 0 {
		t.Fatalf("swap not freed: %d of %d free, %v", x.k.NrSwapPages(), x.k.TotalSwapPages(), x.info)
	}
	clear(x.model)
	x.verify(t)
	must(t, x.p.Munmap(v))
}

// mapAndPageout maps the file, touches every page and pages out n pages
// from first.
func (x *undoFixture) mapAndPageout(t *testing.T, first, n int64) *VMA {
	t.Helper()
	v, err := x.p.Mmap(x.fd, 0, int64(len(x.model)), uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	_, err = x.p.Load(v, 0, int64(len(x.model)), nil)
	must(t, err)
	must(t, x.p.Madvise(v, first*physmem.PageSize, n*physmem.PageSize, uapi.MADV_PAGEOUT))
	if x.info.Swapped() != n {
		t.Fatalf("paged out %d pages, want %d", x.info.Swapped(), n)
	}
	return v
}

func TestShmemUndoRangePartialSwappedPage(t *testing.T) {
	x := newUndoFixture(t, machineOpts{swap: 16 << 20}, 2)
	x.mapAndPageout(t, 0, 2)
	must(t, x.p.Ftruncate(x.fd, 100))
	x.model = x.model[:100]
	x.verify(t)
	if x.k.VMStat()["pswpin"] != 1 {
		t.Fatalf("the partial page was not read back from swap: %v", x.k.VMStat())
	}
}

func TestShmemUndoRangeUnfalloc(t *testing.T) {
	x := newUndoFixture(t, machineOpts{}, 1)
	must(t, x.p.Fallocate(x.fd, uapi.FALLOC_FL_KEEP_SIZE, 4096, 4*4096)) // pages 1-4, !uptodate
	fallocend := x.info.Fallocend()
	// Allocating pages 5.. fails at the third allocation: pages 5 and 6
	// go again; page 0 (written) and pages 1-4 (fallocated earlier, now
	// cleared by SGP_FALLOC) stay.
	must(t, x.faults.Arm("page_alloc", 3, 1))
	err := x.p.Fallocate(x.fd, 0, 0, 16*4096)
	if err != errno.ENOMEM {
		t.Fatalf("fallocate: %v, want ENOMEM", err)
	}
	x.verify(t)
	if n := x.info.Mapping().NrPages(); n != 5 {
		t.Fatalf("nrpages %d, want 5", n)
	}
	if x.info.Fallocend() != fallocend {
		t.Fatalf("fallocend %d, want %d restored", x.info.Fallocend(), fallocend)
	}
	for i := uint64(1); i < 5; i++ {
		if !x.k.FolioTestUptodate(physmem.Folio(x.pfn(t, i))) {
			t.Fatalf("page %d fallocated earlier is not uptodate after a second fallocate", i)
		}
	}
	// The unfalloc walk itself: only !uptodate folios go, swap stays.
	must(t, x.p.Fallocate(x.fd, uapi.FALLOC_FL_KEEP_SIZE, 8*4096, 2*4096))
	x.ops.calls = nil
	must(t, x.undo(0, 16*4096-1, true))
	wantCalls(t, x.ops.calls, "folio 8 order 0", "folio 9 order 0")
	x.verify(t)
}

func (x *undoFixture) pfn(t *testing.T, index uint64) physmem.PFN {
	t.Helper()
	pfn, _, _, ok := x.k.FolioAt(mustFD(t, x.p, x.fd), index)
	if !ok {
		t.Fatalf("no folio at index %d", index)
	}
	return pfn
}

func TestShmemUndoRangeOpsFailMidway(t *testing.T) {
	t.Run("UndoFolio", func(t *testing.T) {
		x := newUndoFixture(t, machineOpts{}, 16)
		x.ops.failAt = 5
		if err := x.undo(0, -1, false); err != errno.EIO {
			t.Fatalf("undo: %v, want EIO", err)
		}
		clear(x.model[:4*4096]) // the first four went, the rest is intact
		x.verify(t)
		if x.info.Alloced() != 12 {
			t.Fatalf("%v", x.info)
		}
	})
	t.Run("UndoSwap", func(t *testing.T) {
		x := newUndoFixture(t, machineOpts{swap: 16 << 20}, 8)
		x.mapAndPageout(t, 2, 4)
		x.ops.failAt = 4 // folio 0, folio 1, swap 2, swap 3 fails
		if err := x.undo(0, -1, false); err != errno.EIO {
			t.Fatalf("undo: %v, want EIO", err)
		}
		if x.info.Swapped() != 3 || x.k.TotalSwapPages()-x.k.NrSwapPages() != 3 {
			t.Fatalf("%v; %s", x.info, x.k.swapString())
		}
		x.check()
		clear(x.model[:3*4096])
		x.verify(t)
	})
	t.Run("UndoPartialFolio", func(t *testing.T) {
		x := newUndoFixture(t, machineOpts{}, 3)
		x.ops.failAt = 2 // folio 1, then the partial page 0 fails
		if err := x.undo(100, 8291, false); err != errno.EIO {
			t.Fatalf("undo: %v, want EIO", err)
		}
		clear(x.model[4096:8192])
		x.verify(t)
	})
	t.Run("large folio", func(t *testing.T) {
		x := newUndoFixture(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"}, 1024)
		x.ops.failAt = 2 // folio 0 order 9, then folio 512 fails
		if err := x.undo(0, -1, false); err != errno.EIO {
			t.Fatalf("undo: %v, want EIO", err)
		}
		clear(x.model[:2<<20])
		x.verify(t)
	})
}

func TestShmemUndoRangeKeepsFolios(t *testing.T) {
	// The RFC's KHO ops: take a reference, then truncate; the folios
	// leave the file but survive, owned by the caller.
	x := newUndoFixture(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"}, 512+3)
	x.ops.keep = true
	must(t, x.undo(0, -1, false))
	wantCalls(t, x.ops.calls, "folio 0 order 9", "folio 512 order 0", "folio 513 order 0", "folio 514 order 0")
	want := slices.Clone(x.model)
	clear(x.model)
	x.verify(t)
	for i, index := range []int64{0, 512, 513, 514} {
		f := x.ops.kept[i]
		data := x.k.folioData(f)
		if !bytes.Equal(data, want[index*4096:index*4096+int64(len(data))]) {
			t.Fatalf("kept folio %v lost the data of index %d", f, index)
		}
		if x.k.folioMappingID(f) != 0 || x.k.MM.FolioRefCount(f) != 1 {
			t.Fatalf("kept folio: %s", x.k.dumpFolio(f))
		}
	}
	for _, f := range x.ops.kept {
		x.k.MM.FolioPut(f)
	}
	x.ops.kept = nil
	x.check()
}

func TestShmemUndoRangeOpsMustRemove(t *testing.T) {
	x := newUndoFixture(t, machineOpts{}, 4)
	defer func() {
		v, ok := recover().(*invariant.Violation)
		if !ok || v.Invariant != "shmem-undo-progress" {
			t.Fatalf("recovered %v, want the shmem-undo-progress violation", v)
		}
	}()
	_ = ShmemUndoRange(x.info, 0, -1, false, lazyOps{})
	t.Fatal("ops that remove nothing made truncation return")
}

// lazyOps remove nothing: a broken ops implementation.
type lazyOps struct{}

func (lazyOps) UndoSwap(*ShmemInodeInfo, uint64, SwapEntry) (int64, error) { return 1, nil }
func (lazyOps) UndoFolio(*ShmemInodeInfo, physmem.Folio) error             { return nil }
func (lazyOps) UndoPartialFolio(*ShmemInodeInfo, physmem.Folio, int64, int64) (bool, error) {
	return true, nil
}
