package kernel

import (
	"fmt"
	"maps"
	"slices"

	"khosim/physmem"
)

// This file is what the kernel tells a memory-map view (machine.MemoryMap,
// khosim's report) about who owns which frames: the reference owners the
// audit asks, the boot reservations by name, and the trace of folios
// migrated out of KHO scratch.

// VisitRefs reports to v every reference the kernel's owners hold, as the
// audit behind CheckInvariants collects them: each page cache's folios
// (folio_nr_pages references each, as "page cache of inode N"), the page
// tables' PTEs, the fd tables' and mappings' file references, and every
// owner registered with RegisterRefOwner (KHO, the preservation layer,
// FDBox, ...), in that order.
func (k *Kernel) VisitRefs(v RefVisitor) {
	k.mustAlive()
	k.visitOwners(v, nil)
}

// visitOwners runs every owner for v; pte, if set, is told of the PTEs
// mapping each page (for the audit's mapcount check).
func (k *Kernel) visitOwners(v RefVisitor, pte func(pfn physmem.PFN, n int32)) {
	for _, info := range k.mappings {
		if info == nil {
			continue
		}
		who := fmt.Sprintf("%s%d", PageCacheOwnerPrefix, info.inode.Ino)
		for e := range info.mapping.Range(0, ^uint64(0)) {
			if !e.Entry.IsValue() {
				v.Folio(e.Entry.PFN(), int64(e.NrIndices()), who)
			}
		}
	}
	for _, t := range k.Tasks() {
		ptes := t.MM.presentPTEs()
		for _, pfn := range slices.Sorted(maps.Keys(ptes)) {
			n := ptes[pfn]
			if pte != nil {
				pte(pfn, n)
			}
			v.Folio(k.MM.PageFolio(pfn).PFN(), int64(n), fmt.Sprintf("page tables of task %d (%s)", t.PID, t.Name))
		}
		for _, f := range t.fds {
			if f != nil {
				v.File(f, 1, fmt.Sprintf("fd table of task %d", t.PID))
			}
		}
		for _, vma := range t.MM.vmas {
			v.File(vma.File, 1, fmt.Sprintf("mapping %#x of task %d", vma.Start, t.PID))
		}
	}
	for _, o := range k.owners {
		o.visit(v)
	}
}

// PageCacheOwnerPrefix starts the owner name a page cache reports its
// folios under (VisitRefs), followed by the inode number.
const PageCacheOwnerPrefix = "page cache of inode "

// BootReservation is a memblock reservation boot makes at a known place,
// with what it holds.
type BootReservation struct {
	physmem.MemblockRegion
	What string // "low memory", "kernel image", "memmap"
}

// Names of the boot reservations (BootReservation.What).
const (
	ReservationLowMem      = "low memory"
	ReservationKernelImage = "kernel image"
	ReservationMemmap      = "memmap"
)

// BootReservations returns the reservations boot made at fixed or early
// allocated places, sorted by address, adjacent memmap blocks merged: the
// low 1 MiB (real-mode and BIOS areas), the kernel image (16 MiB at 16
// MiB) and the memmap's 2 MiB blocks (sparse_init/vmemmap_populate).
func (k *Kernel) BootReservations() []BootReservation {
	k.mustAlive()
	out := []BootReservation{
		{physmem.MemblockRegion{Base: 0, Size: lowMemSize}, ReservationLowMem},
		{physmem.MemblockRegion{Base: kernelImageStart, Size: kernelImageSize}, ReservationKernelImage},
	}
	blocks := slices.Clone(k.memmapBlocks)
	slices.Sort(blocks)
	for _, b := range blocks {
		r := physmem.MemblockRegion{Base: b, Size: vmemmapChunk}
		if n := len(out); out[n-1].What == ReservationMemmap && out[n-1].End() == r.Base {
			out[n-1].Size += r.Size
			continue
		}
		out = append(out, BootReservation{r, ReservationMemmap})
	}
	slices.SortFunc(out, func(a, b BootReservation) int {
		switch {
		case a.Base < b.Base:
			return -1
		case a.Base > b.Base:
			return 1
		}
		return 0
	})
	return out
}

// MigrationRun is a run of pages migrated together: the folios at From
// moved to To, Pages frames in all, at consecutive page-cache indices of
// one inode. Back marks UnmigrateFolio putting them back where they were
// (From is then the frames given up, To the original ones).
type MigrationRun struct {
	From, To physmem.PFN
	Pages    uint64
	Ino      uint64
	Index    uint64 // page-cache index of the first page
	Back     bool
}

// maxMigrationRuns bounds the migration trace; later runs are only counted.
const maxMigrationRuns = 1 << 14

// migrationTrace is the kernel's record of page migrations, khosim's
// stand-in for the mm_migrate_pages tracepoint with the source and
// destination of each folio (Linux's tracepoint carries counts, not
// addresses; /proc/vmstat's pgmigrate_success counts the pages).
type migrationTrace struct {
	runs    []MigrationRun
	dropped uint64 // runs beyond maxMigrationRuns
}

// record adds one migrated folio, extending the last run when the folio
// continues it in both places and in the file.
func (t *migrationTrace) record(m MigrationRun) {
	if n := len(t.runs); n > 0 {
		l := &t.runs[n-1]
		if l.Back == m.Back && l.Ino == m.Ino && l.From+physmem.PFN(l.Pages) == m.From &&
			l.To+physmem.PFN(l.Pages) == m.To && l.Index+l.Pages == m.Index {
			l.Pages += m.Pages
			return
		}
	}
	if len(t.runs) >= maxMigrationRuns {
		t.dropped++
		return
	}
	t.runs = append(t.runs, m)
}

// Migrations returns the trace of folios this kernel migrated (out of KHO
// scratch, by MigrateLongtermFolio, and back, by UnmigrateFolio) in the
// order they moved, merged into runs, and how many runs the trace had no
// room for (it keeps 16384).
func (k *Kernel) Migrations() ([]MigrationRun, uint64) {
	k.mustAlive()
	return slices.Clone(k.migrations.runs), k.migrations.dropped
}
