package kexec

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"khosim/errno"
	"khosim/physmem"
)

// Mem is struct kho_mem of KHO v4 (include/linux/kexec_handover.h):
//
//	struct kho_mem { phys_addr_t addr; phys_addr_t size; };
//
// one physically contiguous preserved range. On the wire (a "mem"
// property) it is two little-endian u64s, as the x86-64 kernel memcpys the
// struct into the FDT with fdt_property(fdt, "mem", mems, sizeof(*mems) *
// nr).
type Mem struct {
	Addr physmem.PhysAddr
	Size uint64
}

// MemSize is sizeof(struct kho_mem).
const MemSize = 16

// End returns the first address after the range.
func (m Mem) End() physmem.PhysAddr { return m.Addr + physmem.PhysAddr(m.Size) }

// PFN returns the first frame of the range.
func (m Mem) PFN() physmem.PFN { return m.Addr.PFN() }

// NrPages returns the frames the range covers (it must be page aligned).
func (m Mem) NrPages() uint64 { return m.Size >> physmem.PageShift }

// Overlaps reports whether the two ranges share a byte.
func (m Mem) Overlaps(o Mem) bool { return m.Addr < o.End() && o.Addr < m.End() }

func (m Mem) String() string {
	return fmt.Sprintf("[%#x-%#x]", uint64(m.Addr), uint64(m.Addr)+m.Size-1)
}

// FolioMem returns the kho_mem that describes a whole folio of the given
// order: PAGE_SIZE << order bytes at the folio's first frame.
func FolioMem(f physmem.Folio, order uint) Mem {
	return Mem{Addr: f.PFN().Phys(), Size: physmem.PageSize << order}
}

// FolioOrder returns the folio order a range has when it is exactly one
// naturally aligned folio (size PAGE_SIZE << order, address aligned to it,
// order <= MaxPageOrder), and false otherwise.
func (m Mem) FolioOrder() (uint, bool) {
	if m.Size < physmem.PageSize || bits.OnesCount64(m.Size) != 1 {
		return 0, false
	}
	order := uint(bits.TrailingZeros64(m.Size)) - physmem.PageShift
	if order > physmem.MaxPageOrder || uint64(m.Addr)&(m.Size-1) != 0 {
		return 0, false
	}
	return order, true
}

// EncodeMems returns the "mem" property value for mems: little-endian
// {addr, size} pairs.
func EncodeMems(mems []Mem) []byte {
	b := make([]byte, MemSize*len(mems))
	PutMems(b, mems)
	return b
}

// PutMems writes mems into b, which must hold MemSize*len(mems) bytes (a
// property placeholder, so that a large array is written in place).
func PutMems(b []byte, mems []Mem) {
	le := binary.LittleEndian
	for i, m := range mems {
		le.PutUint64(b[MemSize*i:], uint64(m.Addr))
		le.PutUint64(b[MemSize*i+8:], m.Size)
	}
}

// DecodeMems parses a "mem" property value. It fails with EBADMSG when the
// length is not a multiple of sizeof(struct kho_mem), as the RFC's
// shmem_fdbox_kho_recover() checks ("invalid mems property").
func DecodeMems(b []byte) ([]Mem, error) {
	if len(b)%MemSize != 0 {
		return nil, fmt.Errorf("kho: \"mem\" property of %d bytes is not a kho_mem array: %w", len(b), errno.EBADMSG)
	}
	le := binary.LittleEndian
	out := make([]Mem, len(b)/MemSize)
	for i := range out {
		out[i] = Mem{Addr: physmem.PhysAddr(le.Uint64(b[MemSize*i:])), Size: le.Uint64(b[MemSize*i+8:])}
	}
	return out, nil
}

// MemAt decodes the i-th kho_mem of a "mem" property value without
// allocating; i must be below len(b)/MemSize.
func MemAt(b []byte, i int) Mem {
	le := binary.LittleEndian
	return Mem{Addr: physmem.PhysAddr(le.Uint64(b[MemSize*i:])), Size: le.Uint64(b[MemSize*i+8:])}
}
