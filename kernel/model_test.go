package kernel

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"khosim/errno"
	"khosim/fault"
	"khosim/physmem"
	"khosim/uapi"
)

// shmemModel is the reference a memfd is checked against: its bytes.
// Everything beyond the size reads as zeros.
type shmemModel struct {
	data []byte
}

func (s *shmemModel) resize(n int64) {
	if n <= int64(len(s.data)) {
		s.data = s.data[:n]
		return
	}
	s.data = append(s.data, make([]byte, n-int64(len(s.data)))...)
}

func (s *shmemModel) write(off int64, b []byte) {
	if end := off + int64(len(b)); end > int64(len(s.data)) {
		s.resize(end)
	}
	copy(s.data[off:], b)
}

func (s *shmemModel) zero(off, n int64) {
	end := min(off+n, int64(len(s.data)))
	if off < end {
		clear(s.data[off:end])
	}
}

// shmemSystem is the system under test: one memfd in one task, and at
// most one shared mapping of it.
type shmemSystem struct {
	m     *machine
	p     *Task
	fd    int
	vma   *VMA
	model shmemModel
}

const (
	modelMaxSize = 8 << 20
	modelPage    = physmem.PageSize
)

func genOff(t *rapid.T, label string) int64 {
	// Mostly page-ish aligned offsets, some arbitrary, to hit both
	// whole-folio and partial paths.
	switch rapid.IntRange(0, 3).Draw(t, label+"-kind") {
	case 0:
		return int64(rapid.IntRange(0, modelMaxSize/modelPage).Draw(t, label+"-page")) * modelPage
	case 1:
		return int64(rapid.IntRange(0, 4).Draw(t, label+"-huge")) * (2 << 20)
	default:
		return rapid.Int64Range(0, modelMaxSize).Draw(t, label)
	}
}

func genLen(t *rapid.T, label string, max int64) int64 {
	switch rapid.IntRange(0, 3).Draw(t, label+"-kind") {
	case 0:
		return int64(rapid.IntRange(1, 4).Draw(t, label+"-pages")) * modelPage
	case 1:
		return int64(rapid.IntRange(1, 2).Draw(t, label+"-huges")) * (2 << 20)
	default:
		return rapid.Int64Range(1, max).Draw(t, label)
	}
}

func (s *shmemSystem) pwrite(t *rapid.T) {
	off := genOff(t, "off")
	n := min(genLen(t, "len", 3<<20), modelMaxSize-off)
	if n <= 0 {
		return
	}
	s.doPwrite(t, off, n, byte(rapid.IntRange(1, 255).Draw(t, "seed")))
}

func (s *shmemSystem) doPwrite(t tester, off, n int64, seed byte) {
	got, err := s.p.Pwrite(s.fd, off, n, pattern(seed))
	if err != nil && err != errno.ENOMEM {
		t.Fatalf("pwrite(%d, %d): %v", off, n, err)
	}
	buf := make([]byte, got)
	pattern(seed)(buf, off)
	if got > 0 {
		s.model.write(off, buf)
	}
}

// partialZeroMayFail reports whether a truncate or punch hole could now
// skip zeroing a partial page: with an allocation fault armed, swapping in
// a swapped-out partial page fails and shmem_undo_range leaves its bytes,
// as Linux does (shmem_get_partial_folio returns NULL). The byte model
// cannot predict which page that hits, so those steps wait until the fault
// has fired.
func (s *shmemSystem) partialZeroMayFail() bool {
	return s.m.faults.Armed(fault.PageAlloc) || s.m.faults.Armed(fault.Slab)
}

func (s *shmemSystem) ftruncate(t *rapid.T) {
	if s.partialZeroMayFail() {
		t.Skip("allocation fault armed")
	}
	size := genOff(t, "size")
	must(t, s.p.Ftruncate(s.fd, size))
	s.model.resize(size)
}

func (s *shmemSystem) punchHole(t *rapid.T) {
	if s.partialZeroMayFail() {
		t.Skip("allocation fault armed")
	}
	s.doPunchHole(t, genOff(t, "off"), genLen(t, "len", 4<<20))
}

func (s *shmemSystem) doPunchHole(t tester, off, n int64) {
	must(t, s.p.Fallocate(s.fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, off, n))
	s.model.zero(off, n)
}

func (s *shmemSystem) fallocate(t *rapid.T) {
	off := genOff(t, "off")
	n := min(genLen(t, "len", 4<<20), modelMaxSize+(2<<20)-off)
	mode := rapid.SampledFrom([]int{0, uapi.FALLOC_FL_KEEP_SIZE}).Draw(t, "mode")
	err := s.p.Fallocate(s.fd, mode, off, n)
	switch err {
	case nil:
		if mode == 0 && off+n > int64(len(s.model.data)) {
			s.model.resize(off + n)
		}
	case errno.ENOMEM: // an injected fault: fallocate undid itself
	default:
		t.Fatalf("fallocate(%d, %d, %d): %v", mode, off, n, err)
	}
}

