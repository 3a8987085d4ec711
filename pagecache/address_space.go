package pagecache

import (
	"iter"

	"khosim/errno"
	"khosim/invariant"
	"khosim/physmem"
)

// FolioOwner is what the kernel's memmap tells the page cache about a
// folio: the mapping and index its head page records (folio->mapping,
// folio->index) and its order. ok is false if pfn is not the head of a
// page-cache folio.
type FolioOwner interface {
	FolioMapping(pfn physmem.PFN) (mapping physmem.MappingID, index uint64, order uint, ok bool)
}

// AddressSpace models struct address_space (include/linux/fs.h) as the
// page cache of one file: i_pages, the XArray of its folios and value
// entries (shadows, or shmem swap entries), with the counts the kernel
// keeps beside it.
//
// The mutators are the XArray parts of the filemap.c and shmem.c
// primitives: the kernel above takes folio references and locks, updates
// the memmap (folio->mapping, folio->index) and calls these. nrpages and
// nrValues are maintained by every mutator and checked against the
// entries by CheckInvariants.
type AddressSpace struct {
	id       physmem.MappingID
	iPages   XArray
	nrpages  uint64 // pages of folios in i_pages (mapping->nrpages)
	nrValues uint64 // indices held by value entries (shmem's info->swapped)
}

// NewAddressSpace returns the empty page cache of mapping id.
//
// Errors: errno.EINVAL for id 0, which means "no mapping".
func NewAddressSpace(id physmem.MappingID) (*AddressSpace, error) {
	if id == 0 {
		return nil, errno.EINVAL
	}
	return &AddressSpace{id: id}, nil
}

// SetNodeCache charges the page cache's XArray nodes to c, the kernel's
// radix_tree_node cache (XArray.SetNodeCache): from then on a store that
// needs nodes can fail with ENOMEM.
// Preconditions: the page cache is empty.
func (a *AddressSpace) SetNodeCache(c *physmem.KmemCache) { a.iPages.SetNodeCache(c) }

// ReserveNodes prepares the page cache for a burst of insertions at
// every aligned index of [0, span) of folios of the given order, such as
// a restore rebuilding a whole file: it sizes the XArray's node arena
// once (XArray.ReserveNodes) instead of growing it as nodes are
// allocated. Nothing observable changes.
func (a *AddressSpace) ReserveNodes(span uint64, order uint) {
	a.iPages.ReserveNodes(NodesFor(span, order))
}

// ID returns the mapping's ID.
func (a *AddressSpace) ID() physmem.MappingID { return a.id }

// NrPages returns mapping->nrpages: the pages (not folios) in the cache.
func (a *AddressSpace) NrPages() uint64 { return a.nrpages }

// NrValues returns how many indices hold value entries: for shmem, the
// pages out on swap (shmem_inode_info->swapped).
func (a *AddressSpace) NrValues() uint64 { return a.nrValues }

// Counts returns i_pages' entry and index counts.
func (a *AddressSpace) Counts() Counts { return a.iPages.Counts() }

// accountStore updates nrpages and nrValues after a store that left the
// XArray's counts at after, from before.
func (a *AddressSpace) accountStore(before Counts) {
	after := a.iPages.Counts()
	a.nrValues = a.nrValues - before.ValueIndices + after.ValueIndices
	folios := func(c Counts) uint64 { return c.Indices - c.ValueIndices }
	a.nrpages = a.nrpages - folios(before) + folios(after)
}

