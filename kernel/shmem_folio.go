package kernel

import (
	"math/bits"

	"khosim/errno"
	"khosim/pagecache"
	"khosim/physmem"
)

// hpageNr is HPAGE_PMD_NR: the pages of a PMD-sized folio.
const hpageNr = 1 << physmem.HPageOrder

// sgpType is enum sgp_type: what shmem_get_folio() is asked for.
type sgpType int

const (
	sgpRead    sgpType = iota // don't exceed i_size, don't allocate page
	sgpNoalloc                // similar, but fail on hole or use fallocated page
	sgpCache                  // don't exceed i_size, may allocate page
	sgpWrite                  // may exceed i_size, may allocate !Uptodate page
	sgpFalloc                 // like SGP_WRITE, but make existing page Uptodate
)

// shmemRecalcInode is shmem_recalc_inode(): applies the changes to alloced
// and swapped, then gives back to the superblock every page that is
// neither in the page cache nor on swap any more (a truncation removed it
// from the page cache before calling here).
func shmemRecalcInode(info *ShmemInodeInfo, alloced, swapped int64) {
	info.alloced += alloced
	info.swapped += swapped
	freed := info.alloced - info.swapped - int64(info.mapping.NrPages())
	// shmem_writepage raises swapped before nrpages is lowered:
	// compensate, as Linux does, so that nothing looks freed.
	if swapped > 0 {
		freed += swapped
	}
	if freed > 0 {
		info.alloced -= freed
		shmemInodeUnacctBlocks(info, freed)
	}
}

// shmemInodeAcctBlocks is shmem_inode_acct_blocks(): charges pages to the
// superblock, failing with ENOSPC beyond its size limit. The
// vm_enough_memory check of VM_NORESERVE inodes is not modelled: with the
// default heuristic overcommit it only refuses single requests larger than
// RAM plus swap.
func shmemInodeAcctBlocks(info *ShmemInodeInfo, pages int64) error {
	sb := info.sb
	if sb.maxBlocks != 0 && sb.usedBlocks+uint64(pages) > sb.maxBlocks {
		return errno.ENOSPC
	}
	sb.usedBlocks += uint64(pages)
	return nil
}

// shmemInodeUnacctBlocks is shmem_inode_unacct_blocks().
func shmemInodeUnacctBlocks(info *ShmemInodeInfo, pages int64) {
	if uint64(pages) > info.sb.usedBlocks {
		panicViolation("shmem-used-blocks", info.String(), "unaccounting %d pages from %s, which has %d",
			pages, info.sb.name, info.sb.usedBlocks)
	}
	info.sb.usedBlocks -= uint64(pages)
}

// shmemAddToPageCache is shmem_add_to_page_cache(): inserts folio at
// index, where every index of its range must hold expected (NULL, or the
// swap entry a swapped-in page replaces). The page cache takes
// folio_nr_pages() references and the folio records mapping and index.
//
// Errors: EEXIST if the range holds anything but expected; EINVAL if index
// is not aligned to the folio's order; ENOMEM (or the injected slab or
// page_alloc fault) when the XArray cannot get the nodes the store needs
// (xas_nomem): nothing changes, the folio is as it was given.
func (k *Kernel) shmemAddToPageCache(info *ShmemInodeInfo, f physmem.Folio, index uint64, expected pagecache.Entry) error {
	nr := k.folioNrPages(f)
	if index&(nr-1) != 0 {
		return errno.EINVAL
	}
	if expected == 0 {
		// The range must be empty: xa_insert() checks and stores in one
		// walk.
		head := k.folioHead(f)
		oldIndex := head.Index()
		k.MM.FolioRefAdd(f, int32(nr))
		head.SetMapping(info.mapping.ID())
		head.SetIndex(index)
		if err := info.mapping.InsertFolio(f.PFN(), index, uint(bits.TrailingZeros64(nr))); err != nil {
			head.SetMapping(0)
			head.SetIndex(oldIndex)
			k.MM.FolioRefSub(f, int32(nr))
			return err
		}
		return nil
	}
	if nr == 1 {
		if e, ok := info.mapping.Lookup(index); ok && e.Entry != expected || !ok && expected != 0 {
			return errno.EEXIST
		}
	} else {
		for e := range info.mapping.Range(index, index+nr-1) { // xas_for_each_conflict
			if e.Entry != expected {
				return errno.EEXIST
			}
		}
	}
	head := k.folioHead(f)
	k.MM.FolioRefAdd(f, int32(nr))
	head.SetMapping(info.mapping.ID())
	head.SetIndex(index)
	if _, err := info.mapping.AddFolio(f.PFN(), index, k.MM.FolioOrder(f)); err != nil {
		head.SetMapping(0)
		k.MM.FolioRefSub(f, int32(nr))
		return err
	}
	return nil
}

