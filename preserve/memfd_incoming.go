package preserve

import (
	"fmt"

	"khosim/errno"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
)

// logErr and logInfo are the printk levels the layer uses.
const (
	logErr  = kernel.LogErr
	logInfo = kernel.LogInfo
)

// inFolio is one folio of an incoming record: its preserved range, the
// index of its first page and its shmem-v2 flags.
type inFolio struct {
	mem   kexec.Mem
	index uint64
	flags uint8
}

// folioSource reads a record's folios where they are (an FDT property, a
// preserved array), without materialising a million of them.
type folioSource interface {
	Len() int
	At(i int) inFolio
}

// pfolios is a live record's folios as a folioSource.
type pfolios []pfolio

func (p pfolios) Len() int { return len(p) }
func (p pfolios) At(i int) inFolio {
	return inFolio{mem: kexec.FolioMem(p[i].folio(), uint(p[i].order)), index: p[i].index, flags: p[i].flags}
}

// memfdIncoming is a memfd a previous kernel preserved (or a detached
// record of this one, for Rebuild), opened from its record.
//
// State machine: opened --Restore ok--> restored; --Restore fails-->
// spent (memory returned); --Discard--> spent. Restored and spent are
// final.
type memfdIncoming struct {
	h        *memfdHandler
	version  string // the record's compatible
	meta     memfdMeta
	hasSeals bool // the record carries seals (shmem-v2, memfd-v2)
	hasMode  bool // and the mode bits (shmem-v2)
	src      folioSource
	fromKHO  bool    // the folios come from KHO's handover
	claimed  bool    // and were claimed at open (ReadBlob): held until Restore or Discard
	blob     *blobIn // a LUO record's own preserved pages, freed once read
	next     int     // folios before it were consumed by a build (inserted or freed)
	spent    bool
}

func (in *memfdIncoming) Name() string { return in.fileName() }
func (in *memfdIncoming) Size() int64  { return in.meta.size }

func (in *memfdIncoming) Pages() uint64 {
	var n uint64
	for i := range in.src.Len() {
		n += in.src.At(i).mem.NrPages()
	}
	return n
}

func (in *memfdIncoming) fileName() string {
	if in.meta.name == "" {
		return "memfd:"
	}
	return in.meta.name
}

// Restore is shmem_fdbox_kho_recover() (the RFC) and memfd_luo_retrieve():
// an empty shmem file, then every folio claimed from KHO (kho_claim_mem /
// kho_restore_folio) and put into the page cache at its index with its
// flags, then size, pos, memfd_setup_file and, where the record carries
// them, the seals and mode. The folios end with the references a clean
// boot gives a cached folio (the page cache's), the file with one (the
// caller's). On error the file is released (freeing the folios already
// inserted) and every range not yet claimed is returned.
func (in *memfdIncoming) Restore() (*kernel.File, error) {
	if in.spent || !in.fromKHO {
		return nil, errno.EINVAL
	}
	claim := in.h.l.kho.ClaimMem
	if in.claimed {
		// The reference ReadBlob's claim took is the one build puts.
		claim = func(m kexec.Mem) (physmem.Folio, error) { return physmem.Folio(m.PFN()), nil }
	}
	file, err := in.build(claim)
	if err != nil {
		in.Discard()
		in.h.l.stats.RecordsFailed++
		return nil, err
	}
	in.freeBlob()
	in.spent = true
	in.h.l.dropIncoming(in)
	return file, nil
}

// Discard returns to the allocator every range of the record still
// preserved (ranges already claimed, or never handed over, stay as they
// are), and the record's own pages.
func (in *memfdIncoming) Discard() {
	if in.spent || !in.fromKHO {
		return
	}
	kho, mm := in.h.l.kho, in.h.l.k.MM
	for i := in.next; i < in.src.Len(); i++ {
		m := in.src.At(i).mem
		switch {
		case in.claimed && m.Addr != 0:
			mm.FolioPut(physmem.Folio(m.PFN())) // held since ReadBlob: free it
		case !in.claimed:
			_ = kho.ReturnMem(m) // ranges already claimed, or not ours, stay as they are
		}
	}
	in.freeBlob()
	in.spent = true
	in.h.l.dropIncoming(in)
}

