package kernel

import (
	"bytes"
	"strings"
	"testing"

	"khosim/errno"
	"khosim/uapi"
)

// Tests from the mm/VFS review: each failed before its fix, except
// TestReviewSplitKeepsAccounting, an adversarial sequence kept as
// coverage.

// mapcountAt returns the mapcount of the folio caching page index of the
// file at fd, and whether a folio caches it.
func mapcountAt(t *testing.T, m *machine, p *Task, fd int, index uint64) (refcount, mapcount int, ok bool) {
	t.Helper()
	_, refcount, mapcount, ok = m.k.FolioAt(mustFD(t, p, fd), index)
	return refcount, mapcount, ok
}

// TestReviewMadviseRemoveSharedMaywrite: madvise_remove() asks for
// vma_is_shared_maywrite() (VM_SHARED|VM_MAYWRITE), not VM_WRITE, since
// Linux 6.7: a PROT_READ MAP_SHARED mapping of a file open for writing
// may punch holes; one of a file open read-only may not.
func TestReviewMadviseRemoveSharedMaywrite(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	_, err = p.Pwrite(fd, 0, 2*4096, pattern(1))
	must(t, err)
	v, err := p.Mmap(fd, 0, 2*4096, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Load(v, 0, 2*4096, nil)
	must(t, err)
	must(t, p.Madvise(v, 4096, 4096, madvRemove))
	if _, _, ok := mapcountAt(t, m, p, fd, 1); ok {
		t.Fatal("MADV_REMOVE left page 1 cached")
	}
	want := make([]byte, 2*4096)
	pattern(1)(want[:4096], 0)
	if got := readAll(t, p, fd, 0, 2*4096); !bytes.Equal(got, want) {
		t.Fatal("content after MADV_REMOVE")
	}
	m.check()

	// A read-only file: the mapping has no VM_MAYWRITE.
	tf, err := p.Open("/tmp/f", uapi.O_CREAT|uapi.O_RDWR)
	must(t, err)
	must(t, p.Ftruncate(tf, 4096))
	ro, err := p.Open("/tmp/f", uapi.O_RDONLY)
	must(t, err)
	w, err := p.Mmap(ro, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	if err := p.Madvise(w, 0, 4096, madvRemove); err != errno.EACCES {
		t.Fatalf("MADV_REMOVE of a read-only file's mapping: %v, want EACCES", err)
	}
	// A write-sealed memfd: the read-only mapping lost VM_MAYWRITE.
	sfd, err := p.MemfdCreate("s", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	must(t, p.Ftruncate(sfd, 4096))
	_, err = p.Fcntl(sfd, uapi.F_ADD_SEALS, uapi.F_SEAL_WRITE)
	must(t, err)
	sv, err := p.Mmap(sfd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	if err := p.Madvise(sv, 0, 4096, madvRemove); err != errno.EACCES {
		t.Fatalf("MADV_REMOVE of a write-sealed memfd's mapping: %v, want EACCES", err)
	}
	m.check()
}

// TestReviewSplitUnmapsFolio: split_huge_page() of a file folio unmaps it
// first (unmap_folio -> try_to_unmap; remap_page() only remaps anon
// folios), so after a punch hole, truncation or MADV_COLD splits a
// mapped large folio, none of its pages is mapped any more.
func TestReviewSplitUnmapsFolio(t *testing.T) {
	for _, c := range []struct {
		name string
		// shared: a second task maps the folio's first 64 pages too.
		// MADV_COLD leaves a folio likely mapped shared alone.
		shared bool
		op     func(t *testing.T, p *Task, fd int, v *VMA, want []byte) []byte
	}{
		{"punch hole", true, func(t *testing.T, p *Task, fd int, v *VMA, want []byte) []byte {
			must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 100*4096, 2*4096))
			clear(want[100*4096 : 102*4096])
			return want
		}},
		{"truncate", true, func(t *testing.T, p *Task, fd int, v *VMA, want []byte) []byte {
			must(t, p.Ftruncate(fd, 300*4096+10))
			return want[:300*4096+10]
		}},
		{"MADV_COLD", false, func(t *testing.T, p *Task, fd int, v *VMA, want []byte) []byte {
			must(t, p.Madvise(v, 0, 4*4096, uapi.MADV_COLD))
			return want
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := bootMachine(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"})
			p := m.task("p", 1000)
			q := m.task("q", 1000)
			fd, err := p.MemfdCreate("x", 0)
			must(t, err)
			_, err = p.Pwrite(fd, 0, 2<<20, pattern(3))
			must(t, err)
			want := make([]byte, 2<<20)
			pattern(3)(want, 0)
			v, err := p.Mmap(fd, 0, 2<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			must(t, err)
			_, err = p.Load(v, 0, 2<<20, nil)
			must(t, err)
			qfd, err := q.InstallFD(mustFD(t, p, fd).Get(), false) // as if passed over a socket
			must(t, err)
			w, err := q.Mmap(qfd, 0, 64*4096, uapi.PROT_READ, uapi.MAP_SHARED)
			must(t, err)
			wantMC := 512
			if c.shared {
				_, err = q.Load(w, 0, 64*4096, nil)
				must(t, err)
				wantMC += 64
			}
			if _, mc, _ := mapcountAt(t, m, p, fd, 0); mc != wantMC {
				t.Fatalf("mapcount %d before the split, want %d", mc, wantMC)
			}
			want = c.op(t, p, fd, v, want)
			if m.k.VMStat()["thp_split_page"] != 1 {
				t.Fatalf("no split: %v", m.k.VMStat())
			}
			for _, index := range []uint64{0, 5, 99, 200, 299} {
				ref, mc, ok := mapcountAt(t, m, p, fd, index)
				if !ok || ref != 1 || mc != 0 {
					t.Fatalf("page %d after the split: refcount %d mapcount %d (cached %v), want 1, 0", index, ref, mc, ok)
				}
			}
			m.check()
			if got := readAll(t, p, fd, 0, int64(len(want))); !bytes.Equal(got, want) {
				t.Fatal("content after the split")
			}
			// Touching the pages again maps the order-0 folios.
			_, err = q.Load(w, 0, 4096, nil)
			must(t, err)
			if ref, mc, _ := mapcountAt(t, m, p, fd, 0); ref != 2 || mc != 1 {
				t.Fatalf("refault: refcount %d mapcount %d", ref, mc)
			}
			q.Exit()
			p.Exit()
			m.check()
		})
	}
}

// TestReviewPageoutCleanFolio: shrink_folio_list() writes out only dirty
// folios; a clean shmem folio (a hole read-faulted in, never written) is
// dropped by __remove_mapping() and the page is a hole again. It takes
// no swap slot, and without swap its frame is freed too.
func TestReviewPageoutCleanFolio(t *testing.T) {
	for _, c := range []struct {
		name    string
		o       machineOpts
		swapped int64
		cached  uint64
	}{
		{"swap", machineOpts{swap: 16 << 20}, 4, 0},
		{"no swap", machineOpts{}, 0, 4},
		{"large folio", machineOpts{swap: 16 << 20, cmdline: "transparent_hugepage_shmem=always"}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := bootMachine(t, c.o)
			p := m.task("p", 1000)
			fd, err := p.MemfdCreate("x", 0)
			must(t, err)
			size := int64(8 * 4096)
			if c.name == "large folio" {
				size = 2 << 20
			}
			must(t, p.Ftruncate(fd, size))
			v, err := p.Mmap(fd, 0, size, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			must(t, err)
			_, err = p.Load(v, 0, size, nil) // every page a clean zeroed folio
			must(t, err)
			want := make([]byte, size)
			if c.name != "large folio" {
				_, err = p.Store(v, 0, 4*4096, pattern(4)) // pages 0-3 dirty
				must(t, err)
				pattern(4)(want[:4*4096], 0)
			}
			used := m.k.FrameCounts().Used
			must(t, p.Madvise(v, 0, size, uapi.MADV_PAGEOUT))
			info := ShmemInode(mustFD(t, p, fd))
			if info.Swapped() != c.swapped || info.Mapping().NrPages() != c.cached || info.Alloced() != c.swapped+int64(c.cached) {
				t.Fatalf("after pageout: %v, want swapped %d, %d cached", info, c.swapped, c.cached)
			}
			freed := uint64(size/4096) - c.cached
			if got := used - m.k.FrameCounts().Used; got != freed {
				t.Fatalf("pageout freed %d frames, want %d", got, freed)
			}
			if _, _, ok := mapcountAt(t, m, p, fd, 7); ok {
				t.Fatal("the clean folio at page 7 is still cached")
			}
			m.check()
			if got := readAll(t, p, fd, 0, size); !bytes.Equal(got, want) {
				t.Fatal("content after pageout")
			}
			m.check()
		})
	}
}

// TestReviewPunchHoleUnmapQuirk: shmem_fallocate() compares unmap_end
// and unmap_start as u64, so a hole that ends inside the first page makes
// unmap_end -1 and unmap_mapping_range() unmaps the rest of the file
// (from the hole's first whole page, 0 or 1). Nothing is lost: pages
// fault back.
func TestReviewPunchHoleUnmapQuirk(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	_, err = p.Pwrite(fd, 0, 4*4096, pattern(6))
	must(t, err)
	want := make([]byte, 4*4096)
	pattern(6)(want, 0)
	v, err := p.Mmap(fd, 0, 4*4096, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	mapped := func() (n [4]int) {
		for i := range n {
			_, n[i], _ = mapcountAt(t, m, p, fd, uint64(i))
		}
		return n
	}
	_, err = p.Load(v, 0, 4*4096, nil)
	must(t, err)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 0, 100))
	clear(want[:100])
	if got := mapped(); got != [4]int{} {
		t.Fatalf("punch (0, 100): mapcounts %v, want all unmapped", got)
	}
	_, err = p.Load(v, 0, 4*4096, nil)
	must(t, err)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 200, 100))
	clear(want[200:300])
	if got := mapped(); got != [4]int{1, 0, 0, 0} {
		t.Fatalf("punch (200, 100): mapcounts %v, want page 0 mapped only", got)
	}
	// A hole of whole pages further on unmaps just those.
	_, err = p.Load(v, 0, 4*4096, nil)
	must(t, err)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 4096+7, 4096))
	clear(want[4096+7 : 2*4096+7])
	if got := mapped(); got != [4]int{1, 1, 1, 1} {
		t.Fatalf("punch (4103, 4096): mapcounts %v, want all mapped", got)
	}
	if got := readAll(t, p, fd, 0, 4*4096); !bytes.Equal(got, want) {
		t.Fatal("content")
	}
	m.check()
}

