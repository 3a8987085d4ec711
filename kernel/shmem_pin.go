package kernel

import (
	"khosim/invariant"
	"khosim/pagecache"
	"khosim/physmem"
)

// PinnedFolio is one folio MemfdPinFolios pinned: the folio, the index of
// its first page and its order.
type PinnedFolio struct {
	Folio physmem.Folio
	Index uint64
	Order uint
}

// MemfdPinFolios is memfd_pin_folios(file, 0, end-1, ..., FOLL_LONGTERM)
// as memfd_luo_preserve_folios calls it: every page of [0, end) gets a
// folio — the folios in the page cache are taken as they are
// (filemap_get_folios_contig: a fallocated, !uptodate folio stays
// !uptodate, and memfd_luo records it so), swapped pages are read back
// and holes are filled with zeroed, uptodate folios (memfd_alloc_folio ->
// shmem_read_folio, SGP_CACHE) — and each folio is pinned:
// one reference the caller holds until it puts it (unpin_folio). Folios
// are returned in index order, each once. Pinning for the long term
// migrates folios out of CMA memory (KHO scratch, MIGRATE_CMA); that is
// MigrateLongtermFolio's job, which the caller runs on what it got.
//
// Errors: ENOMEM or ENOSPC (and injected faults) from an allocation; the
// pins taken so far are dropped, the folios allocated stay in the file
// (as Linux leaves them).
func (k *Kernel) MemfdPinFolios(info *ShmemInodeInfo, end int64) ([]PinnedFolio, error) {
	k.mustAlive()
	var out []PinnedFolio
	last := uint64(0)
	if end > 0 {
		last = uint64(end-1) >> physmem.PageShift
	}
	for index := uint64(0); end > 0 && index <= last; {
		if e, found := info.mapping.Lookup(index); found && !e.Entry.IsValue() {
			f := physmem.Folio(e.Entry.PFN())
			k.MM.FolioGet(f)
			order := k.MM.FolioOrder(f)
			out = append(out, PinnedFolio{Folio: f, Index: e.Index, Order: order})
			index = e.Index + 1<<order
			continue
		}
		f, _, err := k.shmemGetFolioGFP(info, index, 0, sgpCache, nil, 0)
		if err != nil {
			for _, p := range out {
				k.MM.FolioPut(p.Folio)
			}
			return nil, err
		}
		order := k.MM.FolioOrder(f)
		first := k.folioHead(f).Index()
		out = append(out, PinnedFolio{Folio: f, Index: first, Order: order})
		index = first + 1<<order
	}
	return out, nil
}

// MigrateLongtermFolio moves a page-cache folio out of CMA memory (KHO
// scratch, which the next kernel allocates from before it knows what was
// preserved), as migrate_longterm_unpinnable_folios() does for a
// FOLL_LONGTERM pin: a new folio of the same order is allocated outside
// CMA (GFP_KERNEL never gets MIGRATE_CMA pageblocks), the data and the
// page-cache flags are copied, the old folio is unmapped, and the new one
// replaces it in the page cache in place (folio_migrate_mapping: the
// entry is swapped, so no page-cache node is allocated). It returns the
// new folio (the page cache holds it; the caller holds no reference to
// it) and the old folio's flags, for UnmigrateFolio.
//
// The old folio stays alive on the reference the caller holds: the caller
// puts it (the migration is final) or gives it back with UnmigrateFolio.
//
// Preconditions: old is in info's page cache at index and the caller
// holds a reference to it.
//
// Errors: ENOMEM (or the page_alloc fault) when no frame outside CMA is
// free; nothing changed then.
func (k *Kernel) MigrateLongtermFolio(info *ShmemInodeInfo, old physmem.Folio, index uint64) (physmem.Folio, physmem.PageFlags, error) {
	k.mustAlive()
	order := k.MM.FolioOrder(old)
	nf, err := k.MM.FolioAlloc(physmem.GFPKernel, order)
	if err != nil {
		return 0, 0, err
	}
	k.MM.Frames.Copy(nf.PFN(), old.PFN(), uint64(1)<<order)
	flags := k.folioHead(old).Flags() & migratedFlags
	k.replacePageCacheFolio(info, old, nf, index, flags)
	k.MM.FolioPut(nf) // the page cache holds it now
	k.stats.pgmigrate += 1 << order
	k.migrations.record(MigrationRun{From: old.PFN(), To: nf.PFN(), Pages: 1 << order, Ino: info.inode.Ino, Index: index})
	return nf, flags, nil
}

// migratedFlags are the page-cache flags a migration carries over
// (folio_migrate_flags).
const migratedFlags = physmem.PGUptodate | physmem.PGDirty | physmem.PGSwapBacked | physmem.PGReferenced | physmem.PGActive

// UnmigrateFolio undoes MigrateLongtermFolio: old, with the flags it had,
// takes nf's place in the page cache again, in place, and nf is freed.
// Nothing is allocated, so it cannot fail. The caller still holds its
// reference to old and must put it.
//
// Preconditions: nf is in info's page cache at index and nobody else
// holds it; old is out of every page cache.
func (k *Kernel) UnmigrateFolio(info *ShmemInodeInfo, old, nf physmem.Folio, index uint64, flags physmem.PageFlags) {
	k.mustAlive()
	k.MM.FolioGet(nf)
	nr := k.folioNrPages(nf)
	k.replacePageCacheFolio(info, nf, old, index, flags)
	k.MM.FolioPut(nf) // frees it
	k.migrations.record(MigrationRun{From: nf.PFN(), To: old.PFN(), Pages: nr, Ino: info.inode.Ino, Index: index, Back: true})
}

// replacePageCacheFolio puts to in from's place in info's page cache at
// index (replace_page_cache_folio / folio_migrate_mapping): from is
// unmapped from every page table, to takes the page cache's references
// and the flags given, from loses them and its mapping.
func (k *Kernel) replacePageCacheFolio(info *ShmemInodeInfo, from, to physmem.Folio, index uint64, flags physmem.PageFlags) {
	nr := int32(k.folioNrPages(from))
	if len(info.mmaps) > 0 && k.folioMapped(from) {
		k.unmapMappingFolio(info, from)
	}
	th := k.folioHead(to)
	th.Set(flags &^ th.Flags())
	k.MM.FolioRefAdd(to, nr)
	th.SetMapping(info.mapping.ID())
	th.SetIndex(index)
	if err := info.mapping.ReplaceEntry(index, pagecache.FolioEntry(from.PFN()), pagecache.FolioEntry(to.PFN())); err != nil {
		invariant.Panic(pkgName, "folio-in-mapping", k.dumpFolio(from)+"\n"+info.String(),
			"replacing the folio at index %#x: %v", index, err)
	}
	fh := k.folioHead(from)
	fh.SetMapping(0)
	fh.Clear(physmem.PGDirty) // its data lives on in to
	k.MM.FolioPutRefs(from, nr)
}
