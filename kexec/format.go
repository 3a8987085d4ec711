package kexec

import (
	"errors"
	"fmt"
	"iter"

	"khosim/fdt"
)

// PreservedFormat is how a kernel records the memory it preserves for the
// next kernel, and how the next kernel finds that memory again before it
// allocates anything outside scratch.
//
// KHO v4 (Mike Rapoport, February 2025), on which the FDBox RFC is built,
// has no central record: every client writes "mem" properties (arrays of
// struct kho_mem) wherever it likes in the FDT, and the next kernel walks
// the whole tree to collect them (MemProps). Mainline KHO later replaced
// that with a bitmap of preserved folios referenced from the root node's
// "preserved-memory-map" property (kho_preserve_folio() /
// kho_mem_deserialize()); a second implementation of this interface can
// model it so that the two can be compared.
//
// The outgoing methods are called by the KHO core of the kernel that
// activates; Collect by the KHO core of the next kernel, from kho_populate.
type PreservedFormat interface {
	// Name identifies the format in messages and statistics.
	Name() string

	// Preserve and Unpreserve are told of every folio KHO starts or stops
	// preserving (kho_preserve_folio, and its undo at abort).
	Preserve(m Mem)
	Unpreserve(m Mem)

	// EstimateRoot bounds the bytes WriteRoot and Finalize add to the FDT.
	EstimateRoot() uint64
	// WriteRoot runs right after the root node's "compatible" property,
	// before any notifier: a format that needs root properties writes them
	// (or placeholders for them) here, since properties must precede
	// subnodes.
	WriteRoot(w *fdt.Writer) error
	// Finalize runs after every DUMP notifier succeeded, before the root
	// node ends: the format fills in what only the complete set of
	// preserved folios determines.
	Finalize() error
	// Reset forgets every recorded preservation (abort, deactivate).
	Reset()

	// Collect yields every range the previous kernel preserved, as the
	// handover describes them, in FDT order, read from the FDT as the
	// iteration goes (nothing is materialised: a 4 GiB memfd of 4 KiB
	// pages has a million ranges). Malformed records are reported through
	// bad (with the path of the node holding them), once per iteration,
	// and skipped; Collect itself never fails on a corrupt FDT. The KHO
	// core validates each range before it reserves it.
	Collect(f *fdt.FDT, bad func(path string, err error)) iter.Seq[Mem]
}

// MemProps is KHO v4's format: preserved ranges are the struct kho_mem
// arrays of every property named "mem", in any node. The client that
// writes a node writes its "mem" property itself (the RFC's shmem node),
// so the outgoing hooks do nothing; the next kernel collects them with a
// full-tree walk (kho_walk_tree / kho_reserve_previous_mem in v4).
type MemProps struct{}

// MemPropName is the property KHO v4 collects.
const MemPropName = "mem"

// Name implements PreservedFormat.
func (MemProps) Name() string { return "mem-properties" }

// Preserve implements PreservedFormat: the client's "mem" property is the
// record.
func (MemProps) Preserve(Mem) {}

// Unpreserve implements PreservedFormat.
func (MemProps) Unpreserve(Mem) {}

// EstimateRoot implements PreservedFormat: nothing in the root.
func (MemProps) EstimateRoot() uint64 { return 0 }

// WriteRoot implements PreservedFormat: nothing in the root.
func (MemProps) WriteRoot(*fdt.Writer) error { return nil }

// Finalize implements PreservedFormat.
func (MemProps) Finalize() error { return nil }

// Reset implements PreservedFormat.
func (MemProps) Reset() {}

// Collect implements PreservedFormat: every "mem" property of every node,
// in blob order. A property whose length is not a multiple of
// sizeof(struct kho_mem) is reported and skipped whole.
func (MemProps) Collect(f *fdt.FDT, bad func(path string, err error)) iter.Seq[Mem] {
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
