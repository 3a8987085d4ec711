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
	// ready is set once memblock_free_all has initialised the memmap
	// (MM.MemblockFreeAll): before, every struct page is uninitialised
	// and Page refuses them all.
	ready bool
	// noinit has a bit for every frame wholly inside MEMBLOCK_RSRV_NOINIT
	// reserved memory, whose struct page memblock_free_all leaves
	// uninitialised; uninit a bit for every such frame RestoreFolio has
	// not initialised since (noinit less what was restored). Both are
	// set up by MM.MemblockFreeAll, and are nil if no frame is noinit. A
	// frame whose uninit bit is set has a struct page nobody may read
	// (uninitialised): Page poisons it before handing it out (see
	// poisonPage), so every accessor of it refuses. uninit is its own
	// bitmap, not noinit &^ restored, so that Page's check while
	// restores are pending is one load.
	noinit []uint64
	uninit []uint64
	// pending counts the noinit frames not restored yet: once it is 0
	// (every preserved folio claimed or returned), Page has nothing to
	// check.
	pending uint64
	// gate and gateMask are Page's whole fast path: the struct page of a
	// valid pfn may be handed out at once if bit pfn&63 of
	// gate[(pfn>>6)&gateMask] is clear. Before memblock_free_all gate is
	// one word of ones and gateMask 0 (every frame takes the slow path);
	// while noinit frames are pending it is uninit, gateMask all ones;
	// once none is (open), one zero word and gateMask 0. Page thus
	// costs one load and no branch on the memmap's state (see reopen).
	gate     []uint64
	gateMask PFN
	// open is set when Page's inlined fast path, a single flag test, may
	// serve every frame: no frame is deferred, and no frame is behind the
	// gate or every one behind it is poisoned (sealed). While restores are
	// pending otherwise, or memory is deferred, Page takes a call to
	// pageSlow, whose first test is the gate's one load.
	open bool
	// sealed is set while every uninitialised frame's struct page is
	// poisoned (MM.MemblockFreeAll checks it; RestoreFolio keeps it): the
	// checked accessors (MM.Page, the folio helpers) then refuse a frame
	// by its poisoned flags, which they read anyway, and need no gate.
	// It holds when every preserved block is a single page: its struct
	// page is the head KHOPreservedReserve poisoned. khoHeads and
	// khoTails count the heads KHOPreservedReserve poisoned and the tails
	// it left as they were.
	sealed             bool
	khoHeads, khoTails uint64
	// deferred holds, sorted and disjoint, the free frames whose struct
	// pages are not initialised yet (CONFIG_DEFERRED_STRUCT_PAGE_INIT:
	// see deferred.go); MM.deferredGrowZone consumes it from the front.
	// limit is the first of them (the number of pages if none): Page's
	// fast path serves only frames below it.
	deferred []pfnRange
	limit    PFN
}

