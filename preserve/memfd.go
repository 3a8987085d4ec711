package preserve

import (
	"fmt"
	"iter"
	"math"
	"slices"

	"khosim/errno"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/pagecache"
	"khosim/physmem"
)

// memfdHandler preserves memfds and other unlinked shmem files: mainline's
// memfd_luo (mm/memfd_luo.c) and the RFC's memfd/shmem KHO code
// (mm/memfd.c, mm/shmem.c of "Introduce FDBox, and preserve memfd with
// shmem over KHO").
type memfdHandler struct{ l *Layer }

// MemfdHandlerName is the memfd handler's name (Layer.Handler).
const MemfdHandlerName = "memfd"

func init() {
	RegisterHandler(HandlerInfo{Name: MemfdHandlerName, New: func(l *Layer) Handler { return &memfdHandler{l} }})
}

func (h *memfdHandler) Name() string { return MemfdHandlerName }

// CanPreserve is memfd_luo_can_preserve(): a shmem file with no link
// (memfds, shmem_file_setup files); a linked tmpfs file is refused.
// Hugetlb memfds do not exist in khosim (MFD_HUGETLB is EINVAL).
func (h *memfdHandler) CanPreserve(f *kernel.File) bool {
	return kernel.IsShmemFile(f) && f.Inode != nil && f.Inode.Nlink == 0
}

// pfolio is one preserved folio of a memfd: its first index, head PFN,
// order and the shmem-v2 flags (ShmemFolioUptodate, ShmemFolioDirty).
type pfolio struct {
	index uint64
	pfn   uint32 // the memmap numbers frames in 32 bits
	order uint8
	flags uint8
}

func (pf *pfolio) folio() physmem.Folio { return physmem.Folio(pf.pfn) }

// migration is a folio Preserve moved out of KHO scratch, kept
// provisionally (How.Provisional): the old folio (one reference held) goes
// back at Unpreserve, or is freed at Detach.
type migration struct {
	index    uint64
	old, new physmem.Folio
	flags    physmem.PageFlags
}

// memfdMeta is what a memfd is besides its folios.
type memfdMeta struct {
	name  string
	pos   int64
	size  int64
	seals uint32
	mode  uint32
}

// memfdFile is one memfd being preserved (Preserved).
type memfdFile struct {
	h          *memfdHandler
	how        How
	file       *kernel.File // borrowed: the front-end holds it (once detached it may drop it)
	info       *kernel.ShmemInodeInfo
	folios     []pfolio // preserved (KHO holds a reference on each), index order
	migrations []migration
	fallocend  uint64
	detached   int // folios out of the page cache (Detach; Reattach puts them back from the front)
	snapshot   *memfdMeta
	frozen     bool // the reboot path's freeze (Freeze)
	done       bool
	blob       blobState
}

