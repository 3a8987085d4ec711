package kernel

import (
	"encoding/binary"
	"fmt"

	"khosim/errno"
	"khosim/physmem"
)

// SwapDevice is a swap disk of the machine: hardware, so it outlives every
// kernel that runs on the machine. It holds 4 KiB slots; slot 0 is the swap
// header mkswap writes (union swap_header), the others hold swapped-out
// pages.
//
// Storage is sparse: only slots that hold data cost host memory. A slot's
// bytes are dropped when a kernel frees it, as a discard (blkdev_issue_discard
// from swap_range_free with SWP_PAGE_DISCARD) would, and every swapon
// discards the whole device (swapon --discard=once), so a kernel after kexec
// starts with an empty device, as it starts with an empty swap map.
type SwapDevice struct {
	nslots uint64
	header [physmem.PageSize]byte
	slots  map[uint64]*[physmem.PageSize]byte
	pool   []*[physmem.PageSize]byte // discarded slot buffers, reused
}

// Swap header layout (include/linux/swap.h, union swap_header): the magic
// "SWAPSPACE2" ends the page; version and last_page follow the 1 KiB boot
// block.
const (
	swapMagic          = "SWAPSPACE2"
	swapHeaderVersion  = 1
	swapInfoOffset     = 1024 // sizeof(bootbits)
	swapMinPages       = 10   // mkswap: "swap space needs to be at least 40 KiB"
	swapEntryOrderBits = 58   // SWP_TYPE_SHIFT: type above, offset below
)

// NewSwapDevice creates a swap disk of size bytes, rounded down to whole
// slots, with a swap header written (mkswap). It fails with EINVAL below
// the 10 slots mkswap requires.
func NewSwapDevice(size uint64) (*SwapDevice, error) {
	n := size / physmem.PageSize
	if n < swapMinPages {
		return nil, errno.EINVAL
	}
	d := &SwapDevice{nslots: n, slots: map[uint64]*[physmem.PageSize]byte{}}
	binary.LittleEndian.PutUint32(d.header[swapInfoOffset:], swapHeaderVersion)
	binary.LittleEndian.PutUint32(d.header[swapInfoOffset+4:], uint32(n-1)) // last_page
	copy(d.header[physmem.PageSize-len(swapMagic):], swapMagic)
	return d, nil
}

// Size returns the device size in bytes.
func (d *SwapDevice) Size() uint64 { return d.nslots * physmem.PageSize }

// StoredSlots returns how many slots hold data (the host memory the device
// costs, in pages).
func (d *SwapDevice) StoredSlots() int { return len(d.slots) }

// readHeader validates the swap header as read_swap_header() does and
// returns the last usable page.
func (d *SwapDevice) readHeader() (uint64, error) {
	if string(d.header[physmem.PageSize-len(swapMagic):]) != swapMagic {
		return 0, errno.EINVAL // "Unable to find swap-space signature"
	}
	if binary.LittleEndian.Uint32(d.header[swapInfoOffset:]) != swapHeaderVersion {
		return 0, errno.EINVAL
	}
	last := uint64(binary.LittleEndian.Uint32(d.header[swapInfoOffset+4:]))
	if last == 0 || last >= d.nslots {
		return 0, errno.EINVAL
	}
	return last, nil
}

// write stores one page into slot (swap_writepage).
func (d *SwapDevice) write(slot uint64, src []byte) {
	buf := d.slots[slot]
	if buf == nil {
		if n := len(d.pool); n > 0 {
			buf, d.pool = d.pool[n-1], d.pool[:n-1]
		} else {
			buf = new([physmem.PageSize]byte)
		}
		d.slots[slot] = buf
	}
	copy(buf[:], src)
}

// read copies slot into dst (swap_read_folio). A slot never written reads
// as zeros.
func (d *SwapDevice) read(slot uint64, dst []byte) {
	if buf := d.slots[slot]; buf != nil {
		copy(dst, buf[:])
		return
	}
	clear(dst)
}

// peek returns slot's bytes in place, for PeekFile: the device's own
// buffer, or zeros for a slot never written. Callers must not modify it.
func (d *SwapDevice) peek(slot uint64) []byte {
	if buf := d.slots[slot]; buf != nil {
		return buf[:]
	}
	return zeroChunk[:physmem.PageSize]
}

// discard drops the bytes of slot.
func (d *SwapDevice) discard(slot uint64) {
	if buf := d.slots[slot]; buf != nil {
		delete(d.slots, slot)
		if len(d.pool) < 64 {
			d.pool = append(d.pool, buf)
		}
	}
}

// discardAll drops every slot (swapon --discard=once).
func (d *SwapDevice) discardAll() { clear(d.slots) }

// SwapEntry is a swap entry (swp_entry_t): the swap type in the top bits
// and the slot offset below. khosim has at most one swap device, type 0,
// so an entry is its slot offset.
type SwapEntry uint64

