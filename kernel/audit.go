package kernel

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"khosim/invariant"
	"khosim/pagecache"
	"khosim/physmem"
)

// vmEvents are the /proc/vmstat event counters khosim keeps.
type vmEvents struct {
	thpFileAlloc    uint64 // THP_FILE_ALLOC
	thpFileFallback uint64 // THP_FILE_FALLBACK
	thpSplitPage    uint64 // THP_SPLIT_PAGE
	pswpin          uint64 // PSWPIN
	pswpout         uint64 // PSWPOUT
	pgmigrate       uint64 // PGMIGRATE_SUCCESS
}

// VMStat returns the event counters, by their /proc/vmstat names.
func (k *Kernel) VMStat() map[string]uint64 {
	s := k.stats
	return map[string]uint64{
		"thp_file_alloc": s.thpFileAlloc, "thp_file_fallback": s.thpFileFallback,
		"thp_split_page": s.thpSplitPage, "pswpin": s.pswpin, "pswpout": s.pswpout,
		"pgmigrate_success": s.pgmigrate,
	}
}

// frameCounter is a subsystem's count of frames in some state.
type frameCounter struct {
	state string
	count func() uint64
}

// RegisterFrameCounter adds a subsystem's count of frames in a state the
// kernel itself does not know, e.g. KHO's "preserved" (handed over and not
// yet claimed or returned). FrameCounts sums the counters of each state.
func (k *Kernel) RegisterFrameCounter(state string, count func() uint64) {
	k.mustAlive()
	k.counters = append(k.counters, frameCounter{state, count})
}

// FrameCounts is the frames of the running kernel by state.
//
// Free, Used, Slab, Tracker, Preserved and Reserved partition the
// machine's frames: free in the buddy allocator; slab (registered
// counters: frames holding kernel metadata — slab pages, kvmalloc'd
// records); tracker (registered counters: frames holding this kernel's
// KHO tracker record); used (every other allocated frame: file data, the
// FDT buffer, ...); preserved (registered counters: KHO's handed-over
// frames not yet claimed or returned); reserved (the rest: memblock
// reservations such as the kernel image, the memmap, the low 1 MiB).
// Scratch is another view: the frames of KHO scratch memory, whatever
// their state.
type FrameCounts struct {
	Total, Free, Used, Slab, Tracker, Reserved, Preserved, Scratch uint64
}

// FrameCounts returns the frame counts (the scenario function frames()).
func (k *Kernel) FrameCounts() FrameCounts {
	k.mustAlive()
	z := &k.MM.Zone
	c := FrameCounts{Total: k.MM.Frames.NumFrames(), Free: z.NrFreePages()}
	c.Slab = k.counted("slab")
	c.Tracker = k.counted("tracker")
	c.Used = z.ManagedPages() - c.Free - c.Slab - c.Tracker
	c.Preserved = k.counted("preserved")
	c.Reserved = c.Total - z.ManagedPages() - min(c.Preserved, c.Total-z.ManagedPages())
	for _, r := range k.Scratch {
		c.Scratch += r.Size / physmem.PageSize
	}
	return c
}

// counted sums the registered counters of a state.
func (k *Kernel) counted(state string) uint64 {
	var n uint64
	for _, c := range k.counters {
		if c.state == state {
			n += c.count()
		}
	}
	return n
}

// refAudit collects the references every owner reports (RefVisitor).
type refAudit struct {
	k        *Kernel
	folios   []int32 // expected references by head PFN
	mapcount map[physmem.PFN]int32
	files    map[*File]int64
	frames   []physmem.MemblockRegion // frames owned outside folio refcounts
	bad      *invariant.Violation

	// focus, when set, records who holds references to one folio or file.
	focusFolio physmem.Folio
	focusFile  *File
	holders    []string
}

// File implements RefVisitor.
func (a *refAudit) File(f *File, n int64, who string) {
	a.files[f] += n
	if f == a.focusFile {
		a.holders = append(a.holders, fmt.Sprintf("%s: %d", who, n))
	}
}

// Folio implements RefVisitor.
func (a *refAudit) Folio(pfn physmem.PFN, n int64, who string) {
	if a.bad != nil {
		return
	}
	if !a.k.MM.Frames.Valid(pfn) {
		a.bad = invariant.New(pkgName, "folio-ref-owner", "", "%s reports %d references to %v, beyond memory", who, n, pfn)
		return
	}
	a.folios[pfn] += int32(n)
	if physmem.Folio(pfn) == a.focusFolio {
		a.holders = append(a.holders, fmt.Sprintf("%s: %d", who, n))
	}
}