// Preserve is memfd_luo_preserve() for How.Pin and phase 1 of the RFC's
// shmem_fdbox_kho_write() otherwise: the file's folios are found (pinned
// with every hole filled, or swapped in and taken as they are), moved out
// of KHO scratch, and preserved whole — large folios with their order,
// fallocated !uptodate folios as they are — each with its flags. The page
// cache is left intact.
//
// Differs from the RFC, which removes each folio from the page cache as it
// goes (so any failure loses the file: its own TODO), refuses swapped-out
// pages and large folios (EOPNOTSUPP), marks every restored folio
// uptodate and drops the seals.
//
// Errors: EOPNOTSUPP for a file without shmem storage; ENOMEM (or the
// page_alloc fault) from swap-in, hole filling or migration; KHO's errors
// (EBUSY once preservation is closed). Nothing is preserved then and the
// file is unchanged, but for what a swap-in or hole fill brought in,
// which is invisible through the file.
func (h *memfdHandler) Preserve(f *kernel.File, how How) (Preserved, error) {
	info := kernel.ShmemInode(f)
	if info == nil {
		return nil, errno.EOPNOTSUPP
	}
	l := h.l
	mf := &memfdFile{h: h, how: how, file: f, info: info, fallocend: info.Fallocend()}
	if how.FreezeInode {
		kernel.ShmemFreeze(info, true)
	}
	fail := func(err error) (Preserved, error) {
		mf.release()
		return nil, err
	}
	if err := mf.collect(); err != nil {
		l.k.Printk(kernel.LogErr, "shmem: failed to collect the folios of %s for KHO: %v", f.Name, err)
		return fail(err)
	}
	mm := l.k.MM
	for i := range mf.folios {
		pf := &mf.folios[i]
		folio := pf.folio()
		if l.kho.InScratch(folio.PFN(), uint64(1)<<pf.order) {
			nf, err := mf.migrate(folio, pf.index)
			if err != nil {
				l.k.Printk(kernel.LogErr, "shmem: cannot migrate %s index %#x out of KHO scratch: %v", f.Name, pf.index, err)
				mf.unpin(mf.folios[i:])
				mf.folios = mf.folios[:i] // only these were preserved
				return fail(err)
			}
			pf.pfn = uint32(nf)
		}
		head := mm.Page(pf.folio().PFN())
		pf.flags = 0
		if head.Test(physmem.PGUptodate) {
			pf.flags |= ShmemFolioUptodate
		}
		if head.Test(physmem.PGDirty) {
			pf.flags |= ShmemFolioDirty
		}
		if _, err := l.kho.PreserveFolio(pf.folio()); err != nil {
			l.k.Printk(kernel.LogErr, "shmem: cannot preserve %s index %#x: %v", f.Name, pf.index, err)
			mf.unpin(mf.folios[i:])
			mf.folios = mf.folios[:i]
			return fail(err)
		}
		l.stats.Preserved++
	}
	l.track(mf)
	return mf, nil
}

// collect fills mf.folios: with How.Pin every page up to i_size pinned
// (kernel.MemfdPinFolios), else every folio of the swapped-in page cache.
func (mf *memfdFile) collect() error {
	k := mf.h.l.k
	if mf.how.Pin {
		before := mf.info.Mapping().NrPages()
		pinned, err := k.MemfdPinFolios(mf.info, mf.file.Inode.Size)
		if err != nil {
			return err
		}
		mf.h.l.stats.HolesFilled += mf.info.Mapping().NrPages() - before
		k.Work().FramesAllocated += mf.info.Mapping().NrPages() - before
		mf.folios = make([]pfolio, len(pinned))
		for i, p := range pinned {
			mf.folios[i] = pfolio{index: p.Index, pfn: uint32(p.Folio), order: uint8(p.Order)}
		}
		return nil
	}
	if err := k.ShmemSwapinAll(mf.info); err != nil {
		return err
	}
	// Straight into the record, sized once: after the swap-in every
	// entry is a folio.
	mapping := mf.info.Mapping()
	mf.folios = make([]pfolio, 0, mapping.Counts().Entries)
	var batch pagecache.Batch
	for index, more := uint64(0), true; more; {
		batch.Reinit()
		index, more = mapping.FindGetEntries(index, math.MaxUint64, &batch)
		for _, e := range batch.Entries() {
			if e.Entry.IsValue() {
				invariant.Panic("preserve", "swapped-in", mf.info.String(), "swap entry at %#x after swapping in the whole file", e.Index)
			}
			mf.folios = append(mf.folios, pfolio{pfn: uint32(e.Entry.PFN()), index: e.Index, order: e.Order})
		}
	}
	return nil
}

// migrate moves the folio at index out of KHO scratch. A pinned file's
// pin moves to the new folio; a provisional migration keeps the old folio
// (with a reference) for Unpreserve; otherwise the old one is freed.
func (mf *memfdFile) migrate(old physmem.Folio, index uint64) (physmem.Folio, error) {
	l := mf.h.l
	mm := l.k.MM
	if !mf.how.Pin {
		mm.FolioGet(old) // MigrateLongtermFolio wants the caller's reference
	}
	nf, flags, err := l.k.MigrateLongtermFolio(mf.info, old, index)
	if err != nil {
		if !mf.how.Pin {
			mm.FolioPut(old)
		}
		return 0, err
	}
	l.stats.Migrated++
	l.k.Work().FramesAllocated += uint64(1) << mm.FolioOrder(nf)
	if mf.how.Pin {
		mm.FolioGet(nf) // the pin moves to the new folio
	}
	if mf.how.Provisional {
		mf.migrations = append(mf.migrations, migration{index: index, old: old, new: nf, flags: flags})
	} else {
		mm.FolioPut(old) // the migration is final: the old folio is freed
	}
	return nf, nil
}