// AddFolio models the XArray part of __filemap_add_folio() (and of
// shmem_add_to_page_cache()): stores the folio whose head is pfn, of the
// given order, at [index, index+2^order). Value entries and reservations
// in the range are replaced; one that extends beyond the range is first
// split to the folio's order (xas_split()). It returns the last value
// entry replaced, the shadow that __filemap_add_folio() hands back through
// *shadowp.
//
// With a node cache the store allocates the nodes it needs first: the
// folio is stored, or nothing changes. A store into a range reserved at
// the folio's order (Reserve), or into one a folio of that order was
// removed from with DeleteFolioReserve, needs no node and cannot fail.
//
// Errors: errno.EINVAL if order > physmem.MaxPageOrder, index or pfn is
// not aligned to 2^order, or pfn > MaxFolioPFN; errno.EEXIST if a folio
// already covers an index of the range; errno.ENOMEM (or the injected
// slab or page_alloc fault) if the nodes cannot be allocated.
func (a *AddressSpace) AddFolio(pfn physmem.PFN, index uint64, order uint) (shadow Entry, err error) {
	if order > physmem.MaxPageOrder || checkRange(index, order) != nil ||
		uint64(pfn)&(uint64(1)<<order-1) != 0 || pfn > MaxFolioPFN {
		return 0, errno.EINVAL
	}
	if a.iPages.insertHinted(index, FolioEntry(pfn), order) {
		// The range was empty (the common case of filling a file in
		// index order): nothing replaced, no shadow.
		a.nrpages += uint64(1) << order
		return 0, nil
	}
	last := index + (uint64(1)<<order - 1)
	var st xaState
	f, ok := a.iPages.findFirst(&st, index, last, filterPresent)
	for ok { // xas_for_each_conflict()
		if !f.Entry.IsValue() {
			return 0, errno.EEXIST
		}
		shadow = f.Entry
		if f.Last() >= last {
			break
		}
		f, ok = a.iPages.findNext(&st, last, filterPresent)
	}
	before := a.iPages.Counts()
	if err := a.iPages.storeCharged(index, FolioEntry(pfn), order); err != nil {
		return 0, err
	}
	a.accountStore(before)
	return shadow, nil
}

// InsertFolio is AddFolio into an empty range (xa_insert(), what
// shmem_add_to_page_cache() with no expected entry requires): it fails
// with errno.EEXIST, changing nothing, if any index of the range holds an
// entry, value entries included. Reserved indices count as empty: the
// store takes their reservation (Linux's xa_insert() refuses a reserved
// index with EBUSY, but Linux's page cache never reserves; khosim's
// reservations exist so that a folio can go back without allocating).
//
// Errors: as AddFolio, and errno.EEXIST for any entry in the range.
func (a *AddressSpace) InsertFolio(pfn physmem.PFN, index uint64, order uint) error {
	if order > physmem.MaxPageOrder || checkRange(index, order) != nil ||
		uint64(pfn)&(uint64(1)<<order-1) != 0 || pfn > MaxFolioPFN {
		return errno.EINVAL
	}
	if !a.iPages.insertHinted(index, FolioEntry(pfn), order) {
		if _, ok := a.iPages.Find(index, index+(uint64(1)<<order-1)); ok {
			return errno.EEXIST
		}
		if err := a.iPages.storeCharged(index, FolioEntry(pfn), order); err != nil {
			return err
		}
	}
	a.nrpages += uint64(1) << order
	return nil
}

// DeleteFolio models page_cache_delete(): the folio whose head is pfn,
// stored at base index, leaves the cache and shadow (NULL, or a value
// entry such as a workingset shadow or a shmem swap entry) takes its
// range. The range's marks are cleared (xas_init_marks()).
//
// Errors: errno.EINVAL if shadow is neither NULL nor a value entry;
// errno.ENOENT if that folio is not stored with base index.
func (a *AddressSpace) DeleteFolio(pfn physmem.PFN, index uint64, shadow Entry) error {
	if shadow != 0 && !shadow.IsValue() {
		return errno.EINVAL
	}
	if shadow == 0 && pfn <= MaxFolioPFN {
		if f, ok := a.iPages.eraseHinted(index, FolioEntry(pfn)); ok {
			a.nrpages -= f.NrIndices()
			return nil
		}
	}
	f, ok := a.iPages.Lookup(index)
	if !ok || pfn > MaxFolioPFN || f.Entry != FolioEntry(pfn) || f.Index != index {
		return errno.ENOENT
	}
	before := a.iPages.Counts()
	a.iPages.store(index, shadow, uint(f.Order), 0) // erased or replaced in place: no node
	if shadow != 0 {
		for _, m := range []Mark{XAMark0, XAMark1, XAMark2} {
			_ = a.iPages.ClearMark(index, m) // present: just stored
		}
	}
	a.accountStore(before)
	return nil
}

// DeleteFolioReserve is DeleteFolio leaving the folio's range reserved
// instead of empty: its indices load NULL, but the nodes above them stay,
// so that putting a folio of the same order back there (InsertFolio,
// AddFolio) allocates nothing and cannot fail. Release or a store ends
// the reservation. For KHO: an activation that takes folios out of a page
// cache keeps their places, so that an aborted activation can put every
// folio back.
//
// Errors: errno.ENOENT if that folio is not stored with base index.
func (a *AddressSpace) DeleteFolioReserve(pfn physmem.PFN, index uint64) error {
	if pfn <= MaxFolioPFN {
		if f, ok := a.iPages.reserveHinted(index, FolioEntry(pfn)); ok {
			a.nrpages -= f.NrIndices()
			return nil
		}
	}
	f, ok := a.iPages.Lookup(index)
	if !ok || pfn > MaxFolioPFN || f.Entry != FolioEntry(pfn) || f.Index != index {
		return errno.ENOENT
	}
	for _, m := range []Mark{XAMark0, XAMark1, XAMark2} {
		_ = a.iPages.ClearMark(index, m) // present: just found
	}
	before := a.iPages.Counts()
	a.iPages.store(index, zeroEntry, uint(f.Order), 0) // replaced in place: no node
	a.accountStore(before)
	a.iPages.hintAt(index) // the next folio of a truncation is in the same node
	return nil
}

