package kernel

import (
	"khosim/errno"
	"khosim/pagecache"
	"khosim/physmem"
	"khosim/uapi"
)

// madvise(2) advice values beyond those in uapi (mman-common.h).
const (
	madvRandom        = 1
	madvSequential    = 2
	madvWillneed      = 3
	madvRemove        = 9
	madvPopulateRead  = 22
	madvPopulateWrite = 23
)

// Madvise gives advice about n bytes from offset off of the mapping
// (madvise(2) on [v.Start+off, +n)). Supported: MADV_NORMAL, MADV_RANDOM,
// MADV_SEQUENTIAL and MADV_WILLNEED (accepted, no effect), MADV_DONTNEED
// (zap the PTEs; shared pages stay cached), MADV_REMOVE (punch a hole in
// the file), MADV_COLD (as Linux: split partly covered large folios; no
// LRU to deactivate on), MADV_PAGEOUT (reclaim exclusively mapped pages to
// swap) and MADV_POPULATE_READ/WRITE (fault the range in).
//
// MADV_PAGEOUT follows madvise_cold_or_pageout_pte_range(): only pages
// this range maps are considered, and only folios mapped nowhere else
// (folio_mapcount == folio_nr_pages): a shared one is left alone. A large
// folio the range maps only partly is split (unless likely shared), which
// unmaps all of it, so none of it is reclaimed by this call; a whole one
// is reclaimed whole, shmem_writepage splitting it. Each chosen folio is
// unmapped everywhere (try_to_unmap); a clean one (a hole read-faulted
// in and never written) is simply dropped from the page cache
// (__remove_mapping), a dirty one written out: shmem_writepage puts it in
// a swap slot and leaves a swap entry in the page cache. Without swap, or
// with swap full, a dirty folio stays in memory, but unmapped, as in
// Linux. A folio pinned by references beyond its page cache and mappings
// is unmapped but not written (khosim has no swap cache to park it in).
//
// Errors: EINVAL for unknown or unsupported advice, an unaligned start or
// an overflowing range; EACCES for MADV_REMOVE on a mapping that is not
// shared and may-write (vma_is_shared_maywrite: a read-only MAP_SHARED
// mapping of a file open for writing may punch holes); ENOMEM if part of the range is not mapped (after advising the
// rest); the errors of the faults for MADV_POPULATE_*.
func (t *Task) Madvise(v *VMA, off, n int64, advice int) error {
	t.mustAlive()
	switch advice {
	case uapi.MADV_NORMAL, madvRandom, madvSequential, madvWillneed, uapi.MADV_DONTNEED,
		madvRemove, uapi.MADV_COLD, uapi.MADV_PAGEOUT, madvPopulateRead, madvPopulateWrite:
	default:
		return errno.EINVAL
	}
	start := v.Start + uint64(off)
	if start&(physmem.PageSize-1) != 0 {
		return errno.EINVAL
	}
	length := (uint64(n) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	if n != 0 && length == 0 || n < 0 {
		return errno.EINVAL
	}
	end := start + length
	if end < start {
		return errno.EINVAL
	}
	if end == start {
		return nil
	}
	var unmapped error
	for addr := start; addr < end; {
		cur := t.MM.findVMA(addr)
		if cur == nil || v.mm != t.MM {
			unmapped = errno.ENOMEM
			next := t.MM.nextVMAStart(addr)
			if next >= end || next == 0 {
				break
			}
			addr = next
			continue
		}
		vend := min(end, cur.End())
		if err := t.madviseVMA(cur, advice, addr, vend); err != nil {
			return err
		}
		addr = vend
	}
	return unmapped
}

// nextVMAStart returns the start of the first mapping above addr, or 0.
func (mm *TaskMM) nextVMAStart(addr uint64) uint64 {
	var best uint64
	for _, v := range mm.vmas {
		if v.Start > addr && (best == 0 || v.Start < best) {
			best = v.Start
		}
	}
	return best
}

// madviseVMA applies advice to [start, end) of one VMA
// (madvise_vma_behavior).
func (t *Task) madviseVMA(v *VMA, advice int, start, end uint64) error {
	k := t.k
	switch advice {
	case uapi.MADV_DONTNEED:
		t.MM.zapRange(start, end)
	case madvRemove:
		// madvise_remove(): vfs_fallocate(PUNCH_HOLE|KEEP_SIZE) on the file.
		if !v.isSharedMaywrite() {
			return errno.EACCES
		}
		offset := int64(v.pgoffOf(start) << physmem.PageShift)
		return t.vfsFallocate(v.File, uapi.FALLOC_FL_PUNCH_HOLE|uapi.FALLOC_FL_KEEP_SIZE, offset, int64(end-start))
	case uapi.MADV_COLD, uapi.MADV_PAGEOUT:
		pageout := advice == uapi.MADV_PAGEOUT
		if pageout && !t.canDoFilePageout(v) {
			return nil
		}
		k.madvisePageoutRange(v, start, end, pageout)
	case madvPopulateRead, madvPopulateWrite:
		write := advice == madvPopulateWrite
		for addr := start; addr < end; addr += physmem.PageSize {
			if write && v.vmFlags&vmWrite == 0 {
				return errno.EINVAL // faultin_page: the mapping forbids it
			}
			if _, slot := t.MM.pte(addr, false); slot != nil && *slot != 0 {
				if write { // follow_page_pte with FOLL_WRITE|FOLL_TOUCH
					k.folioMarkDirty(k.MM.PageFolio(physmem.PFN(*slot - 1)))
				}
				continue
			}
			if _, err := k.handleMMFault(v, addr, write); err != nil {
				if errno.Of(err) == errno.EFAULT {
					return errno.EFAULT
				}
				return err
			}
		}
	}
	return nil
}

// canDoFilePageout is can_do_file_pageout(): page cache is only paged out
// for a task that owns the file or could open it for writing.
func (t *Task) canDoFilePageout(v *VMA) bool {
	in := v.File.Inode
	return t.Cred.UID == in.UID || t.Capable(capFowner) || inodePermission(t, in, mayWrite) == nil
}

// madvisePageoutRange is madvise_cold_or_pageout_pte_range() over one VMA
// range, then reclaim_pages() of what it isolated.
func (k *Kernel) madvisePageoutRange(v *VMA, start, end uint64, pageout bool) {
	mm := v.mm
	var isolated []physmem.Folio
	seen := map[physmem.Folio]bool{}
	for addr := start; addr < end; {
		_, slot := mm.pte(addr, false)
		if slot == nil || *slot == 0 {
			addr += physmem.PageSize
			continue
		}
		pfn := physmem.PFN(*slot - 1)
		f := k.MM.PageFolio(pfn)
		nrPTEs := uint64(1)
		if k.MM.FolioTestLarge(f) {
			nrPTEs = mm.folioPTEBatch(k, addr, end, f)
			if nrPTEs < k.folioNrPages(f) {
				if k.folioLikelyMappedShared(f) {
					addr += physmem.PageSize
					continue
				}
				info := k.mappingOwner(k.folioMappingID(f))
				k.MM.FolioGet(f)
				var err error = errno.EINVAL
				if info != nil {
					err = k.splitFolio(info, f, 1)
				}
				k.MM.FolioPut(f)
				if err != nil {
					addr += physmem.PageSize
				}
				// On success look at this PTE again, as Linux does
				// (nr = 0): the split unmapped the folio, so it is
				// none and nothing of the folio is reclaimed now.
				continue
			}
		}
		// Do not interfere with other mappings of this folio: a fully
		// mapped folio whose mapcount equals its page count is exclusive.
		if k.FolioMapcount(f) == int(k.folioNrPages(f)) && pageout && !seen[f] {
			seen[f] = true
			k.MM.FolioGet(f) // folio_isolate_lru's reference
			isolated = append(isolated, f)
		}
		addr += nrPTEs << physmem.PageShift
	}
	for _, f := range isolated {
		k.shrinkFolio(f)
		k.MM.FolioPut(f)
	}
}

// folioPTEBatch counts the PTEs from addr (below end) that map
// consecutive pages of the large folio f (madvise_folio_pte_batch).
func (mm *TaskMM) folioPTEBatch(k *Kernel, addr, end uint64, f physmem.Folio) uint64 {
	_, slot := mm.pte(addr, false)
	first := physmem.PFN(*slot - 1)
	last := f.PFN() + physmem.PFN(k.folioNrPages(f))
	var n uint64
	for pfn := first; pfn < last && addr < end; pfn, addr = pfn+1, addr+physmem.PageSize {
		_, s := mm.pte(addr, false)
		if s == nil || *s != uint64(pfn)+1 {
			break
		}
		n++
	}
	return n
}

// folioLikelyMappedShared is folio_likely_mapped_shared().
func (k *Kernel) folioLikelyMappedShared(f physmem.Folio) bool {
	mapcount := k.FolioMapcount(f)
	if !k.MM.FolioTestLarge(f) {
		return mapcount > 1
	}
	if mapcount <= 1 {
		return false
	}
	if mapcount > int(k.folioNrPages(f)) {
		return true
	}
	return k.folioHead(f).MapCount() > 1 // guess based on the first page
}

// shrinkFolio is shrink_folio_list() for one isolated shmem folio (the
// caller holds the isolation reference): try_to_unmap, then for a dirty
// folio pageout() -> shmem_writepage, and for a clean one
// __remove_mapping(). A shmem folio is clean only when it was allocated
// by a read fault on a hole (SGP_CACHE) and never written: it holds zeros,
// and dropping it leaves a hole that reads the same. (shmem_fallocate
// marks its folios dirty "so that memory pressure will swap rather than
// free" them; writes, write faults and swap-in dirty theirs.)
func (k *Kernel) shrinkFolio(f physmem.Folio) {
	info := k.mappingOwner(k.folioMappingID(f))
	if info == nil {
		return // truncated since it was isolated
	}
	if k.folioMapped(f) {
		k.unmapMappingFolio(info, f)
	}
	// is_page_cache_freeable() / __remove_mapping()'s refcount freeze
	// would find extra references and keep the folio: leave a pinned
	// folio where it is.
	if k.MM.FolioRefCount(f) != int32(k.folioNrPages(f))+1 {
		return
	}
	if !k.folioHead(f).Test(physmem.PGDirty) {
		k.filemapRemoveFolio(info, f)
		shmemRecalcInode(info, 0, 0) // the next shmem_recalc_inode frees it
		return
	}
	k.shmemWritepage(info, f)
}

// shmemWritepage is shmem_writepage() for reclaim: moves a folio to swap.
// Without swap the folio is redirtied and stays. A large folio is split
// first (khosim swaps order-0 pages only, as without CONFIG_THP_SWAP),
// and each of its pages written. The caller holds a reference.
func (k *Kernel) shmemWritepage(info *ShmemInodeInfo, f physmem.Folio) {
	if k.TotalSwapPages() == 0 {
		k.folioMarkDirty(f) // redirty: AOP_WRITEPAGE_ACTIVATE
		return
	}
	if !k.MM.FolioTestLarge(f) {
		k.shmemWritepageOne(info, f)
		return
	}
	k.folioMarkDirty(f) // ensure the subpages are still dirty
	nr := k.folioNrPages(f)
	if err := k.splitFolio(info, f, 1); err != nil {
		return // redirty
	}
	// The tails went on the reclaim list; shrink_folio_list writes each.
	for i := uint64(1); i < nr; i++ {
		t := physmem.Folio(f.PFN() + physmem.PFN(i))
		if k.folioMappingID(t) != info.mapping.ID() {
			continue // dropped by the split: beyond EOF
		}
		k.MM.FolioGet(t)
		k.shmemWritepageOne(info, t)
		k.MM.FolioPut(t)
	}
	k.shmemWritepageOne(info, f)
}

// shmemWritepageOne writes an order-0 folio to a new swap slot and
// replaces it in the page cache by the swap entry
// (folio_alloc_swap + add_to_swap_cache + shmem_delete_from_page_cache +
// swap_writepage). A fallocated !uptodate folio is zeroed first: the slot
// cannot say "fallocated". With swap full the folio stays (redirty).
func (k *Kernel) shmemWritepageOne(info *ShmemInodeInfo, f physmem.Folio) {
	if !k.FolioTestUptodate(f) {
		k.MM.Frames.Zero(f.PFN(), 1)
		k.folioMarkUptodate(f)
	}
	swap, ok := k.folioAllocSwap()
	if !ok {
		k.folioMarkDirty(f)
		return
	}
	shmemRecalcInode(info, 0, 1)
	k.swap.dev.write(swap.Offset(), k.folioData(f))
	k.folioCancelDirty(f)
	k.deleteFromPageCache(info, f, pagecache.ValueEntry(uint64(swap)))
	k.stats.pswpout++
}
