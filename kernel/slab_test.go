package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"khosim/errno"
	"khosim/fault"
	"khosim/invariant"
	"khosim/physmem"
	"khosim/uapi"
)

// state is what a failed system call must leave as it was: the task's
// fds, the kernel's files and inodes, the /tmp names, the mappings, and
// the frames once the empty slabs are shrunk.
type kstate struct {
	fds, files, inodes, names, vmas int
	free, slab                      uint64
}

func (m *machine) state(p *Task) kstate {
	m.k.MM.KmemCacheShrink()
	c := m.k.FrameCounts()
	return kstate{len(p.FDs()), len(m.k.files), len(m.k.inodes), len(m.k.tmpDir), len(p.MM.vmas), c.Free, c.Slab}
}

// TestKernelMetadataENOMEM fails each allocation of kernel metadata a
// system call makes (the slab fault site, nth counting its allocations):
// the call fails with the errno Linux gives and changes nothing.
func TestKernelMetadataENOMEM(t *testing.T) {
	type setup struct {
		m  *machine
		p  *Task
		fd int // a memfd with 8 KiB written
	}
	for _, tc := range []struct {
		name string
		nth  int
		want errno.Errno
		op   func(s setup) error
		// after checks what the failure left, beyond the state.
		after func(t *testing.T, s setup)
	}{
		{"memfd_create: the inode", 1, errno.ENOSPC, func(s setup) error {
			_, err := s.p.MemfdCreate("x", 0)
			return err
		}, nil},
		{"memfd_create: the file", 2, errno.ENOMEM, func(s setup) error {
			_, err := s.p.MemfdCreate("x", 0)
			return err
		}, nil},
		{"open O_CREAT: the file, before the lookup", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Open("/tmp/new", uapi.O_CREAT|uapi.O_RDWR)
			return err
		}, nil},
		{"open O_CREAT: the inode", 2, errno.ENOSPC, func(s setup) error {
			_, err := s.p.Open("/tmp/new", uapi.O_CREAT|uapi.O_RDWR)
			return err
		}, func(t *testing.T, s setup) {
			if _, err := s.p.Open("/tmp/new", uapi.O_RDWR); err != errno.ENOENT {
				t.Fatalf("the failed create left a name: %v", err)
			}
		}},
		{"open of an existing file", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Open("/tmp/a", uapi.O_RDONLY)
			return err
		}, nil},
		{"open of /dev/null", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Open("/dev/null", uapi.O_RDWR)
			return err
		}, nil},
		{"open of a missing name: the file comes first", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Open("/tmp/missing", uapi.O_RDONLY)
			return err
		}, nil},
		{"mmap: the vm_area_struct", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Mmap(s.fd, 0, 8192, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			return err
		}, func(t *testing.T, s setup) {
			if info := ShmemInode(mustFD(t, s.p, s.fd)); len(info.mmaps) != 0 || info.mmapWritable != 0 {
				t.Fatalf("i_mmap %d, i_mmap_writable %d", len(info.mmaps), info.mmapWritable)
			}
		}},
		{"pwrite: a page-cache node", 1, errno.ENOMEM, func(s setup) error {
			_, err := s.p.Pwrite(s.fd, 1<<20, 4096, pattern(3))
			return err
		}, func(t *testing.T, s setup) {
			if f := mustFD(t, s.p, s.fd); f.Inode.Size != 8192 || ShmemInode(f).alloced != 2 {
				t.Fatalf("size %d alloced %d", f.Inode.Size, ShmemInode(f).alloced)
			}
		}},
		{"fallocate: a page-cache node, after some folios went in", 2, errno.ENOMEM, func(s setup) error {
			return s.p.Fallocate(s.fd, 0, 1<<20, 1<<20) // 256 pages: 4 leaves
		}, func(t *testing.T, s setup) {
			if f := mustFD(t, s.p, s.fd); f.Inode.Size != 8192 || ShmemInode(f).alloced != 2 {
				t.Fatalf("fallocate not undone: size %d alloced %d", f.Inode.Size, ShmemInode(f).alloced)
			}
		}},
		{"fault: a page-cache node (after the mapping's)", 2, errno.ENOMEM, func(s setup) error {
			must(s.m.tb, s.p.Ftruncate(s.fd, 2<<20))
			v, err := s.p.Mmap(s.fd, 0, 2<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
			must(s.m.tb, err)
			_, err = s.p.Store(v, 1<<20, 1, pattern(1))
			must(s.m.tb, s.p.Munmap(v))
			must(s.m.tb, s.p.Ftruncate(s.fd, 8192))
			return errno.Of(err)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := bootMachine(t, machineOpts{})
			p := m.task("p", 1000)
			fd, err := p.MemfdCreate("m", 0)
			must(t, err)
			_, err = p.Pwrite(fd, 0, 8192, pattern(1))
			must(t, err)
			a, err := p.Open("/tmp/a", uapi.O_CREAT|uapi.O_RDWR)
			must(t, err)
			must(t, p.Close(a))
			s := setup{m, p, fd}
			before := m.state(p)
			must(t, m.faults.Arm(fault.Slab, tc.nth, 1))
			if err := tc.op(s); err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if m.faults.Armed(fault.Slab) {
				t.Fatal("the fault did not fire")
			}
			if after := m.state(p); after != before {
				t.Fatalf("the failed call changed the kernel: %+v -> %+v", before, after)
			}
			if tc.after != nil {
				tc.after(t, s)
			}
			if got := readAll(t, p, fd, 0, 8192); !bytes.Equal(got, func() []byte { b := make([]byte, 8192); pattern(1)(b, 0); return b }()) {
				t.Fatal("the memfd's content changed")
			}
			m.check()
			if tc.nth == 1 { // the call works once the fault is spent
				if err := tc.op(s); err == errno.ENOMEM || err == errno.ENOSPC {
					t.Fatalf("again: %v", err)
				}
				m.check()
			}
		})
	}
}