func (s *shmemSystem) mmap(t *rapid.T) {
	s.doMmap(t, int64(rapid.IntRange(1, modelMaxSize/modelPage).Draw(t, "pages"))*modelPage)
}

func (s *shmemSystem) doMmap(t tester, n int64) {
	if s.vma != nil {
		must(t, s.p.Munmap(s.vma))
		s.vma = nil
	}
	v, err := s.p.Mmap(s.fd, 0, n, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	if errno.Of(err) == errno.ENOMEM {
		return // an injected fault: no vm_area_struct
	}
	must(t, err)
	s.vma = v
}

// accessRange picks a store/load range within the mapping and the file.
func (s *shmemSystem) accessRange(t *rapid.T) (int64, int64, bool) {
	if s.vma == nil {
		return 0, 0, false
	}
	limit := min(int64(s.vma.Len), int64(len(s.model.data)))
	if limit == 0 {
		return 0, 0, false
	}
	off := rapid.Int64Range(0, limit-1).Draw(t, "off")
	n := rapid.Int64Range(1, min(limit-off, 1<<20)).Draw(t, "len")
	return off, n, true
}

func (s *shmemSystem) store(t *rapid.T) {
	off, n, ok := s.accessRange(t)
	if !ok {
		return
	}
	s.doStore(t, off, n, byte(rapid.IntRange(1, 255).Draw(t, "seed")))
}

func (s *shmemSystem) doStore(t tester, off, n int64, seed byte) {
	got, err := s.p.Store(s.vma, off, n, pattern(seed))
	if err != nil && errno.Of(err) != errno.ENOMEM {
		t.Fatalf("store(%d, %d): %v", off, n, err)
	}
	buf := make([]byte, got)
	pattern(seed)(buf, off)
	s.model.write(off, buf)
}

func (s *shmemSystem) load(t *rapid.T) {
	off, n, ok := s.accessRange(t)
	if !ok {
		return
	}
	var got []byte
	_, err := s.p.Load(s.vma, off, n, func(b []byte, o int64) error {
		if o != off+int64(len(got)) {
			return fmt.Errorf("load handed offset %d, want %d", o, off+int64(len(got)))
		}
		got = append(got, b...)
		return nil
	})
	if err != nil && errno.Of(err) != errno.ENOMEM {
		t.Fatalf("load(%d, %d): %v", off, n, err)
	}
	if !bytes.Equal(got, s.model.data[off:off+int64(len(got))]) {
		t.Fatalf("load(%d, %d) differs from the model", off, n)
	}
}

func (s *shmemSystem) beyondEOF(t *rapid.T) {
	if s.vma == nil {
		return
	}
	eofPage := (int64(len(s.model.data)) + modelPage - 1) &^ (modelPage - 1)
	if eofPage >= int64(s.vma.Len) {
		return
	}
	_, err := s.p.Store(s.vma, eofPage, 1, pattern(1))
	if errno.Of(err) != errno.EFAULT {
		t.Fatalf("store beyond EOF at %d (size %d): %v, want SIGBUS/EFAULT", eofPage, len(s.model.data), err)
	}
}

func (s *shmemSystem) pageout(t *rapid.T) {
	if s.vma == nil {
		return
	}
	off := int64(rapid.IntRange(0, int(s.vma.Len/modelPage)-1).Draw(t, "page")) * modelPage
	n := rapid.Int64Range(1, int64(s.vma.Len)-off).Draw(t, "len")
	s.doPageout(t, off, n)
}

func (s *shmemSystem) doPageout(t tester, off, n int64) {
	must(t, s.p.Madvise(s.vma, off, n, uapi.MADV_PAGEOUT))
}

// arm arms a page allocation fault or a kernel-metadata one (page-cache
// nodes, the mapping's vm_area_struct).
func (s *shmemSystem) arm(t *rapid.T) {
	site := rapid.SampledFrom([]fault.Site{fault.PageAlloc, fault.Slab}).Draw(t, "site")
	must(t, s.m.faults.Arm(site, rapid.IntRange(1, 40).Draw(t, "nth"), rapid.IntRange(1, 3).Draw(t, "times")))
}

// check compares the whole file with the model and audits the kernel.
func (s *shmemSystem) check(t *rapid.T) { s.doCheck(t) }

func (s *shmemSystem) doCheck(t tester) {
	f := mustFD(t, s.p, s.fd)
	if f.Inode.Size != int64(len(s.model.data)) {
		t.Fatalf("size %d, model %d", f.Inode.Size, len(s.model.data))
	}
	// Read it all; an injected allocation failure (swap-in) makes a read
	// short, so go on from where it stopped.
	got := make([]byte, 0, f.Inode.Size)
	for tries := 0; tries < 8; tries++ {
		n, err := s.p.Pread(s.fd, int64(len(got)), f.Inode.Size+modelPage, func(b []byte, o int64) error {
			got = append(got, b...)
			return nil
		})
		if err != nil && err != errno.ENOMEM {
			t.Fatalf("pread: %v", err)
		}
		if n == 0 && err == nil {
			break
		}
	}
	if !bytes.Equal(got, s.model.data) {
		i := 0
		for i < len(got) && i < len(s.model.data) && got[i] == s.model.data[i] {
			i++
		}
		t.Fatalf("content differs from the model at byte %d (file %d bytes, model %d)", i, len(got), len(s.model.data))
	}
	if err := s.m.k.CheckInvariants(); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// testShmemModel runs the model test. wantEvents are /proc/vmstat events
// that a scripted run through the same system and model must produce, so
// that the test is known to reach the paths it is about whatever the
// random runs happen to draw (they are too few under -short to hit a
// large-folio split every time); the random runs' counts are logged.
func testShmemModel(t *testing.T, cmdline string, wantEvents ...string) {
	scripted := scriptedShmemRun(t, cmdline)
	for _, e := range wantEvents {
		if scripted[e] == 0 {
			t.Errorf("the scripted run produced no %s event (vmstat %v)", e, scripted)
		}
	}
	seen := map[string]uint64{}
	defer func() {
		for _, e := range wantEvents {
			t.Logf("random runs: %s %d", e, seen[e])
		}
	}()
	rapid.Check(t, func(rt *rapid.T) {
		m := bootMachine(t, machineOpts{mem: 256 << 20, swap: 32 << 20, cmdline: cmdline})
		p := m.task("p", 1000)
		fd, err := p.MemfdCreate("model", uapi.MFD_ALLOW_SEALING)
		must(rt, err)
		s := &shmemSystem{m: m, p: p, fd: fd}
		rt.Repeat(map[string]func(*rapid.T){
			"pwrite":    s.pwrite,
			"ftruncate": s.ftruncate,
			"punchHole": s.punchHole,
			"fallocate": s.fallocate,
			"mmap":      s.mmap,
			"store":     s.store,
			"load":      s.load,
			"beyondEOF": s.beyondEOF,
			"pageout":   s.pageout,
			"fault":     s.arm,
			"":          s.check,
		})
		for e, n := range m.k.VMStat() {
			seen[e] += n
		}
		p.Exit()
		if err := m.k.CheckInvariants(); err != nil {
			rt.Fatalf("invariants after exit: %v", err)
		}
		if leak := m.leak(); leak != "" {
			rt.Fatalf("after exit: %s", leak)
		}
	})
}

func TestShmemModel(t *testing.T) { testShmemModel(t, "", "pswpout", "pswpin") }

func TestShmemModelHuge(t *testing.T) {
	testShmemModel(t, "transparent_hugepage_shmem=always", "thp_file_alloc", "thp_split_page", "pswpout", "pswpin")
}

func TestShmemModelWithinSize(t *testing.T) {
	testShmemModel(t, "transparent_hugepage_shmem=within_size", "thp_file_alloc", "thp_split_page")
}

// scriptedShmemRun drives the model system through a fixed sequence that
// reaches every path the model test is about: large folios (with a huge=
// policy: a 4 MiB write allocates two PMD folios), a split (a hole punched
// inside one), swap-out of mapped pages (MADV_PAGEOUT) and swap-in (the
// check's read). It compares with the model after each step and returns
// the kernel's vmstat events.
func scriptedShmemRun(t *testing.T, cmdline string) map[string]uint64 {
	t.Helper()
	m := bootMachine(t, machineOpts{mem: 256 << 20, swap: 32 << 20, cmdline: cmdline})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("scripted", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	s := &shmemSystem{m: m, p: p, fd: fd}
	s.doPwrite(t, 0, 4<<20, 7)
	s.doCheck(t)
	s.doPunchHole(t, modelPage+100, 2*modelPage)
	s.doCheck(t)
	s.doMmap(t, 4<<20)
	s.doStore(t, 0, 3*modelPage, 9)
	s.doPageout(t, 0, 3*modelPage)
	s.doCheck(t)
	events := m.k.VMStat()
	p.Exit()
	m.check()
	return events
}
