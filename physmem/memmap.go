package physmem

import (
	"fmt"
	"syscall"
	"unsafe"

	"khosim/errno"
)

// Memmap models the memmap (mem_map / the vmemmap): one struct page per
// frame, indexed by PFN (pfn_to_page). It belongs to one kernel instance;
// nothing in it survives kexec as far as the kernels are concerned.
//
// Its struct pages are not initialised when the memmap is allocated, as
// Linux's are not: memmap_alloc / memblock_alloc_try_nid_raw leave
// whatever the memory held.
// MM.MemblockFreeAll initialises every one of them except those of frames
// inside MEMBLOCK_RSRV_NOINIT reserved memory, which RestoreFolio
// initialises, a folio at a time, when KHO restores what they hold. Until
// then such a struct page holds bytes nobody may read (see stale).
//
// The array lives in an anonymous MAP_NORESERVE host mapping: the pages of
// the memmap nobody writes cost no host memory, and the garbage collector
// never scans it (Page holds no pointers). *Page values point into that
// mapping and must not be used after Close.
type Memmap struct {
	pages []Page
	mem   []byte
	// stale is set while the memmap holds bytes it did not write: the
	// mapping was recycled from the previous kernel's memmap and
	// memblock_free_all has not initialised it yet. A fresh mapping is
	// all zero, not stale.
	//
	// The stale bytes are the previous kernel's struct pages for the
	// very same frames (the simulator recycles the host memory of a
	// memmap of the same size). The new kernel must never read them:
	// the honest boundary is that kernel #2 learns nothing from kernel
	// #1 but the bytes of physical memory and the boot parameters, and
	// khosim's memmap is not in simulated physical memory at all. Only
	// memblock_free_all's initialisation, and for MEMBLOCK_RSRV_NOINIT
	// frames RestoreFolio's full write of every struct page of the
	// folio, make them meaningful; until then they are garbage, as a
	// real memmap is before memmap_init.
	stale bool
}

// newMemmap returns the memmap for the n frames of frames, its struct
// pages not initialised: the mapping the previous kernel's memmap left
// behind (Frames.spareMemmap), as it is (stale), or a fresh, all-zero one.
//
// Reusing the host memory of the memmap is a simulator matter, invisible
// to the kernels, which never read a struct page before initialising it.
// A fresh mapping would cost a host page fault for every 4 KiB of it the
// kernel writes (one per 102 struct pages: 10,000 for a 4 GiB memfd),
// which Linux, whose memmap is ordinary RAM, never pays. Nor is the
// recycled mapping cleared here: MM.MemblockFreeAll clears only what
// memblock_free_all initialises (and only the host pages the old memmap
// committed), and RestoreFolio writes the struct pages of preserved
// folios whole, so none of them is written twice at boot.
func newMemmap(frames *Frames, n uint64) (Memmap, error) {
	if n == 0 || n > maxLinkPFN {
		return Memmap{}, errno.EINVAL
	}
	size := n * pageBytes
	mem := frames.spareMemmap
	frames.spareMemmap = nil
	stale := uint64(len(mem)) == size
	if !stale {
		if mem != nil {
			_ = syscall.Munmap(mem)
		}
		var err error
		if mem, err = mmapAnon(size); err != nil {
			return Memmap{}, err
		}
	}
	pages := unsafe.Slice((*Page)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	return Memmap{pages: pages, mem: mem, stale: stale}, nil
}

// pageBytes is sizeof(struct page) in the memmap.
const pageBytes = uint64(unsafe.Sizeof(Page{}))

// zero clears the struct pages of frames [start, end) (memmap_init and
// deferred_init_memmap initialise them): the host pages the memmap has
// committed are cleared, the others dropped (clearResident), so that
// initialising commits no host memory.
func (m *Memmap) zero(start, end PFN) {
	if start < end {
		clearResident(m.mem[uint64(start)*pageBytes : uint64(end)*pageBytes])
	}
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
