package fdbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/zeebo/xxh3"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/pagecache"
	"khosim/physmem"
	"khosim/uapi"
)

// The memfd and shmem parts of the RFC (patch 4/5, mm/shmem.c, and patch
// 5/5, mm/memfd.c), with the format versioned where khosim had to change
// it. An fd node written by this handler looks like:
//
//	ram {                                  // the fd's name in its box
//		compatible = "fdbox,memfd-v1";
//		 {                                 // unnamed storage node
//			compatible = "fdbox,shmem-v2";
//			file-name = "memfd:guest-ram"; // v2: the file's name ("name" is reserved by the DT spec)
//			pos = <u64 LE>;                // f_pos
//			size = <u64 LE>;               // i_size
//			seals = <u32 LE>;              // v2: F_SEAL_* bits
//			mode = <u32 LE>;               // v2: permission bits of i_mode (MFD_NOEXEC_SEAL clears x)
//			mem = <struct kho_mem[n]>;     // {u64 addr, u64 size} LE, one per folio, size PAGE_SIZE << order
//			indices = <u64 LE [n]>;        // page-cache index of each folio's first page
//			flags = <u8 [n]>;              // v2: bit 0 uptodate, bit 1 dirty
//			checksum = <u64 LE>;           // v2: xxh3 of the fd's name and every property above
//		};
//	};
//
// The RFC's "fdbox,shmem-v1" node has only pos, size, mem (order-0 pages
// only) and indices; the recovery below reads both versions.

// Compatibles of the memfd handler's nodes.
// (MemfdCompatible, "fdbox,memfd-v1", is the driver's: handler_memfd.go.)
const (
	ShmemCompatibleV1 = "fdbox,shmem-v1"
	ShmemCompatibleV2 = "fdbox,shmem-v2"
)

// shmemKnownSeals are the F_SEAL_* bits a shmem-v2 "seals" property may
// hold: those memfd_add_seals() accepts.
const shmemKnownSeals = uapi.F_SEAL_SEAL | uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW |
	uapi.F_SEAL_WRITE | uapi.F_SEAL_FUTURE_WRITE | uapi.F_SEAL_EXEC

// shmemNameMax is NAME_MAX: the longest "file-name" a shmem-v2 node may
// carry.
const shmemNameMax = 255

// Folio flags in a shmem-v2 node's "flags" property.
const (
	ShmemFolioUptodate = 1 << 0
	ShmemFolioDirty    = 1 << 1
)

// preservedFolio is one folio a boxed memfd handed to KHO.
type preservedFolio struct {
	index uint64
	pfn   uint32 // the folio's head (the memmap numbers frames in 32 bits)
	order uint8
	flags uint8
}

func (pf *preservedFolio) folio() physmem.Folio { return physmem.Folio(pf.pfn) }

// shmemKHOFile is what phase 1 recorded about one boxed memfd, for phase 2
// and abort.
type shmemKHOFile struct {
	info       *kernel.ShmemInodeInfo
	folios     []preservedFolio // preserved (KHO holds a reference on each), index order
	fallocend  uint64           // to restore after phase 2 reset it
	removed    bool             // phase 2 took the folios out of the page cache
	migrations []scratchMigration
}

// scratchMigration is one folio phase 1 moved out of KHO scratch. Until
// phase 2 the old folio is kept (with one reference) so that a failed
// activation can put it back: the file then has the very same folios as
// before.
type scratchMigration struct {
	index    uint64
	old, new physmem.Folio
	flags    physmem.PageFlags // the old folio's page-cache flags
}

// memfdKHO is the memfd file kind's KHO state in one kernel.
type memfdKHO struct {
	c     *KHOClient
	k     *kernel.Kernel
	files map[*BoxFD]*shmemKHOFile

	migrated uint64 // folios migrated out of scratch, for statistics
}

// MemfdKHOInit is memfd_fdbox_init(), a late initcall in the RFC: it
// registers the memfd handler (compatible "fdbox,memfd-v1") with the
// driver, which recovers every memfd node fdbox_kho_recover left pending,
// and the handler's two-phase KHO operations.
func MemfdKHOInit(c *KHOClient) error {
	m := &memfdKHO{c: c, k: c.d.k, files: map[*BoxFD]*shmemKHOFile{}}
	c.SetFileOps(MemfdCompatible, &KHOFileOps{Estimate: m.estimate, Commit: m.commit, Abort: m.abort})
	h := MemfdHandler()
	h.KHOWrite = m.khoWrite
	h.Recover = m.recover
	err := c.d.RegisterHandler(h)
	if err != nil {
		m.k.Printk(kernel.LogErr, "memfd: Could not register fdbox handler: %v", err)
	}
	return err
}

