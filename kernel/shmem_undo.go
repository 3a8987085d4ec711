package kernel

import (
	"khosim/errno"
	"khosim/pagecache"
	"khosim/physmem"
)

// ShmemUndoOps is struct shmem_undo_range_ops from the RFC (patch 3,
// "mm: shmem: allow callers to specify operations to shmem_undo_range"):
// what ShmemUndoRange does with each kind of thing it removes. Any method
// may fail; the walk then stops and ShmemUndoRange returns that error,
// leaving what was not yet undone in place. The RFC's void *arg cookie is
// the implementation's receiver.
//
// The methods see the entries as the walk finds them:
//   - UndoSwap gets each swap entry in the range, with the index it sits
//     at. It returns how many swap pages it freed, or 0 if the entry was
//     no longer there (the walk then looks at that index again).
//   - UndoFolio gets each folio wholly inside the range in the first pass,
//     and each order-0 folio in the second. It must remove the folio from
//     the page cache (the default truncates it).
//   - UndoPartialFolio gets the folios at both ends of the range that the
//     range covers only partly, and each large folio of the second pass
//     (which may lie wholly inside). It returns true when the range's part
//     of the folio is gone — zeroed, split off, or the whole folio
//     removed — and false when a large folio could not be split and stays
//     cached, zeroed over the range.
type ShmemUndoOps interface {
	UndoSwap(info *ShmemInodeInfo, index uint64, old SwapEntry) (int64, error)
	UndoFolio(info *ShmemInodeInfo, f physmem.Folio) error
	UndoPartialFolio(info *ShmemInodeInfo, f physmem.Folio, lstart, lend int64) (bool, error)
}

// shmemDefaultUndoOps is shmem_default_undo_ops: truncation. Its methods
// never fail.
type shmemDefaultUndoOps struct{}

// ShmemDefaultUndoOps are the RFC's shmem_default_undo_ops: free swap
// entries (shmem_free_swap), truncate folios (truncate_inode_folio), and
// zero or split partial ones (truncate_inode_partial_folio). They never
// fail.
var ShmemDefaultUndoOps ShmemUndoOps = shmemDefaultUndoOps{}

// UndoSwap is shmem_default_undo_swap(): shmem_free_swap().
func (shmemDefaultUndoOps) UndoSwap(info *ShmemInodeInfo, index uint64, old SwapEntry) (int64, error) {
	return ShmemFreeSwap(info, index, old), nil
}

// UndoFolio is shmem_default_undo_folio(): truncate_inode_folio().
func (shmemDefaultUndoOps) UndoFolio(info *ShmemInodeInfo, f physmem.Folio) error {
	// truncate_inode_folio's -EIO (folio no longer in the mapping) cannot
	// happen here: the walk found it there and nothing runs in between.
	if err := TruncateInodeFolio(info, f); err != nil {
		panicViolation("folio-in-mapping", info.inode.k.dumpFolio(f), "truncating a folio the walk found: %v", err)
	}
	return nil
}

// UndoPartialFolio is shmem_default_undo_partial_folio():
// truncate_inode_partial_folio().
func (shmemDefaultUndoOps) UndoPartialFolio(info *ShmemInodeInfo, f physmem.Folio, lstart, lend int64) (bool, error) {
	return TruncateInodePartialFolio(info, f, lstart, lend), nil
}

