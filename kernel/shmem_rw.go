package kernel

import (
	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// zeroChunk is handed to read sinks for holes and fallocated folios
// (ZERO_PAGE, widened so a sparse read does not make one call per page).
// Sinks must not modify what they are given.
var zeroChunk [256 << 10]byte

// ReadAt implements ReadWriter for shmem files: shmem_file_read_iter()
// from off for up to n bytes, stopping at i_size. Holes and fallocated
// (!uptodate) folios read as zeros without allocating; a page out on swap
// is read back first. Folio bytes go to sink straight from the frames.
//
// Errors: EINVAL for a negative offset or count; ENOMEM (or the injected
// page_alloc fault) when a swapped page cannot be read back and nothing
// was read yet; the sink's error, with the bytes read before it.
func (o *shmemFileOps) ReadAt(t *Task, f *File, off, n int64, sink DataSink) (int64, error) {
	if off < 0 || n < 0 {
		return 0, errno.EINVAL
	}
	return f.k.shmemFileRead(shmemI(f.Inode), off, n, sink)
}

func (k *Kernel) shmemFileRead(info *ShmemInodeInfo, pos, n int64, sink DataSink) (int64, error) {
	k.mustAlive()
	if sink == nil {
		sink = func([]byte, int64) error { return nil }
	}
	var done int64
	for done < n {
		if pos >= info.inode.Size {
			break
		}
		index := uint64(pos) >> physmem.PageShift
		f, ok, err := k.shmemGetFolioGFP(info, index, 0, sgpRead, nil, 0)
		if err != nil {
			if err == errno.EINVAL || done > 0 {
				break
			}
			return 0, err
		}
		// Evaluate i_size after the lookup, as Linux does.
		limit := min(info.inode.Size, pos+(n-done))
		// Lengths, not ends: the end of the last folio of the largest
		// file, 2^63, is not an int64.
		var b []byte
		if ok {
			from := pos - k.folioPos(f)
			b = k.folioData(f)[from : from+min(k.folioSize(f)-from, limit-pos)]
		} else {
			b = zeroChunk[:min(limit-pos, k.zeroRunEnd(info, index)-pos, int64(len(zeroChunk)))]
		}
		err = sink(b, pos)
		if ok {
			k.MM.FolioPut(f)
		}
		if err != nil {
			return done, err
		}
		pos += int64(len(b))
		done += int64(len(b))
	}
	return done, nil
}

// zeroRunEnd returns the file offset where the zeros that read finds at
// index end: the end of the fallocated folio there, or the next entry
// after a hole.
func (k *Kernel) zeroRunEnd(info *ShmemInodeInfo, index uint64) int64 {
	if e, ok := info.mapping.Lookup(index); ok {
		return pgoffPos(e.Index + e.NrIndices())
	}
	for e := range info.mapping.Range(index, maxLFSFileSize>>physmem.PageShift) {
		return pgoffPos(e.Index)
	}
	return maxLFSFileSize
}

// WriteAt implements ReadWriter for shmem files: generic_perform_write()
// with shmem_write_begin()/shmem_write_end(). The write goes in chunks of
// mapping_max_folio_size() (2 MiB with large folios, a page without); each
// chunk's folio is found or allocated (SGP_WRITE: a new folio is not
// cleared) and src fills its frames in place. A folio that was not
// uptodate gets the rest of its bytes zeroed and becomes uptodate. i_size
// grows to cover what was written.
//
// Errors, when nothing was written (otherwise the count written so far):
// EINVAL for a negative offset or count; EPERM if F_SEAL_WRITE or
// F_SEAL_FUTURE_WRITE is set, or F_SEAL_GROW and the chunk would grow the
// file; ENOSPC beyond the file system's size; ENOMEM (or the injected
// page_alloc fault) when no folio can be allocated.
func (o *shmemFileOps) WriteAt(t *Task, f *File, off, n int64, src DataSource) (int64, error) {
	if off < 0 || n < 0 {
		return 0, errno.EINVAL
	}
	return f.k.shmemFileWrite(shmemI(f.Inode), off, n, src)
}

func (k *Kernel) shmemFileWrite(info *ShmemInodeInfo, pos, n int64, src DataSource) (int64, error) {
	k.mustAlive()
	n = min(n, maxLFSFileSize-pos) // generic_write_check_limits
	if ShmemFrozen(info) {
		// shmem_write_begin on a frozen mapping: nothing may be added
		// beyond i_size (see ShmemFreeze).
		if pos >= info.inode.Size {
			return 0, errno.EPERM
		}
		n = min(n, info.inode.Size-pos)
	}
	chunk := info.mappingMaxFolioSize()
	var written int64
	var err error
	for written < n {
		offset := pos & (chunk - 1)
		bytes := min(chunk-offset, n-written)
		// shmem_write_begin
		if seals := info.Seals; seals&(uapi.F_SEAL_GROW|uapi.F_SEAL_WRITE|uapi.F_SEAL_FUTURE_WRITE) != 0 {
			if seals&(uapi.F_SEAL_WRITE|uapi.F_SEAL_FUTURE_WRITE) != 0 {
				err = errno.EPERM
				break
			}
			if seals&uapi.F_SEAL_GROW != 0 && pos+bytes > info.inode.Size {
				err = errno.EPERM
				break
			}
		}
		var f physmem.Folio
		if f, _, err = k.shmemGetFolioGFP(info, uint64(pos)>>physmem.PageShift, pos+bytes, sgpWrite, nil, 0); err != nil {
			break
		}
		fpos := k.folioPos(f)
		from := pos - fpos
		bytes = min(bytes, k.folioSize(f)-from)
		data := k.folioData(f)
		if src != nil {
			src(data[from:from+bytes], pos)
		} else {
			clear(data[from : from+bytes])
		}
		// shmem_write_end
		if pos+bytes > info.inode.Size {
			info.inode.Size = pos + bytes
		}
		if !k.FolioTestUptodate(f) {
			clear(data[:from])
			clear(data[from+bytes:])
			k.folioMarkUptodate(f)
		}
		k.folioMarkDirty(f)
		k.MM.FolioPut(f)
		pos += bytes
		written += bytes
	}
	if written == 0 {
		return 0, err
	}
	return written, nil
}

// Size implements Seeker: i_size.
func (o *shmemFileOps) Size(f *File) int64 { return f.Inode.Size }

// shmemSetattrSize is the ATTR_SIZE part of shmem_setattr(): ftruncate
// and O_TRUNC. Growing only moves i_size; shrinking, or truncating to the
// same size, unmaps and removes every page past the new size
// (shmem_truncate_range(inode, newsize, -1)), including pages fallocated
// beyond i_size with FALLOC_FL_KEEP_SIZE, and zeroes the tail of the last
// page.
//
// Errors: EPERM when F_SEAL_SHRINK forbids shrinking or F_SEAL_GROW
// growing, or when the inode is frozen (ShmemFreeze) and the size changes.
func (k *Kernel) shmemSetattrSize(info *ShmemInodeInfo, newsize int64) error {
	in := info.inode
	oldsize := in.Size
	if newsize < oldsize && info.Seals&uapi.F_SEAL_SHRINK != 0 ||
		newsize > oldsize && info.Seals&uapi.F_SEAL_GROW != 0 {
		return errno.EPERM
	}
	if newsize != oldsize && ShmemFrozen(info) {
		return errno.EPERM
	}
	in.Size = newsize
	if newsize <= oldsize {
		// round_up(newsize, PAGE_SIZE), in pages: for a newsize in the
		// last page it is 2^63, which no int64 holds, and nothing lies
		// beyond it to unmap.
		if holebegin := posPgoffUp(newsize); oldsize > pgoffPos(holebegin) {
			k.unmapMappingPages(info, holebegin, ^uint64(0))
		}
		if info.alloced != 0 {
			shmemTruncateRange(info, newsize, -1)
		}
	}
	return nil
}

// shmemFallocate is shmem_fallocate(), after vfs_fallocate's checks.
//
// FALLOC_FL_PUNCH_HOLE (with KEEP_SIZE) unmaps the whole pages of the
// range and truncates it: whole folios go, partial ones are zeroed (and
// large ones split).
//
// Mode 0 and FALLOC_FL_KEEP_SIZE allocate every page of the range that is
// not cached (SGP_FALLOC): new folios stay !uptodate, reading as zeros,
// until written; a folio fallocated by an earlier call is zeroed and made
// uptodate, so a later failure cannot undo it; swapped pages are read
// back. info->fallocend records how far fallocate reached, so that a
// later split keeps pages preallocated beyond i_size. On failure the
// folios this call added are removed again (shmem_undo_range with
// unfalloc) and nothing changes. Mode 0 then grows i_size to cover the
// range.
//
// Errors: EOPNOTSUPP for other modes; EPERM on a frozen inode
// (ShmemFreeze), for a punch hole on a memfd
// sealed F_SEAL_WRITE or F_SEAL_FUTURE_WRITE, or an allocation beyond
// i_size with F_SEAL_GROW; EFBIG beyond the largest file size; ENOSPC
// beyond the file system's size; ENOMEM (or the injected page_alloc
// fault) when a folio cannot be allocated.
func (k *Kernel) shmemFallocate(info *ShmemInodeInfo, mode int, offset, length int64) error {
	if mode&^(uapi.FALLOC_FL_KEEP_SIZE|uapi.FALLOC_FL_PUNCH_HOLE) != 0 {
		return errno.EOPNOTSUPP
	}
	in := info.inode
	if ShmemFrozen(info) {
		return errno.EPERM
	}
	if mode&uapi.FALLOC_FL_PUNCH_HOLE != 0 {
		if info.Seals&(uapi.F_SEAL_WRITE|uapi.F_SEAL_FUTURE_WRITE) != 0 {
			return errno.EPERM
		}
		// In u64, as Linux compares them: round_up(offset, PAGE_SIZE)
		// is 2^63 for an offset in the last page of the largest file.
		unmapStart := (uint64(offset) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
		unmapEnd := uint64(offset+length)&^(physmem.PageSize-1) - 1
		// A hole inside the first page (offset 0, len < PAGE_SIZE)
		// makes unmap_end -1 (u64 max), and unmap_mapping_range(mapping,
		// 0, 0) then unmaps the whole file. Harmless (pages fault
		// back), and visible in mapcounts.
		if unmapEnd > unmapStart {
			k.unmapMappingRange(info, int64(unmapStart), int64(1+unmapEnd-unmapStart))
		}
		shmemTruncateRange(info, offset, offset+length-1)
		return nil
	}
	// inode_newsize_ok (RLIMIT_FSIZE is unlimited)
	if offset+length > maxLFSFileSize {
		return errno.EFBIG
	}
	if info.Seals&uapi.F_SEAL_GROW != 0 && offset+length > in.Size {
		return errno.EPERM
	}
	start := uint64(offset) >> physmem.PageShift
	end := posPgoffUp(offset + length) // u64 in Linux too: PAGE_SIZE is unsigned
	// Try to avoid a swapstorm if len is impossible to satisfy.
	if info.sb.maxBlocks != 0 && end-start > info.sb.maxBlocks {
		return errno.ENOSPC
	}
	undoFallocend := info.fallocend
	if info.fallocend < end {
		info.fallocend = end
	}
	for index := start; index < end; {
		f, _, err := k.shmemGetFolioGFP(info, index, offset+length, sgpFalloc, nil, 0)
		if err != nil {
			info.fallocend = undoFallocend
			// Remove the !uptodate folios we added.
			if index > start {
				if uerr := ShmemUndoRange(info, pgoffPos(start), pgoffPos(index)-1,
					true, ShmemDefaultUndoOps); uerr != nil {
					panicViolation("shmem-undo-default-ops", info.String(), "undoing a failed fallocate: %v", uerr)
				}
			}
			return err
		}
		// A second SGP_FALLOC on the same large folio would clear it,
		// making it uptodate and un-undoable if we fail later.
		index = k.folioNextIndex(f)
		// If !uptodate, leave it that way so that freeable folios can be
		// recognized if we need to rollback on error later; but mark it
		// dirty so that memory pressure swaps rather than frees it.
		k.folioMarkDirty(f)
		k.MM.FolioPut(f)
	}
	if mode&uapi.FALLOC_FL_KEEP_SIZE == 0 && offset+length > in.Size {
		in.Size = offset + length
	}
	return nil
}

// shmemSeekHoleData is shmem_file_llseek() for SEEK_DATA and SEEK_HOLE:
// mapping_seek_hole_data() over [offset, i_size). Uptodate folios and
// swapped pages are data; holes and fallocated !uptodate folios are holes;
// i_size ends the last hole.
//
// Errors: ENXIO for a negative offset, an offset at or beyond i_size, or
// SEEK_DATA with no data after offset.
func (k *Kernel) shmemSeekHoleData(info *ShmemInodeInfo, start int64, seekData bool) (int64, error) {
	end := info.inode.Size
	if start < 0 || end <= start {
		return 0, errno.ENXIO
	}
	last := uint64(end-1) >> physmem.PageShift
	for e := range info.mapping.Range(uint64(start)>>physmem.PageShift, last) {
		pos := max(pgoffPos(e.Index), start&^(physmem.PageSize-1))
		if start < pos {
			if !seekData {
				break // a hole before this entry
			}
			start = pos
		}
		entryEnd := pgoffPos(e.Index + e.NrIndices()) // u64 in Linux: round_up((u64)pos + 1, seek_size)
		data := e.Entry.IsValue() || k.FolioTestUptodate(physmem.Folio(e.Entry.PFN()))
		if data == seekData {
			return start, nil
		}
		start = entryEnd
		if start >= end {
			break
		}
	}
	if seekData {
		return 0, errno.ENXIO
	}
	return min(start, end), nil
}