// TestReviewMmapErrno: the mmap checks Linux makes that khosim skipped or
// made in another order.
func TestReviewMmapErrno(t *testing.T) {
	e := newEnv(t)
	const mapHugetlbFlag = 0x40000
	for _, c := range []struct {
		name        string
		off, length int64
		prot, flags int
		want        errno.Errno
	}{
		// ksys_mmap_pgoff: MAP_HUGETLB on a file that is not hugetlbfs.
		{name: "MAP_HUGETLB", length: 4096, prot: uapi.PROT_READ, flags: uapi.MAP_SHARED | mapHugetlbFlag, want: errno.EINVAL},
		// calc_vm_flag_bits: VM_GROWSDOWN on a file mapping.
		{name: "MAP_GROWSDOWN", length: 4096, prot: uapi.PROT_READ, flags: uapi.MAP_SHARED | mapGrowsdown, want: errno.EINVAL},
		{name: "len beyond TASK_SIZE", length: 1 << 62, prot: uapi.PROT_READ, flags: uapi.MAP_SHARED, want: errno.ENOMEM},
	} {
		_, err := e.p.Mmap(e.mfd, c.off, c.length, c.prot, c.flags)
		if got := errno.Of(err); got != c.want {
			t.Errorf("%s: got %v (%v), want %v", c.name, got, err, c.want)
		}
	}
	e.check()
}

