package machine

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"khosim/kernel"
	"khosim/physmem"
)

// This file is the machine's memory-map view: every frame of the running
// kernel classified by state and owner (MemoryMap), the FDT's placement,
// the scratch usage and the migrations out of scratch, and the phase hook
// through which a report takes its snapshots. Nothing here changes the
// simulation: it reads the kernel's memmap, memblock and allocator and
// asks the owners the audit asks (kernel.VisitRefs).

// Phase is a point of a live update at which the machine calls the phase
// hook (SetPhaseHook).
type Phase string

// The phases, in the order a live update passes them.
const (
	// PhaseBeforeActivation: KHO is about to activate (`kho activate`, or
	// the reboot path's finalize).
	PhaseBeforeActivation Phase = "before activation"
	// PhaseActivated: the activation succeeded; the handover FDT is
	// written and the preserved folios pinned.
	PhaseActivated Phase = "after activation"
	// PhaseActivationFailed: the activation failed and was undone.
	PhaseActivationFailed Phase = "activation failed"
	// PhaseEarlyBoot: a kernel finished its early boot (memblock,
	// kho_populate, memblock_free_all) and has not run its initcalls:
	// what it preserved is still reserved.
	PhaseEarlyBoot Phase = "after early boot"
	// PhaseRestored: the kernel ran its initcalls, which revive what was
	// handed over and return the rest (kho_return_unclaimed).
	PhaseRestored Phase = "after restore"
)

// PhaseEvent is what the phase hook is told.
type PhaseEvent struct {
	Phase Phase
	Boot  int // the boot the phase belongs to (the running kernel's)
	// Kexec is true for the boot phases of a kernel booted by kexec.
	Kexec bool
	// Took is the wall time of the work that ended at this phase (the
	// activation, the early boot with the kexec's scrub, the initcalls);
	// 0 at PhaseBeforeActivation. For reports only.
	Took time.Duration
	// Err is the activation's error at PhaseActivationFailed.
	Err error
}

// SetPhaseHook installs fn (nil removes it): the machine calls it at every
// Phase, with the running kernel in the state the phase names, so that fn
// may take a MemoryMap or read the counters. fn must not change the
// simulation.
func (m *Machine) SetPhaseHook(fn func(PhaseEvent)) { m.phaseHook = fn }

func (m *Machine) phase(e PhaseEvent) {
	if m.phaseHook != nil {
		e.Boot = m.bootID
		m.phaseHook(e)
	}
}

// FrameKind is what a frame holds, for the memory map: the state the
// audit's partition gives it (free, reserved, used, slab, tracker,
// preserved) refined by its owner.
type FrameKind uint8

// The kinds, in legend order.
const (
	KindFree        FrameKind = iota // free in the buddy allocator, outside scratch
	KindScratchFree                  // free, in KHO scratch (MIGRATE_CMA)
	KindLowMem                       // the low 1 MiB boot reserves
	KindKernelImage                  // the kernel image
	KindMemmap                       // the memmap's blocks (struct pages)
	KindReserved                     // any other memblock reservation
	KindSlab                         // kernel metadata (slab pages, records)
	KindTracker                      // KHO tracker pages
	KindFDT                          // the outgoing FDT buffer or the incoming FDT
	KindPageCache                    // page-cache folios (Owner: the file)
	KindSwapCache                    // folios in the swap cache (khosim has none)
	KindPreserved                    // preserved for the next kernel, or handed over and not yet revived
	KindUsed                         // allocated, owned by someone else (Owner says who)
	KindUnowned                      // allocated but no owner reports it: a leak
	KindUninit                       // an uninitialised struct page nothing accounts for
	NrFrameKinds
)

var kindNames = [NrFrameKinds]string{
	"free", "scratch", "low-mem", "kernel-image", "memmap", "reserved", "slab", "tracker", "fdt",
	"page-cache", "swap-cache", "preserved", "used", "unowned", "uninit",
}

func (k FrameKind) String() string {
	if k < NrFrameKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("FrameKind(%d)", int(k))
}

// MemRun is a run of physically contiguous frames of one kind, owner and
// scratch membership.
type MemRun struct {
	PFN    physmem.PFN
	Frames uint64
	Kind   FrameKind
	// Owner names the owner: the file of page-cache and preserved frames
	// ("memfd:guest-ram"), the boot reservation, the reference holder;
	// "" where the kind says it all (free).
	Owner string
	// Ino is the inode of a page-cache run (0 otherwise).
	Ino uint64
	// Scratch is true inside KHO scratch.
	Scratch bool
}