// TestFdTableGrowth: the fd table holds 64 fds; the 65th makes
// expand_files allocate a 128-fd table, which can fail (dup, F_DUPFD,
// memfd_create, open: ENOMEM); the table goes at exit.
func TestFdTableGrowth(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	null, err := p.Open("/dev/null", uapi.O_RDWR)
	must(t, err)
	for len(p.FDs()) < nrOpenDefault {
		_, err := p.Dup(null)
		must(t, err)
	}
	if p.fdt.maxFDs != 0 {
		t.Fatalf("fd table of %d before the 65th fd", p.fdt.maxFDs)
	}
	before := m.state(p)
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"dup", func() error { _, err := p.Dup(null); return err }},
		{"F_DUPFD", func() error { _, err := p.Fcntl(null, uapi.F_DUPFD, 100); return err }},
		{"memfd_create", func() error { _, err := p.MemfdCreate("x", 0); return err }},
		{"open", func() error { _, err := p.Open("/dev/null", uapi.O_RDWR); return err }},
	} {
		for nth := 1; nth <= 3; nth++ { // the fdtable, its fd array, its bitmaps
			must(t, m.faults.Arm(fault.Slab, nth, 1))
			if err := tc.op(); err != errno.ENOMEM {
				t.Fatalf("%s with allocation %d of the fd table failing: %v, want ENOMEM", tc.name, nth, err)
			}
			if after := m.state(p); after != before || p.maxFDs() != nrOpenDefault {
				t.Fatalf("%s: %+v -> %+v, table of %d", tc.name, before, after, p.maxFDs())
			}
		}
	}
	fd, err := p.Dup(null)
	must(t, err)
	if fd != nrOpenDefault || p.maxFDs() != 128 {
		t.Fatalf("fd %d, table of %d", fd, p.maxFDs())
	}
	nfd, err := p.Fcntl(null, uapi.F_DUPFD, 200)
	must(t, err)
	if nfd != 200 || p.maxFDs() != 256 {
		t.Fatalf("F_DUPFD 200: fd %d, table of %d", nfd, p.maxFDs())
	}
	m.check()
	p.Exit()
	if leak := m.leak(); leak != "" {
		t.Fatal(leak)
	}
}