// Frames implements RefVisitor.
func (a *refAudit) Frames(pfn physmem.PFN, nr uint64, who string) {
	a.frames = append(a.frames, physmem.MemblockRegion{Base: pfn.Phys(), Size: nr * physmem.PageSize})
	if a.focusFolio != 0 && physmem.PFN(a.focusFolio) >= pfn && physmem.PFN(a.focusFolio) < pfn+physmem.PFN(nr) {
		a.holders = append(a.holders, fmt.Sprintf("%s: frames %v+%d", who, pfn, nr))
	}
}

// collect runs every owner (VisitOwners), counting the PTEs that map
// each page for the mapcount check.
func (a *refAudit) collect() {
	a.k.visitOwners(a, func(pfn physmem.PFN, n int32) { a.mapcount[pfn] += n })
}

// presentPTEs counts the PTEs mapping each page.
func (mm *TaskMM) presentPTEs() map[physmem.PFN]int32 {
	out := map[physmem.PFN]int32{}
	for _, t := range mm.ptes {
		for _, pte := range t.pte {
			if pte != 0 {
				out[physmem.PFN(pte-1)]++
			}
		}
	}
	return out
}

// CheckInvariants audits the running kernel and returns the first broken
// invariant as an *invariant.Violation with the state behind it:
//   - physmem's own checks (every frame in exactly one state, free frames
//     in the allocator, memblock) and each page cache's (tree shape,
//     nrpages, every folio pointing back at its mapping and index);
//   - every allocated folio's refcount equals the references its owners
//     report: page caches (folio_nr_pages each), PTEs (one each), and the
//     owners registered with RegisterRefOwner; every allocated folio has
//     an owner, unless an owner claims its frames (no leak); every page's
//     mapcount equals the PTEs mapping it;
//   - each shmem inode: alloced == nrpages + swapped, swapped == the swap
//     entries it caches, each naming a used slot; each superblock's
//     used_blocks is the sum of its inodes' alloced; the swap map's used
//     slots are exactly those entries;
//   - every live file's refcount equals its fd-table entries, mappings
//     and registered owners' references; i_mmap and i_mmap_writable match
//     the tasks' mappings.
func (k *Kernel) CheckInvariants() error {
	k.mustAlive()
	if err := k.MM.CheckInvariants(); err != nil {
		return err
	}
	if v := k.checkShmem(); v != nil {
		return v
	}
	if v := k.checkRefs(); v != nil {
		return v
	}
	return nil
}

func (k *Kernel) violation(name, dump, detail string, args ...any) *invariant.Violation {
	return invariant.New(pkgName, name, dump, detail, args...)
}