// visitRefs reports what a claimed record holds: its own pages and one
// reference on every folio not yet consumed.
func (in *memfdIncoming) visitRefs(v kernel.RefVisitor) {
	who := "preserve: incoming record of " + in.fileName()
	if in.blob != nil {
		v.Folio(in.blob.ser.PFN(), 1, who)
		for _, p := range in.blob.pages {
			v.Folio(p.PFN(), 1, who)
		}
	}
	for i := in.next; i < in.src.Len(); i++ {
		if m := in.src.At(i).mem; m.Addr != 0 {
			v.Folio(m.PFN(), 1, who)
		}
	}
}

// build makes the file, getting each folio with claim (which hands the
// caller one reference on it).
func (in *memfdIncoming) build(claim func(kexec.Mem) (physmem.Folio, error)) (*kernel.File, error) {
	l := in.h.l
	k := l.k
	file, err := k.ShmemFileSetup(in.fileName(), 0)
	if err != nil {
		return nil, fmt.Errorf("shmem: failed to setup file: %w", err)
	}
	info := kernel.ShmemInode(file)
	n := in.src.Len()
	if n > 0 {
		// Size the page cache's node arena for the whole file at once
		// (exact for a dense file of one folio order; a sparse or mixed
		// file grows it further as usual).
		if order, ok := in.src.At(0).mem.FolioOrder(); ok && (in.version != ShmemCompatibleV1 || order == 0) {
			info.Mapping().ReserveNodes(uint64(n)<<order, order)
		}
	}
	for i := range n {
		in.next = i
		fo := in.src.At(i)
		if in.claimed && fo.mem.Addr == 0 {
			continue // an empty slot of a memfd_luo array
		}
		order, ok := fo.mem.FolioOrder()
		if !ok || in.version == ShmemCompatibleV1 && order != 0 {
			file.Put()
			return nil, fmt.Errorf("shmem: unknown kho_mem %v: %w", fo.mem, errno.EINVAL)
		}
		// The folio must lie wholly below MAX_LFS_FILESIZE: its last
		// page at most maxLFSIndex.
		if fo.index&(1<<order-1) != 0 || fo.index > maxLFSIndex+1-(1<<order) {
			file.Put()
			return nil, fmt.Errorf("shmem: index %#x of %v invalid: %w", fo.index, fo.mem, errno.EINVAL)
		}
		folio, err := claim(fo.mem)
		if err != nil {
			file.Put()
			return nil, fmt.Errorf("shmem: failed to claim folio index %d: %w", fo.index, err)
		}
		in.next = i + 1 // this folio is the file's now, or freed below
		if err := k.ShmemRestoreFolio(info, folio, fo.index, fo.flags&ShmemFolioUptodate != 0, fo.flags&ShmemFolioDirty != 0); err != nil {
			k.MM.FolioPut(folio)
			file.Put()
			return nil, fmt.Errorf("shmem: failed to add to page cache folio index %d: %w", fo.index, err)
		}
		k.MM.FolioPut(folio) // the page cache holds it now
		l.stats.Inserted++
		k.Work().PageCacheInserted++
	}
	in.next = n
	file.Inode.Size = in.meta.size
	file.Pos = in.meta.pos
	if err := kernel.MemfdSetupFile(file, 0); err != nil {
		file.Put()
		return nil, err
	}
	if in.hasSeals {
		// The seals as they were. A write-sealed memfd needs no
		// i_mmap_writable = -1 here: it has no mapping, and the seal
		// itself refuses every writable shared mapping from now on.
		info.Seals = in.meta.seals
	}
	if in.hasMode {
		file.Inode.Mode = file.Inode.Mode&^0o7777 | in.meta.mode
	}
	return file, nil
}