// ShmemAddToPageCache is shmem_add_to_page_cache() for fdbox's migration
// of folios out of KHO scratch: inserts a folio the caller holds a
// reference on at index of an empty range. The page cache takes its own
// folio_nr_pages() references; the caller keeps its reference and must
// put it.
//
// Errors: EEXIST if anything is cached in the range; EINVAL if index is
// not aligned to the folio's order; ENOMEM (or the injected slab or
// page_alloc fault) when the page cache cannot get its nodes, changing
// nothing. A range reserved with pagecache.AddressSpace.Reserve or left
// reserved by DeleteFolioReserve counts as empty, and a folio of the
// reserved order put there needs no node: it cannot fail with ENOMEM.
func (k *Kernel) ShmemAddToPageCache(info *ShmemInodeInfo, f physmem.Folio, index uint64) error {
	k.mustAlive()
	return k.shmemAddToPageCache(info, f, index, 0)
}

// ShmemRestoreFolio puts a preserved folio back into a shmem page cache
// at index, as the RFC's shmem_fdbox_kho_recover() does for each
// preserved page (following shmem_alloc_and_add_folio()): it is charged
// to the file system (shmem_inode_acct_blocks), becomes swap-backed,
// uptodate and dirty as the handover recorded (a fallocated folio that
// was never written stays !uptodate and reads as zeros), is added to the
// page cache (shmem_add_to_page_cache) and accounted to the inode
// (shmem_recalc_inode). Any order up to MAX_PAGE_ORDER is accepted.
//
// Preconditions: the caller holds a reference to f (e.g. from
// physmem.MM.RestoreFolio) and f belongs to no mapping. On success the
// page cache holds its own folio_nr_pages() references and the caller
// still holds its one, which it must put; on failure the folio is as it
// was given (the flags set here are cleared again) and nothing stays
// charged.
//
// Errors: EINVAL if f already belongs to a mapping or index is not
// aligned to its order; EEXIST if the range is not empty; ENOSPC beyond
// the file system's size; ENOMEM (or the injected slab or page_alloc
// fault) when the page cache cannot get the nodes the insert needs
// (nothing changed: the folio is as given, no block charged). Into a
// reserved range of the folio's order it cannot fail with ENOMEM.
func (k *Kernel) ShmemRestoreFolio(info *ShmemInodeInfo, f physmem.Folio, index uint64, uptodate, dirty bool) error {
	k.mustAlive()
	nr := int64(k.folioNrPages(f)) // checks f names an initialised folio head first
	head := k.folioHead(f)
	if head.Mapping() != 0 {
		return errno.EINVAL
	}
	if err := shmemInodeAcctBlocks(info, nr); err != nil {
		return err
	}
	set := physmem.PGSwapBacked
	if uptodate {
		set |= physmem.PGUptodate
	}
	if dirty {
		set |= physmem.PGDirty
	}
	added := set &^ head.Flags()
	head.Set(added)
	if err := k.shmemAddToPageCache(info, f, index, 0); err != nil {
		head.Clear(added)
		// Give back the blocks charged above: shmem_recalc_inode(inode,
		// pages, 0) counts them as alloced, finds them missing from the
		// page cache and unaccounts them (what shmem_alloc_and_add_folio's
		// error path achieves). (0, 0) would leave the superblock charged.
		shmemRecalcInode(info, nr, 0)
		return err
	}
	shmemRecalcInode(info, nr, 0)
	return nil
}

