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

// newMemmap maps an all-zero memmap for n frames.
func newMemmap(n uint64) (Memmap, error) {
	if n == 0 || n > maxLinkPFN {
		return Memmap{}, errno.EINVAL
	}
	mem, err := mmapAnon(n * uint64(unsafe.Sizeof(Page{})))
	if err != nil {
		return Memmap{}, err
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

func (m *Memmap) close() error {
	if m.mem == nil {
		return errno.EBADF
	}
	err := syscall.Munmap(m.mem)
	m.pages, m.mem = nil, nil
	if err != nil {
		return errno.EINVAL
	}
	return nil
}