// estimate bounds the fd node: the memfd and storage nodes' fixed
// properties plus 25 bytes per folio (kho_mem, index, flags): the folios
// in the page cache and one per swapped page, which phase 1 swaps in as
// order-0 folios.
func (m *memfdKHO) estimate(bfd *BoxFD) uint64 {
	info := kernel.ShmemInode(bfd.File())
	if info == nil {
		return 512
	}
	c := info.Mapping().Counts()
	folios := c.Entries - c.ValueEntries + c.ValueIndices
	return 512 + uint64(len(bfd.File().Name)) + 25*folios
}

// khoWrite is memfd_fdbox_kho_write(): the memfd node's compatible and an
// unnamed subnode that shmem fills in.
func (m *memfdKHO) khoWrite(bfd *BoxFD, w *fdt.Writer) error {
	if err := w.PropertyString("compatible", MemfdCompatible); err != nil {
		return err
	}
	if err := w.BeginNode(""); err != nil {
		m.k.Printk(kernel.LogErr, "memfd: kho: failed to set up memfd node")
		return err
	}
	if err := m.shmemKHOWrite(bfd, w); err != nil {
		return err
	}
	if err := w.EndNode(); err != nil {
		m.k.Printk(kernel.LogErr, "memfd: kho: failed to end memfd node!")
		return err
	}
	return nil
}

// shmemKHOWrite is phase 1 of shmem_fdbox_kho_write(): it swaps the
// whole file in, migrates every folio that sits in KHO scratch out of it,
// preserves every folio whole (large folios with their order, !uptodate
// fallocated folios as they are) and writes the shmem-v2 node. The page
// cache is left intact; phase 2 (commit) empties it.
//
// Differs from the RFC, which removes each folio from the page cache as it
// goes (so any failure loses the file: its own TODO), refuses swapped-out
// pages and large folios (EOPNOTSUPP), marks every restored folio
// uptodate (its TODO about fallocated folios) and drops the seals.
func (m *memfdKHO) shmemKHOWrite(bfd *BoxFD, w *fdt.Writer) error {
	f := bfd.File()
	info := kernel.ShmemInode(f)
	if info == nil {
		return errno.EOPNOTSUPP // TODO in the RFC: hugetlbfs memfds
	}
	sf := &shmemKHOFile{info: info, fallocend: info.Fallocend()}
	m.files[bfd] = sf // from here on, abort undoes whatever was done

	if err := m.k.ShmemSwapinAll(info); err != nil {
		m.k.Printk(kernel.LogErr, "shmem: failed to swap in %s for KHO: %v", f.Name, err)
		return err
	}
	// Collect the folios first (migration below changes the page cache),
	// straight into the record phase 2 and abort use, sized once: after
	// the swap-in every entry is a folio.
	mapping := info.Mapping()
	sf.folios = make([]preservedFolio, 0, mapping.Counts().Entries)
	var batch pagecache.Batch
	for index, more := uint64(0), true; more; {
		batch.Reinit()
		index, more = mapping.FindGetEntries(index, math.MaxUint64, &batch)
		for _, e := range batch.Entries() {
			if e.Entry.IsValue() {
				invariant.Panic("fdbox", "kho-swapped-in", info.String(), "swap entry at %#x after swapping in the whole file", e.Index)
			}
			sf.folios = append(sf.folios, preservedFolio{pfn: uint32(e.Entry.PFN()), index: e.Index, order: e.Order})
		}
	}
	mm := m.k.MM
	kho := m.c.kho
	for i := range sf.folios {
		pf := &sf.folios[i]
		folio := pf.folio()
		if kho.InScratch(folio.PFN(), uint64(1)<<pf.order) {
			nf, err := m.migrateOutOfScratch(sf, folio, pf.index)
			if err != nil {
				m.k.Printk(kernel.LogErr, "shmem: cannot migrate %s index %#x out of KHO scratch: %v", f.Name, pf.index, err)
				sf.folios = sf.folios[:i] // abort unpreserves only what was preserved
				return err
			}
			folio = nf
			pf.pfn = uint32(nf)
		}
		var flags uint8
		head := mm.Page(folio.PFN())
		if head.Test(physmem.PGUptodate) {
			flags |= ShmemFolioUptodate
		}
		if head.Test(physmem.PGDirty) {
			flags |= ShmemFolioDirty
		}
		pf.flags = flags
		if _, err := kho.PreserveFolio(folio); err != nil {
			m.k.Printk(kernel.LogErr, "shmem: cannot preserve %s index %#x: %v", f.Name, pf.index, err)
			sf.folios = sf.folios[:i]
			return err
		}
	}
	return m.writeShmemNode(bfd, sf, w)
}