// checkShmem checks the shmem inodes, superblocks and swap.
func (k *Kernel) checkShmem() error {
	used := map[*shmemSB]int64{}
	slotUsers := map[uint64]int{}
	for id, info := range k.mappings {
		if info == nil {
			continue
		}
		if err := info.mapping.CheckInvariants(k); err != nil {
			return err
		}
		if info.mapping.ID() != physmem.MappingID(id) || !k.inodeLive(info.inode) {
			return k.violation("shmem-mapping-table", info.String(), "mapping table slot %d holds mapping %d", id, info.mapping.ID())
		}
		nrpages, values := int64(info.mapping.NrPages()), int64(info.mapping.NrValues())
		if info.alloced != nrpages+info.swapped || info.swapped != values {
			return k.violation("shmem-accounting", info.String(),
				"alloced %d != nrpages %d + swapped %d, or swapped != %d swap entries cached",
				info.alloced, nrpages, info.swapped, values)
		}
		used[info.sb] += info.alloced
		for e := range info.mapping.Range(0, ^uint64(0)) {
			if !e.Entry.IsValue() {
				continue
			}
			swap := SwapEntry(e.Entry.Value())
			if !k.swapEntryValid(swap) {
				return k.violation("swap-entry-valid", info.String()+"\nswap: "+k.swapString(),
					"inode %d caches %v at index %#x, which is not a used slot", info.inode.Ino, swap, e.Index)
			}
			slotUsers[swap.Offset()]++
		}
		var writable int
		for _, v := range sortedVMAs(info.mmaps) {
			if v.unmapped || !slices.Contains(v.mm.vmas, v) {
				return k.violation("i-mmap", v.String(), "inode %d lists a mapping that is gone", info.inode.Ino)
			}
			if v.isSharedMaywrite() {
				writable++
			}
		}
		if info.mmapWritable != writable && !(info.mmapWritable == -1 && writable == 0) {
			return k.violation("i-mmap-writable", info.String(), "i_mmap_writable %d, %d writable shared mappings",
				info.mmapWritable, writable)
		}
	}
	for _, sb := range []*shmemSB{k.shm, k.tmp} {
		if sb != nil && int64(sb.usedBlocks) != used[sb] {
			return k.violation("shmem-used-blocks", fmt.Sprintf("%s: used_blocks %d max_blocks %d", sb.name, sb.usedBlocks, sb.maxBlocks),
				"%s accounts %d blocks, its inodes' alloced sum to %d", sb.name, sb.usedBlocks, used[sb])
		}
	}
	if si := k.swap; si != nil {
		var inuse uint64
		for off, c := range si.swapMap {
			if c == swapMapBad {
				if off != 0 {
					return k.violation("swap-map", k.swapString(), "slot %d is marked bad", off)
				}
				continue
			}
			if int(c) != slotUsers[uint64(off)] {
				return k.violation("swap-map", k.swapString(), "slot %d has count %d but %d page-cache users", off, c, slotUsers[uint64(off)])
			}
			if c != 0 {
				inuse++
			}
		}
		if inuse != si.inuse {
			return k.violation("swap-map", k.swapString(), "inuse_pages %d, %d slots used", si.inuse, inuse)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(k.tmpDir)) {
		in := k.tmpDir[name]
		if in.Nlink != 1 || !k.inodeLive(in) {
			return k.violation("tmpfs-dentry", fmt.Sprintf("/tmp/%s: inode %d nlink %d", name, in.Ino, in.Nlink), "a /tmp name points at a dead inode")
		}
	}
	return nil
}

// checkRefs checks folio references, mapcounts and file references.
func (k *Kernel) checkRefs() error {
	n := k.MM.Frames.NumFrames()
	a := &refAudit{k: k, folios: make([]int32, n), mapcount: map[physmem.PFN]int32{}, files: map[*File]int64{}}
	a.collect()
	if a.bad != nil {
		return a.bad
	}
	// The claimed frames, merged into sorted disjoint runs: the walk
	// below asks about ascending frames, so a cursor answers in O(1)
	// (slab pages alone can be thousands of runs).
	slices.SortFunc(a.frames, func(x, y physmem.MemblockRegion) int { return cmp.Compare(x.Base, y.Base) })
	var runs []physmem.MemblockRegion
	for _, r := range a.frames {
		if n := len(runs); n > 0 && r.Base <= runs[n-1].End() {
			runs[n-1].Size = uint64(max(runs[n-1].End(), r.End()) - runs[n-1].Base)
			continue
		}
		runs = append(runs, r)
	}
	next := 0
	claimed := func(pfn physmem.PFN) bool {
		for next < len(runs) && runs[next].End().PFN() <= pfn {
			next++
		}
		return next < len(runs) && pfn >= runs[next].Base.PFN()
	}
	for pfn := physmem.PFN(0); uint64(pfn) < n; {
		if !k.MM.PageInitialised(pfn) {
			// A preserved frame not claimed yet: its struct page is
			// uninitialised and holds nobody's reference.
			if a.folios[pfn] != 0 || a.mapcount[pfn] != 0 {
				return k.violation("folio-ref-owner", fmt.Sprintf("page %v: uninitialised", pfn),
					"%d references and %d mappings reported on page %v, whose struct page is uninitialised",
					a.folios[pfn], a.mapcount[pfn], pfn)
			}
			pfn++
			continue
		}
		p := k.MM.Page(pfn)
		if mc, want := p.MapCount(), a.mapcount[pfn]; mc != want {
			return k.violation("page-mapcount", k.describeFolio(k.MM.PageFolio(pfn)),
				"page %v has mapcount %d, %d PTEs map it", pfn, mc, want)
		}
		switch {
		case p.Test(physmem.PGSlab):
			// A slab: the slab allocator's, claimed by its owner "slab";
			// nobody holds folio references to it.
			nr := physmem.PFN(1) << p.CompoundOrder()
			if a.folios[pfn] != 0 || !claimed(pfn) {
				return k.violation("frame-owner", fmt.Sprintf("page %v: %v", pfn, p),
					"slab page %v: %d folio references reported, claimed %v", pfn, a.folios[pfn], claimed(pfn))
			}
			pfn += nr
		case p.Test(physmem.PGTail):
			if a.folios[pfn] != 0 {
				return k.violation("folio-ref-owner", k.describeFolio(k.MM.PageFolio(pfn)),
					"%d references reported on tail page %v", a.folios[pfn], pfn)
			}
			pfn++
		case p.Test(physmem.PGBuddy) || p.RefCount() == 0 || p.Test(physmem.PGReserved):
			if a.folios[pfn] != 0 {
				return k.violation("folio-ref-owner", fmt.Sprintf("page %v: %v", pfn, p),
					"%d references reported on page %v, which is not an allocated folio", a.folios[pfn], pfn)
			}
			pfn++
		default:
			f := physmem.Folio(pfn)
			nr := k.folioNrPages(f)
			got, want := p.RefCount(), a.folios[pfn]
			if got != want && !claimed(pfn) {
				name := "folio-refcount"
				detail := fmt.Sprintf("folio %v has refcount %d but its owners hold %d", pfn, got, want)
				if want == 0 {
					name, detail = "frame-owner", fmt.Sprintf("folio %v (refcount %d) is allocated but nobody owns it: leaked", pfn, got)
				}
				return k.violation(name, k.describeFolio(f), "%s", detail)
			}
			for i := uint64(1); i < nr; i++ {
				if mc, want := k.MM.Page(pfn+physmem.PFN(i)).MapCount(), a.mapcount[pfn+physmem.PFN(i)]; mc != want {
					return k.violation("page-mapcount", k.describeFolio(f),
						"page %v has mapcount %d, %d PTEs map it", pfn+physmem.PFN(i), mc, want)
				}
			}
			pfn += physmem.PFN(nr)
		}
	}
	for _, f := range k.Files() {
		if f.refs != a.files[f] {
			return k.violation("file-refcount", k.describeFile(f), "%v has %d references but its owners hold %d", f, f.refs, a.files[f])
		}
		delete(a.files, f)
	}
	if len(a.files) > 0 {
		// Report the oldest released file, not whichever the map yields
		// first: the audit's answer must not depend on map order.
		dead := slices.SortedFunc(maps.Keys(a.files), func(x, y *File) int { return cmp.Compare(x.id, y.id) })
		f := dead[0]
		return k.violation("file-live", k.describeFile(f), "%d references reported to a released file %s", a.files[f], f.Name)
	}
	for _, in := range k.Inodes() {
		live := 0
		for f := range k.files {
			if f.Inode == in {
				live++
			}
		}
		if in.openFiles != live {
			return k.violation("inode-open-files", fmt.Sprintf("inode %d", in.Ino), "inode %d counts %d open files, %d exist", in.Ino, in.openFiles, live)
		}
	}
	return nil
}

// inodeLive reports whether in is in the inode table.
func (k *Kernel) inodeLive(in *Inode) bool {
	_, ok := k.inodes[in]
	return ok
}

// describeFolio dumps a folio and who holds references to it.
func (k *Kernel) describeFolio(f physmem.Folio) string {
	var b strings.Builder
	b.WriteString(k.dumpFolio(f))
	if id := k.folioMappingID(f); id != 0 {
		if info := k.mappingOwner(id); info != nil {
			fmt.Fprintf(&b, "\nmapping: %v", info)
		}
	}
	a := &refAudit{k: k, folios: make([]int32, k.MM.Frames.NumFrames()), mapcount: map[physmem.PFN]int32{},
		files: map[*File]int64{}, focusFolio: f}
	a.collect()
	b.WriteString("\nholders:")
	if len(a.holders) == 0 {
		b.WriteString(" none")
	}
	for _, h := range a.holders {
		b.WriteString("\n  " + h)
	}
	return b.String()
}

// describeFile dumps a file and who holds references to it.
func (k *Kernel) describeFile(f *File) string {
	a := &refAudit{k: k, folios: make([]int32, k.MM.Frames.NumFrames()), mapcount: map[physmem.PFN]int32{},
		files: map[*File]int64{}, focusFile: f}
	a.collect()
	s := f.String() + "\nholders:"
	if len(a.holders) == 0 {
		s += " none"
	}
	for _, h := range a.holders {
		s += "\n  " + h
	}
	return s
}

// compile-time check: the kernel is a FolioOwner for its page caches.
var _ pagecache.FolioOwner = (*Kernel)(nil)

// sortedVMAs returns the mappings of an i_mmap set ordered by task and
// address, so that the audit reports the same violation on every run.
func sortedVMAs(set map[*VMA]struct{}) []*VMA {
	return slices.SortedFunc(maps.Keys(set), func(a, b *VMA) int {
		if c := cmp.Compare(a.mm.t.PID, b.mm.t.PID); c != 0 {
			return c
		}
		return cmp.Compare(a.Start, b.Start)
	})
}
