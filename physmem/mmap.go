package physmem

import (
	"math"
	"syscall"
	"unsafe"

	"khosim/errno"
)

// mmapAnon maps size bytes of zeroed anonymous host memory with
// MAP_NORESERVE, so the host commits only the pages that get touched: a
// 64 GiB machine costs what it uses. The memory is outside the Go heap, so
// the garbage collector never scans it; whatever lives there must hold no Go
// pointers.
func mmapAnon(size uint64) ([]byte, error) {
	if size == 0 || size > math.MaxInt {
		return nil, errno.ENOMEM
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, errno.ENOMEM
	}
	return b, nil
}

// HostBitmap returns a zeroed bitmap of words in a host mapping of its
// own (mmapAnon): the words nobody sets cost the host nothing, and the Go
// runtime neither clears nor scans it, which matters for a bit per frame
// of a machine far larger than the host. It is simulator bookkeeping, not
// simulated kernel memory. The caller must free it with FreeHostBitmap.
//
// Errors: ENOMEM if the host cannot map it.
func HostBitmap(words uint64) ([]uint64, error) {
	b, err := mmapAnon(max(words, 1) * 8)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), words), nil
}

// FreeHostBitmap frees a bitmap of HostBitmap; nil is a no-op.
func FreeHostBitmap(b []uint64) {
	if b != nil {
		_ = syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), max(len(b), 1)*8))
	}
}

// hostPagesIn returns the part of b made of whole host pages, as offsets:
// b[start:end] is host page aligned at both ends and b[:start], b[end:]
// each lie within one host page. start >= end if b covers no host page
// whole.
func hostPagesIn(b []byte) (start, end int) {
	hp := uintptr(syscall.Getpagesize())
	base := uintptrOf(b)
	start = int((hp - base%hp) % hp)
	end = len(b) - int((base+uintptr(len(b)))%hp)
	return start, end
}

// discard drops the host pages wholly inside b (MADV_DONTNEED): they read
// back as zeroes and stop counting in the host's RSS. The parts of b that
// only partly cover a host page are cleared instead.
func discard(b []byte) {
	start, end := hostPagesIn(b)
	if start >= end {
		clear(b)
		return
	}
	if err := syscall.Madvise(b[start:end], syscall.MADV_DONTNEED); err != nil {
		clear(b[start:end])
	}
	clear(b[:start])
	clear(b[end:])
}

// clearResident zeroes b, any part of a host mapping, committing no host
// page that is not committed already. Of the host pages wholly inside b,
// those the host has in memory (mincore) are cleared, the others are
// dropped (MADV_DONTNEED, which costs next to nothing for pages never
// committed and also drops any the host swapped out). The parts of b that
// only partly cover a host page, at either end, are cleared: the rest of
// such a host page is not b's to drop.
func clearResident(b []byte) {
	start, end := hostPagesIn(b)
	if start >= end {
		clear(b)
		return
	}
	clear(b[:start])
	clear(b[end:])
	b = b[start:end]
	hp := syscall.Getpagesize()
	npages := len(b) / hp
	vec := make([]byte, npages)
	_, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptrOf(b), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		clear(b)
		return
	}
	for i := 0; i < npages; {
		in := vec[i] & 1
		j := i + 1
		for j < npages && vec[j]&1 == in {
			j++
		}
		run := b[i*hp : j*hp]
		if in != 0 {
			clear(run)
		} else if err := syscall.Madvise(run, syscall.MADV_DONTNEED); err != nil {
			clear(run)
		}
		i = j
	}
}
