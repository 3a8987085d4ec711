package kernel

import (
	"testing"

	"khosim/uapi"
)

// TestMemfdPinFoliosKeepsFallocatedFolios: memfd_pin_folios takes the
// folios it finds in the page cache as they are (filemap_get_folios_contig)
// — a fallocated folio stays !uptodate and its frame unwritten — and only
// fills holes, with zeroed, uptodate folios (memfd_alloc_folio).
func TestMemfdPinFoliosKeepsFallocatedFolios(t *testing.T) {
	m := bootMachine(t, machineOpts{cmdline: "transparent_hugepage_shmem=never"})
	task := m.k.NewTask("t", Cred{UID: 0, Caps: uapi.CapAll})
	fd, err := task.MemfdCreate("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Fallocate(fd, 0, 0, 4*4096); err != nil { // pages 0..3
		t.Fatal(err)
	}
	if err := task.Ftruncate(fd, 8*4096); err != nil { // pages 4..7: holes
		t.Fatal(err)
	}
	f, err := task.FD(fd)
	if err != nil {
		t.Fatal(err)
	}
	info := ShmemInode(f)
	pinned, err := m.k.MemfdPinFolios(info, 8*4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 8 {
		t.Fatalf("pinned %d folios, want 8", len(pinned))
	}
	for i, p := range pinned {
		if p.Index != uint64(i) {
			t.Fatalf("folio %d at index %d", i, p.Index)
		}
		if up := m.k.FolioTestUptodate(p.Folio); up != (i >= 4) {
			t.Errorf("page %d: uptodate %v; want fallocated pages left !uptodate, holes filled uptodate", i, up)
		}
		m.k.MM.FolioPut(p.Folio)
	}
	if err := m.k.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}
