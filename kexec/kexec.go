package kexec

import (
	"cmp"
	"slices"

	"khosim/kernel"
	"khosim/physmem"
)

// PoisonPattern is what a kexec writes over every frame the old kernel
// used for data that is neither preserved nor part of the handover FDT:
// whatever a new kernel finds there is garbage, as after a real kexec the
// old kernel's data is as good as gone (the new kernel, its initrd and
// purgatory overwrite some of it, and nothing may rely on the rest).
const PoisonPattern uint64 = 0x6b6b6b6b_dead4b1d

// PrepareKexec is the KHO half of kernel_kexec(): it ends this kernel's
// KHO (state HandedOver; no call is allowed afterwards) and returns what
// the next kernel must be told (nil when KHO is not active: nothing is
// handed over) and the frames the kexec must keep intact: the FDT's and
// every preserved folio's and the tracker's pages, as sorted, disjoint
// ranges. Physically contiguous preserved folios come out as one range
// (the preserved set is a bitmap, scanned in address order); the FDT's
// range and each tracker block are ranges of their own.
func (h *KHO) PrepareKexec() (*Handover, []Mem) {
	h.mustRunning("kexec")
	defer func() { h.state = HandedOver }()
	if h.state != Active {
		return nil, nil
	}
	addr, _, _ := h.FDT()
	ho := &Handover{FDTAddr: addr, FDTSize: h.fdtSize}
	for r := range h.mm.Memblock.Memory() {
		if r.Flags&physmem.MemblockKHOScratch != 0 {
			ho.Scratch = append(ho.Scratch, physmem.MemblockRegion{Base: r.Base, Size: r.Size})
		}
	}
	var keep []Mem
	h.forEachPreserved(func(f physmem.Folio, order uint) {
		m := FolioMem(f, order)
		if n := len(keep); n > 0 && keep[n-1].End() == m.Addr {
			keep[n-1].Size += m.Size
			return
		}
		keep = append(keep, m)
	})
	fdtPages := (h.fdtSize + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	keep = insertKeep(keep, Mem{Addr: addr, Size: fdtPages})
	for m := range h.tracker.MetadataPages() {
		keep = insertKeep(keep, m)
	}
	return ho, keep
}

// Scrub is the kexec's treatment of the memory the old kernel k leaves
// behind, after its last word and before the new kernel boots. Every
// frame k uses (anything but a free block, on the buddy or the per-CPU
// lists) outside the sorted, disjoint ranges in keep is scrubbed:
//
//   - frames that hold data — page cache, anonymous memory, kernel
//     allocations, an old handover FDT — are overwritten with
//     PoisonPattern;
//   - frames of the boot reservations the simulation never writes data
//     into (k.UnwrittenReservations: the low 1 MiB, the kernel image, the
//     memmap's blocks, which boot only zeroes because khosim's memmap
//     lives in host memory) are discarded instead
//     (physmem.Frames.Discard): they read as zeros, which is all they
//     ever held, and the kexec costs no host memory for them. A real
//     kexec overwrites them with the new kernel's image and memmap,
//     which is no more readable old data than zeros.
//
// Free frames keep their bytes. It returns the number of frames scrubbed
// (poisoned or discarded).
//
// The walk is range arithmetic: kept ranges, unwritten reservations, free
// blocks and allocated folios are each skipped whole, so the cost follows
// the number of blocks, not of frames.
func Scrub(k *kernel.Kernel, keep []Mem) uint64 {
	mm := k.MM
	blank := k.UnwrittenReservations()
	n := physmem.PFN(mm.Memmap.NumPages())
	var scrubbed uint64
	var runStart, runEnd physmem.PFN // frames to poison, [runStart, runEnd)
	flush := func() {
		if runEnd > runStart {
			mm.Frames.Fill(runStart, uint64(runEnd-runStart), PoisonPattern)
			scrubbed += uint64(runEnd - runStart)
		}
		runStart, runEnd = 0, 0
	}
	used := func(start, end physmem.PFN) {
		if runEnd != start {
			flush()
			runStart = start
		}
		runEnd = end
	}
	ki, bi := 0, 0
	for pfn := physmem.PFN(0); pfn < n; {
		for ki < len(keep) && keep[ki].PFN()+physmem.PFN(keep[ki].NrPages()) <= pfn {
			ki++
		}
		nextKeep := n
		if ki < len(keep) {
			if ks := keep[ki].PFN(); ks <= pfn {
				pfn = ks + physmem.PFN(keep[ki].NrPages())
				continue
			} else if ks < n {
				nextKeep = ks
			}
		}
		for bi < len(blank) && blank[bi].End().PFNUp() <= pfn {
			bi++
		}
		if bi < len(blank) && blank[bi].Base.PFN() <= pfn {
			end := min(blank[bi].End().PFNUp(), nextKeep, n)
			flush()
			mm.Frames.Discard(pfn, uint64(end-pfn))
			scrubbed += uint64(end - pfn)
			pfn = end
			continue
		}
		if order, free := mm.FreeBlockAt(pfn); free {
			pfn += 1 << order
			continue
		}
		// A frame of an incoming range nobody claimed holds an
		// uninitialised struct page (garbage): it is in use, one frame at
		// a time, and poisoned like any other.
		step := physmem.PFN(1)
		if mm.PageInitialised(pfn) && mm.Page(pfn).Test(physmem.PGHead) {
			step = 1 << mm.FolioOrder(physmem.Folio(pfn))
		}
		end := min(pfn+step, nextKeep, n)
		if bi < len(blank) {
			end = min(end, blank[bi].Base.PFN())
		}
		used(pfn, end)
		pfn = end
	}
	flush()
	return scrubbed
}

// insertKeep inserts m, which overlaps none of them, into the sorted keep
// ranges.
func insertKeep(keep []Mem, m Mem) []Mem {
	i, _ := slices.BinarySearchFunc(keep, m.Addr, func(k Mem, a physmem.PhysAddr) int {
		return cmp.Compare(k.Addr, a)
	})
	return slices.Insert(keep, i, m)
}