var (
	gateClosed = []uint64{^uint64(0)}
	gateOpen   = []uint64{0}
)

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
	if n == 0 || n > maxMemmapPages {
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
	m := Memmap{pages: pages, mem: mem, stale: stale}
	m.reopen()
	m.relimit()
	return m, nil
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
//
// The struct page of a frame that is not initialised (preserved by the
// previous kernel, reserved MEMBLOCK_RSRV_NOINIT and not restored by
// MM.RestoreFolio) is returned poisoned (see poisonPage): every accessor
// of it panics with "page-poisoned", as Linux's PF_POISONED_CHECK does,
// and nothing of the previous kernel's struct page can be read through it.
// Preconditions:
//   - pfn < NumPages(); otherwise panics with "pfn-in-range";
//   - memblock_free_all has initialised the memmap (MM.MemblockFreeAll);
//     otherwise panics with "page-initialised".
func (m *Memmap) Page(pfn PFN) *Page {
	if uint64(pfn) >= uint64(len(m.pages)) || !m.open {
		return m.pageSlow(pfn)
	}
	return &m.pages[pfn]
}

// readable reports whether pfn is a valid frame whose struct page is
// initialised (see gate).
func (m *Memmap) readable(pfn PFN) bool {
	return pfn < m.limit && m.gate[(pfn>>6)&m.gateMask]&(1<<(pfn&63)) == 0
}

// pageSlow is Page for a pfn out of range or while the memmap is not
// open: the frame is served if readable, or refused (poisoned) if it is
// behind the gate or deferred.
func (m *Memmap) pageSlow(pfn PFN) *Page {
	if m.readable(pfn) {
		return &m.pages[pfn]
	}
	m.checkPFN(pfn)
	if m.deferredInit(pfn) {
		p := &m.pages[pfn]
		if p.flags != pagePoisonFlags {
			*p = poisonedPage
		}
		return p
	}
	if m.gate[(pfn>>6)&m.gateMask]&(1<<(pfn&63)) == 0 {
		return &m.pages[pfn]
	}
	p := &m.pages[pfn]
	m.refuse(pfn, p)
	return p
}

// reopen recomputes gate: closed before memblock_free_all, uninit while
// noinit frames are left to restore, open once none is.
func (m *Memmap) reopen() {
	switch {
	case !m.ready:
		m.gate, m.gateMask = gateClosed, 0
	case m.pending != 0:
		m.gate, m.gateMask = m.uninit, ^PFN(0)
	default:
		m.gate, m.gateMask = gateOpen, 0
	}
	m.open = m.ready && (m.pending == 0 || m.sealed) && len(m.deferred) == 0
}

// refuse is Page's check of a struct page that may not be initialised:
// before memblock_free_all it refuses every one; after, it poisons an
// uninitialised one (once: a poisoned page stays as it is, so the
// KHO_PAGE_MAGIC kho_preserved_memory_reserve left in a preserved head's
// private survives).
func (m *Memmap) refuse(pfn PFN, p *Page) {
	if !m.ready {
		bug(invPageInit, fmt.Sprintf("memmap of %d pages", len(m.pages)),
			"struct page of %v read before memblock_free_all initialised the memmap", pfn)
	}
	if m.uninitialised(pfn) && p.flags != pagePoisonFlags {
		*p = poisonedPage
	}
}

// uninitialised reports whether the struct page of pfn, a valid frame, is
// one memblock_free_all left uninitialised (MEMBLOCK_RSRV_NOINIT) and
// RestoreFolio has not initialised since: it must not be read.
func (m *Memmap) uninitialised(pfn PFN) bool {
	return m.uninit != nil && m.uninit[pfn>>6]&(1<<(pfn&63)) != 0
}

// deferredInit reports whether pfn, a valid frame, is deferred: free, its
// struct page not initialised yet (see deferred.go).
func (m *Memmap) deferredInit(pfn PFN) bool {
	_, ok := m.deferredAt(pfn)
	return ok
}

// poisonedPage is a struct page all of whose bytes are PAGE_POISON_PATTERN
// (0xff), as page_init_poison leaves the memmap (mm/debug.c, called by
// memmap_alloc and the vmemmap populate functions under
// CONFIG_DEBUG_VM).
var poisonedPage = Page{
	flags: pagePoisonFlags, refcount: -1, mapcount: -1, mapping: ^MappingID(0),
	index: ^uint64(0), private: ^uint64(0), lru: [2]uint32{^uint32(0), ^uint32(0)},
}

// poisonPages poisons the struct pages of frames [start, end)
// (page_init_poison).
func (m *Memmap) poisonPages(start, end PFN) {
	for i := range m.pages[start:end] {
		m.pages[start+PFN(i)] = poisonedPage
	}
}

// checkPFN panics with "pfn-in-range" unless pfn has a struct page.
func (m *Memmap) checkPFN(pfn PFN) {
	if uint64(pfn) >= uint64(len(m.pages)) {
		m.badPFN(pfn)
	}
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
	FreeHostBitmap(m.noinit)
	FreeHostBitmap(m.uninit)
	m.noinit, m.uninit = nil, nil
	m.gate, m.gateMask = gateClosed, 0
	if frames != nil && frames.mem != nil && frames.spareMemmap == nil {
		frames.spareMemmap = mem
		return nil
	}
	if err := syscall.Munmap(mem); err != nil {
		return errno.EINVAL
	}
	return nil
}

// KHOPageMagic is KHO_PAGE_MAGIC, "KHOP": the token KHO keeps in the upper
// half of page->private of the head page of every block of preserved
// memory it has reserved, the order in the lower half (union
// kho_page_info, kernel/liveupdate/kexec_handover.c).
const KHOPageMagic = 0x4b484f50

// KHOPreservedReserve is the struct-page half of mainline's
// kho_preserved_memory_reserve(), which the next kernel runs in early boot
// for every block of preserved memory its tracker records: the head's
// page->private gets the order and KHO_PAGE_MAGIC, which kho_restore_page
// checks and clears (see KHOPageInfo). The struct page is otherwise
// uninitialised: khosim poisons it whole (page_init_poison), where Linux
// writes private into whatever the memmap holds. The caller reserves the
// frames MEMBLOCK_RSRV_NOINIT (the memblock half); a head whose frames are
// not noinit is initialised by memblock_free_all like any other.
//
// Errors: EINVAL after memblock_free_all, for an order above
// MaxPageOrder, or a pfn not aligned to the order or beyond the frames.
func (mm *MM) KHOPreservedReserve(pfn PFN, order uint) error {
	nr := PFN(1) << order
	if mm.Memblock.handedOver || order > MaxPageOrder || pfn&(nr-1) != 0 || !mm.Frames.rangeOK(pfn, uint64(nr)) {
		return errno.EINVAL
	}
	p := &mm.Memmap.pages[pfn]
	*p = poisonedPage
	p.private = KHOPageMagic<<32 | uint64(order)
	mm.Memmap.khoHeads++
	mm.Memmap.khoTails += uint64(nr) - 1
	return nil
}

// KHOPageInfo reads what KHOPreservedReserve left in the struct page of
// pfn (kho_restore_page's check of union kho_page_info): the order, and
// ok if page->private holds KHO_PAGE_MAGIC. It is the one read of an
// uninitialised struct page there is, of the one field this kernel wrote
// into it; ok is false for a frame whose struct page is initialised (its
// private is no longer KHO's) or was never marked.
// Preconditions:
//   - pfn is a valid frame; otherwise panics with "pfn-in-range".
func (mm *MM) KHOPageInfo(pfn PFN) (order uint, ok bool) {
	mm.Memmap.checkPFN(pfn)
	if !mm.Memmap.uninitialised(pfn) {
		return 0, false
	}
	p := &mm.Memmap.pages[pfn]
	if p.flags != pagePoisonFlags || p.private>>32 != KHOPageMagic || uint32(p.private) > MaxPageOrder {
		return 0, false
	}
	return uint(uint32(p.private)), true
}