// checksummer hashes a node's properties for the shmem-v2 "checksum".
type checksummer struct{ h *xxh3.Hasher }

func newChecksummer(fdName string) checksummer {
	c := checksummer{xxh3.New()}
	c.prop("", []byte(fdName))
	return c
}

// prop hashes one property as name, NUL, little-endian length, value.
func (c checksummer) prop(name string, value []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
	_, _ = c.h.WriteString(name)
	_, _ = c.h.Write([]byte{0})
	_, _ = c.h.Write(n[:])
	_, _ = c.h.Write(value)
}

// writeShmemNode writes the shmem-v2 properties of sf, hashing each.
func (m *memfdKHO) writeShmemNode(bfd *BoxFD, sf *shmemKHOFile, w *fdt.Writer) error {
	f := bfd.File()
	sum := newChecksummer(bfd.Name())
	le := binary.LittleEndian
	put := func(name string, n int, fill func(b []byte)) error {
		b, err := w.PropertyPlaceholder(name, n)
		if err != nil {
			m.k.Printk(kernel.LogErr, "shmem: failed to add property %q to FDT: %v", name, err)
			return err
		}
		fill(b)
		sum.prop(name, b)
		return nil
	}
	str := func(s string) func([]byte) { return func(b []byte) { copy(b, s) } }
	u64 := func(v uint64) func([]byte) { return func(b []byte) { le.PutUint64(b, v) } }
	n := len(sf.folios)
	steps := []struct {
		name string
		n    int
		fill func([]byte)
	}{
		{"compatible", len(ShmemCompatibleV2) + 1, str(ShmemCompatibleV2)},
		{"file-name", len(f.Name) + 1, str(f.Name)},
		{"pos", 8, u64(uint64(f.Pos))},
		{"size", 8, u64(uint64(f.Inode.Size))},
		{"seals", 4, func(b []byte) { le.PutUint32(b, sf.info.Seals) }},
		{"mode", 4, func(b []byte) { le.PutUint32(b, f.Inode.Mode&0o7777) }},
		{"mem", kexec.MemSize * n, func(b []byte) {
			for i, pf := range sf.folios {
				mem := kexec.FolioMem(pf.folio(), uint(pf.order))
				le.PutUint64(b[16*i:], uint64(mem.Addr))
				le.PutUint64(b[16*i+8:], mem.Size)
			}
		}},
		{"indices", 8 * n, func(b []byte) {
			for i, pf := range sf.folios {
				le.PutUint64(b[8*i:], pf.index)
			}
		}},
		{"flags", n, func(b []byte) {
			for i, pf := range sf.folios {
				b[i] = pf.flags
			}
		}},
	}
	if strings0(f.Name) {
		steps = slices.Delete(steps, 1, 2) // a name with NUL cannot be a string property
	}
	for _, s := range steps {
		if err := put(s.name, s.n, s.fill); err != nil {
			return err
		}
	}
	return w.PropertyLE64("checksum", sum.h.Sum64())
}

func strings0(s string) bool { return slices.Contains([]byte(s), 0) }