// ShmemUndoRange is the RFC's shmem_undo_range(): removes the pages and
// swap entries of [lstart, lend] (lend -1: to the end of the file) from
// the page cache, handing each to ops. With unfalloc it undoes a failed
// fallocate instead: only !uptodate folios go, whole even where the range
// covers them partly, and swap entries stay.
//
// The walk, as in mm/shmem.c:
//  1. find_lock_entries batches over the whole pages [start, end): swap
//     entries to UndoSwap, folios wholly inside to UndoFolio;
//  2. unless unfalloc, the folios holding lstart and lend (read back from
//     swap when within i_size) to UndoPartialFolio, after which a folio
//     that could not be split narrows the range;
//  3. find_get_entries batches over [start, end) again for whatever is
//     left: swap entries, order-0 folios to UndoFolio, large folios to
//     UndoPartialFolio (a split restarts the batch to see the new folios).
//     When truncating to the end (lend -1) the pass repeats until it finds
//     nothing.
//
// Finally shmem_recalc_inode gives back the swap pages freed (and, through
// nrpages, the folios removed). On an ops error the walk stops there and
// the recalculation still runs, so alloced and swapped stay exact for what
// remains.
//
// Folio locks are not modelled (khosim is single-threaded: find_lock_entries
// is find_get_entries, folio_unlock a no-op), so two bugs of the RFC's
// patch 3/5 cannot show here and are recorded instead: its pass-1 error
// path breaks out of the batch loop with the rest of the batch's folios
// still locked (and referenced: folio_batch_release never runs for them),
// and it calls folio_unlock on every batch entry, value (swap) entries
// included, which are not folios at all. A port back to Linux must unlock
// and release the rest of the batch on the error path and skip value
// entries, as mainline's shmem_undo_range does.
func ShmemUndoRange(info *ShmemInodeInfo, lstart, lend int64, unfalloc bool, ops ShmemUndoOps) error {
	k := info.inode.k
	k.mustAlive()
	mapping := info.mapping
	start := posPgoffUp(lstart)
	end := uint64(lend+1) >> physmem.PageShift
	if lend == -1 {
		end = ^uint64(0) // unsigned, so actually very big
	}
	var nrSwapsFreed int64
	err := func() error {
		if info.fallocend > start && info.fallocend <= end && !unfalloc {
			info.fallocend = start
		}

		// Pass 1: find_lock_entries over whole entries.
		var batch pagecache.Batch
		index := start
		for index < end {
			batch.Reinit()
			mapping.FindLockEntries(index, end-1, &batch)
			if batch.Len() == 0 {
				break
			}
			next := batchNext(&batch) // find_lock_entries updates *start
			k.batchGet(&batch)
			var err error
			for _, e := range batch.Entries() {
				if e.Entry.IsValue() {
					if unfalloc {
						continue
					}
					var n int64
					if n, err = ops.UndoSwap(info, e.Index, SwapEntry(e.Entry.Value())); err != nil {
						break
					}
					nrSwapsFreed += n
					continue
				}
				f := physmem.Folio(e.Entry.PFN())
				if !unfalloc || !k.FolioTestUptodate(f) {
					if err = ops.UndoFolio(info, f); err != nil {
						break
					}
				}
			}
			k.batchRelease(&batch)
			if err != nil {
				return err
			}
			index = next
		}

		// Pass 2: the partial folios at both ends. When undoing a failed
		// fallocate we want none of the partial folio zeroing and
		// splitting, but the whole !uptodate folio truncated below.
		if !unfalloc {
			sameFolio := lstart>>physmem.PageShift == lend>>physmem.PageShift
			f, ok := k.shmemGetPartialFolio(info, uint64(lstart>>physmem.PageShift))
			if ok {
				// u64 in Linux (folio_size is a size_t): lend -1, to
				// the end, is never inside the folio.
				sameFolio = uint64(lend) < uint64(k.folioEnd(f))
				k.folioMarkDirty(f)
				done, err := ops.UndoPartialFolio(info, f, lstart, lend)
				if err == nil && !done {
					start = k.folioNextIndex(f)
					if sameFolio {
						end = k.folioIndex(f)
					}
				}
				k.MM.FolioPut(f)
				if err != nil {
					return err
				}
				ok = false
			}
			if !sameFolio {
				f, ok = k.shmemGetPartialFolio(info, uint64(lend>>physmem.PageShift))
			}
			if ok {
				k.folioMarkDirty(f)
				done, err := ops.UndoPartialFolio(info, f, lstart, lend)
				if err == nil && !done {
					end = k.folioIndex(f)
				}
				k.MM.FolioPut(f)
				if err != nil {
					return err
				}
			}
		}

		// Pass 3: find_get_entries over whatever is left.
		index = start
		seen := mapping.Counts()
		for index < end {
			batch.Reinit()
			mapping.FindGetEntries(index, end-1, &batch)
			if batch.Len() == 0 {
				// If all gone or hole-punch or unfalloc, we're done.
				if index == start || end != ^uint64(0) {
					break
				}
				// But if truncating, restart to make sure all gone.
				if c := mapping.Counts(); c == seen {
					panicViolation("shmem-undo-progress", info.String(),
						"a truncation pass removed nothing yet entries remain: the undo ops must remove what they are given")
				}
				index, seen = start, mapping.Counts()
				continue
			}
			k.batchGet(&batch)
			index = batchNext(&batch) // find_get_entries updates *start
			var err error
			for _, e := range batch.Entries() {
				if e.Entry.IsValue() {
					if unfalloc {
						continue
					}
					var n int64
					if n, err = ops.UndoSwap(info, e.Index, SwapEntry(e.Entry.Value())); err != nil {
						break
					}
					if n == 0 { // swap was replaced by page: retry
						index = e.Index
						break
					}
					nrSwapsFreed += n
					continue
				}
				f := physmem.Folio(e.Entry.PFN())
				if unfalloc && k.FolioTestUptodate(f) {
					continue
				}
				if k.folioMappingID(f) != mapping.ID() { // page was replaced by swap: retry
					index = e.Index
					break
				}
				if !k.MM.FolioTestLarge(f) {
					if err = ops.UndoFolio(info, f); err != nil {
						break
					}
					continue
				}
				var done bool
				if done, err = ops.UndoPartialFolio(info, f, lstart, lend); err != nil {
					break
				}
				// If we split a folio, reset the loop so that we pick up
				// the new folios. Otherwise the large folio was dropped
				// entirely or the range zeroed: continue as is.
				if done && !k.MM.FolioTestLarge(f) {
					index = start
					break
				}
			}
			k.batchRelease(&batch)
			if err != nil {
				return err
			}
		}
		return nil
	}()
	shmemRecalcInode(info, 0, -nrSwapsFreed)
	return err
}

