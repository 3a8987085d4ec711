package kexec

import (
	"fmt"
	"iter"
	"slices"

	"khosim/errno"
	"khosim/fdt"
	"khosim/physmem"
)

// Subtree is a client blob registered with kho_add_subtree(): mainline's
// way for a client (LUO) to hand over a blob of its own — an FDT in
// preserved pages — by name. The KHO core writes one root subnode per
// subtree holding the blob's physical address in the tracker's
// SubtreeProperty ("fdt" in kho-v1, "preserved-data" in kho-v2); the next
// kernel finds it with GetSubtree (kho_retrieve_subtree()).
//
// The blob's pages must be preserved folios of the client. Under a tracker
// with client records (KHO v4, which has no kho_add_subtree at all: a
// khosim extension so that every front-end works with every tracker), the
// subtree's node also carries a "mem" property: Records, every range the
// client preserved, blob included.
type Subtree struct {
	Name string
	// Blob is the blob's physical range (its pages, from the first).
	Blob Mem
	// Size is the blob's size in bytes (at most Blob.Size).
	Size uint64
	// Records yields every range the client preserved, for trackers with
	// client records; nil for none but the blob.
	Records func() iter.Seq[Mem]
}

func (st Subtree) records() iter.Seq[Mem] {
	if st.Records != nil {
		return st.Records()
	}
	return func(yield func(Mem) bool) { yield(st.Blob) }
}

// estimate bounds the subtree node's bytes.
func (st Subtree) estimate() uint64 {
	n := uint64(64 + len(st.Name) + 16)
	for range st.records() {
		n += MemSize
	}
	return n
}

// AddSubtree is kho_add_subtree(): st is handed over by the next
// activation (or the kexec's own finalize). Errors: EINVAL for a bad name
// or an empty blob; EEXIST for a name in use; EBUSY while KHO is active
// (the FDT is written).
func (h *KHO) AddSubtree(st Subtree) error {
	h.mustRunning("kho_add_subtree")
	if st.Name == "" || len(st.Name) > 64 || st.Blob.Size == 0 || st.Size > st.Blob.Size {
		return errno.EINVAL
	}
	for _, c := range st.Name {
		if c == '/' || c == 0 {
			return errno.EINVAL
		}
	}
	if h.state == Active {
		return errno.EBUSY
	}
	if slices.ContainsFunc(h.subtrees, func(o Subtree) bool { return o.Name == st.Name }) {
		return errno.EEXIST
	}
	h.subtrees = append(h.subtrees, st)
	return nil
}

// RemoveSubtree is kho_remove_subtree(). Errors: ENOENT if no subtree has
// that name; EBUSY while KHO is active.
func (h *KHO) RemoveSubtree(name string) error {
	h.mustRunning("kho_remove_subtree")
	if h.state == Active {
		return errno.EBUSY
	}
	i := slices.IndexFunc(h.subtrees, func(o Subtree) bool { return o.Name == name })
	if i < 0 {
		return errno.ENOENT
	}
	h.subtrees = slices.Delete(h.subtrees, i, i+1)
	return nil
}

// writeSubtree writes st's root subnode.
func (h *KHO) writeSubtree(w *fdt.Writer, st Subtree) error {
	if err := w.BeginNode(st.Name); err != nil {
		return err
	}
	if err := w.PropertyLE64(h.tracker.SubtreeProperty(), uint64(st.Blob.Addr)); err != nil {
		return err
	}
	if err := w.PropertyLE64("size", st.Size); err != nil {
		return err
	}
	if h.tracker.ClientRecords() {
		var mems []Mem
		for m := range st.records() {
			mems = append(mems, m)
		}
		b, err := w.PropertyPlaceholder(MemPropName, MemSize*len(mems))
		if err != nil {
			return err
		}
		PutMems(b, mems)
	}
	return w.EndNode()
}

// GetSubtree is kho_retrieve_subtree(): the blob the previous kernel
// registered under name, as its root subnode describes it. ENOENT when
// this kernel was handed no such subtree (or no handover); EINVAL when
// the node is malformed or the blob lies outside memory.
func (h *KHO) GetSubtree(name string) (blob physmem.PhysAddr, size uint64, err error) {
	f := h.in.fdt
	if f == nil {
		return 0, 0, errno.ENOENT
	}
	off, err := f.SubnodeOffset(f.Root(), name)
	if err != nil {
		return 0, 0, errno.ENOENT
	}
	addr, err := f.GetPropLE64(off, h.tracker.SubtreeProperty())
	if err != nil {
		return 0, 0, fmt.Errorf("kho: subtree %q: no %q property: %w", name, h.tracker.SubtreeProperty(), errno.EINVAL)
	}
	size, err = f.GetPropLE64(off, "size")
	if err != nil || size == 0 || addr+size < addr || !h.mm.Memblock.IsRegionMemory(physmem.PhysAddr(addr), size) {
		return 0, 0, fmt.Errorf("kho: subtree %q: bad blob %#x+%#x: %w", name, addr, size, errno.EINVAL)
	}
	return physmem.PhysAddr(addr), size, nil
}

// Subtrees lists the subtrees registered for the next handover.
func (h *KHO) Subtrees() []Subtree { return slices.Clone(h.subtrees) }