// Reserve reserves [index, index+2^order) of an empty range of the page
// cache (XArray.Reserve): a later InsertFolio or AddFolio of a folio of
// that order at index needs no node and cannot fail.
//
// Errors: as XArray.Reserve (EEXIST if anything is cached in the range,
// ENOMEM if the nodes cannot be allocated, changing nothing).
func (a *AddressSpace) Reserve(index uint64, order uint) error {
	return a.iPages.Reserve(index, order)
}

// Release ends the reservation covering index, if any (xa_release).
func (a *AddressSpace) Release(index uint64) { a.iPages.Release(index) }

// Reserved reports whether index is reserved.
func (a *AddressSpace) Reserved(index uint64) bool { return a.iPages.Reserved(index) }

// ReleaseAll ends every reservation of the page cache and returns how
// many there were; an inode's page cache must hold none when it is
// evicted (Linux: mapping_empty() in clear_inode()).
func (a *AddressSpace) ReleaseAll() int { return a.iPages.ReleaseAll() }

// ReplaceEntry models shmem_replace_entry(): the entry covering index,
// which must be expected, is replaced by replacement over its whole range,
// keeping its order and marks. Swap-out replaces a folio with its swap
// entry this way, and a folio split replaces the head folio left at each
// index by SplitEntry with the folio now there.
//
// Errors: errno.EINVAL if expected or replacement is NULL or not a value or
// folio entry; errno.ENOENT if the entry covering index is not expected.
func (a *AddressSpace) ReplaceEntry(index uint64, expected, replacement Entry) error {
	if expected == 0 || replacement == 0 || !expected.valid() || !replacement.valid() {
		return errno.EINVAL
	}
	f, ok := a.iPages.Lookup(index)
	if !ok || f.Entry != expected {
		return errno.ENOENT
	}
	before := a.iPages.Counts()
	a.iPages.store(f.Index, replacement, uint(f.Order), 0)
	a.accountStore(before)
	return nil
}

// EraseEntry models xa_cmpxchg(&mapping->i_pages, index, expected, NULL)
// as shmem_free_swap() uses it: the entry covering index, which must be
// expected, is erased over its whole range. It returns the erased entry's
// base index and order (a large swap entry frees 2^order swap slots).
//
// Errors: errno.EINVAL if expected is NULL; errno.ENOENT if the entry
// covering index is not expected.
func (a *AddressSpace) EraseEntry(index uint64, expected Entry) (Found, error) {
	if expected == 0 {
		return Found{}, errno.EINVAL
	}
	f, ok := a.iPages.Lookup(index)
	if !ok || f.Entry != expected {
		return Found{}, errno.ENOENT
	}
	before := a.iPages.Counts()
	a.iPages.store(f.Index, 0, uint(f.Order), 0)
	a.accountStore(before)
	return f, nil
}

// SplitEntry models xas_split() on i_pages as __split_unmapped_folio() and
// shmem_split_large_entry() use it: the entry covering index becomes
// entries of the given order, all holding the same entry. nrpages and
// nrValues do not change. For a folio split the kernel then replaces the
// head folio at each new entry with ReplaceEntry; until it has, the
// mapping's invariants (folio order) do not hold.
//
// Errors: as XArray.Split (ENOMEM, changing nothing, when the nodes the
// split needs cannot be allocated).
func (a *AddressSpace) SplitEntry(index uint64, order uint) error {
	return a.iPages.Split(index, order)
}

// Lookup models filemap_get_entry(): the entry covering index with its
// base index and order.
func (a *AddressSpace) Lookup(index uint64) (Found, bool) { return a.iPages.Lookup(index) }

// Range iterates over the entries covering [start, end] in index order.
func (a *AddressSpace) Range(start, end uint64) iter.Seq[Found] { return a.iPages.Range(start, end) }