// batchNext is where find_lock_entries/find_get_entries leave *start:
// just after the last entry of the batch.
func batchNext(b *pagecache.Batch) uint64 {
	last := b.At(b.Len() - 1)
	return last.Index + last.NrIndices()
}

// batchGet takes the reference find_lock_entries/find_get_entries take on
// each folio of a batch (folio_try_get); value entries hold none.
func (k *Kernel) batchGet(b *pagecache.Batch) {
	for _, e := range b.Entries() {
		if !e.Entry.IsValue() {
			k.MM.FolioGet(physmem.Folio(e.Entry.PFN()))
		}
	}
}

// batchRelease is folio_batch_remove_exceptionals + folio_batch_release:
// drops the batch's folio references, freeing folios that were truncated.
func (k *Kernel) batchRelease(b *pagecache.Batch) {
	for _, e := range b.Entries() {
		if !e.Entry.IsValue() {
			k.MM.FolioPut(physmem.Folio(e.Entry.PFN()))
		}
	}
}

// shmemGetPartialFolio is shmem_get_partial_folio(): the folio holding
// index with a reference the caller must put, even if !uptodate or beyond
// i_size; a page out on swap is read back only if within i_size.
func (k *Kernel) shmemGetPartialFolio(info *ShmemInodeInfo, index uint64) (physmem.Folio, bool) {
	e, ok := info.mapping.Lookup(index)
	if !ok {
		return 0, false
	}
	if !e.Entry.IsValue() {
		f := physmem.Folio(e.Entry.PFN())
		k.MM.FolioGet(f)
		return f, true
	}
	f, ok, err := k.shmemGetFolioGFP(info, index, 0, sgpRead, nil, 0)
	if err != nil || !ok {
		return 0, false
	}
	return f, true
}

// shmemTruncateRange is shmem_truncate_range(): ShmemUndoRange with the
// default ops, which cannot fail.
func shmemTruncateRange(info *ShmemInodeInfo, lstart, lend int64) {
	if err := ShmemUndoRange(info, lstart, lend, false, ShmemDefaultUndoOps); err != nil {
		panicViolation("shmem-undo-default-ops", info.String(), "shmem_undo_range() with default ops failed: %v", err)
	}
}