// End returns the first frame after the run.
func (r MemRun) End() physmem.PFN { return r.PFN + physmem.PFN(r.Frames) }

// FDTPlacement is where the handover FDT lies.
type FDTPlacement struct {
	// Outgoing: the FDT the running kernel's active KHO will hand over;
	// otherwise the FDT the running kernel was handed (and accepted).
	Outgoing bool
	Addr     physmem.PhysAddr
	Size     uint64 // the blob's totalsize
	Frames   uint64 // frames it occupies: the allocated buffer (outgoing), the blob's pages (incoming)
	// InScratch reports whether any of its frames lies in KHO scratch
	// (never, for a handover KHO wrote).
	InScratch bool
}

// FDTPlacement returns the placement of the active handover FDT or, when
// KHO is idle, of the FDT the running kernel was handed; ok is false for
// neither (or without a running kernel).
func (m *Machine) FDTPlacement() (p FDTPlacement, ok bool) {
	if m.k == nil || m.kho == nil {
		return FDTPlacement{}, false
	}
	if addr, blob, active := m.kho.FDT(); active {
		buf, _ := m.kho.FDTBuffer()
		p = FDTPlacement{Outgoing: true, Addr: addr, Size: uint64(len(blob)), Frames: buf.NrPages()}
	} else if ho := m.kho.Handover(); ho != nil && m.kho.GetFDT() != nil {
		p = FDTPlacement{Addr: ho.FDTAddr, Size: uint64(m.kho.GetFDT().TotalSize())}
		p.Frames = (p.Size + physmem.PageSize - 1) >> physmem.PageShift
	} else {
		return FDTPlacement{}, false
	}
	p.InScratch = m.kho.InScratch(p.Addr.PFN(), p.Frames)
	return p, true
}

// MigratedFolios returns the folios the running kernel's preservation
// layer migrated out of KHO scratch since boot (preserve.Stats.Migrated);
// 0 without a running kernel.
func (m *Machine) MigratedFolios() uint64 {
	if m.layer == nil {
		return 0
	}
	return m.layer.Stats().Migrated
}

// scratchCounts returns the frames of KHO scratch that are free (on the
// buddy or per-CPU lists of MIGRATE_CMA, which only scratch pageblocks
// are) and the rest (allocated or reserved: page cache placed there, a
// kexec'd kernel's memmap).
func (m *Machine) scratchCounts() (used, free uint64) {
	var total uint64
	for _, r := range m.k.Scratch {
		total += r.Size / physmem.PageSize
	}
	free = m.k.MM.Zone.NrFreePagesOf(physmem.MigrateCMA)
	return total - min(free, total), free
}

// MemMap is a snapshot of the running kernel's physical memory: every
// frame classified, in runs.
type MemMap struct {
	Boot   int
	Build  string // the running kernel's build (kho=... fdbox=...)
	Frames uint64 // all frames of the machine
	// Runs cover every frame exactly once, in address order; adjacent
	// runs differ in kind, owner, inode or scratch membership.
	Runs    []MemRun
	Scratch []physmem.MemblockRegion
	// ScratchUsed and ScratchFree split the scratch frames as
	// FrameCounts' scratch_used and scratch_free do.
	ScratchUsed, ScratchFree uint64
	FDT                      *FDTPlacement // nil: no handover FDT
	// Migrations are the running kernel's page migrations
	// (kernel.Migrations): out of scratch, and back on an aborted
	// activation (Back).
	Migrations        []kernel.MigrationRun
	MigrationsDropped uint64
	// Counts are the frames of each kind.
	Counts [NrFrameKinds]uint64
}

// InScratch reports whether pfn lies in the map's KHO scratch.
func (mm *MemMap) InScratch(pfn physmem.PFN) bool {
	a := pfn.Phys()
	for _, r := range mm.Scratch {
		if a >= r.Base && a < r.End() {
			return true
		}
	}
	return false
}

// owner priorities: when several owners report one folio, the frame shows
// the one that explains it best.
var kindPriority = [NrFrameKinds]int{KindFDT: 6, KindTracker: 5, KindSlab: 4, KindPreserved: 3, KindPageCache: 2, KindUsed: 1}

// ownerReport is one owner's claim on a folio or on frames.
type ownerReport struct {
	pfn   physmem.PFN
	nr    uint64 // frames (Frames reports); 0 for a folio report
	kind  FrameKind
	owner string
	ino   uint64
}

// ownerCollector is the RefVisitor behind MemoryMap.
type ownerCollector struct {
	folios, frames []ownerReport
}

