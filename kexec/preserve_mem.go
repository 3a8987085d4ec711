package kexec

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"khosim/errno"
	"khosim/physmem"
)

// This file is KHO's helpers for clients that serialize into preserved
// memory rather than into the FDT (mainline's LUO and memfd_luo):
// kho_alloc_preserve / kho_unpreserve_free / kho_restore_free for a small
// blob, and kho_preserve_vmalloc / kho_unpreserve_vmalloc /
// kho_restore_vmalloc for a large array spread over order-0 pages, whose
// page list is a chain of struct kho_vmalloc_chunk pages
// (include/linux/kho/abi/kexec_handover.h).

// AllocPreserve is kho_alloc_preserve(): a zeroed, physically contiguous
// block of at least size bytes (one folio of get_order(size), GFP_KERNEL,
// so never in scratch), preserved for the next kernel. It returns the
// block's physical address and its bytes (which alias physical memory).
//
// Errors: EINVAL for a size of 0 or beyond MAX_PAGE_ORDER; ENOMEM (or the
// page_alloc fault) from the allocation; PreserveFolio's errors (EBUSY
// once preservation is closed). Nothing is allocated then.
func (h *KHO) AllocPreserve(size uint64) (physmem.PhysAddr, []byte, error) {
	h.mustRunning("kho_alloc_preserve")
	if size == 0 {
		return 0, nil, errno.EINVAL
	}
	order := uint(bits.Len64((size - 1) >> physmem.PageShift))
	if order > physmem.MaxPageOrder {
		return 0, nil, errno.EINVAL
	}
	f, err := h.mm.FolioAlloc(physmem.GFPKernel, order)
	if err != nil {
		return 0, nil, err
	}
	b := h.mm.Frames.Span(f.PFN(), 1<<order)
	clear(b)
	if _, err := h.PreserveFolio(f); err != nil {
		h.mm.FolioPut(f)
		return 0, nil, err
	}
	h.mm.FolioPut(f) // KHO's reference keeps it
	h.k.Work().FramesAllocated += 1 << order
	return f.PFN().Phys(), b, nil
}

// UnpreserveFree is kho_unpreserve_free(): the block AllocPreserve
// returned is unpreserved and freed. Errors: UnpreserveFolio's.
func (h *KHO) UnpreserveFree(phys physmem.PhysAddr) error {
	return h.UnpreserveFolio(physmem.Folio(phys.PFN()))
}

// ClaimAt is kho_restore_folio(phys) for a client that knows where a
// preserved folio starts but not its size (a blob the previous kernel
// pointed it at): the incoming range that starts at phys is claimed
// whole (ClaimMem). It returns the folio, with one reference the caller
// owns, and its order.
//
// Errors: EINVAL if no preserved range starts at phys; ClaimMem's.
func (h *KHO) ClaimAt(phys physmem.PhysAddr) (physmem.Folio, uint, error) {
	h.mustRunning("kho_restore_folio")
	i := h.findStart(phys)
	if i < 0 {
		return 0, 0, fmt.Errorf("kho: no preserved range starts at %#x: %w", uint64(phys), errno.EINVAL)
	}
	m := h.in.ranges[i].mem()
	order, ok := m.FolioOrder()
	if !ok {
		return 0, 0, fmt.Errorf("kho: %v is not one folio: %w", m, errno.EINVAL)
	}
	f, err := h.ClaimMem(m)
	return f, order, err
}

// ReturnAt returns the incoming range that starts at phys (kho_return_mem
// for a client that knows only where a block starts). EINVAL if none
// does; ReturnMem's errors.
func (h *KHO) ReturnAt(phys physmem.PhysAddr) error {
	h.mustRunning("kho_return_mem")
	i := h.findStart(phys)
	if i < 0 {
		return fmt.Errorf("kho: no preserved range starts at %#x: %w", uint64(phys), errno.EINVAL)
	}
	return h.ReturnMem(h.in.ranges[i].mem())
}