// ShmemFreeSwap is shmem_free_swap(): if index still holds the swap entry
// old, it is erased from the page cache and its slot freed. It returns the
// pages freed (1 << order of the entry), or 0 if the entry was replaced.
// The caller accounts them with shmem_recalc_inode(inode, 0, -freed)
// (ShmemUndoRange does).
func ShmemFreeSwap(info *ShmemInodeInfo, index uint64, old SwapEntry) int64 {
	k := info.inode.k
	f, err := info.mapping.EraseEntry(index, pagecache.ValueEntry(uint64(old)))
	if err != nil {
		return 0
	}
	for i := range f.NrIndices() { // free_swap_and_cache_nr
		k.swapFree(old + SwapEntry(i))
	}
	return int64(f.NrIndices())
}

// TruncateInodeFolio is truncate_inode_folio() (mm/truncate.c): unmaps the
// folio from every mapping of the file (truncate_cleanup_folio), cancels
// its dirtiness and removes it from the page cache, which drops the page
// cache's references. The caller must hold its own reference.
//
// Errors: EIO if the folio is not in info's page cache.
func TruncateInodeFolio(info *ShmemInodeInfo, f physmem.Folio) error {
	if err := unmapCancelDirty(info, f); err != nil {
		return err
	}
	info.inode.k.filemapRemoveFolio(info, f)
	return nil
}

// unmapCancelDirty is the first half of truncate_inode_folio(): the folio
// must belong to info (EIO), is unmapped from every mapping of the file
// and loses its dirty bit (folio_cancel_dirty).
func unmapCancelDirty(info *ShmemInodeInfo, f physmem.Folio) error {
	k := info.inode.k
	head := k.folioHead(f)
	if head.Mapping() != info.mapping.ID() {
		return errno.EIO
	}
	if len(info.mmaps) > 0 && k.folioMapped(f) {
		k.unmapMappingFolio(info, f)
	}
	head.Clear(physmem.PGDirty) // folio_cancel_dirty
	return nil
}

// DetachInodeFolio is TruncateInodeFolio for a folio that may come back:
// it unmaps the folio, cancels its dirty bit and takes it out of the page
// cache, but leaves its range reserved (pagecache.AddressSpace.
// DeleteFolioReserve), so the XArray keeps the nodes that hold it and
// ShmemRestoreFolio of the same folio at the same index cannot fail.
//
// Differs from Linux, deliberately: the RFC's shmem_fdbox_kho_write()
// truncates preserved folios out of the page cache, freeing their xarray
// nodes, and its ABORT does not put them back (its TODO). khosim's stash
// lifecycle puts them back on ABORT; keeping the nodes reserved is what
// makes that abort unable to fail, as an abort must be. The reserved
// nodes stay charged to the slab until then (frames(slab)); an inode
// evicted while detached releases them (shmemInodeOps.Evict).
//
// Preconditions: as TruncateInodeFolio.
func DetachInodeFolio(info *ShmemInodeInfo, f physmem.Folio) error {
	if err := unmapCancelDirty(info, f); err != nil {
		return err
	}
	k := info.inode.k
	head := k.folioHead(f)
	if err := info.mapping.DeleteFolioReserve(f.PFN(), head.Index()); err != nil {
		panicViolation("folio-in-mapping", k.dumpFolio(f)+"\n"+info.String(),
			"detaching a folio its mapping does not hold: %v", err)
	}
	head.SetMapping(0)
	k.MM.FolioPutRefs(f, int32(k.folioNrPages(f)))
	return nil
}

