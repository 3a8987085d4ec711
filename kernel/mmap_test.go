package kernel

import (
	"bytes"
	"testing"

	"khosim/physmem"
	"khosim/uapi"
)

// folioCounts returns refcount and mapcount of the folio at index.
func folioCounts(t *testing.T, k *Kernel, f *File, index uint64) (int, int) {
	t.Helper()
	_, ref, mc, ok := k.FolioAt(f, index)
	if !ok {
		t.Fatalf("no folio at index %d", index)
	}
	return ref, mc
}

func TestMmapFaultReferences(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p, q := m.task("p", 1000), m.task("q", 1000)
	fd, err := p.MemfdCreate("x", 0)
	must(t, err)
	must(t, p.Ftruncate(fd, 4*4096))
	f := mustFD(t, p, fd)
	v, err := p.Mmap(fd, 0, 4*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	if f.Refs() != 2 {
		t.Fatalf("file refs %d, want fd + mapping", f.Refs())
	}
	_, err = p.Store(v, 4096, 10, pattern(1))
	must(t, err)
	if ref, mc := folioCounts(t, m.k, f, 1); ref != 2 || mc != 1 {
		t.Fatalf("after a fault: refcount %d mapcount %d, want 2 (page cache + PTE) and 1", ref, mc)
	}
	if _, _, _, ok := m.k.FolioAt(f, 0); ok {
		t.Fatal("a fault mapped more than the page it touched")
	}
	// A second task maps the same page.
	nfd, err := q.InstallFD(f.Get(), false)
	must(t, err)
	w, err := q.Mmap(nfd, 4096, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
	must(t, err)
	var got []byte
	_, err = q.Load(w, 0, 10, func(b []byte, _ int64) error { got = append(got, b...); return nil })
	must(t, err)
	want := make([]byte, 10)
	pattern(1)(want, 4096)
	if !bytes.Equal(got, want) {
		t.Fatal("the second mapping sees other bytes")
	}
	if ref, mc := folioCounts(t, m.k, f, 1); ref != 3 || mc != 2 {
		t.Fatalf("two mappings: refcount %d mapcount %d", ref, mc)
	}
	m.check()
	must(t, q.Munmap(w))
	if ref, mc := folioCounts(t, m.k, f, 1); ref != 2 || mc != 1 {
		t.Fatalf("after munmap: refcount %d mapcount %d", ref, mc)
	}
	// Truncation unmaps what it removes.
	must(t, p.Ftruncate(fd, 0))
	if _, _, _, ok := m.k.FolioAt(f, 1); ok {
		t.Fatal("truncate left the page")
	}
	m.check()
	must(t, p.Ftruncate(fd, 4*4096))
	var zero []byte
	_, err = p.Load(v, 4096, 10, func(b []byte, _ int64) error { zero = append(zero, b...); return nil })
	must(t, err)
	if !bytes.Equal(zero, make([]byte, 10)) {
		t.Fatal("a stale PTE survived truncation")
	}
	m.check()
}

func TestMadvisePageout(t *testing.T) {
	t.Run("exclusive pages go to swap", func(t *testing.T) {
		m := bootMachine(t, machineOpts{swap: 16 << 20})
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		must(t, p.Ftruncate(fd, 8*4096))
		v, _ := p.Mmap(fd, 0, 8*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
		_, err := p.Store(v, 0, 6*4096, pattern(3)) // pages 6, 7 never faulted
		must(t, err)
		must(t, p.Madvise(v, 0, 8*4096, uapi.MADV_PAGEOUT))
		info := ShmemInode(mustFD(t, p, fd))
		if info.Swapped() != 6 || info.Mapping().NrPages() != 0 || m.k.VMStat()["pswpout"] != 6 {
			t.Fatalf("after pageout: %v, %v", info, m.k.VMStat())
		}
		m.check()
		want := make([]byte, 8*4096)
		pattern(3)(want[:6*4096], 0)
		if got := readAll(t, p, fd, 0, 8*4096); !bytes.Equal(got, want) {
			t.Fatal("swapped data came back different")
		}
		if info.Swapped() != 0 || m.k.NrSwapPages() != m.k.TotalSwapPages() {
			t.Fatalf("swap-in left swap used: %v, %s", info, m.k.swapString())
		}
		m.check()
	})
	t.Run("shared pages stay", func(t *testing.T) {
		m := bootMachine(t, machineOpts{swap: 16 << 20})
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		_, err := p.Pwrite(fd, 0, 2*4096, pattern(2)) // dirty: clean folios are dropped, not swapped
		must(t, err)
		v1, _ := p.Mmap(fd, 0, 2*4096, uapi.PROT_READ, uapi.MAP_SHARED)
		v2, _ := p.Mmap(fd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
		_, err = p.Load(v1, 0, 2*4096, nil)
		must(t, err)
		_, err = p.Load(v2, 0, 4096, nil)
		must(t, err)
		must(t, p.Madvise(v1, 0, 2*4096, uapi.MADV_PAGEOUT))
		info := ShmemInode(mustFD(t, p, fd))
		if info.Swapped() != 1 {
			t.Fatalf("swapped %d, want only the page mapped once", info.Swapped())
		}
		if _, mc := folioCounts(t, m.k, mustFD(t, p, fd), 0); mc != 2 {
			t.Fatalf("the shared page lost mappings: mapcount %d", mc)
		}
		m.check()
	})
	t.Run("no swap: unmapped, not moved", func(t *testing.T) {
		m := bootMachine(t, machineOpts{})
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		_, err := p.Pwrite(fd, 0, 4096, pattern(2)) // dirty: a clean folio would be dropped
		must(t, err)
		v, _ := p.Mmap(fd, 0, 4096, uapi.PROT_READ, uapi.MAP_SHARED)
		_, err = p.Load(v, 0, 4096, nil)
		must(t, err)
		must(t, p.Madvise(v, 0, 4096, uapi.MADV_PAGEOUT))
		ref, mc := folioCounts(t, m.k, mustFD(t, p, fd), 0)
		if ref != 1 || mc != 0 || ShmemInode(mustFD(t, p, fd)).Swapped() != 0 {
			t.Fatalf("refcount %d mapcount %d", ref, mc)
		}
		m.check()
	})
	t.Run("swap full", func(t *testing.T) {
		m := bootMachine(t, machineOpts{swap: 12 * 4096}) // 11 usable slots
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		must(t, p.Ftruncate(fd, 16*4096))
		v, _ := p.Mmap(fd, 0, 16*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
		_, err := p.Store(v, 0, 16*4096, pattern(4))
		must(t, err)
		must(t, p.Madvise(v, 0, 16*4096, uapi.MADV_PAGEOUT))
		info := ShmemInode(mustFD(t, p, fd))
		if info.Swapped() != 11 || info.Mapping().NrPages() != 5 || m.k.NrSwapPages() != 0 {
			t.Fatalf("%v; %s", info, m.k.swapString())
		}
		m.check()
	})
	t.Run("large folio split", func(t *testing.T) {
		m := bootMachine(t, machineOpts{swap: 16 << 20, cmdline: "transparent_hugepage_shmem=always"})
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		_, err := p.Pwrite(fd, 0, 2<<20, pattern(5))
		must(t, err)
		v, _ := p.Mmap(fd, 0, 2<<20, uapi.PROT_READ, uapi.MAP_SHARED)
		_, err = p.Load(v, 0, 2<<20, nil)
		must(t, err)
		// Part of the folio: split, which unmaps all of it (unmap_folio),
		// so nothing is reclaimed yet; once mapped again as order-0
		// folios, those pages go.
		must(t, p.Madvise(v, 0, 8*4096, uapi.MADV_PAGEOUT))
		info := ShmemInode(mustFD(t, p, fd))
		if _, mc := folioCounts(t, m.k, mustFD(t, p, fd), 100); info.Swapped() != 0 || mc != 0 || m.k.VMStat()["thp_split_page"] != 1 {
			t.Fatalf("%v; mapcount %d; %v", info, mc, m.k.VMStat())
		}
		m.check()
		_, err = p.Load(v, 0, 8*4096, nil)
		must(t, err)
		must(t, p.Madvise(v, 0, 2<<20, uapi.MADV_PAGEOUT))
		if info.Swapped() != 8 {
			t.Fatalf("%v", info)
		}
		m.check()
		want := make([]byte, 2<<20)
		pattern(5)(want, 0)
		if got := readAll(t, p, fd, 0, 2<<20); !bytes.Equal(got, want) {
			t.Fatal("content changed")
		}
		m.check()
	})
	t.Run("whole large folio", func(t *testing.T) {
		m := bootMachine(t, machineOpts{swap: 16 << 20, cmdline: "transparent_hugepage_shmem=always"})
		p := m.task("p", 1000)
		fd, _ := p.MemfdCreate("x", 0)
		_, err := p.Pwrite(fd, 0, 2<<20, pattern(5))
		must(t, err)
		v, _ := p.Mmap(fd, 0, 2<<20, uapi.PROT_READ, uapi.MAP_SHARED)
		_, err = p.Load(v, 0, 2<<20, nil)
		must(t, err)
		must(t, p.Madvise(v, 0, 2<<20, uapi.MADV_PAGEOUT))
		if info := ShmemInode(mustFD(t, p, fd)); info.Swapped() != 512 {
			t.Fatalf("%v", info)
		}
		m.check()
	})
}

func TestMadviseOthers(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	p := m.task("p", 1000)
	fd, _ := p.MemfdCreate("x", 0)
	must(t, p.Ftruncate(fd, 4*4096))
	f := mustFD(t, p, fd)
	v, _ := p.Mmap(fd, 0, 4*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, p.Madvise(v, 0, 4*4096, madvPopulateWrite))
	if _, mc := folioCounts(t, m.k, f, 3); mc != 1 {
		t.Fatal("MADV_POPULATE_WRITE did not map")
	}
	must(t, p.Madvise(v, 0, 2*4096, uapi.MADV_DONTNEED))
	if ref, mc := folioCounts(t, m.k, f, 0); ref != 1 || mc != 0 {
		t.Fatalf("MADV_DONTNEED: refcount %d mapcount %d", ref, mc)
	}
	_, err := p.Store(v, 0, 4*4096, pattern(1))
	must(t, err)
	must(t, p.Madvise(v, 4096, 4096, madvRemove))
	if _, _, _, ok := m.k.FolioAt(f, 1); ok {
		t.Fatal("MADV_REMOVE left the page")
	}
	got := readAll(t, p, fd, 4096, 4096)
	if !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("MADV_REMOVE did not punch a hole")
	}
	must(t, p.Madvise(v, 0, 4*4096, uapi.MADV_COLD))
	m.check()
}

func TestShmemRestoreFolio(t *testing.T) {
	// The KHO restore path: an empty shmem file, a folio put back at an
	// index, the memfd set up, i_size and f_pos restored.
	m := bootMachine(t, machineOpts{})
	k := m.k
	f, err := k.ShmemFileSetup("memfd:restored", 0)
	must(t, err)
	info := ShmemInode(f)
	folio, err := k.MM.FolioAlloc(physmem.GFPMovable, physmem.HPageOrder)
	must(t, err)
	pattern(9)(k.folioData(folio), 512*4096)
	must(t, k.ShmemRestoreFolio(info, folio, 512, true, true))
	k.MM.FolioPut(folio)
	fallocated, err := k.MM.FolioAlloc(physmem.GFPMovable, 0)
	must(t, err)
	k.MM.Frames.Fill(fallocated.PFN(), 1, 0x5555) // stale bytes: must read as zeros
	must(t, k.ShmemRestoreFolio(info, fallocated, 2000, false, true))
	k.MM.FolioPut(fallocated)
	if err := k.ShmemRestoreFolio(info, fallocated, 3000, true, true); err == nil {
		t.Fatal("a folio of a mapping was restored twice")
	}
	// A failed restore leaves the folio as it was given: flags it had
	// stay, flags it did not have are not left behind, nothing charged.
	spare, err := k.MM.FolioAlloc(physmem.GFPMovable, 0)
	must(t, err)
	k.folioHead(spare).Set(physmem.PGUptodate)
	used := info.sb.usedBlocks
	if err := k.ShmemRestoreFolio(info, spare, 2000, true, true); err == nil {
		t.Fatal("a folio was restored over an occupied index")
	}
	if fl := k.folioHead(spare).Flags(); fl&physmem.PGUptodate == 0 || fl&(physmem.PGDirty|physmem.PGSwapBacked) != 0 ||
		info.sb.usedBlocks != used {
		t.Fatalf("after a failed restore: flags %v, %d blocks used (was %d)", fl, info.sb.usedBlocks, used)
	}
	k.MM.FolioPut(spare)
	f.Inode.Size = 2001 * 4096
	f.Pos = 100
	must(t, MemfdSetupFile(f, uapi.MFD_ALLOW_SEALING))
	p := m.task("p", 0)
	fd, err := p.InstallFD(f, false)
	must(t, err)
	if !IsMemfd(f) || info.Alloced() != 513 || info.Seals != 0 {
		t.Fatalf("restored %v", info)
	}
	want := make([]byte, 2001*4096)
	pattern(9)(want[512*4096:1024*4096], 512*4096)
	if got := readAll(t, p, fd, 0, 2001*4096); !bytes.Equal(got, want) {
		t.Fatal("restored content")
	}
	m.check()
	p.Exit()
	m.check()
}

func TestMmapFaultLargeFolios(t *testing.T) {
	m := bootMachine(t, machineOpts{cmdline: "transparent_hugepage_shmem=always"})
	p := m.task("p", 1000)
	fd, _ := p.MemfdCreate("x", 0)
	must(t, p.Ftruncate(fd, 4<<20))
	f := mustFD(t, p, fd)
	order := func(index uint64) uint {
		pfn, _, _, ok := m.k.FolioAt(f, index)
		if !ok {
			t.Fatalf("no folio at %d", index)
		}
		return m.k.MM.FolioOrder(m.k.MM.PageFolio(pfn))
	}
	v, err := p.Mmap(fd, 0, 4<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	if v.Start%pmdSize != 0 {
		t.Fatalf("a 4 MiB mapping at %#x is not PMD aligned", v.Start)
	}
	_, err = p.Store(v, 0, 1, nil)
	must(t, err)
	if order(0) != physmem.HPageOrder {
		t.Fatal("a fault in an always mapping did not allocate a PMD-sized folio")
	}
	// A mapping from file page 1: the file and the addresses agree
	// modulo 2 MiB, so the folio at file page 512 can be PMD-sized, but
	// the one around page 1 would stick out of the mapping.
	w, err := p.Mmap(fd, 4096, 4<<20-4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	if (w.Start-4096)%pmdSize != 0 {
		t.Fatalf("mapping at %#x of offset 4096 is not PMD-congruent", w.Start)
	}
	must(t, p.Ftruncate(fd, 0))
	must(t, p.Ftruncate(fd, 4<<20))
	_, err = p.Store(w, 0, 1, nil)
	must(t, err)
	if order(1) != 0 {
		t.Fatal("a PMD folio that does not fit the mapping was allocated")
	}
	_, err = p.Store(w, 2<<20-4096, 1, nil)
	must(t, err)
	if order(512) != physmem.HPageOrder {
		t.Fatal("no PMD folio where it fits the mapping")
	}
	m.check()
}