// unpin drops the pins of folios (a pinning preserve's references).
func (mf *memfdFile) unpin(folios []pfolio) {
	if !mf.how.Pin {
		return
	}
	for _, pf := range folios {
		mf.h.l.k.MM.FolioPut(pf.folio())
	}
}

// release undoes what Preserve did so far and ends the record: every
// preserved folio is unpreserved, pins dropped, provisional migrations put
// back, the inode unfrozen.
func (mf *memfdFile) release() {
	kho := mf.h.l.kho
	for _, pf := range mf.folios {
		if err := kho.UnpreserveFolio(pf.folio()); err != nil {
			invariant.Panic("preserve", "unpreserve", mf.String(), "unpreserving folio at index %#x: %v", pf.index, err)
		}
	}
	mf.unpin(mf.folios)
	for _, mg := range slices.Backward(mf.migrations) {
		mf.h.l.k.UnmigrateFolio(mf.info, mg.old, mg.new, mg.index, mg.flags)
		mf.h.l.k.MM.FolioPut(mg.old) // the page cache holds it again
	}
	mf.migrations = nil
	mf.folios = nil
	if mf.how.FreezeInode {
		kernel.ShmemFreeze(mf.info, false)
	}
	mf.done = true
	mf.h.l.untrack()
}

func (mf *memfdFile) Handler() Handler { return mf.h }
func (mf *memfdFile) Folios() int      { return len(mf.folios) }
func (mf *memfdFile) ended() bool      { return mf.done }

// Size is the memfd's i_size, as recorded at Detach once detached.
func (mf *memfdFile) Size() int64 { return mf.meta().size }

func (mf *memfdFile) Pages() uint64 {
	var n uint64
	for _, pf := range mf.folios {
		n += 1 << pf.order
	}
	return n
}

func (mf *memfdFile) String() string {
	name := "?"
	if mf.snapshot != nil {
		name = mf.snapshot.name
	} else if mf.file != nil {
		name = mf.file.Name
	}
	return fmt.Sprintf("memfd %s: %d folios (%d pages) preserved, %d detached, %d provisional migrations, pin=%v freeze=%v",
		name, len(mf.folios), mf.Pages(), mf.detached, len(mf.migrations), mf.how.Pin, mf.how.FreezeInode)
}

func (mf *memfdFile) mustLive(op string) {
	if mf.done {
		invariant.Panic("preserve", "record-live", mf.String(), "%s on a record that ended", op)
	}
}

// meta returns what the file is now, or what it was when it was detached.
func (mf *memfdFile) meta() memfdMeta {
	if mf.snapshot != nil {
		return *mf.snapshot
	}
	f := mf.file
	return memfdMeta{name: f.Name, pos: f.Pos, size: f.Inode.Size, seals: mf.info.Seals, mode: f.Inode.Mode & 0o7777}
}

// Freeze is memfd_luo_freeze(): the position may have moved since
// Preserve; nothing else may change. A written blob is rewritten.
func (mf *memfdFile) Freeze() error {
	mf.mustLive("freeze")
	mf.frozen = true
	if mf.blob.written {
		_, err := mf.WriteBlob()
		return err
	}
	return nil
}

// Unfreeze undoes Freeze (memfd_luo has no ->unfreeze: nothing to undo).
func (mf *memfdFile) Unfreeze() {
	mf.mustLive("unfreeze")
	mf.frozen = false
}

