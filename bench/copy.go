package bench

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// MaxCopyBuffer bounds the buffer the copy baseline goes through. A memfd
// up to this size is copied out to a buffer of its own size and back; a
// larger one streams through a buffer of this size, reused cyclically.
//
// Why not a buffer of the memfd's size: for 4 GiB that is 4 GiB more
// resident memory on top of the memfd's 4 GiB, and `khosim bench --sizes
// 4GiB` must stay under 6 GiB of peak RSS. Why not a small chunk: a chunk
// that fits in the CPU caches turns the copy-out's writes and the
// copy-in's reads into cache hits, and the baseline would be faster than
// any real copy. A 512 MiB buffer is twice the largest last-level cache
// (this machine's is 260 MiB), so the bytes still go to DRAM and back as
// with a full-size buffer (on this machine buffers of 64 MiB to 2 GiB gave
// the same rate within the noise; docs/performance.md).
const MaxCopyBuffer = 512 * MiB

// CopyBuffer is the baseline's destination: anonymous memory outside the
// Go heap (so it neither raises the garbage collector's heap goal nor is
// scanned), faulted in when created so that the timed copies measure
// memory bandwidth, not page faults.
type CopyBuffer struct {
	mem []byte
}

// NewCopyBuffer maps n bytes (a multiple of PageSize) and touches every
// page.
func NewCopyBuffer(n uint64) (*CopyBuffer, error) {
	if n == 0 || n%PageSize != 0 {
		return nil, fmt.Errorf("copy buffer of %d bytes: not a positive multiple of %d", n, PageSize)
	}
	mem, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("copy buffer of %s: %w", FormatSize(n), err)
	}
	for i := 0; i < len(mem); i += PageSize {
		mem[i] = 1
	}
	return &CopyBuffer{mem: mem}, nil
}

// Bytes returns the buffer.
func (c *CopyBuffer) Bytes() []byte { return c.mem }

// Close unmaps the buffer.
func (c *CopyBuffer) Close() error {
	if c.mem == nil {
		return nil
	}
	err := syscall.Munmap(c.mem)
	c.mem = nil
	return err
}

// CopyTwice is the copy-out/copy-in a checkpointing tool needs: every byte
// of spans (the memfd's frames, in file order) is copied out to buf and
// then, in a second pass, back in from buf to where it came from. A span
// longer than what is left of buf wraps around to its start. It returns
// the wall time of each pass.
//
// Both sides are resident before the first pass (the memfd holds data,
// buf was touched by NewCopyBuffer), so neither pass takes page faults: this
// is the fastest the copy can be, which makes the ratio to the handover a
// conservative one. A garbage collection runs before each pass.
func CopyTwice(spans [][]byte, buf []byte) (outNS, inNS int64) {
	if len(buf) == 0 {
		panic("bench: CopyTwice with an empty buffer")
	}
	runtime.GC()
	start := time.Now()
	pos := 0
	for _, s := range spans {
		for len(s) > 0 {
			n := copy(buf[pos:], s)
			s = s[n:]
			pos += n
			if pos == len(buf) {
				pos = 0
			}
		}
	}
	outNS = time.Since(start).Nanoseconds()

	runtime.GC()
	start = time.Now()
	pos = 0
	for _, s := range spans {
		for len(s) > 0 {
			n := copy(s, buf[pos:])
			s = s[n:]
			pos += n
			if pos == len(buf) {
				pos = 0
			}
		}
	}
	inNS = time.Since(start).Nanoseconds()
	return outNS, inNS
}

// CopyBufferSize is the buffer CopyTwice uses for size bytes.
func CopyBufferSize(size uint64) uint64 { return min(size, MaxCopyBuffer) }