// migrateOutOfScratch moves a page-cache folio out of KHO scratch, which
// the next kernel allocates from before it knows what is preserved: a new
// folio of the same order is allocated outside scratch (GFP_KERNEL never
// gets MIGRATE_CMA pageblocks), the data and the flags are copied, and the
// new folio replaces the old one in the page cache (the old one is
// unmapped and freed). This is what pinning does for FOLL_LONGTERM
// (check_and_migrate_movable_folios -> migrate_longterm_unpinnable_folios):
// CMA memory must not be pinned for long.
//
// The old folio is not freed yet: sf keeps it, with the reference taken
// here, until phase 2 frees it (commit) or an abort before phase 2 puts
// it back (undoMigrations).
//
// Errors: ENOMEM (or the page_alloc fault) when no frame outside scratch
// is free. The file is unchanged then.
func (m *memfdKHO) migrateOutOfScratch(sf *shmemKHOFile, old physmem.Folio, index uint64) (physmem.Folio, error) {
	k, mm, info := m.k, m.k.MM, sf.info
	order := mm.FolioOrder(old)
	nf, err := mm.FolioAlloc(physmem.GFPKernel, order)
	if err != nil {
		return 0, err
	}
	mm.Frames.Copy(nf.PFN(), old.PFN(), uint64(1)<<order)
	keep := mm.Page(old.PFN()).Flags() & (physmem.PGUptodate | physmem.PGDirty | physmem.PGSwapBacked | physmem.PGReferenced | physmem.PGActive)
	mm.FolioGet(old) // TruncateInodeFolio wants the caller's reference; sf keeps it
	if err := kernel.TruncateInodeFolio(info, old); err != nil {
		invariant.Panic("fdbox", "kho-migrate", info.String(), "folio at index %#x is not in its page cache: %v", index, err)
	}
	sf.migrations = append(sf.migrations, scratchMigration{index: index, old: old, new: nf, flags: keep})
	mm.Page(nf.PFN()).Set(keep)
	if err := k.ShmemAddToPageCache(info, nf, index); err != nil {
		invariant.Panic("fdbox", "kho-migrate", info.String(), "re-inserting migrated folio at index %#x: %v", index, err)
	}
	mm.FolioPut(nf) // the page cache holds it now
	m.migrated++
	return nf, nil
}

// commit is phase 2 of shmem_fdbox_kho_write(): the RFC's
// shmem_undo_range() with shmem_fdbox_undo_ops, removing every preserved
// folio from the page cache with truncate_inode_folio while KHO's
// reference keeps it alive. Nothing can fail here: phase 1 swapped the
// file in and the driver is frozen.
func (m *memfdKHO) commit(bfd *BoxFD) {
	sf := m.files[bfd]
	if sf == nil {
		return
	}
	ops := &khoUndoOps{m: m, sf: sf}
	if err := kernel.ShmemUndoRange(sf.info, 0, -1, false, ops); err != nil {
		invariant.Panic("fdbox", "kho-commit", sf.info.String(), "shmem_undo_range with KHO ops: %v", err)
	}
	sf.removed = true
	for _, mg := range sf.migrations {
		m.k.MM.FolioPut(mg.old) // the migration is final: free the scratch folio
	}
	sf.migrations = nil
}

// undoMigrations puts back the folios phase 1 migrated out of scratch, in
// reverse order, for an activation that failed before phase 2: each new
// folio leaves the page cache and is freed, the old one returns at its
// index with its flags. The page cache must hold the new folios (nothing
// preserved any more).
func (m *memfdKHO) undoMigrations(sf *shmemKHOFile) {
	mm := m.k.MM
	for _, mg := range slices.Backward(sf.migrations) {
		mm.FolioGet(mg.new)
		if err := kernel.TruncateInodeFolio(sf.info, mg.new); err != nil {
			invariant.Panic("fdbox", "kho-abort", sf.info.String(), "migrated folio at index %#x is not in its page cache: %v", mg.index, err)
		}
		mm.FolioPut(mg.new) // frees it
		mm.Page(mg.old.PFN()).Set(mg.flags)
		if err := m.k.ShmemAddToPageCache(sf.info, mg.old, mg.index); err != nil {
			invariant.Panic("fdbox", "kho-abort", sf.info.String(), "putting back folio at index %#x: %v", mg.index, err)
		}
		mm.FolioPut(mg.old) // the page cache holds it again
	}
	sf.migrations = nil
}

// khoUndoOps is the RFC's shmem_fdbox_undo_ops for phase 2: every folio
// must be one phase 1 preserved, and there must be no swap.
type khoUndoOps struct {
	m  *memfdKHO
	sf *shmemKHOFile
}

func (o *khoUndoOps) check(f physmem.Folio) {
	if !o.m.c.kho.IsPreserved(f) {
		invariant.Panic("fdbox", "kho-commit", o.sf.info.String(), "folio %v in a frozen memfd was not preserved", f)
	}
}

