package kernel

import (
	"fmt"

	"khosim/invariant"
	"khosim/physmem"
)

// Folio helpers of the kernel: the include/linux/mm.h and page-flags.h
// accessors over this kernel's memmap (k.MM). A physmem.Folio names a folio
// by its head PFN; references and the memmap itself are physmem's.
//
// Folio locks are not modelled: khosim is single-threaded, so every
// folio_lock()/folio_unlock() pair of the Linux code is a no-op here and
// PG_locked is never set. LRU lists are not modelled either (PG_lru is
// never set): reclaim only happens through MADV_PAGEOUT.

func (k *Kernel) folioHead(f physmem.Folio) *physmem.Page { return k.MM.Page(f.PFN()) }

// folioNrPages is folio_nr_pages().
func (k *Kernel) folioNrPages(f physmem.Folio) uint64 { return k.MM.FolioNrPages(f) }

// folioIndex is folio->index.
func (k *Kernel) folioIndex(f physmem.Folio) uint64 { return k.folioHead(f).Index() }

// folioNextIndex is folio_next_index(): the index after the folio.
func (k *Kernel) folioNextIndex(f physmem.Folio) uint64 {
	return k.folioIndex(f) + k.folioNrPages(f)
}

// folioPos is folio_pos(): the file offset of the folio's first byte.
func (k *Kernel) folioPos(f physmem.Folio) int64 {
	return int64(k.folioIndex(f) << physmem.PageShift)
}

// folioEnd is the file offset just after the folio (folio_pos() +
// folio_size()), capped at MAX_LFS_FILESIZE: see pgoffPos.
func (k *Kernel) folioEnd(f physmem.Folio) int64 { return pgoffPos(k.folioNextIndex(f)) }

// pgoffPos is the file offset of page index (index << PAGE_SHIFT) as an
// loff_t, capped at MAX_LFS_FILESIZE. The last page of the largest file
// (index MAX_LFS_FILESIZE >> PAGE_SHIFT) ends at 2^63, which an int64
// cannot hold; no byte at or beyond MAX_LFS_FILESIZE can exist, so the cap
// changes no answer. Linux computes these ends in u64 where it must
// (mapping_seek_hole_data, filemap_read); khosim's offsets are int64, so
// every end of a page or folio goes through here.
func pgoffPos(index uint64) int64 {
	if index > maxLFSFileSize>>physmem.PageShift {
		return maxLFSFileSize
	}
	return int64(index << physmem.PageShift)
}

// posPgoffUp is the index of the first page at or after file offset pos
// (DIV_ROUND_UP(pos, PAGE_SIZE)), computed in u64 so that it cannot
// overflow for pos up to MAX_LFS_FILESIZE. Preconditions: pos >= 0.
func posPgoffUp(pos int64) uint64 {
	return (uint64(pos) + physmem.PageSize - 1) >> physmem.PageShift
}

// folioSize is folio_size().
func (k *Kernel) folioSize(f physmem.Folio) int64 {
	return int64(k.folioNrPages(f) << physmem.PageShift)
}

// FolioTestUptodate reports PG_uptodate (folio_test_uptodate): the folio
// holds the file's data. A shmem folio fallocated and not yet written is
// !uptodate and reads as zeros.
func (k *Kernel) FolioTestUptodate(f physmem.Folio) bool {
	return k.folioHead(f).Test(physmem.PGUptodate)
}

// folioMarkUptodate is folio_mark_uptodate().
func (k *Kernel) folioMarkUptodate(f physmem.Folio) { k.folioHead(f).Set(physmem.PGUptodate) }

// folioMarkDirty is folio_mark_dirty() for shmem (noop_dirty_folio sets
// PG_dirty only: shmem has no dirty tags).
func (k *Kernel) folioMarkDirty(f physmem.Folio) { k.folioHead(f).Set(physmem.PGDirty) }

// folioCancelDirty is folio_cancel_dirty().
func (k *Kernel) folioCancelDirty(f physmem.Folio) { k.folioHead(f).Clear(physmem.PGDirty) }

// FolioIndex returns the folio's index in its mapping (folio->index).
func (k *Kernel) FolioIndex(f physmem.Folio) uint64 { return k.folioIndex(f) }

// FolioMapcount returns how many page-table entries map pages of the
// folio (folio_mapcount: the sum of the per-page mapcounts, as khosim maps
// with PTEs only).
func (k *Kernel) FolioMapcount(f physmem.Folio) int {
	nr := k.folioNrPages(f)
	n := int(k.folioHead(f).MapCount())
	for i := uint64(1); i < nr; i++ {
		n += int(k.MM.Page(f.PFN() + physmem.PFN(i)).MapCount())
	}
	return n
}

// folioMapped is folio_mapped().
func (k *Kernel) folioMapped(f physmem.Folio) bool { return k.FolioMapcount(f) > 0 }

// folioData returns the folio's bytes in the machine's frames
// (folio_address over the whole folio: the direct map is contiguous).
func (k *Kernel) folioData(f physmem.Folio) []byte {
	return k.MM.Frames.Span(f.PFN(), k.folioNrPages(f))
}

// folioZeroRange is folio_zero_range(): clears n bytes from off.
func (k *Kernel) folioZeroRange(f physmem.Folio, off, n int64) {
	if n > 0 {
		clear(k.folioData(f)[off : off+n])
	}
}

// folioMappingID returns folio->mapping (0: none).
func (k *Kernel) folioMappingID(f physmem.Folio) physmem.MappingID { return k.folioHead(f).Mapping() }

// FolioMapping implements pagecache.FolioOwner: the mapping, index and
// order the memmap records for the head page pfn; ok is false unless pfn
// heads an allocated folio that belongs to a mapping.
func (k *Kernel) FolioMapping(pfn physmem.PFN) (physmem.MappingID, uint64, uint, bool) {
	p := k.MM.Page(pfn)
	if p.Test(physmem.PGTail) || p.Test(physmem.PGBuddy) || p.RefCount() <= 0 || p.Mapping() == 0 {
		return 0, 0, 0, false
	}
	return p.Mapping(), p.Index(), k.MM.FolioOrder(physmem.Folio(pfn)), true
}

// dumpFolio describes a folio for a violation or a message, as
// dump_page() does: pfn, order, flags, refcount, mapcount, mapping, index.
func (k *Kernel) dumpFolio(f physmem.Folio) string {
	p := k.folioHead(f)
	if p.Test(physmem.PGBuddy) || p.Test(physmem.PGTail) {
		return fmt.Sprintf("%v: not a folio head: %v", f.PFN(), p)
	}
	return fmt.Sprintf("folio %v order %d: refcount %d mapcount %d mapping %d index %#x flags %v",
		f.PFN(), k.MM.FolioOrder(f), p.RefCount(), k.FolioMapcount(f), p.Mapping(), p.Index(), p.Flags())
}

// pkgName names this package in invariant violations.
const pkgName = "kernel"

// panicViolation reports an invariant found broken in the middle of an
// operation: a simulator bug.
func panicViolation(name, dump, detail string, args ...any) {
	invariant.Panic(pkgName, name, dump, detail, args...)
}
