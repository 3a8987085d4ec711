package kexec

import (
	"fmt"
	"strings"

	"khosim/invariant"
	"khosim/kernel"
	"khosim/physmem"
)

// VisitRefs reports to the kernel's audit everything KHO holds (register
// it with kernel.RegisterRefOwner("kho", h.VisitRefs)):
//   - one reference on every folio preserved for the next kernel;
//   - one reference on every block of the outgoing FDT buffer;
//   - the frames of the incoming FDT (reserved for the kernel's life);
//   - the frames of every incoming range still reserved (handed over and
//     not yet claimed or returned).
func (h *KHO) VisitRefs(v kernel.RefVisitor) {
	if h.state == HandedOver {
		return
	}
	for _, f := range h.preservedSorted() {
		v.Folio(f.PFN(), 1, "kho: preserved for the next kernel")
	}
	for _, b := range h.fdtBlocks {
		v.Folio(b.pfn, 1, "kho: handover FDT buffer")
	}
	for m := range h.tracker.MetadataPages() {
		v.Folio(m.PFN(), 1, "kho: "+string(h.tracker.Name())+" tracker")
	}
	if h.in.fdt != nil {
		v.Frames(h.in.fdtMem.PFN(), h.in.fdtMem.NrPages(), "kho: incoming handover FDT")
	}
	for _, r := range h.in.ranges {
		if r.State() == RangeReserved {
			v.Frames(physmem.PFN(r.pfn), uint64(r.pages), "kho: preserved range not yet claimed")
		}
	}
}

// FramesPreserved counts frames(preserved): the frames handed over to this
// kernel and not yet claimed or returned (memblock-reserved, outside the
// buddy allocator; 0 once the boot's late pass ran). Folios this kernel
// preserves for the next one are allocated memory ("used"); see
// PreservedPages.
func (h *KHO) FramesPreserved() uint64 {
	if h.state == HandedOver {
		return 0
	}
	return h.in.reserved
}

// FramesTracker counts frames(tracker): the frames holding this kernel's
// tracker record (the previous kernel's are freed once read).
func (h *KHO) FramesTracker() uint64 {
	if h.state == HandedOver {
		return 0
	}
	return h.tracker.MetadataFrames()
}

func (h *KHO) violation(name, format string, args ...any) error {
	return invariant.New("kexec", name, h.Dump(), format, args...)
}