// TestReviewSplitKeepsAccounting: pageout, punch and truncate across a
// large folio that two tasks map partly, with swap, fallocated pages past
// i_size and a re-write: content, accounting and references stay exact,
// and exit frees everything.
func TestReviewSplitKeepsAccounting(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 16 << 20, cmdline: "transparent_hugepage_shmem=always"})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	_, err = p.Pwrite(fd, 0, 4<<20, pattern(5))
	must(t, err)
	want := make([]byte, 4<<20)
	pattern(5)(want, 0)
	v, err := p.Mmap(fd, 0, 4<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Load(v, 0, 40*4096, nil)
	must(t, err)
	w, err := p.Mmap(fd, 1<<20, 2<<20, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Load(w, 0, 2<<20, nil)
	must(t, err)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 30*4096+5, 2<<20))
	clear(want[30*4096+5 : 30*4096+5+2<<20])
	m.check()
	_, err = p.Load(w, 0, 2<<20, nil)
	must(t, err)
	must(t, p.Madvise(w, 0, 2<<20, uapi.MADV_PAGEOUT))
	m.check()
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_KEEP_SIZE, 4<<20, 2<<20))
	must(t, p.Ftruncate(fd, 3<<20+77))
	want = want[:3<<20+77]
	m.check()
	if got := readAll(t, p, fd, 0, 4<<20); !bytes.Equal(got, want) {
		t.Fatal("content after pageout and truncate")
	}
	must(t, p.Fallocate(fd, 0, 0, 8<<20))
	want = append(want, make([]byte, 8<<20-len(want))...)
	_, err = p.Store(v, 100, 4<<20-100, pattern(9))
	must(t, err)
	pattern(9)(want[100:4<<20], 100)
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 1<<20, 5<<20))
	clear(want[1<<20 : 6<<20])
	m.check()
	if got := readAll(t, p, fd, 0, 8<<20); !bytes.Equal(got, want) {
		t.Fatal("content after fallocate, store and punch")
	}
	p.Exit()
	m.check()
	if leak := m.leak(); leak != "" || m.k.NrSwapPages() != m.k.TotalSwapPages() {
		t.Fatalf("after exit: %s, %s", leak, m.k.swapString())
	}
}

