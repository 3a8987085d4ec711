package kexec

import (
	"cmp"
	"fmt"
	"iter"
	"math/bits"
	"slices"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/kernel"
	"khosim/physmem"
)

// Handover is what a kexec tells the next kernel about KHO: the v4 x86
// boot protocol's setup_data of type SETUP_KEXEC_KHO (the FDT's physical
// address and size, and the scratch ranges). The command line is passed
// separately, as it is in Linux.
type Handover struct {
	FDTAddr physmem.PhysAddr
	FDTSize uint64
	Scratch []physmem.MemblockRegion
}

// RangeState is the state of one preserved range in the kernel that
// received it.
type RangeState int

// Incoming range states (see the package documentation).
const (
	// RangeReserved: memblock-reserved (MEMBLOCK_RSRV_NOINIT) at boot,
	// its struct pages uninitialised, waiting for its owner to claim it.
	RangeReserved RangeState = iota
	// RangeClaimed: kho_claim_mem turned it into a folio the claimer
	// owns.
	RangeClaimed
	// RangeReturned: kho_return_mem gave it to the buddy allocator.
	RangeReturned
)

func (s RangeState) String() string {
	switch s {
	case RangeReserved:
		return "reserved"
	case RangeClaimed:
		return "claimed"
	case RangeReturned:
		return "returned"
	}
	return fmt.Sprintf("RangeState(%d)", int(s))
}

// InRange is one range the previous kernel preserved, as this kernel
// reserved it.
type InRange struct {
	Mem
	State RangeState
}

// inRange is one incoming range as this kernel keeps it: [pfn, pfn+pages)
// and its RangeState, 12 bytes (a valid range lies in memory, whose frames
// the memmap numbers in 32 bits).
type inRange struct {
	pfn, pages uint32
	state      uint8
}

func (r inRange) mem() Mem {
	return Mem{Addr: physmem.PFN(r.pfn).Phys(), Size: uint64(r.pages) << physmem.PageShift}
}

func (r inRange) State() RangeState { return RangeState(r.state) }

// incoming is kho_in: the handover this kernel booted with.
type incoming struct {
	handover *Handover // as passed (nil: not a KHO boot)
	fdt      *fdt.FDT  // the validated FDT (nil: none, or invalid)
	fdtMem   Mem       // the FDT's frames, reserved for the kernel's life
	ranges   []inRange // valid preserved ranges, sorted by address (a flat slice, one per range)
	next     int       // where find looks first: after the last range it found
	rejected int       // ranges of the FDT that failed validation
	reserved uint64    // pages of ranges still RangeReserved
	claimed  int       // ranges claimed
	returned int       // ranges returned
	lateDone bool      // ReturnUnclaimed ran
	invalid  string    // why the handover was refused, if it was
	scratch  []physmem.MemblockRegion
}

// maxRejectMessages bounds the per-range messages of one boot (the rest is
// counted in a summary line, as printk_ratelimited would drop them).
const maxRejectMessages = 8