// UndoSwap implements kernel.ShmemUndoOps: phase 1 swapped everything in.
func (o *khoUndoOps) UndoSwap(info *kernel.ShmemInodeInfo, index uint64, _ kernel.SwapEntry) (int64, error) {
	return 0, fmt.Errorf("swap entry at %#x in a frozen memfd: %w", index, errno.EINVAL)
}

// UndoFolio implements kernel.ShmemUndoOps: truncate_inode_folio, KHO's
// reference keeping the folio.
func (o *khoUndoOps) UndoFolio(info *kernel.ShmemInodeInfo, f physmem.Folio) error {
	o.check(f)
	return kernel.TruncateInodeFolio(info, f)
}

// UndoPartialFolio implements kernel.ShmemUndoOps: the range is the whole
// file, so a "partial" folio is removed whole, never split or zeroed.
func (o *khoUndoOps) UndoPartialFolio(info *kernel.ShmemInodeInfo, f physmem.Folio, _, _ int64) (bool, error) {
	o.check(f)
	if err := kernel.TruncateInodeFolio(info, f); err != nil {
		return false, err
	}
	return true, nil
}

// abort undoes phase 1 and phase 2 for one file: the folios go back into
// the page cache at their indices with the flags they had, KHO's
// references are dropped, folios migrated out of scratch by a failed
// activation are put back, and fallocend is restored. The file is then
// exactly as before activation: contents, size, pos, seals, block
// accounting, the very same folios and their references. Two things a
// successful activation did stay done after a deactivation, as neither
// is visible through the file: pages that were on swap stay in memory,
// and folios migrated out of scratch stay where they went (a longterm
// pin's migration is not reverted at unpin either).
func (m *memfdKHO) abort(bfd *BoxFD, committed bool) {
	sf := m.files[bfd]
	if sf == nil {
		return
	}
	delete(m.files, bfd)
	if sf.removed {
		for _, pf := range sf.folios {
			if err := m.insertFolio(sf.info, pf.folio(), pf.index, pf.flags); err != nil {
				invariant.Panic("fdbox", "kho-abort", sf.info.String(), "re-inserting preserved folio at index %#x: %v", pf.index, err)
			}
		}
	}
	for _, pf := range sf.folios {
		if err := m.c.kho.UnpreserveFolio(pf.folio()); err != nil {
			invariant.Panic("fdbox", "kho-abort", sf.info.String(), "unpreserving folio at index %#x: %v", pf.index, err)
		}
	}
	m.undoMigrations(sf)
	sf.info.SetFallocend(sf.fallocend)
}

// insertFolio puts a folio the caller holds a reference to into a shmem
// page cache at index, with the given v2 flags, and charges it to the
// inode (the part of shmem_fdbox_kho_recover that follows
// shmem_alloc_and_add_folio). The caller keeps its reference.
func (m *memfdKHO) insertFolio(info *kernel.ShmemInodeInfo, f physmem.Folio, index uint64, flags uint8) error {
	return m.k.ShmemRestoreFolio(info, f, index, flags&ShmemFolioUptodate != 0, flags&ShmemFolioDirty != 0)
}

// shmemNode is a parsed shmem node (v1 or v2).
type shmemNode struct {
	v2      bool
	name    string
	pos     uint64
	size    uint64
	seals   uint32
	mode    uint32
	mems    []byte // raw kho_mem array
	indices []byte
	flags   []byte
	nr      int
}

func (s *shmemNode) mem(i int) kexec.Mem { return kexec.MemAt(s.mems, i) }
func (s *shmemNode) index(i int) uint64  { return binary.LittleEndian.Uint64(s.indices[8*i:]) }
func (s *shmemNode) folioFlags(i int) uint8 {
	if !s.v2 {
		// v1: the RFC marks every restored folio uptodate and dirty.
		return ShmemFolioUptodate | ShmemFolioDirty
	}
	return s.flags[i]
}

// errBadNode marks a node whose contents cannot be trusted: its memory is
// left to KHO's late pass rather than returned by what it claims.
var errBadNode = errors.New("bad node")

