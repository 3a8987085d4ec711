package kexec

import (
	"iter"
	"slices"

	"khosim/fdt"
	"khosim/kbuild"
	"khosim/physmem"
)

// Tracker is how a kernel's KHO records the memory it preserves, and how
// the kernel it hands over to finds that memory again before it allocates
// anything outside scratch. KHO has had three (kbuild.Tracker):
//
//   - arrays, KHO v4 (February 2025), on which the FDBox RFC is built: no
//     central record; every client writes "mem" properties (arrays of
//     struct kho_mem) in the FDT, and the next kernel walks the whole
//     tree for them (tracker_arrays.go);
//   - bitmaps, mainline 6.16-6.19: kho_out.track, per-order bitmaps of
//     preserved folios, serialized at kho_finalize() into linked chunk
//     pages that the root's "preserved-memory-map" points at
//     (kho_mem_serialize / kho_mem_deserialize);
//   - radix, the 2026 "stateless" KHO (root "kho-v2"): one radix tree of
//     4 KiB pages whose leaves are bitmaps, updated at every preserve
//     (kho_radix_add_page), read by kho_radix_walk_tree; no finalize.
//
// A Tracker belongs to one kernel. Its outgoing half is told of every
// folio the KHO core preserves and may keep its record in pages of its
// own (allocated from the kernel's allocator, so they cost frames and can
// fail); those pages are handed over with the preserved folios
// (MetadataPages) and counted in frames(tracker). Its incoming half runs
// in the next kernel, from kho_populate, while memblock allocates from
// scratch only: it recognises the handover's root and yields the
// preserved folios it describes, reading the FDT and physical memory and
// nothing else. The tracker pages of the previous kernel are not
// reserved: once read they become free memory at memblock_free_all, as in
// Linux.
//
// A new tracker is a new file of this package with an init function that
// calls RegisterTracker.
type Tracker interface {
	// Name is the tracker's kho= value.
	Name() kbuild.Tracker
	// Compatible is the root node's "compatible" in this tracker's
	// handovers ("kho-v1", "kho-v2").
	Compatible() string
	// ClientRecords reports whether the clients' "mem" properties are
	// the record (KHO v4): a client that preserves a folio must then
	// describe it in a "mem" property of what it writes to the FDT.
	ClientRecords() bool
	// Finalizes reports whether preservation closes at finalize (`kho
	// activate`): PreserveFolio and UnpreserveFolio fail with EBUSY
	// while KHO is active, as kho_preserve_folio does after
	// kho_finalize(). The radix tracker has no finalize.
	Finalizes() bool

	// Preserve records the folio of the given order at pfn. It may
	// allocate tracker memory and fail with that allocation's errno;
	// nothing is recorded then.
	Preserve(pfn physmem.PFN, order uint) error
	// Unpreserve forgets a folio Preserve recorded.
	Unpreserve(pfn physmem.PFN, order uint)

	// EstimateRoot bounds the bytes WriteRoot adds to the FDT.
	EstimateRoot() uint64
	// WriteRoot writes the tracker's root properties, right after the
	// root's "compatible" and before any client node (properties precede
	// subnodes): placeholders where the value is known only at Finalize.
	WriteRoot(w *fdt.Writer) error
	// Finalize runs once every client has written its nodes, before the
	// root node ends: the tracker serializes its record
	// (kho_mem_serialize) and fills in its root placeholders. It may
	// allocate and fail; the KHO core then calls Unfinalize.
	Finalize() error
	// Unfinalize frees whatever Finalize allocated (kho_abort); the
	// record of preserved folios stays.
	Unfinalize()
	// SubtreeProperty names the u64 property of a kho_add_subtree()
	// node that holds the subtree's physical address: "fdt" in kho-v1,
	// "preserved-data" in kho-v2.
	SubtreeProperty() string

	// MetadataPages yields the blocks of frames holding the tracker's
	// record, each an allocated block the tracker owns (one reference),
	// in address order: the kexec keeps them, frames(tracker) counts them
	// and the audit reports them as the tracker's.
	MetadataPages() iter.Seq[Mem]
	// MetadataFrames counts the frames MetadataPages yields.
	MetadataFrames() uint64

	// Recognise runs in the next kernel on the handover FDT before
	// anything else of it is read: "" if the root is of this tracker's
	// layout (its compatible and the properties it needs), else why not
	// (a root of another layout, even with the same compatible, must be
	// refused, never misread).
	Recognise(f *fdt.FDT) string
	// Validate checks the structure of the handover's record before
	// anything of it is used: every page it links is inside memory,
	// outside scratch and the FDT, visited once (no cycle), and there
	// are no more of them than the memory they describe could need. An
	// error means the record cannot be trusted at all: the handover is
	// refused whole (nothing reserved, every frame outside boot's own
	// reservations free). Records kept in the FDT (arrays) have no
	// structure beyond the FDT's, which fdt.Open checked.
	Validate(f *fdt.FDT) error
	// Collect yields every range the previous kernel preserved, as the
	// handover's record describes it, reading the FDT and physical
	// memory as the iteration goes (a 4 GiB memfd of 4 KiB pages has a
	// million ranges: nothing is materialised). It runs only on a record
	// Validate accepted. A malformed entry is reported through bad (with
	// the path or address of what holds it) and skipped. The KHO core
	// validates each range before it reserves it and calls Collect twice
	// when the first pass finds a range to refuse, so Collect must be
	// repeatable.
	Collect(f *fdt.FDT, bad func(where string, err error)) iter.Seq[Mem]

	// Check is the tracker's part of the audit: its record describes
	// exactly the folios the KHO core preserves (preserved, in address
	// order, with their orders), and its pages are consistent. It is
	// called while KHO runs, active or not.
	Check(preserved iter.Seq2[physmem.Folio, uint]) error
	// Dump describes the record for violations.
	Dump() string
}

// TrackerInfo registers a tracker.
type TrackerInfo struct {
	Name kbuild.Tracker
	// Root describes the root of this tracker's handovers: its
	// compatible and what tells its layout apart ("kho-v1 +
	// preserved-memory-map").
	Root string
	// New makes the tracker of a kernel's KHO, when the kernel boots
	// (from kexec.New, during early boot).
	New func(h *KHO) Tracker
}

var trackers []TrackerInfo

// RegisterTracker makes a tracker available to kernel builds (kho=NAME).
// Called from init functions; a name registered twice panics.
func RegisterTracker(info TrackerInfo) {
	if _, dup := LookupTracker(info.Name); dup || info.New == nil {
		panic("kexec: RegisterTracker: duplicate or incomplete tracker " + string(info.Name))
	}
	trackers = append(trackers, info)
}

// LookupTracker returns the registered tracker of that name.
func LookupTracker(name kbuild.Tracker) (TrackerInfo, bool) {
	i := slices.IndexFunc(trackers, func(t TrackerInfo) bool { return t.Name == name })
	if i < 0 {
		return TrackerInfo{}, false
	}
	return trackers[i], true
}

// Trackers lists the registered trackers in registration order.
func Trackers() []TrackerInfo { return slices.Clone(trackers) }