// filemapRemoveFolio is filemap_remove_folio(): the folio leaves the page
// cache, which drops its folio_nr_pages() references (filemap_free_folio).
// Preconditions: the caller holds its own reference, so the folio
// survives the call.
func (k *Kernel) filemapRemoveFolio(info *ShmemInodeInfo, f physmem.Folio) {
	k.deleteFromPageCache(info, f, 0)
}

// deleteFromPageCache removes folio from info's page cache, leaving
// shadow (NULL or a swap entry) in its place, clears folio->mapping and
// drops the page cache's references (page_cache_delete +
// filemap_free_folio, or shmem_delete_from_page_cache with a swap entry).
func (k *Kernel) deleteFromPageCache(info *ShmemInodeInfo, f physmem.Folio, shadow pagecache.Entry) {
	head := k.folioHead(f)
	if err := info.mapping.DeleteFolio(f.PFN(), head.Index(), shadow); err != nil {
		panicViolation("folio-in-mapping", k.dumpFolio(f)+"\n"+info.String(),
			"removing a folio its mapping does not hold: %v", err)
	}
	head.SetMapping(0)
	k.MM.FolioPutRefs(f, int32(k.folioNrPages(f)))
}

// shmemAllocFolio is shmem_alloc_folio(): a folio for the page cache,
// GFP_HIGHUSER_MOVABLE, so it may sit in KHO scratch. Its bytes are not
// zeroed: shmem clears or writes them before they become uptodate.
func (k *Kernel) shmemAllocFolio(order uint) (physmem.Folio, error) {
	return k.MM.FolioAlloc(physmem.GFPHighUserMovable, order)
}

// shmemAllocAndAddFolio is shmem_alloc_and_add_folio(): allocates a folio
// of the given order for index (rounded down to it), adds it to the page
// cache and charges it to the inode. The folio comes back !uptodate with
// one reference the caller must put.
//
// Errors: ENOMEM (or the injected page_alloc fault) when allocation fails,
// or when the page cache cannot get its nodes (the slab fault site too);
// EEXIST if something is cached in the range; ENOSPC beyond the
// superblock's size limit.
func (k *Kernel) shmemAllocAndAddFolio(info *ShmemInodeInfo, index uint64, order uint) (physmem.Folio, error) {
	pages := uint64(1) << order
	index &^= pages - 1
	f, err := k.shmemAllocFolio(order)
	if err != nil {
		return 0, err
	}
	k.folioHead(f).Set(physmem.PGSwapBacked)
	if err := k.shmemAddToPageCache(info, f, index, 0); err != nil {
		k.MM.FolioPut(f)
		return 0, err
	}
	if err := shmemInodeAcctBlocks(info, int64(pages)); err != nil {
		// shmem_unused_huge_shrink() has nothing to split here: khosim
		// does not keep the shrinklist of huge folios beyond i_size.
		k.filemapRemoveFolio(info, f)
		k.MM.FolioPut(f)
		return 0, err
	}
	shmemRecalcInode(info, int64(pages), 0)
	return f, nil
}

// shmemHugeOrderAllowed decides whether shmem may allocate a PMD-sized
// folio for index: shmem_allowable_huge_orders() / shmem_huge_global_enabled()
// restricted to the PMD order (khosim allocates shmem folios of order 0
// and HPAGE_PMD_ORDER only, as Linux does with every mTHP size but the
// PMD one disabled), then shmem_suitable_orders(). writeEnd is the end of
// the write or fallocate asking (0 for none); vma and vaddr describe a
// fault.
func (k *Kernel) shmemHugeOrderAllowed(info *ShmemInodeInfo, index uint64, writeEnd int64, vma *VMA, vaddr uint64) bool {
	if !k.shmemHugeGlobalEnabled(info, index, writeEnd, vma) {
		return false
	}
	if vma != nil && !vma.thpSuitable(vaddr, physmem.HPageOrder) {
		return false
	}
	aligned := index &^ (hpageNr - 1)
	for range info.mapping.Range(aligned, aligned+hpageNr-1) {
		return false // something is cached in the huge extent
	}
	return true
}