func (c *ownerCollector) File(*kernel.File, int64, string) {}

func (c *ownerCollector) Folio(pfn physmem.PFN, _ int64, who string) {
	if r, ok := classifyOwner(who); ok {
		r.pfn = pfn
		c.folios = append(c.folios, r)
	}
}

func (c *ownerCollector) Frames(pfn physmem.PFN, nr uint64, who string) {
	if r, ok := classifyOwner(who); ok {
		r.pfn, r.nr = pfn, nr
		c.frames = append(c.frames, r)
	}
}

// Owner names as the owners report them (kexec/audit.go, preserve,
// kernel.VisitRefs). classifyOwner maps each to a kind; a name it does not
// know is KindUsed with the name as owner, so nothing is hidden.
const (
	whoPreserved     = "kho: preserved for the next kernel"
	whoFDTBuffer     = "kho: handover FDT buffer"
	whoIncomingFDT   = "kho: incoming handover FDT"
	whoUnclaimed     = "kho: preserved range not yet claimed"
	whoPin           = "preserve: pin of "
	whoIncomingRec   = "preserve: incoming record of "
	whoPageTables    = "page tables of task "
	ownerUnclaimed   = "handed over, not yet claimed"
	ownerOutgoingFDT = "outgoing handover FDT"
	ownerIncomingFDT = "incoming handover FDT"
)

// classifyOwner maps an owner's name to a kind; ok is false for owners
// that only hold extra references on frames someone else owns (page
// tables, pins).
func classifyOwner(who string) (ownerReport, bool) {
	switch {
	case strings.HasPrefix(who, kernel.PageCacheOwnerPrefix):
		ino, _ := strconv.ParseUint(strings.TrimPrefix(who, kernel.PageCacheOwnerPrefix), 10, 64)
		return ownerReport{kind: KindPageCache, ino: ino}, true
	case strings.HasPrefix(who, whoPageTables), strings.HasPrefix(who, whoPin):
		return ownerReport{}, false
	case who == whoPreserved:
		return ownerReport{kind: KindPreserved}, true
	case who == whoFDTBuffer:
		return ownerReport{kind: KindFDT, owner: ownerOutgoingFDT}, true
	case who == whoIncomingFDT:
		return ownerReport{kind: KindFDT, owner: ownerIncomingFDT}, true
	case who == whoUnclaimed:
		return ownerReport{kind: KindPreserved, owner: ownerUnclaimed}, true
	case strings.HasPrefix(who, whoIncomingRec):
		return ownerReport{kind: KindPreserved, owner: "claimed: " + strings.TrimPrefix(who, whoIncomingRec)}, true
	case strings.Contains(who, "tracker"):
		return ownerReport{kind: KindTracker, owner: who}, true
	case strings.Contains(who, "slab"):
		return ownerReport{kind: KindSlab, owner: who}, true
	}
	return ownerReport{kind: KindUsed, owner: who}, true
}

// rangeOwner names the owner of a physical range (a preserved record's).
type rangeOwner struct {
	start, end physmem.PFN
	owner      string
}