// recover is memfd_fdbox_kho_recover(): the node must be "fdbox,memfd-v1"
// with exactly one subnode, a shmem-v1 or shmem-v2 node, from which shmem
// rebuilds the file; memfd_setup_file then makes it a memfd. Once the
// node has checked, each call reports to the recover fault site (EIO)
// before it touches any memory.
//
// On any failure the node is skipped and its memory returned: at once
// when the node is intact (a claim or recover fault, a page cache
// conflict), or by KHO's late pass when the node itself is corrupt (its
// checksum or properties are wrong, so its "mem" ranges cannot be trusted
// to be its own).
func (m *memfdKHO) recover(node FDTNode) (*kernel.File, error) {
	f, err := m.c.fdtOf(node)
	if err != nil {
		m.k.Printk(kernel.LogErr, "memfd: kho: unreadable FDT: %v", err)
		return nil, errno.EINVAL
	}
	path, _ := f.GetPath(node.Offset)
	fail := func(err error, s *shmemNode) (*kernel.File, error) {
		m.c.recovered.FailedFDs++
		m.k.Printk(kernel.LogErr, "memfd: kho: error when recovering KHO node '%s': %v", path, err)
		if s != nil && !errors.Is(err, errBadNode) {
			for i := range s.nr {
				_ = m.c.kho.ReturnMem(s.mem(i)) // ranges already claimed or not ours stay as they are
			}
		}
		if errors.Is(err, errBadNode) {
			return nil, errno.EINVAL
		}
		return nil, errno.Of(err)
	}
	name, _ := f.GetName(node.Offset)
	if ok, _ := f.NodeCheckCompatible(node.Offset, MemfdCompatible); !ok {
		return fail(fmt.Errorf("kho: invalid compatible: %w", errBadNode), nil)
	}
	sub, err := f.FirstSubnode(node.Offset)
	if err != nil {
		return fail(fmt.Errorf("kho: no subnode for underlying storage found!: %w", errBadNode), nil)
	}
	if _, err := f.NextSubnode(sub); err == nil {
		return fail(fmt.Errorf("kho: too many subnodes. Expected only 1.: %w", errBadNode), nil)
	}
	s, err := parseShmemNode(f, sub, name)
	if err != nil {
		return fail(err, nil)
	}
	if err := m.c.faults.Hit(fault.Recover); err != nil {
		return fail(fmt.Errorf("recover: %w", err), s)
	}
	file, err := m.shmemRecover(s)
	if err != nil {
		return fail(err, s)
	}
	m.c.recovered.FDs++
	return file, nil
}

// parseShmemNode reads and checks a shmem node (shmem_fdbox_kho_recover's
// property checks, plus v2's checksum). fdName is the fd node's name,
// which the checksum covers.
func parseShmemNode(f *fdt.FDT, off int, fdName string) (*shmemNode, error) {
	bad := func(format string, args ...any) (*shmemNode, error) {
		return nil, fmt.Errorf("shmem: "+format+": %w", append(args, errBadNode)...)
	}
	s := &shmemNode{}
	switch ok1, _ := f.NodeCheckCompatible(off, ShmemCompatibleV1); {
	case ok1:
	default:
		if ok2, _ := f.NodeCheckCompatible(off, ShmemCompatibleV2); !ok2 {
			return bad("invalid compatible")
		}
		s.v2 = true
	}
	missing := false
	prop := func(name string) []byte {
		v, err := f.GetProp(off, name)
		if err != nil {
			missing = true
			return nil
		}
		return v
	}
	le := binary.LittleEndian
	s.mems = prop("mem")
	if missing || len(s.mems)%kexec.MemSize != 0 {
		return bad("invalid mems property")
	}
	s.nr = len(s.mems) / kexec.MemSize
	s.indices = prop("indices")
	if missing || len(s.indices)%8 != 0 {
		return bad("invalid indices property")
	}
	if len(s.indices)/8 != s.nr {
		return bad("number of indices and mems do not match")
	}
	size, pos := prop("size"), prop("pos")
	if len(size) != 8 {
		return bad("invalid size property")
	}
	if len(pos) != 8 {
		return bad("invalid pos property")
	}
	s.size, s.pos = le.Uint64(size), le.Uint64(pos)
	if s.v2 {
		seals := prop("seals")
		if len(seals) != 4 {
			return bad("invalid seals property")
		}
		s.seals = le.Uint32(seals)
		if s.seals&^shmemKnownSeals != 0 {
			// F_ADD_SEALS would refuse these bits (EINVAL): a node
			// carrying them was not written by a kernel that knows
			// what they mean.
			return bad("unknown seals %#x", s.seals&^shmemKnownSeals)
		}
		mode := prop("mode")
		if len(mode) != 4 || le.Uint32(mode)&^0o7777 != 0 {
			return bad("invalid mode property")
		}
		s.mode = le.Uint32(mode)
		s.flags = prop("flags")
		if missing || len(s.flags) != s.nr {
			return bad("invalid flags property")
		}
		if n := prop("file-name"); len(n) > 0 {
			// A dentry name: NUL-terminated, no NUL inside, at most
			// NAME_MAX bytes (memfd_create allows "memfd:" + 249).
			if n[len(n)-1] != 0 || slices.Contains(n[:len(n)-1], 0) || len(n)-1 > shmemNameMax {
				return bad("invalid file-name property")
			}
			s.name = string(n[:len(n)-1])
		}
		sum := prop("checksum")
		if len(sum) != 8 {
			return bad("missing checksum")
		}
		c := newChecksummer(fdName)
		for pname, v := range f.Properties(off) {
			if pname != "checksum" {
				c.prop(pname, v)
			}
		}
		if c.h.Sum64() != le.Uint64(sum) {
			return bad("checksum mismatch: the node was corrupted")
		}
	}
	if s.size > math.MaxInt64 || s.pos > math.MaxInt64 {
		return bad("size %#x or pos %#x beyond MAX_LFS_FILESIZE", s.size, s.pos)
	}
	return s, nil
}

