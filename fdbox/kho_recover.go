package fdbox

import (
	"khosim/fdt"
	"khosim/kernel"
)

// RecoverStats counts what fdbox_kho_recover found in the handover.
type RecoverStats struct {
	Boxes        int // box nodes recreated as sealed boxes
	BadBoxes     int // box nodes skipped (bad compatible, name, duplicate)
	Pending      int // fd nodes queued for a handler registered later (every memfd)
	SkippedNodes int // fd nodes without a name or compatible
	// Set by the memfd handler, whenever it runs: memfd nodes revived and
	// memfd nodes that failed (skipped, their memory returned).
	FDs, FailedFDs int
}

// Recovered returns the counters of this kernel's recovery.
func (c *KHOClient) Recovered() RecoverStats { return c.recovered }

// recover is fdbox_kho_recover(): for a kernel booted with a handover, it
// recreates every box node under /fdbox as a sealed box
// (Driver.CreateRecoveredBox) and hands each fd node to Driver.RecoverFD,
// which recovers it at once if a handler for its compatible is registered
// and queues it otherwise (the memfd handler registers at late initcall,
// so memfds always take the pending path, as in the RFC).
//
// Nothing here can make the kernel fail: a missing /fdbox, a bad
// compatible or a node that fails to recover is reported and skipped. The
// memory of a skipped node is returned by its handler, or at the latest by
// KHO's late pass (kexec.KHO.ReturnUnclaimed).
//
// Differs from the RFC: a box node with a bad compatible is skipped as in
// the RFC, but its name is not created; fd nodes are looked up by name
// with fdt_get_name's bounds checks.
func (c *KHOClient) recover() {
	f := c.kho.GetFDT()
	if f == nil {
		return // not a KHO boot
	}
	k := c.d.k
	off, err := f.PathOffset("/" + FdboxNode)
	if err != nil {
		k.Printk(kernel.LogDebug, "fdbox: could not find '/%s' in DT", FdboxNode)
		return
	}
	if ok, _ := f.NodeCheckCompatible(off, FdboxCompatible); !ok {
		k.Printk(kernel.LogErr, "fdbox: invalid top level compatible")
		return
	}
	for boxOff := range f.Subnodes(off) {
		name, err := f.GetName(boxOff)
		if err != nil {
			c.recovered.BadBoxes++
			k.Printk(kernel.LogErr, "fdbox: box node at offset %d has no name: %v", boxOff, err)
			continue
		}
		if ok, _ := f.NodeCheckCompatible(boxOff, BoxCompatible); !ok {
			c.recovered.BadBoxes++
			k.Printk(kernel.LogErr, "fdbox: invalid compatible for box '%s'", name)
			continue
		}
		box, err := c.d.CreateRecoveredBox(name)
		if err != nil {
			c.recovered.BadBoxes++
			continue // CreateRecoveredBox logged why
		}
		c.recovered.Boxes++
		k.Printk(kernel.LogInfo, "fdbox: recovered box %q", name)
		for fdOff := range f.Subnodes(boxOff) {
			c.recoverFD(f, box, fdOff)
		}
	}
}

// recoverFD is the inner loop of fdbox_kho_recover() for one fd node.
func (c *KHOClient) recoverFD(f *fdt.FDT, box *Box, off int) {
	k := c.d.k
	name, err := f.GetName(off)
	if err != nil {
		c.recovered.SkippedNodes++
		k.Printk(kernel.LogWarn, "fdbox: fd node at offset %d of box '%s' has no name. Skipping.", off, box.Name())
		return
	}
	compat, err := f.GetPropStringList(off, "compatible")
	if err != nil || len(compat) == 0 {
		c.recovered.SkippedNodes++
		k.Printk(kernel.LogWarn, "fdbox: failed to get compatible for FD '%s'. Skipping.", name)
		return
	}
	p := PendingFD{
		Name:       name,
		Compatible: compat[0],
		Node:       FDTNode{FDT: f.Blob(), Offset: off},
		Discard:    func() { c.returnNodeMem(f, off) },
	}
	if bfd, err := c.d.RecoverFD(box, p); err == nil && bfd == nil {
		c.recovered.Pending++
	}
}

// returnNodeMem returns to the allocator every preserved range described
// by "mem" properties in the subtree at off that is still reserved: the
// node will never be recovered (its box was deleted while it was
// pending). Ranges already claimed or returned are left alone.
func (c *KHOClient) returnNodeMem(f *fdt.FDT, off int) {
	c.kho.ReturnNodeMem(f, off)
}

// fdtOf returns the parsed FDT a node refers to: KHO's own copy when the
// node points into the handover (always, for nodes fdbox_kho_recover
// queued), otherwise a fresh parse of the blob.
func (c *KHOClient) fdtOf(node FDTNode) (*fdt.FDT, error) {
	if f := c.kho.GetFDT(); f != nil {
		b := f.Blob()
		if len(b) > 0 && len(node.FDT) > 0 && &b[0] == &node.FDT[0] && len(b) == len(node.FDT) {
			return f, nil
		}
	}
	return fdt.Open(node.FDT)
}
