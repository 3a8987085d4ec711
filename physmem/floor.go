package physmem

// StructPageFloor is a memmap of nr struct pages, of the type and size a
// kernel's memmap holds, that belongs to no kernel: it exists to measure
// the floor of restoring large folios. kho_restore_folio() must
// initialise every struct page of a preserved folio — the head, and each
// of a 2 MiB folio's 511 tails by prep_compound_tail() — so no restore
// can be faster than writing those struct pages; `khosim bench` measures
// this floor in the same run as the restore and states its order-9
// target relative to it (issue 13's P1').
//
// Write initialises the struct pages through the code MM.RestoreFolio
// uses (prepCompound), so the floor and the restore write the same bytes
// the same way; only the memmap differs (the machine's holds live state
// and cannot be rewritten for a measurement).
type StructPageFloor struct {
	pages []Page
}

// NewStructPageFloor allocates a floor memmap of nr struct pages. Its
// host memory is committed as Write first touches it.
func NewStructPageFloor(nr uint64) *StructPageFloor {
	return &StructPageFloor{pages: make([]Page, nr)}
}

// Write initialises every whole folio of the given order in the floor
// memmap as RestoreFolio would a restored one, and returns how many
// folios it wrote.
func (f *StructPageFloor) Write(order uint) uint64 {
	nr := uint64(1) << order
	var n uint64
	for pfn := uint64(0); pfn+nr <= uint64(len(f.pages)); pfn += nr {
		f.pages[pfn] = Page{}
		prepCompound(f.pages, PFN(pfn), order)
		n++
	}
	return n
}

// prepCompound is the struct-page half of prep_new_page() for a block of
// the given order at pfn: the head's refcount and, for order > 0, its
// compound order, and prep_compound_tail() for every tail — the bulk of
// restoring a large folio, written as a tight loop over a subslice,
// without per-page bounds checks.
func prepCompound(pages []Page, pfn PFN, order uint) {
	head := &pages[pfn]
	head.refcount = 1
	if order > 0 {
		head.flags = PGHead | PageFlags(order)<<flagsOrderShift
		tail := Page{flags: PGTail, lru: [2]uint32{pfnLink(pfn), 0}}
		tails := pages[pfn+1 : pfn+1<<order]
		for i := range tails {
			tails[i] = tail
		}
	}
}