// shmemRecover is shmem_fdbox_kho_recover(): an empty shmem file, then
// every range claimed from KHO (kho_claim_mem) and put into the page cache
// at its index with its flags, then pos, size and seals, and
// memfd_setup_file. The folios end with the references a clean boot gives
// a cached folio (the page cache's), the file with one (the box's).
//
// On error the file is released (which frees the folios already inserted)
// and the caller returns the ranges not yet claimed.
func (m *memfdKHO) shmemRecover(s *shmemNode) (*kernel.File, error) {
	k := m.k
	name := s.name
	if name == "" {
		name = "memfd:"
	}
	file, err := k.ShmemFileSetup(name, 0)
	if err != nil {
		return nil, fmt.Errorf("shmem: failed to setup file: %w", err)
	}
	info := kernel.ShmemInode(file)
	if s.nr > 0 {
		// Size the page cache's node arena for the whole file at once
		// (exact for a dense file of one folio order; a sparse or mixed
		// file grows it further as usual).
		if order, ok := s.mem(0).FolioOrder(); ok && (s.v2 || order == 0) {
			info.Mapping().ReserveNodes(uint64(s.nr)<<order, order)
		}
	}
	for i := range s.nr {
		mem := s.mem(i)
		order, ok := mem.FolioOrder()
		if !ok || !s.v2 && order != 0 {
			file.Put()
			return nil, fmt.Errorf("shmem: unknown kho_mem %v: %w", mem, errno.EINVAL)
		}
		index := s.index(i)
		if index&(1<<order-1) != 0 || index > (math.MaxInt64>>physmem.PageShift)-(1<<order) {
			file.Put()
			return nil, fmt.Errorf("shmem: index %#x of %v invalid: %w", index, mem, errno.EINVAL)
		}
		folio, err := m.c.kho.ClaimMem(mem)
		if err != nil {
			file.Put()
			return nil, fmt.Errorf("shmem: failed to claim folio index %d: %w", index, err)
		}
		if err := m.insertFolio(info, folio, index, s.folioFlags(i)); err != nil {
			k.MM.FolioPut(folio)
			file.Put()
			return nil, fmt.Errorf("shmem: failed to add to page cache folio index %d: %w", index, err)
		}
		k.MM.FolioPut(folio) // the page cache holds it now
	}
	file.Inode.Size = int64(s.size)
	file.Pos = int64(s.pos)
	if err := kernel.MemfdSetupFile(file, 0); err != nil {
		file.Put()
		return nil, err
	}
	if s.v2 {
		// The seals as they were. A write-sealed memfd needs no
		// i_mmap_writable = -1 here: it has no mapping, and the seal
		// itself refuses every writable shared mapping from now on.
		info.Seals = s.seals
		file.Inode.Mode = file.Inode.Mode&^0o7777 | s.mode
	}
	return file, nil
}
