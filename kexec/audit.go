package kexec

import (
	"fmt"
	"slices"
	"strings"

	"khosim/fdt"
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

func (h *KHO) violation(name, format string, args ...any) error {
	return invariant.New("kexec", name, h.Dump(), format, args...)
}

// CheckInvariants is KHO's part of the audit behind `expect invariants`.
// It returns the first broken invariant as an *invariant.Violation:
//
//   - kho-preserved-folio: every preserved folio is an allocated folio
//     head of its recorded order, outside KHO scratch, holding KHO's
//     reference (refcount >= 1);
//   - kho-fdt-describes-preserved: while active, the FDT checks, its root
//     is "kho-v1", and the ranges the format collects from it are exactly
//     the preserved folios, each once (so the next kernel will reserve
//     every one of them and nothing else) — unless the FDT was deliberately
//     corrupted (MarkTampered);
//   - kho-idle-clean: while idle, nothing is preserved and no FDT buffer
//     is allocated;
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
	switch h.state {
	case Active:
		if h.fdtTampered {
			break
		}
		if err := h.checkOutgoingFDT(); err != nil {
			return err
		}
	case Idle:
		if !h.dumping && (h.nrPreserved > 0 || len(h.fdtBlocks) > 0) {
			return h.violation("kho-idle-clean", "idle with %d folios preserved and %d FDT blocks", h.nrPreserved, len(h.fdtBlocks))
		}
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

// checkOutgoingFDT checks that the active FDT describes exactly the
// preserved folios.
func (h *KHO) checkOutgoingFDT() error {
	_, blob, _ := h.FDT()
	f, err := fdt.Open(blob)
	if err != nil {
		return h.violation("kho-fdt-describes-preserved", "the active FDT does not check: %v", err)
	}
	if ok, _ := f.NodeCheckCompatible(f.Root(), KHOCompatible); !ok {
		return h.violation("kho-fdt-describes-preserved", "the active FDT's root is not %q", KHOCompatible)
	}
	var bad error
	mems := slices.Collect(h.format.Collect(f, func(path string, err error) {
		if bad == nil {
			bad = fmt.Errorf("%s: %v", path, err)
		}
	}))
	if bad != nil {
		return h.violation("kho-fdt-describes-preserved", "malformed preservation record: %v", bad)
	}
	seen := make(map[physmem.Folio]bool, len(mems))
	for _, m := range mems {
		f := physmem.Folio(m.PFN())
		if !h.IsPreserved(f) || FolioMem(f, h.preservedOrder(f)) != m {
			return h.violation("kho-fdt-describes-preserved", "the FDT describes %v, which is not a preserved folio", m)
		}
		if seen[f] {
			return h.violation("kho-fdt-describes-preserved", "the FDT describes %v twice", m)
		}
		seen[f] = true
	}
	if len(seen) != h.nrPreserved {
		for _, f := range h.preservedSorted() {
			if !seen[f] {
				return h.violation("kho-fdt-describes-preserved", "preserved %v (order %d) is not described in the FDT: the next kernel would not reserve it",
					f, h.preservedOrder(f))
			}
		}
	}
	return nil
}

// Dump describes the KHO state for violations and debugging.
func (h *KHO) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kho (boot %d, format %s): %v, %d notifiers, %d folios (%d pages) preserved",
		h.k.BootID, h.format.Name(), h.state, len(h.notifiers), h.nrPreserved, h.preservedPages)
	if len(h.fdtBlocks) > 0 {
		fmt.Fprintf(&b, ", FDT buffer %v+%d pages (%d bytes used)", h.fdtBase, h.fdtPages, h.fdtSize)
	}
	b.WriteString("\n")
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