// findStart returns the index of the incoming range that starts at phys,
// or -1.
func (h *KHO) findStart(phys physmem.PhysAddr) int {
	if !phys.PageAligned() {
		return -1
	}
	pfn := uint64(phys.PFN())
	rs := h.in.ranges
	lo, hi := 0, len(rs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint64(rs[mid].pfn) < pfn {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(rs) && uint64(rs[lo].pfn) == pfn {
		return lo
	}
	return -1
}

// RestoreFree is kho_restore_free(): the block at phys is claimed and
// freed (the client read it). Errors: ClaimAt's.
func (h *KHO) RestoreFree(phys physmem.PhysAddr) error {
	f, _, err := h.ClaimAt(phys)
	if err != nil {
		return err
	}
	h.mm.FolioPut(f)
	return nil
}

// KHOVmalloc is struct kho_vmalloc: where a preserved vmalloc area's page
// list starts, how many pages it has, its flags and page order. On the
// wire it is 16 bytes: u64 first, u32 total_pages, u16 flags, u16 order.
type KHOVmalloc struct {
	First      physmem.PhysAddr
	TotalPages uint32
	Flags      uint16
	Order      uint16
}

// KHOVmallocSize is sizeof(struct kho_vmalloc).
const KHOVmallocSize = 16

// khoVmallocPerChunk is KHO_VMALLOC_SIZE: the page addresses one struct
// kho_vmalloc_chunk holds after its 8-byte header.
const khoVmallocPerChunk = (physmem.PageSize - 8) / 8

// KHO_VMALLOC_ALLOC is the only flag khosim's areas carry: the area was
// vmalloc'd (VM_ALLOC).
const KHO_VMALLOC_ALLOC = 0x1

// Put writes v into b (16 bytes).
func (v KHOVmalloc) Put(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b, uint64(v.First))
	le.PutUint32(b[8:], v.TotalPages)
	le.PutUint16(b[12:], v.Flags)
	le.PutUint16(b[14:], v.Order)
}

// ReadKHOVmalloc decodes a struct kho_vmalloc from b (16 bytes).
func ReadKHOVmalloc(b []byte) KHOVmalloc {
	le := binary.LittleEndian
	return KHOVmalloc{First: physmem.PhysAddr(le.Uint64(b)), TotalPages: le.Uint32(b[8:]),
		Flags: le.Uint16(b[12:]), Order: le.Uint16(b[14:])}
}

// Vmalloc is a preserved vmalloc area of this kernel: its data pages (in
// virtual order) and the chunk pages listing them.
type Vmalloc struct {
	Desc   KHOVmalloc
	Pages  []physmem.PFN
	Chunks []physmem.PFN
}

// Bytes returns the area's size in bytes.
func (v *Vmalloc) Bytes() uint64 { return uint64(len(v.Pages)) << physmem.PageShift }

// VmallocPreserve allocates a vmalloc area of nr order-0 pages (vcalloc:
// GFP_KERNEL, zeroed) and preserves it with kho_preserve_vmalloc(): every
// data page and the chain of chunk pages that lists them. Errors: ENOMEM
// (or the page_alloc fault), PreserveFolio's; nothing stays allocated.
func (h *KHO) VmallocPreserve(nr int) (*Vmalloc, error) {
	h.mustRunning("kho_preserve_vmalloc")
	v := &Vmalloc{}
	fail := func(err error) (*Vmalloc, error) {
		h.VmallocUnpreserve(v)
		return nil, err
	}
	alloc := func() (physmem.PFN, error) {
		f, err := h.mm.FolioAlloc(physmem.GFPKernel, 0)
		if err != nil {
			return 0, err
		}
		clear(h.mm.Frames.Frame(f.PFN()))
		if _, err := h.PreserveFolio(f); err != nil {
			h.mm.FolioPut(f)
			return 0, err
		}
		h.mm.FolioPut(f) // KHO's reference keeps it
		h.k.Work().FramesAllocated++
		return f.PFN(), nil
	}
	for range nr {
		p, err := alloc()
		if err != nil {
			return fail(err)
		}
		v.Pages = append(v.Pages, p)
	}
	le := binary.LittleEndian
	var prev []byte
	for i := 0; i < nr; i += khoVmallocPerChunk {
		c, err := alloc()
		if err != nil {
			return fail(err)
		}
		v.Chunks = append(v.Chunks, c)
		page := h.mm.Frames.Frame(c)
		for j, p := range v.Pages[i:min(nr, i+khoVmallocPerChunk)] {
			le.PutUint64(page[8+8*j:], uint64(p.Phys()))
		}
		if prev == nil {
			v.Desc.First = c.Phys()
		} else {
			le.PutUint64(prev, uint64(c.Phys()))
		}
		prev = page[:8]
	}
	v.Desc.TotalPages = uint32(nr)
	v.Desc.Flags = KHO_VMALLOC_ALLOC
	return v, nil
}

// VmallocUnpreserve is kho_unpreserve_vmalloc() + vfree(): every page of
// the area and of its chunk chain is unpreserved and freed.
func (h *KHO) VmallocUnpreserve(v *Vmalloc) {
	for _, p := range append(v.Pages, v.Chunks...) {
		if err := h.UnpreserveFolio(physmem.Folio(p)); err != nil {
			panic(fmt.Sprintf("kexec: invariant \"vmalloc-preserved\" broken: page %v of a preserved vmalloc area: %v", p, err))
		}
	}
	v.Pages, v.Chunks = nil, nil
}

// VmallocRestore is kho_restore_vmalloc() in the next kernel: it walks the
// chunk chain of d in physical memory, checking every address (inside
// memory, page aligned, preserved; no more chunks than the page count
// needs), claims the data pages and frees the chunk pages. It returns the
// data pages in order, each with the reference the caller must put.
//
// Errors: EINVAL for a descriptor or chain that does not check (flags or
// order other than khosim writes, a page count beyond what memory could
// hold, a chunk or page not preserved); the pages claimed so far are
// freed then, and the caller returns the rest of what it knows.
func (h *KHO) VmallocRestore(d KHOVmalloc) ([]physmem.Folio, error) {
	h.mustRunning("kho_restore_vmalloc")
	var pages []physmem.Folio
	fail := func(format string, args ...any) ([]physmem.Folio, error) {
		for _, p := range pages {
			h.mm.FolioPut(p)
		}
		return nil, fmt.Errorf("kho: vmalloc area: "+format+": %w", append(args, errno.EINVAL)...)
	}
	if d.Order != 0 || d.Flags&^KHO_VMALLOC_ALLOC != 0 || uint64(d.TotalPages) > h.mm.Frames.NumFrames() {
		return fail("descriptor %+v", d)
	}
	le := binary.LittleEndian
	next := d.First
	for chunks := 0; len(pages) < int(d.TotalPages); chunks++ {
		if next == 0 || chunks > int(d.TotalPages)/khoVmallocPerChunk {
			return fail("chain ends after %d of %d pages", len(pages), d.TotalPages)
		}
		c, order, err := h.ClaimAt(next)
		if err != nil || order != 0 {
			if err == nil {
				h.mm.FolioPut(c)
			}
			return fail("chunk %#x: %v", uint64(next), err)
		}
		page := h.mm.Frames.Frame(c.PFN())
		for j := 0; j < khoVmallocPerChunk && len(pages) < int(d.TotalPages); j++ {
			phys := physmem.PhysAddr(le.Uint64(page[8+8*j:]))
			p, order, err := h.ClaimAt(phys)
			if err != nil || order != 0 {
				if err == nil {
					h.mm.FolioPut(p)
				}
				h.mm.FolioPut(c)
				return fail("page %#x: %v", uint64(phys), err)
			}
			pages = append(pages, p)
		}
		next = physmem.PhysAddr(le.Uint64(page))
		h.mm.FolioPut(c) // the chunk is read: free it
	}
	return pages, nil
}
