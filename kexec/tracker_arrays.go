package kexec

import (
	"errors"
	"fmt"
	"iter"

	"khosim/fdt"
	"khosim/kbuild"
	"khosim/physmem"
)

// arrays is KHO v4's tracker (February 2025, the FDBox RFC's base): there
// is no central record. The client that preserves a folio describes it in
// a "mem" property (an array of struct kho_mem) of a node it writes, and
// the next kernel walks the whole tree for "mem" properties
// (kho_walk_tree / kho_reserve_previous_mem in v4). So the outgoing hooks
// record nothing and the tracker has no pages; the audit checks that the
// active FDT describes exactly the preserved folios.
type arrays struct{ h *KHO }

// MemPropName is the property KHO v4 collects.
const MemPropName = "mem"

func init() {
	RegisterTracker(TrackerInfo{Name: kbuild.TrackerArrays, Root: KHOCompatible + " (\"mem\" properties, no " + PreservedMemoryMapProp + ")", New: func(h *KHO) Tracker { return arrays{h} }})
}

func (arrays) Name() kbuild.Tracker             { return kbuild.TrackerArrays }
func (arrays) Compatible() string               { return KHOCompatible }
func (arrays) ClientRecords() bool              { return true }
func (arrays) Finalizes() bool                  { return true }
func (arrays) Preserve(physmem.PFN, uint) error { return nil }
func (arrays) Unpreserve(physmem.PFN, uint)     {}
func (arrays) EstimateRoot() uint64             { return 0 }
func (arrays) WriteRoot(*fdt.Writer) error      { return nil }
func (arrays) Finalize() error                  { return nil }
func (arrays) Unfinalize()                      {}
func (arrays) SubtreeProperty() string          { return "fdt" }
func (arrays) MetadataPages() iter.Seq[Mem]     { return func(func(Mem) bool) {} }
func (arrays) MetadataFrames() uint64           { return 0 }
func (arrays) Validate(*fdt.FDT) error          { return nil }
func (arrays) Dump() string                     { return "arrays: the clients' \"mem\" properties are the record" }

// Recognise implements Tracker: the root is "kho-v1" without a
// "preserved-memory-map" (that is mainline's bitmap layout, which shares
// the compatible).
func (arrays) Recognise(f *fdt.FDT) string {
	if ok, err := f.NodeCheckCompatible(f.Root(), KHOCompatible); err != nil || !ok {
		return fmt.Sprintf("root node is not compatible with %q", KHOCompatible)
	}
	if _, err := f.GetProp(f.Root(), PreservedMemoryMapProp); err == nil {
		return fmt.Sprintf("root has %q: the kho-v1 bitmap layout (kho=bitmaps), not the kho_mem arrays this kernel reads", PreservedMemoryMapProp)
	}
	return ""
}

// Collect implements Tracker: every "mem" property of every node, in blob
// order. A property whose length is not a multiple of sizeof(struct
// kho_mem) is reported and skipped whole.
func (arrays) Collect(f *fdt.FDT, bad func(string, error)) iter.Seq[Mem] {
	return CollectMemProps(f, bad)
}

// CollectMemProps yields the kho_mem ranges of every "mem" property of f,
// in blob order, reporting malformed properties through bad (the arrays
// tracker's Collect).
func CollectMemProps(f *fdt.FDT, bad func(string, error)) iter.Seq[Mem] {
	return func(yield func(Mem) bool) {
		stop := errors.New("stop")
		_ = f.Walk(func(node int, name string, value []byte) error {
			if name != MemPropName {
				return nil
			}
			if len(value)%MemSize != 0 {
				path, _ := f.GetPath(node)
				bad(path, fmt.Errorf("\"mem\" property of %d bytes is not a kho_mem array", len(value)))
				return nil
			}
			for i := range len(value) / MemSize {
				if !yield(MemAt(value, i)) {
					return stop
				}
			}
			return nil
		})
	}
}

// Check implements Tracker: while KHO is active (and the FDT was not
// corrupted on purpose), the ranges the "mem" properties describe are
// exactly the preserved folios, each once, so the next kernel will
// reserve every one of them and nothing else. Before activation the
// record does not exist yet.
func (t arrays) Check(preserved iter.Seq2[physmem.Folio, uint]) error {
	h := t.h
	if h.state != Active || h.fdtTampered {
		return nil
	}
	_, blob, _ := h.FDT()
	f, err := fdt.Open(blob)
	if err != nil {
		return h.violation("kho-fdt-describes-preserved", "the active FDT does not check: %v", err)
	}
	var malformed error
	seen := map[physmem.Folio]bool{}
	for m := range CollectMemProps(f, func(path string, err error) {
		if malformed == nil {
			malformed = fmt.Errorf("%s: %v", path, err)
		}
	}) {
		fo := physmem.Folio(m.PFN())
		if !h.IsPreserved(fo) || FolioMem(fo, h.preservedOrder(fo)) != m {
			return h.violation("kho-fdt-describes-preserved", "the FDT describes %v, which is not a preserved folio", m)
		}
		if seen[fo] {
			return h.violation("kho-fdt-describes-preserved", "the FDT describes %v twice", m)
		}
		seen[fo] = true
	}
	if malformed != nil {
		return h.violation("kho-fdt-describes-preserved", "malformed preservation record: %v", malformed)
	}
	for fo, order := range preserved {
		if !seen[fo] {
			return h.violation("kho-fdt-describes-preserved",
				"preserved %v (order %d) is not described in the FDT: the next kernel would not reserve it", fo, order)
		}
	}
	return nil
}

// PreservedMemoryMapProp is the root property of mainline's trackers
// (KHO_FDT_MEMORY_MAP_PROP_NAME): the physical address of the first chunk
// of the bitmap layout, or of the radix tree's root.
const PreservedMemoryMapProp = "preserved-memory-map"