// Detach is phase 2 of the RFC's shmem_fdbox_kho_write(): its
// shmem_undo_range() with shmem_fdbox_undo_ops removes every preserved
// folio from the page cache with truncate_inode_folio while KHO's
// reference keeps it alive, after the file's name, size, pos, seals and
// mode are recorded. Provisional migrations become final. Nothing can
// fail: the file was swapped in at Preserve and its user keeps it idle.
//
// Preconditions: the file is not pinned (How.Pin) and nothing was added
// to its page cache since Preserve.
func (mf *memfdFile) Detach() {
	mf.mustLive("detach")
	if mf.how.Pin || mf.detached != 0 {
		invariant.Panic("preserve", "detach", mf.String(), "detaching a pinned or detached file")
	}
	m := mf.meta()
	mf.snapshot = &m
	ops := &detachOps{mf: mf}
	if err := kernel.ShmemUndoRange(mf.info, 0, -1, false, ops); err != nil {
		invariant.Panic("preserve", "detach", mf.info.String(), "shmem_undo_range with KHO ops: %v", err)
	}
	if ops.removed != len(mf.folios) {
		invariant.Panic("preserve", "detach", mf.info.String(), "removed %d folios of %d preserved", ops.removed, len(mf.folios))
	}
	mf.detached = len(mf.folios)
	mf.h.l.stats.Detached += uint64(ops.removed)
	mf.h.l.k.Work().PageCacheRemoved += uint64(ops.removed)
	for _, mg := range mf.migrations {
		mf.h.l.k.MM.FolioPut(mg.old) // the migration is final: free the scratch folio
	}
	mf.migrations = nil
}

// detachOps is the RFC's shmem_fdbox_undo_ops: every folio must be
// preserved, and there must be no swap.
type detachOps struct {
	mf      *memfdFile
	removed int
}

func (o *detachOps) check(f physmem.Folio) {
	if !o.mf.h.l.kho.IsPreserved(f) {
		invariant.Panic("preserve", "detach", o.mf.info.String(), "folio %v of a preserved memfd was not preserved", f)
	}
	o.removed++
}

// UndoSwap implements kernel.ShmemUndoOps: Preserve swapped everything in.
func (o *detachOps) UndoSwap(info *kernel.ShmemInodeInfo, index uint64, _ kernel.SwapEntry) (int64, error) {
	return 0, fmt.Errorf("swap entry at %#x in a preserved memfd: %w", index, errno.EINVAL)
}

// UndoFolio implements kernel.ShmemUndoOps: truncate_inode_folio, KHO's
// reference keeping the folio, its range left reserved so that Reattach
// needs no allocation (kernel.DetachInodeFolio).
func (o *detachOps) UndoFolio(info *kernel.ShmemInodeInfo, f physmem.Folio) error {
	o.check(f)
	return kernel.DetachInodeFolio(info, f)
}

// UndoPartialFolio implements kernel.ShmemUndoOps: the range is the whole
// file, so a "partial" folio is removed whole, never split or zeroed.
func (o *detachOps) UndoPartialFolio(info *kernel.ShmemInodeInfo, f physmem.Folio, _, _ int64) (bool, error) {
	o.check(f)
	if err := kernel.DetachInodeFolio(info, f); err != nil {
		return false, err
	}
	return true, nil
}

// Reattach puts the detached folios back into the file they came from, at
// their indices with their flags and block accounting, and restores
// fallocend: the file is exactly as before Detach (the RFC's ABORT does
// nothing, leaving the pages out of the page cache with KHO's references
// leaked). Errors: what ShmemRestoreFolio returns (ENOMEM when the page
// cache cannot grow); the folios not yet put back stay detached and a
// retry goes on from there.
func (mf *memfdFile) Reattach() error {
	mf.mustLive("reattach")
	if mf.file.Refs() <= 0 {
		invariant.Panic("preserve", "reattach", mf.String(), "reattaching to a file that was released")
	}
	k := mf.h.l.k
	for mf.detached > 0 {
		pf := mf.folios[len(mf.folios)-mf.detached]
		if err := k.ShmemRestoreFolio(mf.info, pf.folio(), pf.index, pf.flags&ShmemFolioUptodate != 0, pf.flags&ShmemFolioDirty != 0); err != nil {
			return err
		}
		mf.detached--
		mf.h.l.stats.Inserted++
		k.Work().PageCacheInserted++
	}
	mf.info.SetFallocend(mf.fallocend)
	mf.snapshot = nil
	return nil
}