// Type returns the swap device index (swp_type).
func (e SwapEntry) Type() uint { return uint(e >> swapEntryOrderBits) }

// Offset returns the slot (swp_offset).
func (e SwapEntry) Offset() uint64 { return uint64(e) & (1<<swapEntryOrderBits - 1) }

func (e SwapEntry) String() string { return fmt.Sprintf("swap %d:%#x", e.Type(), e.Offset()) }

// swapInfo models struct swap_info_struct: one kernel's use of a swap
// device, created by swapon at boot. swapMap counts the users of each slot
// (si->swap_map; 0 = free, SWAP_MAP_BAD for the header); shmem is the only
// user, so a used slot has count 1, held by the page-cache value entry
// that names it.
//
// Allocation is next-fit from cluster_next, as scan_swap_map_slots does
// without SSD clusters, so slot numbers are deterministic.
type swapInfo struct {
	dev     *SwapDevice
	swapMap []uint8
	mapBuf  physmem.Kvbuf // what swap_map costs: vzalloc(maxpages), a byte per slot
	pages   uint64        // usable slots (si->pages)
	inuse   uint64        // si->inuse_pages
	next    uint64        // si->cluster_next
}

const swapMapBad = 0x3f // SWAP_MAP_BAD

// swapon enables dev for k (sys_swapon): reads the header, discards the
// device, and builds a fresh swap map with every slot but the header free.
// The swap map is kernel memory: a byte per slot, vzalloc'd (charged with
// Kvmalloc).
//
// Errors: EBUSY with swap on already; EINVAL for a bad header; ENOMEM
// (or the injected slab or page_alloc fault) when the swap map cannot be
// allocated.
func (k *Kernel) swapon(dev *SwapDevice) error {
	if k.swap != nil {
		return errno.EBUSY
	}
	last, err := dev.readHeader()
	if err != nil {
		return err
	}
	buf, err := k.MM.Kvmalloc(last + 1)
	if err != nil {
		return errno.ENOMEM
	}
	dev.discardAll()
	si := &swapInfo{dev: dev, swapMap: make([]uint8, last+1), mapBuf: buf, pages: last, next: 1}
	si.swapMap[0] = swapMapBad
	k.swap = si
	k.Printk(LogInfo, "Adding %dk swap on /dev/swap0.  Priority:-2 extents:1 across:%dk",
		last*physmem.PageSize>>10, last*physmem.PageSize>>10)
	return nil
}

// TotalSwapPages returns the usable swap slots (total_swap_pages); 0
// without swap.
func (k *Kernel) TotalSwapPages() uint64 {
	if k.swap == nil {
		return 0
	}
	return k.swap.pages
}

// NrSwapPages returns the free swap slots (nr_swap_pages).
func (k *Kernel) NrSwapPages() uint64 {
	if k.swap == nil {
		return 0
	}
	return k.swap.pages - k.swap.inuse
}

// folioAllocSwap allocates one swap slot (folio_alloc_swap for an order-0
// folio). ok is false when there is no swap or it is full.
func (k *Kernel) folioAllocSwap() (SwapEntry, bool) {
	si := k.swap
	if si == nil || si.inuse == si.pages {
		return 0, false
	}
	n := uint64(len(si.swapMap))
	for range n {
		off := si.next
		si.next++
		if si.next == n {
			si.next = 1
		}
		if si.swapMap[off] == 0 {
			si.swapMap[off] = 1
			si.inuse++
			return SwapEntry(off), true
		}
	}
	panic("kernel: swap map inuse count disagrees with the map")
}

// swapFree drops the user of entry's slot and frees it (swap_free /
// free_swap_and_cache: shmem's slots have one user). The slot's bytes are
// discarded.
func (k *Kernel) swapFree(e SwapEntry) {
	si := k.swap
	off := e.Offset()
	if si == nil || e.Type() != 0 || off == 0 || off >= uint64(len(si.swapMap)) || si.swapMap[off] == 0 || si.swapMap[off] == swapMapBad {
		badSwapEntry(k, e, "swap_free of an entry that is not in use")
	}
	si.swapMap[off] = 0
	si.inuse--
	si.dev.discard(off)
}

// swapEntryValid reports whether e names a used slot of this kernel's
// swap.
func (k *Kernel) swapEntryValid(e SwapEntry) bool {
	si := k.swap
	off := e.Offset()
	return si != nil && e.Type() == 0 && off > 0 && off < uint64(len(si.swapMap)) &&
		si.swapMap[off] != 0 && si.swapMap[off] != swapMapBad
}

func badSwapEntry(k *Kernel, e SwapEntry, what string) {
	panicViolation("swap-entry-valid", fmt.Sprintf("%v; swap: %s", e, k.swapString()), "%s", what)
}

func (k *Kernel) swapString() string {
	if k.swap == nil {
		return "none"
	}
	return fmt.Sprintf("%d slots, %d in use", k.swap.pages, k.swap.inuse)
}
