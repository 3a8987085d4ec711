package physmem

import (
	"fmt"
	"syscall"
	"unsafe"

	"khosim/errno"
)

// Memmap models the memmap (mem_map / the vmemmap): one struct page per
// frame, indexed by PFN (pfn_to_page). It belongs to one kernel instance
// and is rebuilt, all zero, at every boot; nothing in it survives kexec.
//
// The array lives in an anonymous MAP_NORESERVE host mapping: the pages of
// the memmap nobody writes cost no host memory, and the garbage collector
// never scans it (Page holds no pointers). *Page values point into that
// mapping and must not be used after Close.
type Memmap struct {
	pages []Page
	mem   []byte
}

// newMemmap returns an all-zero memmap for the n frames of frames: the
// mapping the previous kernel's memmap left behind (Frames.spareMemmap),
// cleared, or a fresh one.
//
// Reusing the host memory of the memmap is a simulator matter, invisible
// to the kernels: the new memmap is all zero either way, and a fresh
// mapping would cost a host page fault for every 4 KiB of it the kernel
// writes (one per 102 struct pages: 10,000 for a 4 GiB memfd), which
// Linux, whose memmap is ordinary RAM, never pays. Only the host pages the
// old memmap had committed are cleared (mincore); the others read as zero.
func newMemmap(frames *Frames, n uint64) (Memmap, error) {
	if n == 0 || n > maxLinkPFN {
		return Memmap{}, errno.EINVAL
	}
	size := n * uint64(unsafe.Sizeof(Page{}))
	mem := frames.spareMemmap
	frames.spareMemmap = nil
	if uint64(len(mem)) == size {
		clearResident(mem)
	} else {
		if mem != nil {
			_ = syscall.Munmap(mem)
		}
		var err error
		if mem, err = mmapAnon(size); err != nil {
			return Memmap{}, err
		}
	}
	pages := unsafe.Slice((*Page)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	return Memmap{pages: pages, mem: mem}, nil
}

// NumPages returns the number of struct pages.
func (m *Memmap) NumPages() uint64 { return uint64(len(m.pages)) }

// Bytes returns the size of the memmap in bytes (of which the host commits
// only the touched part).
func (m *Memmap) Bytes() uint64 { return uint64(len(m.mem)) }

// Page returns the struct page of frame pfn (pfn_to_page).
// Preconditions:
//   - pfn < NumPages(); otherwise panics with "pfn-in-range".
func (m *Memmap) Page(pfn PFN) *Page {
	if uint64(pfn) >= uint64(len(m.pages)) {
		m.badPFN(pfn)
	}
	return &m.pages[pfn]
}

func (m *Memmap) badPFN(pfn PFN) {
	bug(invPFNInRange, fmt.Sprintf("memmap has %d pages", len(m.pages)), "no struct page for %v", pfn)
}

// close ends the memmap. Its host memory goes to frames for the next
// kernel's memmap (newMemmap) if frames is still open and keeps none yet,
// and is unmapped otherwise.
func (m *Memmap) close(frames *Frames) error {
	if m.mem == nil {
		return errno.EBADF
	}
	mem := m.mem
	m.pages, m.mem = nil, nil
	if frames != nil && frames.mem != nil && frames.spareMemmap == nil {
		frames.spareMemmap = mem
		return nil
	}
	if err := syscall.Munmap(mem); err != nil {
		return errno.EINVAL
	}
	return nil
}