// Unpreserve is memfd_luo_unpreserve() and the undo of Preserve: every
// folio is unpreserved (a detached file's are freed with KHO's last
// reference), pins are dropped, provisional migrations go back, the inode
// is unfrozen, fallocend restored.
func (mf *memfdFile) Unpreserve() {
	mf.mustLive("unpreserve")
	mf.FreeBlob()
	if mf.detached == 0 {
		mf.info.SetFallocend(mf.fallocend)
	}
	mf.release()
}

// Rebuild makes a new memfd of a detached record in this kernel (FDBox
// seal's UNSEAL), as the next kernel would (memfdIncoming.build) but from
// folios that never left this kernel. The folios stay preserved (KHO's
// reference and the new page cache's both hold them) until Unpreserve;
// dropping the new file instead leaves the record as it was.
//
// Preconditions: the record is detached.
func (mf *memfdFile) Rebuild() (*kernel.File, error) {
	mf.mustLive("rebuild")
	if mf.detached != len(mf.folios) || mf.snapshot == nil {
		invariant.Panic("preserve", "rebuild", mf.String(), "rebuilding a record that is not detached")
	}
	in := &memfdIncoming{h: mf.h, meta: *mf.snapshot, hasSeals: true, hasMode: true, src: pfolios(mf.folios)}
	return in.build(func(m kexec.Mem) (physmem.Folio, error) {
		f := physmem.Folio(m.PFN())
		mf.h.l.k.MM.FolioGet(f) // the caller's reference build puts
		return f, nil
	})
}

// Mems implements Preserved.
func (mf *memfdFile) Mems() iter.Seq[kexec.Mem] {
	return func(yield func(kexec.Mem) bool) {
		for _, pf := range mf.folios {
			if !yield(kexec.FolioMem(pf.folio(), uint(pf.order))) {
				return
			}
		}
		for m := range mf.blob.mems() {
			if !yield(m) {
				return
			}
		}
	}
}

// visitRefs reports the layer's references: one pin per folio of a pinned
// file, one per old folio of a provisional migration.
func (mf *memfdFile) visitRefs(v kernel.RefVisitor) {
	if mf.how.Pin {
		for _, pf := range mf.folios {
			v.Folio(pf.folio().PFN(), 1, "preserve: pin of "+mf.meta().name)
		}
	}
	for _, mg := range mf.migrations {
		v.Folio(mg.old.PFN(), 1, "preserve: folio migrated out of scratch, kept until detach")
	}
	mf.blob.visitRefs(v)
}

// check is the record's part of the audit: every folio preserved, in
// index order; a file not detached has each folio in its page cache at
// its index, a detached one none; a frozen inode while FreezeInode.
func (mf *memfdFile) check() error {
	bad := func(format string, args ...any) error {
		return invariant.New("preserve", "memfd-record", mf.String(), format, args...)
	}
	kho := mf.h.l.kho
	for i, pf := range mf.folios {
		if !kho.IsPreserved(pf.folio()) {
			return bad("folio %v at index %#x is not preserved", pf.folio(), pf.index)
		}
		if i > 0 && pf.index < mf.folios[i-1].index+1<<mf.folios[i-1].order {
			return bad("folios out of index order at %#x", pf.index)
		}
		if i >= len(mf.folios)-mf.detached {
			// A detached folio is out of the file's page cache; the
			// file may be gone, and a rebuilt file may hold the folio.
			continue
		}
		e, ok := mf.info.Mapping().Lookup(pf.index)
		if !ok || e.Entry.IsValue() || physmem.Folio(e.Entry.PFN()) != pf.folio() {
			return bad("folio %v at index %#x is not in the file's page cache", pf.folio(), pf.index)
		}
	}
	if mf.how.FreezeInode && !kernel.ShmemFrozen(mf.info) {
		return bad("the inode of a freezing preserve is not frozen")
	}
	return mf.blob.check(mf)
}