// MemoryMap classifies every frame of the running kernel: free (in
// scratch or not), the boot reservations (low memory, kernel image,
// memmap) and other reserved frames, and every allocated folio by the
// owner that explains it best among those the audit asks (page cache by
// file, preserved, the FDT, tracker and slab pages, ...). Preserved
// folios are named by the preservation layer's record that holds them.
// Runs of equal kind and owner are merged, so the map of an idle 64 GiB
// machine has a handful of runs. EINVAL without a running kernel.
//
// The walk skips free blocks and folios whole: its cost follows the
// number of blocks and reserved frames, not of frames.
func (m *Machine) MemoryMap() (*MemMap, error) {
	if err := m.running(); err != nil {
		return nil, err
	}
	k, mm := m.k, m.k.MM
	n := mm.Frames.NumFrames()
	out := &MemMap{Boot: m.bootID, Build: m.build.String(), Frames: n, Scratch: slices.Clone(k.Scratch)}
	slices.SortFunc(out.Scratch, func(a, b physmem.MemblockRegion) int { return cmp.Compare(a.Base, b.Base) })
	out.ScratchUsed, out.ScratchFree = m.scratchCounts()
	if p, ok := m.FDTPlacement(); ok {
		out.FDT = &p
	}
	out.Migrations, out.MigrationsDropped = k.Migrations()

	col := &ownerCollector{}
	k.VisitRefs(col)
	byPFN := func(a, b ownerReport) int {
		if c := cmp.Compare(a.pfn, b.pfn); c != 0 {
			return c
		}
		return cmp.Compare(kindPriority[b.kind], kindPriority[a.kind]) // best first
	}
	slices.SortStableFunc(col.folios, byPFN)
	slices.SortStableFunc(col.frames, byPFN)
	names := inodeNames(k)
	records := m.recordOwners()
	boot := k.BootReservations()

	w := &mapWriter{out: out}
	fi, ri, bi := 0, 0, 0
	for pfn := physmem.PFN(0); uint64(pfn) < n; {
		for ri < len(col.frames) && col.frames[ri].pfn+physmem.PFN(col.frames[ri].nr) <= pfn {
			ri++
		}
		nextFrames := physmem.PFN(n)
		if ri < len(col.frames) {
			if r := col.frames[ri]; r.pfn <= pfn {
				end := min(r.pfn+physmem.PFN(r.nr), physmem.PFN(n))
				w.add(pfn, uint64(end-pfn), r.kind, r.owner, 0)
				pfn = end
				continue
			} else {
				nextFrames = r.pfn
			}
		}
		if !mm.PageInitialised(pfn) {
			w.add(pfn, 1, KindUninit, "uninitialised struct page", 0)
			pfn++
			continue
		}
		if order, free := mm.FreeBlockAt(pfn); free {
			end := min(pfn+1<<order, physmem.PFN(n))
			w.addFree(pfn, uint64(end-pfn))
			pfn = end
			continue
		}
		p := mm.Page(pfn)
		switch {
		case p.Test(physmem.PGReserved):
			for bi < len(boot) && boot[bi].End().PFNUp() <= pfn {
				bi++
			}
			kind, owner, end := KindReserved, "memblock reservation", pfn+1
			if bi < len(boot) && boot[bi].Base.PFN() <= pfn {
				switch boot[bi].What {
				case kernel.ReservationLowMem:
					kind = KindLowMem
				case kernel.ReservationKernelImage:
					kind = KindKernelImage
				default:
					kind = KindMemmap
				}
				owner = boot[bi].What
				end = min(boot[bi].End().PFNUp(), nextFrames, physmem.PFN(n))
				// A boot reservation's frames are all PG_reserved:
				// nothing frees them while the kernel runs.
			}
			w.add(pfn, uint64(end-pfn), kind, owner, 0)
			pfn = end
		case p.Test(physmem.PGTail) || p.Test(physmem.PGBuddy) || p.RefCount() <= 0:
			// Not a folio head nor free: a tail without its head, or a
			// page in transition. Nothing in a quiescent kernel.
			w.add(pfn, 1, KindUninit, fmt.Sprintf("page %v: %v", pfn, p), 0)
			pfn++
		default:
			nr := mm.FolioNrPages(physmem.Folio(pfn))
			for fi < len(col.folios) && col.folios[fi].pfn < pfn {
				fi++
			}
			r := ownerReport{kind: KindUnowned, owner: "allocated, no owner reports it"}
			if fi < len(col.folios) && col.folios[fi].pfn == pfn {
				r = col.folios[fi]
				// A preserved folio still in a page cache is named by
				// its file.
				for j := fi; j < len(col.folios) && col.folios[j].pfn == pfn; j++ {
					if c := col.folios[j]; c.kind == KindPageCache && r.ino == 0 {
						r.ino = c.ino
					}
				}
			}
			switch r.kind {
			case KindPageCache:
				r.owner = names(r.ino)
			case KindPreserved:
				if r.ino != 0 {
					r.owner = names(r.ino)
				} else if r.owner == "" {
					r.owner = records(pfn)
				}
			}
			if r.kind != KindPageCache {
				r.ino = 0
			}
			end := min(pfn+physmem.PFN(nr), physmem.PFN(n))
			w.add(pfn, uint64(end-pfn), r.kind, r.owner, r.ino)
			pfn = end
		}
	}
	return out, nil
}

// inodeNames returns a function naming an inode by the first file open on
// it ("memfd:guest-ram"), or "inode N".
func inodeNames(k *kernel.Kernel) func(ino uint64) string {
	byIno := map[uint64]string{}
	for _, f := range k.Files() {
		if f.Inode == nil {
			continue
		}
		if _, ok := byIno[f.Inode.Ino]; !ok {
			byIno[f.Inode.Ino] = f.Name
		}
	}
	return func(ino uint64) string {
		if s, ok := byIno[ino]; ok {
			return s
		}
		return fmt.Sprintf("inode %d", ino)
	}
}