// TestFramesSlab: kernel metadata costs frames: frames(slab) grows with a
// page cache and comes back to its boot value when the files go (the
// empty slab each cache keeps, shrunk); slab frames are never KHO
// scratch, and the audit counts them owned.
func TestFramesSlab(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 64 << 20})
	base := m.k.FrameCounts().Slab
	if base != m.slabBase || base == 0 {
		t.Fatalf("frames(slab) at boot %d: the 64 MiB swap map (16 KiB) is vmalloc'd", base)
	}
	p := m.task("p", 1000)
	var fds []int
	for i := range 8 {
		fd, err := p.MemfdCreate(fmt.Sprintf("m%d", i), 0)
		must(t, err)
		_, err = p.Pwrite(fd, 0, 16<<20, pattern(byte(i)))
		must(t, err)
		v, err := p.Mmap(fd, 0, 1<<20, uapi.PROT_READ, uapi.MAP_SHARED)
		must(t, err)
		_ = v
		fds = append(fds, fd)
	}
	c := m.k.FrameCounts()
	// 8 files of 4096 pages: 65 nodes each, 14 to an order-1 slab.
	if c.Slab < base+2*(8*65/14) {
		t.Fatalf("frames(slab) %d with 8 x 16 MiB of page cache (boot: %d)", c.Slab, base)
	}
	if c.Free+c.Used+c.Slab+c.Tracker+c.Reserved+c.Preserved != c.Total {
		t.Fatalf("frame states do not partition memory: %+v", c)
	}
	for r := range m.k.MM.SlabFrames() {
		if mt := m.k.MM.Zone.PageblockMigratetype(r.PFN); mt != physmem.MigrateMovable {
			t.Fatalf("%s slab at %v in a %v pageblock", r.Owner, r.PFN, mt)
		}
	}
	infos := map[string]physmem.SlabInfo{}
	for _, si := range m.k.SlabInfo() {
		infos[si.Name] = si
	}
	if infos["radix_tree_node"].ActiveObjs != 8*65 || infos["shmem_inode_cache"].ActiveObjs != 8 ||
		infos["vm_area_struct"].ActiveObjs != 8 || infos["filp"].ActiveObjs < 8 {
		t.Fatalf("slabinfo %+v", infos)
	}
	m.check()
	p.Exit()
	m.check()
	c = m.k.FrameCounts()
	if c.Slab > base+uint64(len(infos))*8 { // at most one empty slab per cache
		t.Fatalf("frames(slab) %d after the files went (boot %d)", c.Slab, base)
	}
	if leak := m.leak(); leak != "" {
		t.Fatal(leak)
	}
	if got := m.k.FrameCounts().Slab; got != base {
		t.Fatalf("frames(slab) %d after shrink, boot %d", got, base)
	}
}

// TestShmemRestoreFolioNoMem: the KHO restore helper fails cleanly when
// the page cache cannot get its nodes, and cannot fail where the index
// was reserved.
func TestShmemRestoreFolioNoMem(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	k := m.k
	f, err := k.ShmemFileSetup("memfd:restored", 0)
	must(t, err)
	info := ShmemInode(f)
	folio, err := k.MM.FolioAlloc(physmem.GFPMovable, physmem.HPageOrder)
	must(t, err)
	used, refs := info.sb.usedBlocks, k.MM.FolioRefCount(folio)
	must(t, m.faults.Arm(fault.Slab, 1, 1))
	if err := k.ShmemRestoreFolio(info, folio, 512, true, true); err != errno.ENOMEM {
		t.Fatalf("restore with no node: %v, want ENOMEM", err)
	}
	head := k.folioHead(folio)
	if head.Mapping() != 0 || head.Flags()&(physmem.PGUptodate|physmem.PGDirty|physmem.PGSwapBacked) != 0 ||
		k.MM.FolioRefCount(folio) != refs || info.sb.usedBlocks != used || info.alloced != 0 || info.mapping.NrPages() != 0 {
		t.Fatalf("a failed restore changed things: %v, %d blocks (was %d), alloced %d", head, info.sb.usedBlocks, used, info.alloced)
	}
	// Reserved, the same restore needs no node.
	must(t, info.Mapping().Reserve(512, physmem.HPageOrder))
	must(t, m.faults.Arm(fault.Slab, 1, 1000))
	must(t, k.ShmemRestoreFolio(info, folio, 512, true, true))
	if m.faults.Fired(fault.Slab) != 1 {
		t.Fatal("the restore into a reservation allocated")
	}
	must(t, m.faults.Arm(fault.Slab, 1<<30, 1))
	k.MM.FolioPut(folio)
	// A reservation the file still holds goes at eviction.
	must(t, info.Mapping().Reserve(4096, 0))
	f.Put()
	m.check()
	if leak := m.leak(); leak != "" {
		t.Fatal(leak)
	}
}