// TestReviewOpenGetnameBeforeEMFILE: do_sys_openat2() copies the path in
// (getname: ENOENT for "", ENAMETOOLONG from PATH_MAX) before it takes an
// fd (EMFILE).
func TestReviewOpenGetnameBeforeEMFILE(t *testing.T) {
	e := newEnv(t)
	e.fillFDs(t, 10)
	if _, err := e.p.Open("", uapi.O_RDONLY); err != errno.ENOENT {
		t.Fatalf("open(\"\") with a full fd table: %v, want ENOENT", err)
	}
	long := "/tmp/" + strings.Repeat("a/", pathMax/2)
	if _, err := e.p.Open(long, uapi.O_RDONLY); err != errno.ENAMETOOLONG {
		t.Fatalf("open(%d bytes) with a full fd table: %v, want ENAMETOOLONG", len(long), err)
	}
	if _, err := e.p.Open("/tmp/none", uapi.O_RDONLY); err != errno.EMFILE {
		t.Fatalf("open of a missing file with a full fd table: %v, want EMFILE", err)
	}
	e.check()
}

// TestReviewPopulateWriteDirties: MADV_POPULATE_WRITE over a page already
// mapped (faultin_page -> follow_page_pte with FOLL_WRITE|FOLL_TOUCH)
// marks its folio dirty, so reclaim writes it to swap instead of dropping
// it as a clean hole.
func TestReviewPopulateWriteDirties(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 16 << 20})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	must(t, p.Ftruncate(fd, 2*4096))
	v, err := p.Mmap(fd, 0, 2*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Load(v, 0, 2*4096, nil)
	must(t, err)
	must(t, p.Madvise(v, 0, 4096, madvPopulateWrite))
	must(t, p.Madvise(v, 0, 2*4096, uapi.MADV_PAGEOUT))
	if info := ShmemInode(mustFD(t, p, fd)); info.Swapped() != 1 || info.Mapping().NrPages() != 0 {
		t.Fatalf("%v: want page 0 on swap and page 1 dropped", info)
	}
	m.check()
}

// TestReviewPathSlashes: link_path_walk() needs a directory before every
// further component, "." and ".." included, and a trailing slash on the
// last name asks for a directory (open_last_lookups, do_open,
// do_unlinkat's "slashes").
func TestReviewPathSlashes(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		path  string
		flags int
		want  errno.Errno
	}{
		{"/tmp/ro/.", uapi.O_RDONLY, errno.ENOTDIR},
		{"/tmp/ro/..", uapi.O_RDONLY, errno.ENOTDIR},
		{"/tmp/none/..", uapi.O_RDONLY, errno.ENOENT},
		{"/tmp/ro/", uapi.O_RDONLY, errno.ENOTDIR},
		{"/dev/null/", uapi.O_RDWR, errno.ENOTDIR},
		{"/tmp/none/", uapi.O_RDONLY, errno.ENOENT},
		{"/tmp/new/", uapi.O_CREAT | uapi.O_RDWR, errno.EISDIR},
		{"/tmp/ro/", uapi.O_CREAT | uapi.O_EXCL | uapi.O_RDWR, errno.EISDIR},
		{"/tmp/./ro", uapi.O_RDONLY, 0},
		{"/tmp//ro", uapi.O_RDONLY, 0},
		{"/tmp/", uapi.O_RDONLY, 0},
	} {
		_, err := e.p.Open(c.path, c.flags)
		if got := errno.Of(err); got != c.want {
			t.Errorf("open(%q, %#x): %v, want %v", c.path, c.flags, err, c.want)
		}
	}
	if e.k.tmpDir["new"] != nil {
		t.Error(`open("/tmp/new/", O_CREAT) created /tmp/new`)
	}
	if err := e.p.Unlink("/tmp/ro/"); err != errno.ENOTDIR {
		t.Errorf(`unlink("/tmp/ro/"): %v, want ENOTDIR`, err)
	}
	if err := e.p.Unlink("/tmp/none/"); err != errno.ENOENT {
		t.Errorf(`unlink("/tmp/none/"): %v, want ENOENT`, err)
	}
	if e.k.tmpDir["ro"] == nil {
		t.Error(`unlink("/tmp/ro/") removed /tmp/ro`)
	}
	e.check()
}