// recordOwners returns a function naming the preservation record that
// holds a frame (the file a preserved folio belongs to once its page cache
// let it go), or "preserved for the next kernel".
func (m *Machine) recordOwners() func(pfn physmem.PFN) string {
	var rs []rangeOwner
	if m.layer != nil {
		for _, p := range m.layer.Live() {
			name, _, _ := strings.Cut(p.String(), ": ")
			name = strings.TrimPrefix(name, p.Handler().Name()+" ")
			for mem := range p.Mems() {
				r := rangeOwner{mem.PFN(), mem.PFN() + physmem.PFN(mem.NrPages()), name}
				if n := len(rs); n > 0 && rs[n-1].end == r.start && rs[n-1].owner == name {
					rs[n-1].end = r.end // physically contiguous folios of one record
					continue
				}
				rs = append(rs, r)
			}
		}
	}
	slices.SortStableFunc(rs, func(a, b rangeOwner) int { return cmp.Compare(a.start, b.start) })
	return func(pfn physmem.PFN) string {
		i, _ := slices.BinarySearchFunc(rs, pfn, func(r rangeOwner, p physmem.PFN) int {
			if r.start > p {
				return 1
			}
			return -1
		})
		// rs[i-1] is the last range starting at or before pfn.
		if i > 0 && rs[i-1].end > pfn {
			return rs[i-1].owner
		}
		return "preserved for the next kernel"
	}
}

// mapWriter appends classified frames to a MemMap, splitting at scratch
// boundaries and merging equal neighbours.
type mapWriter struct {
	out *MemMap
	si  int // the first scratch region that may still matter
}

func (w *mapWriter) addFree(pfn physmem.PFN, nr uint64) {
	w.split(pfn, nr, func(p physmem.PFN, n uint64, scratch bool) {
		kind := KindFree
		if scratch {
			kind = KindScratchFree
		}
		w.put(MemRun{PFN: p, Frames: n, Kind: kind, Scratch: scratch})
	})
}

func (w *mapWriter) add(pfn physmem.PFN, nr uint64, kind FrameKind, owner string, ino uint64) {
	w.split(pfn, nr, func(p physmem.PFN, n uint64, scratch bool) {
		w.put(MemRun{PFN: p, Frames: n, Kind: kind, Owner: owner, Ino: ino, Scratch: scratch})
	})
}

// split calls fn for the parts of [pfn, pfn+nr) inside and outside
// scratch, in address order. Calls come in address order, so the scratch
// cursor only moves forward.
func (w *mapWriter) split(pfn physmem.PFN, nr uint64, fn func(physmem.PFN, uint64, bool)) {
	sc := w.out.Scratch
	end := pfn + physmem.PFN(nr)
	for pfn < end {
		for w.si < len(sc) && sc[w.si].End().PFN() <= pfn {
			w.si++
		}
		if w.si >= len(sc) {
			fn(pfn, uint64(end-pfn), false)
			return
		}
		s, e := sc[w.si].Base.PFN(), sc[w.si].End().PFN()
		if pfn < s {
			cut := min(end, s)
			fn(pfn, uint64(cut-pfn), false)
			pfn = cut
			continue
		}
		cut := min(end, e)
		fn(pfn, uint64(cut-pfn), true)
		pfn = cut
	}
}

func (w *mapWriter) put(r MemRun) {
	w.out.Counts[r.Kind] += r.Frames
	if n := len(w.out.Runs); n > 0 {
		l := &w.out.Runs[n-1]
		if l.End() == r.PFN && l.Kind == r.Kind && l.Owner == r.Owner && l.Ino == r.Ino && l.Scratch == r.Scratch {
			l.Frames += r.Frames
			return
		}
	}
	w.out.Runs = append(w.out.Runs, r)
}

// FDTFrames is a convenience for reports: the FDT's frame range, if any.
func (mm *MemMap) FDTFrames() (physmem.PFN, uint64, bool) {
	if mm.FDT == nil {
		return 0, 0, false
	}
	return mm.FDT.Addr.PFN(), mm.FDT.Frames, true
}

// compile-time check.
var _ kernel.RefVisitor = (*ownerCollector)(nil)

// LostFiles is the meter's count of files the workload has lost access
// to (a PUT_FD, a preserve) since the last kexec: a runner marks the
// blackout's start where it first turns non-zero
// (blackout.Meter.LostFiles).
func (m *Machine) LostFiles() int { return m.meter.LostFiles() }