// shmemHugeGlobalEnabled is shmem_huge_global_enabled() for the PMD order.
func (k *Kernel) shmemHugeGlobalEnabled(info *ShmemInodeInfo, index uint64, writeEnd int64, vma *VMA) bool {
	switch k.shmemHuge {
	case shmemHugeDeny:
		return false
	case shmemHugeForce:
		return true
	}
	switch info.sb.huge {
	case shmemHugeAlways:
		return vma != nil || shmemMappingSizePMD(info, index, writeEnd)
	case shmemHugeWithinSize:
		if vma != nil || shmemMappingSizePMD(info, index, writeEnd) {
			aligned := (index + hpageNr) &^ (hpageNr - 1) // round_up(index + 1, HPAGE_PMD_NR)
			if posPgoffUp(max(writeEnd, info.inode.Size)) >= aligned {
				return true
			}
		}
		// SHMEM_HUGE_ADVISE would need VM_HUGEPAGE (MADV_HUGEPAGE),
		// which khosim does not have.
	}
	return false
}

// shmemMappingSizePMD is shmem_mapping_size_orders() asked about the PMD
// order: a write or fallocate allows a folio of the orders its size from
// index covers, if index is aligned to them.
func shmemMappingSizePMD(info *ShmemInodeInfo, index uint64, writeEnd int64) bool {
	if !info.mappingLargeFolioSupport() || writeEnd == 0 {
		return false
	}
	size := writeEnd - pgoffPos(index)
	return size >= physmem.PageSize<<physmem.HPageOrder && index&(hpageNr-1) == 0
}

// shmemGetFolioGFP is shmem_get_folio_gfp(): finds the folio at index,
// swapping it in or allocating it as sgp allows, and returns it with a
// reference the caller must put. With SGP_READ a hole, or a fallocated
// !uptodate folio, gives ok false: the caller reads zeros.
//
// Errors: EFBIG for an index beyond the last page of the largest file;
// EINVAL for an index at or beyond i_size with SGP_READ or SGP_CACHE;
// ENOENT for a hole with SGP_NOALLOC; ENOMEM or ENOSPC from allocation.
func (k *Kernel) shmemGetFolioGFP(info *ShmemInodeInfo, index uint64, writeEnd int64, sgp sgpType, vma *VMA, vaddr uint64) (physmem.Folio, bool, error) {
	if index > maxLFSFileSize>>physmem.PageShift {
		return 0, false, errno.EFBIG
	}
	if sgp <= sgpCache && pgoffPos(index) >= info.inode.Size {
		return 0, false, errno.EINVAL
	}
	e, found := info.mapping.Lookup(index)
	if found && e.Entry.IsValue() {
		f, err := k.shmemSwapinFolio(info, e.Index, e.Entry)
		if err != nil {
			return 0, false, err
		}
		return f, true, nil
	}
	var f physmem.Folio
	if found {
		f = physmem.Folio(e.Entry.PFN())
		k.MM.FolioGet(f)
		if k.FolioTestUptodate(f) {
			return f, true, nil
		}
		if sgp != sgpRead {
			return k.shmemGetFolioClear(f, sgp)
		}
		k.MM.FolioPut(f)
	}
	switch sgp {
	case sgpRead:
		return 0, false, nil
	case sgpNoalloc:
		return 0, false, errno.ENOENT
	}
	var err error
	if k.shmemHugeOrderAllowed(info, index, writeEnd, vma, vaddr) {
		f, err = k.shmemAllocAndAddFolio(info, index, physmem.HPageOrder)
		if err == nil {
			k.stats.thpFileAlloc++
			goto alloced
		}
		k.stats.thpFileFallback++
	}
	f, err = k.shmemAllocAndAddFolio(info, index, 0)
	if err != nil {
		return 0, false, err
	}
alloced:
	if sgp == sgpFalloc {
		sgp = sgpWrite // let SGP_FALLOC use the SGP_WRITE optimization on a new folio
	}
	return k.shmemGetFolioClear(f, sgp)
}