// FindGetEntries models the walk of find_get_entries(): appends to b the
// folios and value entries covering [start, end], each once, until b is
// full. See XArray.Extract for next and more.
func (a *AddressSpace) FindGetEntries(start, end uint64, b *Batch) (next uint64, more bool) {
	return a.iPages.Extract(start, end, b)
}

// FindLockEntries models the walk of find_lock_entries(): as
// FindGetEntries, but entries not wholly inside [start, end] are omitted
// (truncate deals with partial large folios itself). Locking the folios
// is the caller's business.
func (a *AddressSpace) FindLockEntries(start, end uint64, b *Batch) (next uint64, more bool) {
	return a.iPages.extract(start, end, filterPresent, true, b)
}

// GetFoliosTag models the walk of filemap_get_folios_tag(): appends to b
// the entries covering [start, end] that have tag, until b is full.
func (a *AddressSpace) GetFoliosTag(start, end uint64, tag Mark, b *Batch) (next uint64, more bool) {
	return a.iPages.ExtractMarked(start, end, tag, b)
}

// SetMark models __xa_set_mark() on i_pages (folio_mark_dirty() setting
// PAGECACHE_TAG_DIRTY, folio_start_writeback() setting ..._WRITEBACK).
//
// Errors: errno.ENOENT if nothing covers index.
func (a *AddressSpace) SetMark(index uint64, tag Mark) error { return a.iPages.SetMark(index, tag) }

// ClearMark models __xa_clear_mark() on i_pages.
//
// Errors: errno.ENOENT if nothing covers index.
func (a *AddressSpace) ClearMark(index uint64, tag Mark) error {
	return a.iPages.ClearMark(index, tag)
}

// GetMark models xa_get_mark() on i_pages (folio_test_dirty()'s page-cache
// side, mapping_tagged() per index).
func (a *AddressSpace) GetMark(index uint64, tag Mark) bool { return a.iPages.GetMark(index, tag) }

// Tagged models mapping_tagged(): whether any entry has tag.
func (a *AddressSpace) Tagged(tag Mark) bool { return a.iPages.Marked(tag) }

// TagPagesForWriteback models tag_pages_for_writeback(): every entry
// covering [start, end] that is DIRTY is also tagged TOWRITE. It returns
// how many entries it tagged.
func (a *AddressSpace) TagPagesForWriteback(start, end uint64) int {
	n := 0
	for f := range a.iPages.RangeMarked(start, end, PageCacheTagDirty) {
		if !a.iPages.GetMark(f.Index, PageCacheTagTowrite) {
			_ = a.iPages.SetMark(f.Index, PageCacheTagTowrite) // present: just found
			n++
		}
	}
	return n
}

// CheckInvariants checks i_pages (XArray.CheckInvariants), that nrpages
// and nrValues match its entries, and — when owner is not nil — that
// every folio entry's head page points back at this mapping and base
// index with the entry's order (the VM_BUG_ON_FOLIO(folio->mapping !=
// mapping) and folio->index checks of filemap.c).
func (a *AddressSpace) CheckInvariants(owner FolioOwner) error {
	if err := a.iPages.CheckInvariants(); err != nil {
		return err
	}
	var pages, values uint64
	for f := range a.iPages.All() {
		if f.Entry.IsValue() {
			values += f.NrIndices()
			continue
		}
		pages += f.NrIndices()
		if owner == nil {
			continue
		}
		pfn := f.Entry.PFN()
		mapping, index, order, ok := owner.FolioMapping(pfn)
		if !ok || mapping != a.id || index != f.Index || order != uint(f.Order) {
			return invariant.New("pagecache", "folio-backlink", a.dumpEntry(f),
				"mapping %d: %v at index %#x order %d, but its page says ok=%v mapping %d index %#x order %d",
				a.id, f.Entry, f.Index, f.Order, ok, mapping, index, order)
		}
	}
	if pages != a.nrpages || values != a.nrValues {
		return invariant.New("pagecache", "mapping-nrpages", a.iPages.dumpHead(),
			"mapping %d: nrpages %d nr_values %d, entries hold %d and %d",
			a.id, a.nrpages, a.nrValues, pages, values)
	}
	return nil
}

// dumpEntry renders the node path holding f for a violation.
func (a *AddressSpace) dumpEntry(f Found) string {
	xa := &a.iPages
	n, _, ok := xa.locate(f.Index)
	if !ok || n == nil {
		return xa.dumpHead()
	}
	return xa.dumpHead() + xa.dumpPath(n)
}