// CheckInvariants is KHO's part of the audit behind `expect invariants`.
// It returns the first broken invariant as an *invariant.Violation:
//
//   - kho-preserved-folio: every preserved folio is an allocated folio
//     head of its recorded order, outside KHO scratch, holding KHO's
//     reference (refcount >= 1);
//   - the tracker's own invariants (Tracker.Check): its record describes
//     exactly the preserved folios, each once, so the next kernel will
//     reserve every one of them and nothing else (arrays:
//     kho-fdt-describes-preserved, while active, unless the FDT was
//     deliberately corrupted with MarkTampered);
//   - kho-idle-clean: while idle, no FDT buffer is allocated and no folio
//     an activation preserved is left preserved (what clients preserve
//     outside an activation, LUO's files, stays);
//   - kho-range-reserved: every incoming range still reserved has none of
//     its frames initialised: RestoreFolio never ran on them, so the
//     allocator never handed out a preserved frame before it was claimed.
//     (Their struct pages are not read: until RestoreFolio initialises
//     them they hold stale bytes, the previous kernel's struct pages, which
//     this kernel must never look at; physmem tracks what it restored.)
//   - kho-ranges-disjoint: incoming ranges are sorted, disjoint, outside
//     scratch and the FDT;
//   - kho-range-accounting: the counters agree with the range states, and
//     once the late pass ran no range is left reserved (each was claimed
//     exactly once or returned).
func (h *KHO) CheckInvariants() error {
	if h.state == HandedOver {
		return nil
	}
	mm := h.mm
	for _, f := range h.preservedSorted() {
		order := h.preservedOrder(f)
		p := mm.Page(f.PFN())
		if p.Test(physmem.PGBuddy) || p.Test(physmem.PGTail) || p.RefCount() < 1 {
			return h.violation("kho-preserved-folio", "preserved %v is not an allocated folio head: %v", f, p)
		}
		if got := mm.FolioOrder(f); got != order {
			return h.violation("kho-preserved-folio", "preserved %v has order %d, recorded %d", f, got, order)
		}
		if h.InScratch(f.PFN(), 1<<order) {
			return h.violation("kho-preserved-folio", "preserved %v lies in KHO scratch", f)
		}
	}
	if h.state == Idle && !h.dumping && (len(h.fdtBlocks) > 0 || h.dumpPreserved.n > 0) {
		return h.violation("kho-idle-clean", "idle with %d FDT blocks and %d folios preserved by an activation",
			len(h.fdtBlocks), h.dumpPreserved.n)
	}
	if err := h.tracker.Check(h.preservedSeq()); err != nil {
		return err
	}

	var reserved uint64
	var claimed, returned int
	prevEnd := physmem.PhysAddr(0)
	for i, ir := range h.in.ranges {
		r := InRange{Mem: ir.mem(), State: ir.State()}
		if i > 0 && r.Addr < prevEnd {
			return h.violation("kho-ranges-disjoint", "incoming range %v overlaps the one before it", r.Mem)
		}
		prevEnd = r.End()
		if overlapsAny(r.Mem, h.in.scratch) || r.Overlaps(h.in.fdtMem) {
			return h.violation("kho-ranges-disjoint", "incoming range %v overlaps scratch or the FDT", r.Mem)
		}
		switch r.State {
		case RangeReserved:
			reserved += r.NrPages()
			if mm.Restored(r.PFN(), r.NrPages()) {
				return h.violation("kho-range-reserved", "unclaimed preserved range %v has frames RestoreFolio initialised", r.Mem)
			}
		case RangeClaimed:
			claimed++
		case RangeReturned:
			returned++
		}
	}
	if reserved != h.in.reserved || claimed != h.in.claimed || returned != h.in.returned {
		return h.violation("kho-range-accounting", "ranges: %d pages reserved, %d claimed, %d returned; counters say %d, %d, %d",
			reserved, claimed, returned, h.in.reserved, h.in.claimed, h.in.returned)
	}
	if h.in.lateDone && reserved != 0 {
		return h.violation("kho-range-accounting", "%d preserved pages neither claimed nor returned after the late pass", reserved)
	}
	return nil
}

// Dump describes the KHO state for violations and debugging.
func (h *KHO) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kho (boot %d, tracker %s): %v, %d notifiers, %d subtrees, %d folios (%d pages) preserved",
		h.k.BootID, h.tracker.Name(), h.state, len(h.notifiers), len(h.subtrees), h.nrPreserved, h.preservedPages)
	if len(h.fdtBlocks) > 0 {
		fmt.Fprintf(&b, ", FDT buffer %v+%d pages (%d bytes used)", h.fdtBase, h.fdtPages, h.fdtSize)
	}
	b.WriteString("\n  " + h.tracker.Dump() + "\n")
	if h.in.handover != nil {
		fmt.Fprintf(&b, "  incoming: FDT %#x+%d", uint64(h.in.handover.FDTAddr), h.in.handover.FDTSize)
		if h.in.invalid != "" {
			fmt.Fprintf(&b, " refused (%s)", h.in.invalid)
		}
		s := h.Incoming()
		fmt.Fprintf(&b, "; %d ranges (%d claimed, %d returned, %d pages reserved), %d rejected, late pass done=%v\n",
			s.Ranges, s.Claimed, s.Returned, s.ReservedPages, s.Rejected, h.in.lateDone)
		n := 0
		for _, r := range h.in.ranges {
			if r.State() == RangeReserved {
				if n++; n > 16 {
					b.WriteString("    ...\n")
					break
				}
				fmt.Fprintf(&b, "    %v %v\n", r.mem(), r.State())
			}
		}
	}
	return b.String()
}
