package physmem

import "testing"

// TestStructPageFloorWritesWhatRestoreWrites: the floor memmap's folios
// are initialised exactly as RestoreFolio initialises a restored one.
func TestStructPageFloorWritesWhatRestoreWrites(t *testing.T) {
	f := NewStructPageFloor(3 << 9)
	if n := f.Write(9); n != 3 {
		t.Fatalf("wrote %d folios of order 9 in 1536 struct pages, want 3", n)
	}
	for pfn := PFN(0); pfn < 3<<9; pfn++ {
		p := f.pages[pfn]
		head := pfn &^ 511
		want := Page{flags: PGTail, lru: [2]uint32{pfnLink(head), 0}}
		if pfn == head {
			want = Page{flags: PGHead | 9<<flagsOrderShift, refcount: 1}
		}
		if p != want {
			t.Fatalf("pfn %d: %+v, want %+v", pfn, p, want)
		}
	}
	if n := NewStructPageFloor(5).Write(0); n != 5 {
		t.Fatalf("order 0: %d folios", n)
	}
}