// TruncateInodePartialFolio is truncate_inode_partial_folio()
// (mm/truncate.c): handles a folio that [start, end] (end -1: to the end)
// may cover only partly. A folio wholly inside is truncated; otherwise
// the covered bytes are zeroed, and a large folio is split so that the
// second pass can remove the pages inside. It returns false only when a
// dirty large folio could not be split (extra references pin it) and so
// stays whole, zeroed over the range. The caller must hold a reference.
func TruncateInodePartialFolio(info *ShmemInodeInfo, f physmem.Folio, start, end int64) bool {
	k := info.inode.k
	pos, size := k.folioPos(f), k.folioSize(f)
	var offset int64
	if pos < start {
		offset = start - pos
	}
	length := size
	if uint64(pos)+uint64(length) <= uint64(end) { // u64, as Linux: the last folio ends at 2^63
		length -= offset
	} else {
		length = end + 1 - pos - offset
	}
	if length == size {
		if err := TruncateInodeFolio(info, f); err != nil {
			panicViolation("folio-in-mapping", k.dumpFolio(f), "truncating a partial folio: %v", err)
		}
		return true
	}
	// We may be zeroing pages we are about to discard, but it avoids a
	// complex calculation here, and the zeroing is needed anyway if the
	// split fails.
	k.folioZeroRange(f, offset, length)
	if !k.MM.FolioTestLarge(f) {
		return true
	}
	if k.splitFolio(info, f, 1) == nil {
		return true
	}
	if k.folioHead(f).Test(physmem.PGDirty) {
		return false
	}
	if err := TruncateInodeFolio(info, f); err != nil {
		panicViolation("folio-in-mapping", k.dumpFolio(f), "truncating an unsplittable folio: %v", err)
	}
	return true
}

// splitFolio is split_folio() (split_huge_page_to_list_to_order(page,
// NULL, 0), mm/huge_memory.c) of a large page-cache folio: it becomes
// order-0 folios, each in the page cache at its index with the flags and
// mapping it had. callerRefs is how many references the caller holds on
// it (they stay on the head).
//
// As unmap_folio() does for a file folio, every PTE mapping a page of the
// folio is zapped first (try_to_unmap: "file pages can simply be left
// unmapped, then faulted back on demand", and remap_page() remaps anon
// folios only): after a split nothing maps the new folios, and their
// mapcounts are 0.
//
// As __split_huge_page does for shmem, pages at or beyond
// max(DIV_ROUND_UP(i_size, PAGE_SIZE), info->fallocend) leave the page
// cache and are freed, and shmem_uncharge gives them back.
//
// Errors: EAGAIN, changing nothing, if the folio has references beyond
// the page cache's, its mappings' and the caller's (can_split_folio);
// ENOMEM (or the injected slab or page_alloc fault), changing nothing,
// when the page cache cannot get the nodes the split entry needs
// (xas_split_alloc, which __folio_split calls before unmap_folio: a PMD
// folio's entry becomes 512 entries in 8 new nodes).
func (k *Kernel) splitFolio(info *ShmemInodeInfo, f physmem.Folio, callerRefs int32) error {
	nr := k.folioNrPages(f)
	index := k.folioIndex(f)
	head := k.folioHead(f)
	if want := int32(nr) + int32(k.FolioMapcount(f)) + callerRefs; head.RefCount() != want {
		return errno.EAGAIN
	}
	if err := info.mapping.SplitEntry(index, 0); err != nil {
		if err == errno.ENOMEM {
			return err
		}
		panicViolation("split-folio-entry", k.dumpFolio(f)+"\n"+info.String(), "splitting the page cache entry: %v", err)
	}
	if k.folioMapped(f) {
		k.unmapMappingFolio(info, f) // unmap_folio
	}
	if err := k.MM.SplitFolio(f, 1+callerRefs, 1); err != nil {
		panicViolation("split-folio", k.dumpFolio(f), "split_huge_page of a large page-cache folio: %v", err)
	}
	eof := posPgoffUp(info.inode.Size)
	end := max(info.fallocend, eof) // shmem_fallocend()
	dropped := false
	for i := uint64(1); i < nr; i++ {
		t := physmem.Folio(f.PFN() + physmem.PFN(i))
		if err := info.mapping.ReplaceEntry(index+i, pagecache.FolioEntry(f.PFN()), pagecache.FolioEntry(t.PFN())); err != nil {
			panicViolation("split-folio-entry", k.dumpFolio(t), "storing split folio %d: %v", i, err)
		}
		if index+i >= end {
			// Some pages can be beyond EOF: drop them from page cache.
			k.folioCancelDirty(t)
			k.filemapRemoveFolio(info, t)
			dropped = true
		}
	}
	if dropped {
		shmemRecalcInode(info, 0, 0) // shmem_uncharge
	}
	k.stats.thpSplitPage++
	return nil
}