// TestSplitNoMem: splitting a PMD folio needs 8 page-cache nodes; when it
// cannot have them, truncation zeroes the partial folio instead and
// MADV_PAGEOUT leaves it.
func TestSplitNoMem(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 16 << 20, cmdline: "transparent_hugepage_shmem=always"})
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("m", 0)
	must(t, err)
	_, err = p.Pwrite(fd, 0, 2<<20, pattern(4))
	must(t, err)
	f := mustFD(t, p, fd)
	pfn, _, _, _ := m.k.FolioAt(f, 0)
	if m.k.MM.FolioOrder(m.k.MM.PageFolio(pfn)) != physmem.HPageOrder {
		t.Fatal("no PMD folio")
	}
	must(t, m.faults.Arm(fault.Slab, 1, 1000))
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 4096, 4096))
	v, err := p.Mmap(fd, 0, 2<<20, uapi.PROT_READ, uapi.MAP_SHARED)
	if err != errno.ENOMEM {
		t.Fatalf("mmap with slab failing: %v", err)
	}
	_ = v
	must(t, m.faults.Arm(fault.Slab, 1<<30, 1))
	if m.k.MM.FolioOrder(m.k.MM.PageFolio(pfn)) != physmem.HPageOrder || m.k.VMStat()["thp_split_page"] != 0 {
		t.Fatal("the folio was split without its nodes")
	}
	want := make([]byte, 2<<20)
	pattern(4)(want, 0)
	clear(want[4096:8192])
	if got := readAll(t, p, fd, 0, 2<<20); !bytes.Equal(got, want) {
		t.Fatal("the hole was not zeroed")
	}
	m.check()
	// With the nodes, the split goes ahead.
	must(t, p.Fallocate(fd, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, 4096, 4096))
	if m.k.VMStat()["thp_split_page"] != 1 {
		t.Fatal("no split")
	}
	m.check()
}

// TestSwaponNoMem: a swap map that cannot be allocated leaves the kernel
// without swap (swapon's ENOMEM, logged), not without a boot.
func TestSwaponNoMem(t *testing.T) {
	frames := newFrames(t, 256<<20)
	swap, err := NewSwapDevice(64 << 20)
	must(t, err)
	in := fault.New()
	must(t, in.Arm(fault.Slab, 1, 1))
	k, err := Boot(Hardware{Frames: frames, Swap: swap, Faults: in}, BootParams{BootID: 1})
	must(t, err)
	defer k.Poison("test over")
	if k.TotalSwapPages() != 0 || k.FrameCounts().Slab != 0 {
		t.Fatalf("swap pages %d, slab frames %d", k.TotalSwapPages(), k.FrameCounts().Slab)
	}
	found := false
	for _, l := range k.Log() {
		found = found || l.Text == "swapon: /dev/swap0: ENOMEM"
	}
	if !found {
		t.Fatalf("no swapon error in the log: %v", k.Log())
	}
	must(t, k.CheckInvariants())
}

// TestNoSlabBeforeMemblockFreeAll: early boot (KHO's EarlyInit) runs on
// memblock; the slab allocator is not up, and a slab allocation there is
// a kernel bug.
func TestNoSlabBeforeMemblockFreeAll(t *testing.T) {
	var up bool
	var bug any
	k, err := Boot(Hardware{Frames: newFrames(t, 256<<20)}, BootParams{BootID: 1, EarlyInit: func(k *Kernel) error {
		up = k.MM.SlabAvailable()
		func() {
			defer func() { bug = recover() }()
			_, _ = k.MM.Kmalloc(64)
		}()
		return nil
	}})
	must(t, err)
	defer k.Poison("test over")
	var v *invariant.Violation
	if e, ok := bug.(error); up || !ok || !errors.As(e, &v) || v.Invariant != "slab-available" {
		t.Fatalf("slab available in early boot: %v; kmalloc there: %v", up, bug)
	}
	if !k.MM.SlabAvailable() {
		t.Fatal("slab not up after boot")
	}
}
