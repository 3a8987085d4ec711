package kernel

import (
	"khosim/errno"
	"khosim/physmem"
)

// PeekFile reads up to n bytes of f from off, stopping at the end of the
// file, and hands them to sink (nil: count only). It is the simulator's
// window on a file's contents, for observers (the scenario runner's
// content() and hash(), tests), and has no Linux counterpart: where a
// read(2) would change the system, PeekFile looks without touching
// anything.
//
// What it reads, for a shmem file (memfd, /tmp file, shmem_file_setup
// file): i_size bounds it; an uptodate folio gives its frames' bytes; a
// hole or a fallocated (!uptodate) folio reads as zeros; a page out on
// swap is read from its swap slot in place. /dev/null reads as empty.
//
// What it does not do, unlike shmem_file_read_iter(): it swaps nothing
// in, inserts nothing in the page cache, allocates no frame, takes no
// folio reference, consults no fault site (an armed page_alloc fault
// stays armed for the next system call), moves no vmstat counter, and
// leaves f_pos alone. khosim keeps no accessed/referenced bits or LRU, so
// there are none to leave untouched. The access mode is not checked: an
// observer may look at a write-only fd's file.
//
// The bytes handed to sink are the kernel's own (frames, swap slots or a
// shared zero buffer) and valid only during the call: sink must not keep
// or modify them.
//
// Errors: EINVAL for a negative offset or count, or a file kind without
// data (a driver's control file); EISDIR for a directory; the sink's
// error, with the bytes handed before it.
func (k *Kernel) PeekFile(f *File, off, n int64, sink DataSink) (int64, error) {
	k.mustAlive()
	f.mustLive()
	if off < 0 || n < 0 {
		return 0, errno.EINVAL
	}
	if sink == nil {
		sink = func([]byte, int64) error { return nil }
	}
	switch {
	case f.Ops == dirFops:
		return 0, errno.EISDIR
	case f.Ops == nullFops:
		return 0, nil
	}
	info := ShmemInode(f)
	if info == nil {
		return 0, errno.EINVAL
	}
	size := info.inode.Size
	if off >= size {
		return 0, nil
	}
	end := off + min(n, size-off) // cannot overflow: off < size <= MAX_LFS_FILESIZE
	var done int64
	for pos := off; pos < end; {
		index := uint64(pos) >> physmem.PageShift
		var b []byte
		switch e, found := info.mapping.Lookup(index); {
		case found && e.Entry.IsValue():
			swap := SwapEntry(e.Entry.Value())
			if !k.swapEntryValid(swap) {
				badSwapEntry(k, swap, "page cache holds a swap entry that names no used slot")
			}
			from := pos & (physmem.PageSize - 1)
			b = k.swap.dev.peek(swap.Offset())[from:min(physmem.PageSize, from+end-pos)]
		case found && k.FolioTestUptodate(physmem.Folio(e.Entry.PFN())):
			folio := physmem.Folio(e.Entry.PFN())
			from := pos - k.folioPos(folio)
			b = k.folioData(folio)[from : from+min(k.folioSize(folio)-from, end-pos)]
		default: // a hole, or a fallocated folio
			b = zeroChunk[:min(end-pos, k.zeroRunEnd(info, index)-pos, int64(len(zeroChunk)))]
		}
		if err := sink(b, pos); err != nil {
			return done, err
		}
		pos += int64(len(b))
		done += int64(len(b))
	}
	return done, nil
}