// Populate is kho_populate() followed by kho_memory_init() for a kernel
// booted by kexec: it runs from the kernel's EarlyInit hook, while memblock
// allocates only from scratch and before memblock_free_all.
//
// With ho nil (a cold boot, or a kexec without KHO) it does nothing.
// Otherwise it reads the FDT from physical memory with the bounds-checked
// reader and validates it: a handover without scratch ranges (the kernel
// then booted like a cold one, its early allocations anywhere), a header
// or structure that does not check, a size beyond what the kexec passed,
// or a root whose compatible is not "kho-v1" means no handover at all
// (one clear message; nothing is reserved, every frame outside what boot
// itself took becomes free). A
// valid FDT's own frames are reserved for the life of the kernel
// (kho_get_fdt) and every range the format collects (KHO v4: every "mem"
// property of every node) is validated — page aligned, non-empty, inside
// memory, not overlapping scratch, the FDT, or anything memblock already
// reserved (the kernel image, early allocations, an earlier range) — and
// the valid ones are memblock-reserved MEMBLOCK_RSRV_NOINIT; the invalid
// ones are reported and ignored. Finally scratch-only allocation ends
// (memblock_clear_kho_scratch_only).
//
// Differs from v4, which trusts the FDT: kho_populate only checks the
// magic and the root compatible, and kho_reserve_previous_mem reserves
// every "mem" range it finds unchecked.
func (h *KHO) Populate(ho *Handover) {
	mb := h.mm.Memblock
	defer mb.ClearKHOScratchOnly()
	if ho == nil {
		return
	}
	h.in.handover = ho
	h.in.scratch = slices.Clone(ho.Scratch)
	f, why := h.openHandover(ho)
	if f == nil {
		h.in.invalid = why
		h.k.Printk(kernel.LogErr, "kho: invalid handover FDT at %#x (%d bytes): %s; nothing is handed over",
			uint64(ho.FDTAddr), ho.FDTSize, why)
		return
	}
	size := uint64(f.TotalSize())
	base := ho.FDTAddr &^ (physmem.PageSize - 1)
	end := (ho.FDTAddr + physmem.PhysAddr(size) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	h.in.fdtMem = Mem{Addr: base, Size: uint64(end - base)}
	if err := h.tracker.Validate(f); err != nil {
		h.in.invalid = fmt.Sprintf("the %s record of preserved memory is corrupt: %v", h.tracker.Name(), err)
		h.k.Printk(kernel.LogErr, "kho: handover FDT at %#x: %s; nothing is handed over", uint64(ho.FDTAddr), h.in.invalid)
		h.in.fdtMem = Mem{}
		return
	}
	if err := mb.Reserve(base, uint64(end-base)); err != nil {
		h.in.invalid = fmt.Sprintf("cannot reserve the FDT: %v", err)
		h.k.Printk(kernel.LogErr, "kho: cannot reserve the handover FDT %v: %v; nothing is handed over", h.in.fdtMem, err)
		h.in.fdtMem = Mem{}
		return
	}
	h.in.fdt = f

	bad := func(path string, err error) {
		h.k.Printk(kernel.LogErr, "kho: %s: %v; ignored", path, err)
	}
	// One pass for the common case of a handover all of whose ranges are
	// valid (malformed records make it give up without a word); if any
	// is not, a second pass handles them one by one, with messages.
	malformed := false
	pages, ok := h.reserveRuns(h.tracker.Collect(f, func(string, error) { malformed = true }), &malformed)
	if !ok {
		pages = h.reserveEach(h.tracker.Collect(f, bad))
	}
	h.in.reserved = pages
	h.k.Printk(kernel.LogInfo, "kho: handover FDT at %#x (%d bytes): %d preserved ranges (%d pages) reserved, %d rejected",
		uint64(ho.FDTAddr), size, len(h.in.ranges), pages, h.in.rejected)
}

// reserveEach validates and reserves the preserved ranges one by one, in
// FDT order: a range that fails a check (including overlapping a range
// reserved before it) is reported and ignored. It records the valid ones,
// sorted by address, and returns their pages.
func (h *KHO) reserveEach(mems iter.Seq[Mem]) uint64 {
	mb := h.mm.Memblock
	var pages uint64
	for m := range mems {
		if why := h.checkRange(m); why != "" {
			h.in.rejected++
			if h.in.rejected <= maxRejectMessages {
				h.k.Printk(kernel.LogErr, "kho: preserved range %#x+%#x %s; not reserved", uint64(m.Addr), m.Size, why)
			}
			continue
		}
		if err := mb.Reserve(m.Addr, m.Size); err != nil {
			h.in.rejected++
			h.k.Printk(kernel.LogErr, "kho: cannot reserve preserved range %v: %v", m, err)
			continue
		}
		if err := mb.ReservedMarkNoinit(m.Addr, m.Size); err != nil {
			// Cannot happen: the range is inside memory and memblock is
			// still open. Keep it reserved and initialised (lost for
			// KHO, but not handed to the allocator either).
			h.k.Printk(kernel.LogErr, "kho: cannot mark preserved range %v noinit: %v", m, err)
			h.in.rejected++
			continue
		}
		h.in.ranges = append(h.in.ranges, inRange{pfn: uint32(m.PFN()), pages: uint32(m.NrPages()), state: uint8(RangeReserved)})
		h.markPreserved(m)
		pages += m.NrPages()
	}
	if h.in.rejected > maxRejectMessages {
		h.k.Printk(kernel.LogErr, "kho: %d more invalid preserved ranges not reported", h.in.rejected-maxRejectMessages)
	}
	slices.SortFunc(h.in.ranges, func(a, b inRange) int { return cmp.Compare(a.pfn, b.pfn) })
	return pages
}

// reserveRuns is the fast path of Populate for a handover every range of
// which is valid. Each range must be non-empty, page aligned, not wrapping
// and inside the memmap, and no two may overlap: a bitmap of the frames
// they cover (and one of where each starts) checks that in one pass, in
// FDT order, without sorting. Then each run of physically contiguous
// ranges is checked as a whole (inside memory, clear of scratch, the FDT
// and whatever memblock reserved) and reserved MEMBLOCK_RSRV_NOINIT at
// once: memblock_reserve merges adjacent regions of equal flags anyway,
// so memblock ends exactly as after reserveEach. Each range is still
// recorded, and audited, on its own, in address order (read off the two
// bitmaps). ok is false, with nothing reserved or recorded, as soon as any
// range would be rejected: reserveEach then handles the handover range by
// range, in FDT order, with its messages.
func (h *KHO) reserveRuns(mems iter.Seq[Mem], malformed *bool) (pages uint64, ok bool) {
	nframes := h.mm.Memmap.NumPages()
	words := (nframes + 63) / 64
	// Two bits per frame of the machine: host bitmaps, so that a machine
	// far larger than the host pays only for the words a range sets.
	cw, err := physmem.HostBitmap(words)
	if err != nil {
		return 0, false
	}
	defer physmem.FreeHostBitmap(cw)
	sw, err := physmem.HostBitmap(words)
	if err != nil {
		return 0, false
	}
	defer physmem.FreeHostBitmap(sw)
	covered, starts := bitmap(cw), bitmap(sw)
	n := 0
	ok = true
	for m := range mems {
		if m.Size == 0 || !m.Addr.PageAligned() || m.Size%physmem.PageSize != 0 || m.End() < m.Addr ||
			uint64(m.End()) > nframes<<physmem.PageShift {
			ok = false
			break
		}
		s, e := uint64(m.PFN()), uint64(m.PFN())+m.NrPages()
		if !covered.setClear(s, e) {
			ok = false // overlaps another range
			break
		}
		starts.set(s)
		pages += e - s
		n++
	}
	if !ok || *malformed {
		return 0, false
	}
	if n == 0 {
		return 0, true
	}
	for s, e := range covered.runs() {
		run := Mem{Addr: physmem.PFN(s).Phys(), Size: (e - s) << physmem.PageShift}
		if h.checkRange(run) != "" {
			return 0, false
		}
	}
	mb := h.mm.Memblock
	h.in.ranges = make([]inRange, 0, n)
	for s, e := range covered.runs() {
		base, size := physmem.PFN(s).Phys(), (e-s)<<physmem.PageShift
		if err := mb.Reserve(base, size); err != nil {
			panic(fmt.Sprintf("kexec: reserving checked preserved memory %#x+%#x: %v", uint64(base), size, err))
		}
		if err := mb.ReservedMarkNoinit(base, size); err != nil {
			panic(fmt.Sprintf("kexec: marking checked preserved memory %#x+%#x noinit: %v", uint64(base), size, err))
		}
		// The ranges of this run: from each start to the next, or to
		// the end of the run.
		first := true
		for p := range starts.ones(s, e) {
			if !first {
				h.in.ranges[len(h.in.ranges)-1].pages = uint32(p - uint64(h.in.ranges[len(h.in.ranges)-1].pfn))
			}
			first = false
			h.in.ranges = append(h.in.ranges, inRange{pfn: uint32(p), state: uint8(RangeReserved)})
		}
		last := &h.in.ranges[len(h.in.ranges)-1]
		last.pages = uint32(e - uint64(last.pfn))
	}
	for _, r := range h.in.ranges {
		h.markPreserved(r.mem())
	}
	return pages, true
}

// markPreserved writes KHO_PAGE_MAGIC and the order into the head struct
// page of every block of the reserved range m, as mainline's
// kho_preserved_memory_reserve() does for each (phys, order) its tracker
// yields: the blocks are the largest naturally aligned ones, at most
// MAX_PAGE_ORDER (those freeRange and ClaimMem restore), where mainline's
// are the tracker's own entries. kho_restore_page then refuses a block
// whose head lacks the magic (ClaimMem, freeRange).
func (h *KHO) markPreserved(m Mem) {
	for pfn, order := range blocks(m) {
		if err := h.mm.KHOPreservedReserve(pfn, order); err != nil {
			panic(fmt.Sprintf("kexec: marking checked preserved block %v order %d: %v", pfn, order, err))
		}
	}
}

// blocks yields the largest naturally aligned blocks, of at most
// MAX_PAGE_ORDER, that make up m, in address order.
func blocks(m Mem) iter.Seq2[physmem.PFN, uint] {
	return func(yield func(physmem.PFN, uint) bool) {
		pfn, end := m.PFN(), m.PFN()+physmem.PFN(m.NrPages())
		for pfn < end {
			order := uint(physmem.MaxPageOrder)
			if pfn != 0 {
				order = min(order, uint(bits.TrailingZeros64(uint64(pfn))))
			}
			for pfn+1<<order > end {
				order--
			}
			if !yield(pfn, order) {
				return
			}
			pfn += 1 << order
		}
	}
}

// openHandover reads and validates the FDT the previous kernel handed
// over. It returns nil and the reason when there is no usable handover.
func (h *KHO) openHandover(ho *Handover) (*fdt.FDT, string) {
	mb := h.mm.Memblock
	switch {
	case len(ho.Scratch) == 0:
		// The kernel booted as a cold one: its early allocations were
		// not confined to scratch and may lie on preserved memory.
		return nil, "no KHO scratch ranges"
	case ho.FDTSize == 0:
		return nil, "empty FDT"
	case ho.FDTAddr+physmem.PhysAddr(ho.FDTSize) < ho.FDTAddr || !mb.IsRegionMemory(ho.FDTAddr, ho.FDTSize):
		return nil, "FDT outside memory"
	case overlapsAny(Mem{ho.FDTAddr, ho.FDTSize}, h.in.scratch):
		return nil, "FDT overlaps KHO scratch"
	case mb.IsRegionReserved(ho.FDTAddr, ho.FDTSize):
		return nil, "FDT overlaps memory this kernel reserved at boot"
	}
	start := ho.FDTAddr.PFN()
	endPFN := (ho.FDTAddr + physmem.PhysAddr(ho.FDTSize)).PFNUp()
	span := h.mm.Frames.Span(start, uint64(endPFN-start))
	off := uint64(ho.FDTAddr) & (physmem.PageSize - 1)
	blob := span[off : off+ho.FDTSize : off+ho.FDTSize]
	f, err := fdt.Open(blob)
	if err != nil {
		return nil, err.Error()
	}
	if why := h.tracker.Recognise(f); why != "" {
		return nil, fmt.Sprintf("%s (this kernel's tracker is %s)", why, h.tracker.Name())
	}
	return f, ""
}

// checkRange validates one preserved range before it is reserved; it
// returns why the range is refused, or "".
func (h *KHO) checkRange(m Mem) string {
	mb := h.mm.Memblock
	switch {
	case m.Size == 0:
		return "is empty"
	case !m.Addr.PageAligned() || m.Size%physmem.PageSize != 0:
		return "is not page aligned"
	case m.End() < m.Addr || !mb.IsRegionMemory(m.Addr, m.Size):
		return "lies outside memory"
	case overlapsAny(m, h.in.scratch):
		return "overlaps KHO scratch"
	case m.Overlaps(h.in.fdtMem):
		return "overlaps the handover FDT"
	case mb.IsRegionReserved(m.Addr, m.Size):
		return "overlaps reserved memory (the kernel image, an early allocation or another preserved range)"
	}
	return ""
}

func overlapsAny(m Mem, rs []physmem.MemblockRegion) bool {
	for _, r := range rs {
		if m.Overlaps(Mem{r.Base, r.Size}) {
			return true
		}
	}
	return false
}

// GetFDT is kho_get_fdt(): the handover FDT this kernel booted with,
// validated, or nil when it was not a KHO boot or the handover was
// refused. It stays valid for the kernel's whole life.
func (h *KHO) GetFDT() *fdt.FDT { return h.in.fdt }

// Handover returns the boot parameters this kernel received (nil on a cold
// boot or a kexec without KHO).
func (h *KHO) Handover() *Handover { return h.in.handover }

// HandoverRefused returns why the handover this kernel received was
// refused, or "".
func (h *KHO) HandoverRefused() string { return h.in.invalid }

// find returns the index of the incoming range that is exactly m. Handlers
// usually claim ranges in address order, so the range after the last one
// found is tried first.
func (h *KHO) find(m Mem) int {
	if !m.Addr.PageAligned() || m.Size%physmem.PageSize != 0 || m.Size == 0 || m.End() < m.Addr {
		return -1
	}
	pfn, pages := uint64(m.PFN()), m.NrPages()
	rs := h.in.ranges
	if i := h.in.next; i < len(rs) && uint64(rs[i].pfn) == pfn && uint64(rs[i].pages) == pages {
		h.in.next = i + 1
		return i
	}
	lo, hi := 0, len(rs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint64(rs[mid].pfn) < pfn {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(rs) && uint64(rs[lo].pfn) == pfn && uint64(rs[lo].pages) == pages {
		h.in.next = lo + 1
		return lo
	}
	return -1
}

// InRanges returns the incoming preserved ranges, sorted by address.
func (h *KHO) InRanges() []InRange {
	out := make([]InRange, len(h.in.ranges))
	for i, r := range h.in.ranges {
		out[i] = InRange{Mem: r.mem(), State: r.State()}
	}
	return out
}

// ClaimMem is kho_claim_mem(): it turns a preserved range that is exactly
// one naturally aligned folio (PAGE_SIZE << order bytes, as fdbox-v2 and
// the RFC's order-0 pages describe them) into that folio, with refcount 1
// owned by the caller, initialised as a freshly allocated folio (the
// struct page work of kho_restore_folio). The caller either keeps it (e.g.
// inserts it into a page cache, then drops its reference) or puts it,
// which frees it.
//
// Errors: EINVAL if m is not a range this kernel reserved from the
// handover (never handed over, rejected at boot, or not one folio); EBUSY
// if it was already claimed or returned; what the "kho_claim" fault site
// injects (ENOMEM), in which case the range stays reserved and the caller
// must return it.
//
// Differs from v4, whose kho_claim_mem returns a kernel virtual address of
// a range of order-0 pages and has no way to fail.
func (h *KHO) ClaimMem(m Mem) (physmem.Folio, error) {
	h.mustRunning("kho_claim_mem")
	i := h.find(m)
	if i < 0 {
		return 0, fmt.Errorf("kho: %v was not handed over: %w", m, errno.EINVAL)
	}
	r := &h.in.ranges[i]
	if r.State() != RangeReserved {
		return 0, fmt.Errorf("kho: %v already %v: %w", m, r.State(), errno.EBUSY)
	}
	order, ok := m.FolioOrder()
	if !ok {
		return 0, fmt.Errorf("kho: %v is not one folio: %w", m, errno.EINVAL)
	}
	if err := h.faults.Hit(fault.KHOClaim); err != nil {
		return 0, fmt.Errorf("kho: claiming %v: %w", m, err)
	}
	// kho_restore_page: the head's page->private must hold the magic and
	// the order early boot wrote there (markPreserved).
	if o, ok := h.mm.KHOPageInfo(m.PFN()); !ok || o != order {
		return 0, fmt.Errorf("kho: restoring %v: no KHO_PAGE_MAGIC of order %d in its struct page: %w", m, order, errno.EINVAL)
	}
	f, err := h.mm.RestoreFolio(m.PFN(), order)
	if err != nil {
		return 0, fmt.Errorf("kho: restoring %v: %w", m, err)
	}
	r.state = uint8(RangeClaimed)
	h.k.Work().StructPagesWritten += m.NrPages()
	h.in.reserved -= m.NrPages()
	h.in.claimed++
	return f, nil
}

// ReturnMem is kho_return_mem(): it gives a preserved range that nobody
// will use to the buddy allocator (its struct pages are initialised as
// free pages). Errors: EINVAL if m was not handed over; EBUSY if it was
// already claimed or returned.
func (h *KHO) ReturnMem(m Mem) error {
	h.mustRunning("kho_return_mem")
	i := h.find(m)
	if i < 0 {
		return fmt.Errorf("kho: %v was not handed over: %w", m, errno.EINVAL)
	}
	r := &h.in.ranges[i]
	if r.State() != RangeReserved {
		return fmt.Errorf("kho: %v already %v: %w", m, r.State(), errno.EBUSY)
	}
	h.freeRange(m)
	r.state = uint8(RangeReturned)
	h.in.reserved -= m.NrPages()
	h.in.returned++
	return nil
}

// freeRange frees the uninitialised frames of m to the buddy allocator in
// the largest naturally aligned blocks.
func (h *KHO) freeRange(m Mem) {
	h.k.Work().StructPagesWritten += m.NrPages()
	for pfn, order := range blocks(m) {
		if o, ok := h.mm.KHOPageInfo(pfn); !ok || o != order {
			panic(fmt.Sprintf("kexec: invariant \"preserved-range-reserved\" broken: returning %v: block %v order %d has no KHO_PAGE_MAGIC", m, pfn, order))
		}
		f, err := h.mm.RestoreFolio(pfn, order)
		if err != nil {
			panic(fmt.Sprintf("kexec: invariant \"preserved-range-reserved\" broken: returning %v: block %v order %d: %v", m, pfn, order, err))
		}
		h.mm.FolioPut(f)
	}
}

// ReturnUnclaimed is the late-sync pass that ends a KHO boot: every
// preserved range no handler claimed (its node was corrupt, its handler
// never registered, or the handler failed without returning it) is
// reported and returned to the allocator, so none is ever leaked. It runs
// as the last late initcall, after the memfd handler's.
//
// Not in v4, which leaves unclaimed preserved memory reserved forever.
func (h *KHO) ReturnUnclaimed() {
	h.mustRunning("kho_return_unclaimed")
	var n int
	var pages uint64
	for i := range h.in.ranges {
		r := h.in.ranges[i]
		if r.State() != RangeReserved {
			continue
		}
		n++
		pages += uint64(r.pages)
		if n <= maxRejectMessages {
			h.k.Printk(kernel.LogWarn, "kho: preserved range %v (%d pages) was not claimed; returning it", r.mem(), r.pages)
		}
		if err := h.ReturnMem(r.mem()); err != nil {
			h.k.Printk(kernel.LogErr, "kho: returning %v: %v", r.mem(), err)
		}
	}
	if n > 0 {
		h.k.Printk(kernel.LogWarn, "kho: returned %d unclaimed preserved ranges (%d pages)", n, pages)
	}
	h.in.lateDone = true
}

// IncomingStats summarises the handover this kernel received.
type IncomingStats struct {
	Ranges, Rejected, Claimed, Returned int
	// ReservedPages are the frames of ranges still reserved: handed over
	// and not yet claimed or returned.
	ReservedPages uint64
	FDTBytes      uint64
}

// Incoming returns the counters of the handover this kernel received.
func (h *KHO) Incoming() IncomingStats {
	s := IncomingStats{
		Ranges: len(h.in.ranges), Rejected: h.in.rejected, Claimed: h.in.claimed,
		Returned: h.in.returned, ReservedPages: h.in.reserved,
	}
	if h.in.fdt != nil {
		s.FDTBytes = uint64(h.in.fdt.TotalSize())
	}
	return s
}

// ReturnNodeMem returns to the allocator every range described by a "mem"
// property in the subtree of f at off that is still reserved, and reports
// how many it returned. A client calls it for a node it will never
// recover (fdbox: a pending fd whose box was deleted); ranges already
// claimed or returned, and ranges that were never handed over, are left
// alone. It reads MemProps records, whatever the format.
func (h *KHO) ReturnNodeMem(f *fdt.FDT, off int) int {
	h.mustRunning("kho_return_mem")
	n := 0
	var walk func(off, depth int)
	walk = func(off, depth int) {
		if depth > fdt.MaxDepth {
			return
		}
		if v, err := f.GetProp(off, MemPropName); err == nil && len(v)%MemSize == 0 {
			for i := range len(v) / MemSize {
				m := MemAt(v, i)
				if j := h.find(m); j >= 0 && h.in.ranges[j].State() == RangeReserved && h.ReturnMem(m) == nil {
					n++
				}
			}
		}
		for sub := range f.Subnodes(off) {
			walk(sub, depth+1)
		}
	}
	walk(off, 0)
	return n
}
