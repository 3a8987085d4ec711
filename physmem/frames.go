package physmem

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"khosim/errno"
	"khosim/invariant"
)

// Frames is the machine's physical memory: Size bytes in 4 KiB frames,
// addressed by PFN or physical address. Frames are the only state that
// survives a kexec: a new kernel rebuilds its memmap, memblock and buddy
// allocator over the same Frames from the bytes and its boot parameters.
//
// The bytes live in one anonymous MAP_NORESERVE host mapping, so a frame
// costs host memory only once it has been written. Zero of at least
// zeroDiscardFrames frames gives the host pages back.
//
// Frames is not safe for concurrent use. Slices returned by Frame and Span
// alias the mapping and must not be used after Close.
type Frames struct {
	mem     []byte
	nframes uint64
	// spareMemmap is the host mapping of the last closed kernel's
	// memmap, kept for the next kernel's (see newMemmap); nil if none.
	spareMemmap []byte
}

// zeroDiscardFrames is the span from which Zero discards host pages
// (MADV_DONTNEED) rather than clearing them: a 2 MiB huge page.
const zeroDiscardFrames = 1 << HPageOrder

// NewFrames maps a machine of size bytes of physical memory, all zero.
// size must be a non-zero multiple of PageSize (EINVAL); ENOMEM if the host
// cannot map it. The caller must Close the Frames.
func NewFrames(size uint64) (*Frames, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, errno.EINVAL
	}
	mem, err := mmapAnon(size)
	if err != nil {
		return nil, err
	}
	return &Frames{mem: mem, nframes: size / PageSize}, nil
}

// NumFrames returns the number of frames (max_pfn).
func (f *Frames) NumFrames() uint64 { return f.nframes }

// Size returns the size of physical memory in bytes.
func (f *Frames) Size() uint64 { return f.nframes * PageSize }

// Valid reports whether pfn names a frame of this machine (pfn_valid).
func (f *Frames) Valid(pfn PFN) bool { return uint64(pfn) < f.nframes }

// Frame returns the PageSize bytes of frame pfn (page_address).
// Preconditions:
//   - pfn < NumFrames(); otherwise a kernel bug: panics with "pfn-in-range".
func (f *Frames) Frame(pfn PFN) []byte {
	if uint64(pfn) >= f.nframes {
		f.badRange(pfn, 1)
	}
	off := uint64(pfn) << PageShift
	return f.mem[off : off+PageSize : off+PageSize]
}

// Span returns the bytes of frames [pfn, pfn+n).
// Preconditions:
//   - the frames exist; otherwise panics with "pfn-in-range".
func (f *Frames) Span(pfn PFN, n uint64) []byte {
	if !f.rangeOK(pfn, n) {
		f.badRange(pfn, n)
	}
	off, end := uint64(pfn)<<PageShift, (uint64(pfn)+n)<<PageShift
	return f.mem[off:end:end]
}

// ReadAt copies len(p) bytes at physical address addr into p, like a read
// of /dev/mem. It returns EFAULT, copying nothing, if any byte lies beyond
// physical memory.
func (f *Frames) ReadAt(p []byte, addr PhysAddr) (int, error) {
	if !f.addrOK(addr, uint64(len(p))) {
		return 0, errno.EFAULT
	}
	return copy(p, f.mem[addr:]), nil
}

// WriteAt copies p to physical address addr. It returns EFAULT, writing
// nothing, if any byte lies beyond physical memory.
func (f *Frames) WriteAt(p []byte, addr PhysAddr) (int, error) {
	if !f.addrOK(addr, uint64(len(p))) {
		return 0, errno.EFAULT
	}
	return copy(f.mem[addr:], p), nil
}

// Copy copies n frames from src to dst (copy_highpage over a range); the
// ranges may overlap.
// Preconditions:
//   - both ranges exist; otherwise panics with "pfn-in-range".
func (f *Frames) Copy(dst, src PFN, n uint64) {
	copy(f.Span(dst, n), f.Span(src, n))
}

// Zero clears n frames from pfn (clear_highpage over a range). Spans of at
// least 2 MiB are discarded from the host (MADV_DONTNEED) so zeroing memory
// also releases it.
// Preconditions:
//   - the frames exist; otherwise panics with "pfn-in-range".
func (f *Frames) Zero(pfn PFN, n uint64) {
	b := f.Span(pfn, n)
	if n >= zeroDiscardFrames {
		discard(b)
		return
	}
	clear(b)
}

// Discard drops n frames from pfn from the host (MADV_DONTNEED,
// whatever the span): they read as zeros afterwards and cost no host
// memory until written again. For frames that hold nothing worth
// clearing byte by byte, most of all frames the host may never have
// committed, which madvise skips at no cost.
// Preconditions:
//   - the frames exist; otherwise panics with "pfn-in-range".
func (f *Frames) Discard(pfn PFN, n uint64) {
	if b := f.Span(pfn, n); len(b) > 0 {
		discard(b)
	}
}

// Fill writes the 64-bit little-endian pattern over n frames from pfn, as
// a kexec that scrubs memory poisons the frames nobody preserved. It
// touches, and so commits, every host page of the range.
// Preconditions:
//   - the frames exist; otherwise panics with "pfn-in-range".
func (f *Frames) Fill(pfn PFN, n uint64, pattern uint64) {
	b := f.Span(pfn, n)
	if len(b) == 0 {
		return
	}
	binary.LittleEndian.PutUint64(b, pattern)
	for done := 8; done < len(b); done *= 2 {
		copy(b[done:], b[:done])
	}
}

// Close unmaps the memory. The Frames, and every slice it returned, must
// not be used afterwards. Closing twice returns EBADF.
func (f *Frames) Close() error {
	if f.mem == nil {
		return errno.EBADF
	}
	err := syscall.Munmap(f.mem)
	if f.spareMemmap != nil {
		_ = syscall.Munmap(f.spareMemmap)
	}
	f.mem, f.nframes, f.spareMemmap = nil, 0, nil
	if err != nil {
		return errno.EINVAL
	}
	return nil
}

func (f *Frames) rangeOK(pfn PFN, n uint64) bool {
	return uint64(pfn) <= f.nframes && n <= f.nframes-uint64(pfn)
}

func (f *Frames) addrOK(addr PhysAddr, n uint64) bool {
	size := f.Size()
	return uint64(addr) <= size && n <= size-uint64(addr)
}

func (f *Frames) badRange(pfn PFN, n uint64) {
	invariant.Panic(pkg, invPFNInRange, fmt.Sprintf("machine has %d frames", f.nframes),
		"frames [%#x, %#x+%d) lie beyond physical memory", uint64(pfn), uint64(pfn), n)
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
