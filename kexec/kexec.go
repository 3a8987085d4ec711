package kexec

import (
	"slices"

	"khosim/physmem"
)

// PoisonPattern is what a kexec writes over every frame the old kernel
// used that is neither preserved nor part of the handover FDT: whatever a
// new kernel finds there is garbage, as after a real kexec the old
// kernel's data is as good as gone (the new kernel, its initrd and
// purgatory overwrite some of it, and nothing may rely on the rest).
const PoisonPattern uint64 = 0x6b6b6b6b_dead4b1d

// PrepareKexec is the KHO half of kernel_kexec(): it ends this kernel's
// KHO (state HandedOver; no call is allowed afterwards) and returns what
// the next kernel must be told (nil when KHO is not active: nothing is
// handed over) and the frames the kexec must keep intact: the FDT's and
// every preserved folio's, sorted by address.
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
	keep := make([]Mem, 0, len(h.preserved)+1)
	fdtPages := (h.fdtSize + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	keep = append(keep, Mem{Addr: addr, Size: fdtPages})
	for f, order := range h.preserved {
		keep = append(keep, FolioMem(f, order))
	}
	slices.SortFunc(keep, func(a, b Mem) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	return ho, keep
}

// Scrub poisons, with PoisonPattern, every frame the kernel whose memory
// model is mm uses (anything but a free block, on the buddy or the per-CPU
// lists) except the sorted, disjoint ranges in keep. It returns the number
// of frames poisoned. The kexec calls it after the old kernel's last word
// and before the new kernel boots.
func Scrub(mm *physmem.MM, keep []Mem) uint64 {
	n := physmem.PFN(mm.Memmap.NumPages())
	var poisoned uint64
	k := 0
	fill := func(start, end physmem.PFN) {
		// Poison [start, end) minus the kept ranges.
		for start < end {
			for k < len(keep) && keep[k].PFN()+physmem.PFN(keep[k].NrPages()) <= start {
				k++
			}
			if k == len(keep) || keep[k].PFN() >= end {
				mm.Frames.Fill(start, uint64(end-start), PoisonPattern)
				poisoned += uint64(end - start)
				return
			}
			if ks := keep[k].PFN(); ks > start {
				mm.Frames.Fill(start, uint64(ks-start), PoisonPattern)
				poisoned += uint64(ks - start)
			}
			start = keep[k].PFN() + physmem.PFN(keep[k].NrPages())
		}
	}
	runStart := physmem.PFN(0)
	inRun := false
	for pfn := physmem.PFN(0); pfn < n; {
		if order, free := mm.FreeBlockAt(pfn); free {
			if inRun {
				fill(runStart, pfn)
				inRun = false
			}
			pfn += 1 << order
			continue
		}
		if !inRun {
			runStart, inRun = pfn, true
		}
		pfn++
	}
	if inRun {
		fill(runStart, n)
	}
	return poisoned
}
