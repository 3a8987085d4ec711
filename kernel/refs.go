package kernel

import "khosim/physmem"

// RefVisitor receives the references an owner holds, for the audit behind
// CheckInvariants: the sum over all owners must equal each object's
// reference count, and every used frame must have an owner.
type RefVisitor interface {
	// File reports n references to f held by who.
	File(f *File, n int64, who string)
	// Folio reports n references to the folio headed at pfn held by who.
	Folio(pfn physmem.PFN, n int64, who string)
	// Frames reports that who owns the nr frames from pfn that are not
	// folios with references (kernel data, the KHO FDT, early memblock
	// allocations).
	Frames(pfn physmem.PFN, nr uint64, who string)
}

type refOwner struct {
	name  string
	visit func(v RefVisitor)
}

// RegisterRefOwner adds a subsystem that holds references to files,
// folios or frames (FDBox boxes, KHO preservation, ...). Its visit
// function must report every reference it holds.
func (k *Kernel) RegisterRefOwner(name string, visit func(v RefVisitor)) {
	k.mustAlive()
	k.owners = append(k.owners, refOwner{name, visit})
}
