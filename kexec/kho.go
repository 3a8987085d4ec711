package kexec

import (
	"fmt"
	"iter"
	"math/bits"
	"slices"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/physmem"
)

// KHOCompatible is the compatible of the handover FDT's root node in KHO
// v4 (kho_expose_dt: fdt_property_string(fdt, "compatible", "kho-v1")).
const KHOCompatible = "kho-v1"

// State is the outgoing state of a kernel's KHO (kho_out.active and what
// follows it).
type State int

// Outgoing states; see the package documentation for the transitions.
const (
	// Idle: /sys/kernel/kho/active reads 0. Nothing is preserved.
	Idle State = iota
	// Active: the handover FDT is built and the preserved folios are
	// pinned; a kexec now hands them over.
	Active
	// HandedOver: the kernel kexec'd (with or without a handover) and is
	// gone. Nothing may be called any more.
	HandedOver
)

func (s State) String() string {
	switch s {
	case Idle:
		return "idle"
	case Active:
		return "active"
	case HandedOver:
		return "handed over"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Cmd is a KHO notifier event (enum kho_event of v4).
type Cmd int

const (
	// KEXEC_KHO_DUMP asks a client to serialize its state into the FDT:
	// the root node is open and the client adds its own subnodes.
	KEXEC_KHO_DUMP Cmd = iota
	// KEXEC_KHO_ABORT asks a client to undo everything it did for the
	// current activation: sent to every notifier when an activation
	// fails and on deactivation.
	KEXEC_KHO_ABORT
	// KEXEC_KHO_COMMIT tells the clients that the activation succeeded
	// (every DUMP and the FDT itself): they may now make the destructive
	// part of their serialization that nothing can fail after (the
	// fdbox's removal of preserved folios from the page caches).
	//
	// Not in KHO: a khosim extension so that no failure can lose a file
	// (the RFC's TODO "we should first serialize the whole file, and only
	// then remove things from page cache so we are sure to never fail").
	KEXEC_KHO_COMMIT
)

func (c Cmd) String() string {
	switch c {
	case KEXEC_KHO_DUMP:
		return "KEXEC_KHO_DUMP"
	case KEXEC_KHO_ABORT:
		return "KEXEC_KHO_ABORT"
	case KEXEC_KHO_COMMIT:
		return "KEXEC_KHO_COMMIT"
	}
	return fmt.Sprintf("Cmd(%d)", int(c))
}

// Notifier is a KHO client (struct notifier_block on kho_out.chain_head).
type Notifier struct {
	// Name identifies the client in messages ("fdbox").
	Name string
	// Call handles one event. For KEXEC_KHO_DUMP, w is the FDT under
	// construction with the root node open; an error aborts the
	// activation and is what the write to /sys/kernel/kho/active returns.
	// For KEXEC_KHO_ABORT and KEXEC_KHO_COMMIT, w is nil. ABORT is sent
	// to every notifier, including those whose DUMP never ran or failed,
	// so it must be idempotent; its error is only logged. COMMIT must not
	// fail: an error there is a bug and panics.
	Call func(cmd Cmd, w *fdt.Writer) error
	// Estimate, if set, bounds the bytes the client's DUMP will write,
	// so that KHO can size the FDT buffer before it runs the notifiers.
	Estimate func() uint64
}

// RootEstimate is what KHO reserves in the FDT buffer beyond the
// notifiers' estimates: the header, the reservation map, the root node
// with its compatible, the strings block, and slack for clients without
// an Estimate.
const RootEstimate = 16 << 10

// fdtBlock is one allocation of the FDT buffer.
type fdtBlock struct {
	pfn   physmem.PFN
	order uint
}

// KHO is the Kexec HandOver state of one kernel: kho_out (what this kernel
// hands over) and kho_in (what it was handed). See the package
// documentation for the state machines and references.
type KHO struct {
	k       *kernel.Kernel
	mm      *physmem.MM
	faults  *fault.Injector
	tracker Tracker

	// kho_out
	state     State
	dumping   bool // inside the DUMP notifiers
	notifiers []*Notifier
	subtrees  []Subtree // kho_add_subtree(), in the order added
	// The preserved folios (one reference each): a bit per frame, set at
	// each preserved folio's head (mainline KHO's own answer, its
	// preserved-memory bitmaps), so that membership is one bit test and
	// the set comes out sorted by address; and the recorded order of
	// each folio of order > 0 (order-0 folios, the many, record none),
	// a byte per frame in chunks of orderChunk frames allocated as
	// folios in them are preserved (a map cost a hash insert per 2 MiB
	// folio, a third of an order-9 activation).
	preservedBits   []uint64
	preservedOrders [][]uint8
	nrPreserved     int
	preservedPages  uint64
	fdtBlocks       []fdtBlock // the FDT buffer's allocations
	fdtBase         physmem.PFN
	fdtPages        uint64 // buffer frames, from fdtBase
	fdtSize         uint64 // totalsize of the finished FDT (Active)
	fdtTampered     bool   // the FDT's bytes were changed on purpose (MarkTampered)
	activations     int
	// dumpPreserved are the folios preserved inside the DUMP of the
	// current activation: an abort releases those still preserved.
	dumpPreserved folioLog
	aborting      bool   // inside abort: the notifiers' ABORT may unpreserve
	trackerSeen   uint64 // tracker frames already counted as live-update work

	// kho_in
	in incoming
}

// MarkTampered records that the active FDT's bytes were changed on purpose
// (`corrupt fdt`, which models a bad handover). The audit then stops
// requiring that the FDT describe the preserved folios: the kernel's own
// state is still checked, and what the damage does is the next kernel's
// business. Deactivation, which frees the FDT, clears the mark.
func (h *KHO) MarkTampered() { h.fdtTampered = true }

// New creates the KHO state of kernel k at its boot. faults is the
// machine's injector (may be nil) and newTracker makes the tracker that
// records preserved memory (nil: the arrays of KHO v4, "mem" properties).
// It is called from the kernel's EarlyInit hook, once memblock exists;
// the caller then registers VisitRefs with kernel.RegisterRefOwner,
// FramesPreserved with kernel.RegisterFrameCounter("preserved") and
// FramesTracker with RegisterFrameCounter("tracker").
func New(k *kernel.Kernel, faults *fault.Injector, newTracker func(h *KHO) Tracker) *KHO {
	h := &KHO{
		k:      k,
		mm:     k.MM,
		faults: faults,
	}
	if newTracker == nil {
		newTracker = func(h *KHO) Tracker { return arrays{h} }
	}
	h.tracker = newTracker(h)
	return h
}

// Kernel returns the kernel this KHO belongs to.
func (h *KHO) Kernel() *kernel.Kernel { return h.k }

// Tracker returns how this kernel records preserved memory.
func (h *KHO) Tracker() Tracker { return h.tracker }

// MM returns the memory model of KHO's kernel.
func (h *KHO) MM() *physmem.MM { return h.mm }

// Faults returns the machine's fault injector (may be nil).
func (h *KHO) Faults() *fault.Injector { return h.faults }

// Enabled is kho_is_enabled(): KHO works only in a kernel that reserved
// scratch memory (see Activate). Front-ends built on KHO (LUO) disable
// themselves without it.
func (h *KHO) Enabled() bool { return len(h.k.Scratch) > 0 }

// Finalized reports whether preservation is closed: KHO is active and its
// tracker finalizes (arrays, bitmaps).
func (h *KHO) Finalized() bool { return h.state == Active && h.tracker.Finalizes() }

// State returns the outgoing state.
func (h *KHO) State() State { return h.state }

// Active reports whether KHO is active (/sys/kernel/kho/active reads 1).
func (h *KHO) Active() bool { return h.state == Active }

// mustRunning panics if the kernel is gone: a KHO of a kernel that
// kexec'd must never be used again.
func (h *KHO) mustRunning(op string) {
	if h.state == HandedOver || h.k.Gone() {
		invariant.Panic("kexec", "kho-alive", "", "%s on the KHO of boot %d, which is gone", op, h.k.BootID)
	}
}

// RegisterNotifier is register_kho_notifier(): nb's Call receives the
// DUMP, ABORT and COMMIT events of every later activation, in registration
// order. Registering while KHO is active fails with EBUSY (the new client
// would miss the DUMP), and twice with EEXIST.
func (h *KHO) RegisterNotifier(nb *Notifier) error {
	h.mustRunning("register_kho_notifier")
	if nb == nil || nb.Call == nil {
		return errno.EINVAL
	}
	if h.state != Idle || h.dumping {
		return errno.EBUSY
	}
	if slices.Contains(h.notifiers, nb) {
		return errno.EEXIST
	}
	h.notifiers = append(h.notifiers, nb)
	return nil
}

// UnregisterNotifier is unregister_kho_notifier(). EBUSY while active,
// ENOENT if nb is not registered.
func (h *KHO) UnregisterNotifier(nb *Notifier) error {
	h.mustRunning("unregister_kho_notifier")
	if h.state != Idle || h.dumping {
		return errno.EBUSY
	}
	i := slices.Index(h.notifiers, nb)
	if i < 0 {
		return errno.ENOENT
	}
	h.notifiers = slices.Delete(h.notifiers, i, i+1)
	return nil
}

// Estimate returns the FDT buffer size Activate would allocate now: the
// notifiers' estimates plus RootEstimate and the format's root, rounded up
// to whole pages.
func (h *KHO) Estimate() uint64 {
	n := uint64(RootEstimate) + h.tracker.EstimateRoot()
	for _, nb := range h.notifiers {
		if nb.Estimate != nil {
			n += nb.Estimate()
		}
	}
	for _, st := range h.subtrees {
		n += st.estimate()
	}
	return (n + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
}

// Activate is writing 1 to /sys/kernel/kho/active (kho_out_active_set ->
// kho_expose_dt in v4): it allocates the FDT buffer in physical memory,
// writes the root node (the tracker's compatible and root properties),
// runs every notifier's DUMP in
// registration order, finishes the FDT, and then sends COMMIT.
//
// The buffer is unmovable kernel memory (GFP_KERNEL), so never in KHO
// scratch, sized by Estimate. Every FDT write reports to the machine's
// "fdt" fault site (ENOSPC).
//
// Any failure aborts: every notifier's ABORT runs, any folio still
// preserved is released, the buffer is freed, and the errno of the first
// failure is returned. Errors: EBUSY if already active; EOPNOTSUPP if
// the kernel has no KHO scratch; ENOSPC if the scratch cannot hold the
// next kernel's early boot (checkScratch); ENOMEM if the buffer cannot be
// allocated; ENOSPC if the FDT does not fit (or the "fdt" fault fired);
// whatever a notifier returns.
//
// Without scratch (kho_reserve_scratch failed, or kho_scratch=0) KHO is
// disabled, as kho_enable = false makes it in Linux: there is no memory
// the next kernel could boot from without overwriting what is preserved,
// so nothing may be handed over. v4 does not create the sysfs/debugfs
// files then (opening them fails); mainline's kho_finalize() returns
// -EOPNOTSUPP, which khosim returns.
func (h *KHO) Activate() error {
	h.mustRunning("kho activate")
	if h.state == Active {
		return errno.EBUSY
	}
	if len(h.k.Scratch) == 0 {
		h.k.Printk(kernel.LogErr, "kho: no scratch memory: kexec handover is disabled")
		return errno.EOPNOTSUPP
	}
	if err := h.checkScratch(); err != nil {
		return err
	}
	if err := h.allocFDT(h.Estimate()); err != nil {
		h.k.Printk(kernel.LogErr, "kho: failed to allocate the FDT buffer of %d bytes: %v", h.Estimate(), err)
		return errno.Of(err)
	}
	blob, err := h.dump()
	if err != nil {
		h.k.Printk(kernel.LogErr, "kho: failed to expose the FDT: %v", err)
		h.abort()
		h.freeFDT()
		return errno.Of(err)
	}
	h.fdtSize = uint64(len(blob))
	w := h.k.Work()
	w.FDTBytes += h.fdtSize
	w.FramesAllocated += h.fdtPages
	h.countTracker()
	h.state = Active
	h.activations++
	for _, nb := range h.notifiers {
		if err := nb.Call(KEXEC_KHO_COMMIT, nil); err != nil {
			invariant.Panic("kexec", "kho-commit-cannot-fail", "", "notifier %s failed KEXEC_KHO_COMMIT: %v", nb.Name, err)
		}
	}
	h.k.Printk(kernel.LogInfo, "kho: active: FDT at %#x, %d bytes; %d folios (%d pages) preserved",
		uint64(h.fdtBase.Phys()), h.fdtSize, h.nrPreserved, h.preservedPages)
	return nil
}

// ScratchCheckParam is the command-line parameter that turns off the
// check that the next kernel's early boot fits in scratch
// (kho_scratch_check=off): Linux makes no such check, and a kernel booted
// with too little scratch panics in early boot, the handover lost.
const ScratchCheckParam = "kho_scratch_check"

// checkScratch refuses an activation (ENOSPC) whose scratch cannot hold
// what the next kernel allocates before it knows what was preserved
// (kernel.EarlyScratchNeed: its memmap), unless kho_scratch_check=off asks
// for Linux's behaviour. Not in Linux: the kernel that activates knows
// what the next one needs, and refusing keeps the workload's memory where
// Linux would lose it at the next boot.
func (h *KHO) checkScratch() error {
	if v, ok := h.k.HasParam(ScratchCheckParam); ok && (v == "off" || v == "0") {
		return nil
	}
	var have uint64
	for _, r := range h.k.Scratch {
		have += r.Size
	}
	if need := h.k.EarlyScratchNeed(); need > have {
		h.k.Printk(kernel.LogErr, "kho: scratch of %d KiB cannot hold the next kernel's early allocations (%d KiB: its memmap); refusing to activate (%s=off to hand over anyway, as Linux would)",
			have>>10, need>>10, ScratchCheckParam)
		return fmt.Errorf("kho: scratch %d KiB < %d KiB the next kernel needs at early boot: %w", have>>10, need>>10, errno.ENOSPC)
	}
	return nil
}

// dump writes the FDT into the buffer: kho_expose_dt's fdt_create ...
// fdt_finish with the DUMP notifier chain in the middle.
func (h *KHO) dump() ([]byte, error) {
	w, err := fdt.Create(h.mm.Frames.Span(h.fdtBase, h.fdtPages))
	if err != nil {
		return nil, err
	}
	w.Fault = func() error { return h.faults.Hit(fault.FDT) }
	if err := w.FinishReserveMap(); err != nil {
		return nil, err
	}
	if err := w.BeginNode(""); err != nil {
		return nil, err
	}
	if err := w.PropertyString("compatible", h.tracker.Compatible()); err != nil {
		return nil, err
	}
	if err := h.tracker.WriteRoot(w); err != nil {
		return nil, err
	}
	h.dumping = true
	for _, nb := range h.notifiers {
		if err := nb.Call(KEXEC_KHO_DUMP, w); err != nil {
			h.dumping = false
			return nil, fmt.Errorf("notifier %s: %w", nb.Name, err)
		}
	}
	h.dumping = false
	for _, st := range h.subtrees {
		if err := h.writeSubtree(w, st); err != nil {
			return nil, err
		}
	}
	if err := h.tracker.Finalize(); err != nil {
		h.tracker.Unfinalize()
		return nil, err
	}
	if err := w.EndNode(); err != nil {
		return nil, err
	}
	return w.Finish()
}

// abort sends KEXEC_KHO_ABORT to every notifier and releases whatever
// preservation a client left behind (kho_abort).
func (h *KHO) abort() {
	h.aborting = true
	defer func() { h.aborting = false }()
	for _, nb := range h.notifiers {
		if err := nb.Call(KEXEC_KHO_ABORT, nil); err != nil {
			h.k.Printk(kernel.LogErr, "kho: notifier %s failed KEXEC_KHO_ABORT: %v", nb.Name, err)
		}
	}
	h.tracker.Unfinalize()
	left := 0
	for f := range h.dumpPreserved.all() {
		if h.IsPreserved(f) {
			left++
			h.unpreserve(f)
		}
	}
	if left > 0 {
		h.k.Printk(kernel.LogWarn, "kho: abort: released %d folios the clients left preserved", left)
	}
	h.dumpPreserved = folioLog{}
}

// Deactivate is writing 0 to /sys/kernel/kho/active (kho_abort): every
// notifier's ABORT runs, which must leave every client exactly as before
// activation, and the FDT buffer is freed. EINVAL if KHO is not active.
func (h *KHO) Deactivate() error {
	h.mustRunning("kho deactivate")
	if h.state != Active {
		return errno.EINVAL
	}
	h.abort()
	h.freeFDT()
	h.state = Idle
	h.k.Printk(kernel.LogInfo, "kho: deactivated")
	return nil
}

// allocFDT allocates a physically contiguous, unmovable buffer of at least
// size bytes: one buddy block when it fits in MAX_PAGE_ORDER, otherwise a
// run of adjacent MAX_PAGE_ORDER blocks found by allocating blocks until
// enough of them are contiguous (what alloc_contig_pages achieves by
// migration; the surplus blocks are freed again).
func (h *KHO) allocFDT(size uint64) error {
	nr := (size + physmem.PageSize - 1) >> physmem.PageShift
	const maxBlock = 1 << physmem.MaxPageOrder
	if nr <= maxBlock {
		order := uint(bits.Len64(nr - 1))
		pfn, err := h.mm.AllocPages(physmem.GFPKernel, order)
		if err != nil {
			return err
		}
		h.fdtBlocks = []fdtBlock{{pfn, order}}
		h.fdtBase, h.fdtPages = pfn, 1<<order
		return nil
	}
	need := (nr + maxBlock - 1) / maxBlock
	got := map[uint64]bool{} // block number (pfn >> MaxPageOrder) -> allocated
	var order []uint64
	freeAll := func(keepLo, keepHi uint64) {
		for _, b := range order {
			if b < keepLo || b >= keepHi {
				h.mm.FreePages(physmem.PFN(b<<physmem.MaxPageOrder), physmem.MaxPageOrder)
			}
		}
	}
	for {
		pfn, err := h.mm.AllocPages(physmem.GFPKernel, physmem.MaxPageOrder)
		if err != nil {
			freeAll(0, 0)
			return err
		}
		b := uint64(pfn) >> physmem.MaxPageOrder
		got[b] = true
		order = append(order, b)
		lo, hi := b, b+1
		for lo > 0 && got[lo-1] {
			lo--
		}
		for got[hi] {
			hi++
		}
		if hi-lo >= need {
			start := max(lo, b+1-need)
			freeAll(start, start+need)
			h.fdtBlocks = h.fdtBlocks[:0]
			for i := start; i < start+need; i++ {
				h.fdtBlocks = append(h.fdtBlocks, fdtBlock{physmem.PFN(i << physmem.MaxPageOrder), physmem.MaxPageOrder})
			}
			h.fdtBase = physmem.PFN(start << physmem.MaxPageOrder)
			h.fdtPages = need * maxBlock
			return nil
		}
	}
}

// freeFDT frees the FDT buffer.
func (h *KHO) freeFDT() {
	for _, b := range h.fdtBlocks {
		h.mm.FreePages(b.pfn, b.order)
	}
	h.fdtBlocks = nil
	h.fdtBase, h.fdtPages, h.fdtSize = 0, 0, 0
	h.fdtTampered = false
}

// FDT returns the handover FDT while KHO is active: its physical address
// and the blob, which aliases physical memory. ok is false when idle.
func (h *KHO) FDT() (addr physmem.PhysAddr, blob []byte, ok bool) {
	if h.state != Active {
		return 0, nil, false
	}
	return h.fdtBase.Phys(), h.mm.Frames.Span(h.fdtBase, h.fdtPages)[:h.fdtSize], true
}

// FDTBuffer returns the frames allocated for the handover FDT (the buffer
// Activate sized with Estimate, of which the finished blob uses the first
// bytes): ok is false while no buffer is allocated.
func (h *KHO) FDTBuffer() (buf Mem, ok bool) {
	if len(h.fdtBlocks) == 0 {
		return Mem{}, false
	}
	return Mem{Addr: h.fdtBase.Phys(), Size: h.fdtPages << physmem.PageShift}, true
}

// PreserveFolio is kho_preserve_folio(): the folio will be handed over to
// the next kernel. KHO takes one reference on it, which it holds until
// UnpreserveFolio, the abort of the activation that preserved it, or the
// kexec. The tracker records it (and may need memory for that). The folio
// must not lie in KHO scratch, which the next kernel allocates from before
// it knows what was preserved: the caller migrates such folios out first
// (see InScratch). The returned Mem (PAGE_SIZE << order at the folio's
// address) is what a client records in its "mem" property where the
// tracker wants client records (ClientRecords).
//
// A client may preserve while KHO is idle (LUO preserves at
// LIVEUPDATE_SESSION_PRESERVE_FD), inside its DUMP notifier (FDBox), and,
// with a tracker that does not finalize, while KHO is active. Folios
// preserved inside a DUMP belong to that activation: an abort releases
// any its notifier left preserved.
//
// Errors: EBUSY once preservation is closed (Finalized); EINVAL for a
// folio in scratch; EEXIST if already preserved; the tracker's error
// (ENOMEM, or an injected fault), with nothing preserved.
//
// Preconditions: f names an allocated folio the caller holds a reference
// to.
func (h *KHO) PreserveFolio(f physmem.Folio) (Mem, error) {
	h.mustRunning("kho_preserve_folio")
	if h.Finalized() && !h.dumping {
		return Mem{}, errno.EBUSY
	}
	order := h.mm.FolioOrder(f) // checks that f names an allocated folio
	if h.IsPreserved(f) {
		return Mem{}, errno.EEXIST
	}
	if h.InScratch(f.PFN(), 1<<order) {
		return Mem{}, errno.EINVAL
	}
	if err := h.tracker.Preserve(f.PFN(), order); err != nil {
		return Mem{}, err
	}
	h.mm.FolioGet(f)
	if h.preservedBits == nil {
		h.preservedBits = make([]uint64, (h.mm.Memmap.NumPages()+63)/64)
	}
	h.preservedBits[f>>6] |= 1 << (f & 63)
	if order > 0 {
		h.setPreservedOrder(f, uint8(order))
	}
	h.nrPreserved++
	h.k.Work().FoliosSerialized++
	h.countTracker()
	h.preservedPages += 1 << order
	if h.dumping {
		h.dumpPreserved.add(f)
	}
	return FolioMem(f, order), nil
}

// UnpreserveFolio is kho_unpreserve_folio(): it drops a preservation and
// KHO's reference to the folio (which frees it if that was its last
// reference). Errors: EBUSY once preservation is closed (outside the
// abort of a DUMP); EINVAL if f is not preserved.
func (h *KHO) UnpreserveFolio(f physmem.Folio) error {
	h.mustRunning("kho_unpreserve_folio")
	if h.Finalized() && !h.dumping && !h.aborting {
		return errno.EBUSY
	}
	if !h.IsPreserved(f) {
		return errno.EINVAL
	}
	h.unpreserve(f)
	return nil
}

func (h *KHO) unpreserve(f physmem.Folio) {
	order := h.preservedOrder(f)
	h.preservedBits[f>>6] &^= 1 << (f & 63)
	if order > 0 {
		h.setPreservedOrder(f, 0)
	}
	h.nrPreserved--
	h.preservedPages -= 1 << order
	h.tracker.Unpreserve(f.PFN(), order)
	h.mm.FolioPut(f)
}

// countTracker adds the tracker pages allocated since it last looked to
// the live-update work (its record is written into them).
func (h *KHO) countTracker() {
	if n := h.tracker.MetadataFrames(); n > h.trackerSeen {
		w := h.k.Work()
		w.TrackerBytes += (n - h.trackerSeen) * physmem.PageSize
		w.FramesAllocated += n - h.trackerSeen
	}
	h.trackerSeen = h.tracker.MetadataFrames()
}

// orderChunkShift sizes the chunks of KHO.preservedOrders: 4096 frames.
const orderChunkShift = 12

// preservedOrder returns the order recorded for preserved folio f.
func (h *KHO) preservedOrder(f physmem.Folio) uint {
	if c := f >> orderChunkShift; int(c) < len(h.preservedOrders) && h.preservedOrders[c] != nil {
		return uint(h.preservedOrders[c][f&(1<<orderChunkShift-1)])
	}
	return 0
}

// setPreservedOrder records order o for folio f (0: none).
func (h *KHO) setPreservedOrder(f physmem.Folio, o uint8) {
	c := int(f >> orderChunkShift)
	if h.preservedOrders == nil {
		h.preservedOrders = make([][]uint8, h.mm.Memmap.NumPages()>>orderChunkShift+1)
	}
	if h.preservedOrders[c] == nil {
		if o == 0 {
			return
		}
		h.preservedOrders[c] = make([]uint8, 1<<orderChunkShift)
	}
	h.preservedOrders[c][f&(1<<orderChunkShift-1)] = o
}

// IsPreserved reports whether f is preserved for the next kernel.
func (h *KHO) IsPreserved(f physmem.Folio) bool {
	w := uint64(f >> 6)
	return w < uint64(len(h.preservedBits)) && h.preservedBits[w]&(1<<(f&63)) != 0
}

// PreservedPages returns the frames of the folios preserved for the next
// kernel.
func (h *KHO) PreservedPages() uint64 { return h.preservedPages }

// PreservedFolios returns the number of folios preserved for the next
// kernel.
func (h *KHO) PreservedFolios() int { return h.nrPreserved }

// forEachPreserved calls fn for every preserved folio with its recorded
// order, in address order (a scan of the bitmap).
func (h *KHO) forEachPreserved(fn func(f physmem.Folio, order uint)) {
	if h.nrPreserved == 0 {
		return
	}
	for w, word := range h.preservedBits {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			f := physmem.Folio(uint64(w)<<6 | uint64(b))
			fn(f, h.preservedOrder(f))
		}
	}
}

// preservedSeq yields every preserved folio with its order, in address
// order.
func (h *KHO) preservedSeq() iter.Seq2[physmem.Folio, uint] {
	return func(yield func(physmem.Folio, uint) bool) {
		if h.nrPreserved == 0 {
			return
		}
		for w, word := range h.preservedBits {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				f := physmem.Folio(uint64(w)<<6 | uint64(b))
				if !yield(f, h.preservedOrder(f)) {
					return
				}
			}
		}
	}
}

func (h *KHO) preservedSorted() []physmem.Folio {
	out := make([]physmem.Folio, 0, h.nrPreserved)
	h.forEachPreserved(func(f physmem.Folio, _ uint) { out = append(out, f) })
	return out
}

// InScratch reports whether any of the nr frames from pfn lies in KHO
// scratch (a MIGRATE_CMA pageblock): memory the next kernel allocates from
// blindly, so nothing preserved may live there.
func (h *KHO) InScratch(pfn physmem.PFN, nr uint64) bool {
	for p := pfn &^ (physmem.PageblockNrPages - 1); p < pfn+physmem.PFN(nr); p += physmem.PageblockNrPages {
		if h.mm.Zone.PageblockMigratetype(p) == physmem.MigrateCMA {
			return true
		}
	}
	return false
}