// shmemGetFolioClear is the clear: label of shmem_get_folio_gfp(): an
// SGP_WRITE caller clears what it does not write itself, but everyone
// else, including SGP_FALLOC on a folio fallocated earlier, must
// initialise a !uptodate folio now.
func (k *Kernel) shmemGetFolioClear(f physmem.Folio, sgp sgpType) (physmem.Folio, bool, error) {
	if sgp != sgpWrite && !k.FolioTestUptodate(f) {
		k.MM.Frames.Zero(f.PFN(), k.folioNrPages(f))
		k.folioMarkUptodate(f)
	}
	return f, true, nil
}

// shmemSwapinFolio is shmem_swapin_folio(): reads the page at index back
// from its swap slot into a new order-0 folio, which replaces the swap
// entry in the page cache, and frees the slot. The swap cache is not
// modelled: the folio goes straight from the slot to the page cache. It
// returns the folio uptodate and dirty with a reference the caller must
// put.
//
// Errors: ENOMEM (or the injected page_alloc fault) when no folio can be
// allocated, or (the slab fault) when the page cache cannot get the node
// replacing a large swap entry needs; the page stays on swap.
func (k *Kernel) shmemSwapinFolio(info *ShmemInodeInfo, index uint64, radswap pagecache.Entry) (physmem.Folio, error) {
	swap := SwapEntry(radswap.Value())
	if !k.swapEntryValid(swap) {
		badSwapEntry(k, swap, "page cache holds a swap entry that names no used slot")
	}
	f, err := k.shmemAllocFolio(0)
	if err != nil {
		return 0, err
	}
	k.swap.dev.read(swap.Offset(), k.folioData(f))
	k.folioHead(f).Set(physmem.PGSwapBacked | physmem.PGUptodate)
	if err := k.shmemAddToPageCache(info, f, index, radswap); err != nil {
		if err == errno.ENOMEM {
			// The page cache needed a node (splitting a large swap
			// entry) and could not have it: the page stays on swap.
			k.folioHead(f).Clear(physmem.PGSwapBacked | physmem.PGUptodate)
			k.MM.FolioPut(f)
			return 0, err
		}
		panicViolation("swapin-replaces-entry", info.String(), "swap entry %v at index %#x: %v", swap, index, err)
	}
	shmemRecalcInode(info, 0, -1)
	k.folioMarkDirty(f)
	k.swapFree(swap)
	k.stats.pswpin++
	return f, nil
}

// ShmemSwapinAll reads every swapped-out page of the file back into its
// page cache (shmem_swapin_folio over the whole file, as shmem_unuse_inode
// does), so that a caller about to walk the page cache finds folios only.
//
// Errors: ENOMEM (or the injected page_alloc fault) from the first page
// that cannot be swapped in; the pages before it stay in memory and the
// rest on swap, so the file is consistent either way.
func (k *Kernel) ShmemSwapinAll(info *ShmemInodeInfo) error {
	k.mustAlive()
	if info.swapped == 0 {
		return nil
	}
	for e := range info.mapping.Range(0, ^uint64(0)) { // re-looks-up each entry: swap-in may modify
		if !e.Entry.IsValue() {
			continue
		}
		f, err := k.shmemSwapinFolio(info, e.Index, e.Entry)
		if err != nil {
			return err
		}
		k.MM.FolioPut(f)
	}
	if info.swapped != 0 {
		panicViolation("shmem-swapped", info.String(), "swapped is %d after swapping in every swap entry", info.swapped)
	}
	return nil
}
