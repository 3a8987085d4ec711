package preserve

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math"

	"khosim/errno"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
)

// The memfd's record in preserved memory, as mainline's memfd_luo writes it
// (include/linux/kho/abi/memfd.h): a struct memfd_luo_ser in a block of
// its own (kho_alloc_preserve), pointing at an array of struct
// memfd_luo_folio_ser in a preserved vmalloc area (kho_preserve_vmalloc).
// Every integer is little endian, every struct __packed:
//
//	memfd-v1: struct memfd_luo_ser { u64 pos; u64 size; u64 nr_folios; struct kho_vmalloc folios; }  // 40 bytes
//	memfd-v2: struct memfd_luo_ser { u64 pos; u64 size; u32 seals; u32 flags; u64 nr_folios; struct kho_vmalloc folios; }  // 48 bytes
//	struct memfd_luo_folio_ser { u64 pfn:52, flags:12; u64 index; }  // 16 bytes; flags DIRTY BIT(0), UPTODATE BIT(1)
//
// memfd-v1 carries no seals (a restored file is memfd_alloc_file("", 0):
// named "memfd:", sealed F_SEAL_SEAL only); memfd-v2 carries them, refuses
// to preserve a seal outside MEMFD_LUO_ALL_SEALS (EOPNOTSUPP), and marks
// every folio dirty and uptodate. A kernel writes the version its build's
// memfd= key gives and reads every version up to it.

// Compatibles of the memfd_luo records.
const (
	MemfdLUOV1 = "memfd-v1"
	MemfdLUOV2 = "memfd-v2"
)

// memfd_luo folio flags (MEMFD_LUO_FOLIO_*).
const (
	memfdLUOFolioDirty    = 1 << 0
	memfdLUOFolioUptodate = 1 << 1
)

// memfdLUOAllSeals is MEMFD_LUO_ALL_SEALS: the seals memfd-v2 preserves.
const memfdLUOAllSeals = shmemKnownSeals

// Sizes of the packed records.
const (
	memfdLUOSerV1Size  = 40
	memfdLUOSerV2Size  = 48
	memfdLUOFolioSize  = 16
	memfdLUOPFNBits    = 52
	memfdLUOFolioPerPg = physmem.PageSize / memfdLUOFolioSize
)

func (h *memfdHandler) version() int { return h.l.k.Build().Memfd }

// BlobCompatible implements Handler: the build's memfd= version.
func (h *memfdHandler) BlobCompatible() string {
	if h.version() == 1 {
		return MemfdLUOV1
	}
	return MemfdLUOV2
}

// ReadsBlob implements Handler: every version up to the build's.
func (h *memfdHandler) ReadsBlob(compat string) bool {
	switch compat {
	case MemfdLUOV1:
		return h.l.k.Build().ReadsMemfd(1)
	case MemfdLUOV2:
		return h.l.k.Build().ReadsMemfd(2)
	}
	return false
}

// blobState is a memfdFile's record in preserved memory, once written.
type blobState struct {
	written bool
	version int
	ser     physmem.PhysAddr // the struct memfd_luo_ser block (one page)
	serB    []byte
	arr     *kexec.Vmalloc // the struct memfd_luo_folio_ser array
}

// mems yields the record's own preserved pages.
func (b *blobState) mems() iter.Seq[kexec.Mem] {
	return func(yield func(kexec.Mem) bool) {
		if !b.written {
			return
		}
		if !yield(kexec.Mem{Addr: b.ser, Size: physmem.PageSize}) {
			return
		}
		for _, p := range b.arr.Pages {
			if !yield(kexec.Mem{Addr: p.Phys(), Size: physmem.PageSize}) {
				return
			}
		}
		for _, p := range b.arr.Chunks {
			if !yield(kexec.Mem{Addr: p.Phys(), Size: physmem.PageSize}) {
				return
			}
		}
	}
}

func (b *blobState) visitRefs(kernel.RefVisitor) {} // KHO holds the blob's pages

func (b *blobState) check(mf *memfdFile) error {
	if !b.written {
		return nil
	}
	for m := range b.mems() {
		if !mf.h.l.kho.IsPreserved(physmem.Folio(m.PFN())) {
			return invariant.New("preserve", "memfd-blob", mf.String(), "page %v of the memfd_luo record is not preserved", m)
		}
	}
	return nil
}

// WriteBlob is the serialization half of memfd_luo_preserve() (and of
// memfd_luo_freeze() when called again): the struct memfd_luo_ser block
// and the folio array, written in the build's memfd= version.
//
// Errors: EOPNOTSUPP (memfd-v2) for a seal outside MEMFD_LUO_ALL_SEALS;
// ENOMEM and KHO's errors from allocating and preserving the record's
// pages (nothing stays allocated then).
func (mf *memfdFile) WriteBlob() (physmem.PhysAddr, error) {
	mf.mustLive("write blob")
	m := mf.meta()
	b := &mf.blob
	kho := mf.h.l.kho
	if !b.written {
		version := mf.h.version()
		if version >= 2 && m.seals&^memfdLUOAllSeals != 0 {
			return 0, errno.EOPNOTSUPP
		}
		n := len(mf.folios)
		ser, serB, err := kho.AllocPreserve(memfdLUOSerV2Size)
		if err != nil {
			return 0, err
		}
		arr, err := kho.VmallocPreserve((n + memfdLUOFolioPerPg - 1) / memfdLUOFolioPerPg)
		if err != nil {
			_ = kho.UnpreserveFree(ser)
			return 0, err
		}
		*b = blobState{written: true, version: version, ser: ser, serB: serB, arr: arr}
		mf.writeFolioArray()
		mf.h.l.stats.BlobBytes += uint64(memfdLUOSerV2Size + memfdLUOFolioSize*n)
		mf.h.l.k.Work().RecordBytes += uint64(memfdLUOSerV2Size + memfdLUOFolioSize*n)
	}
	le := binary.LittleEndian
	s := b.serB
	le.PutUint64(s[0:], uint64(m.pos))
	le.PutUint64(s[8:], uint64(m.size))
	off := 16
	if b.version >= 2 {
		le.PutUint32(s[16:], m.seals)
		le.PutUint32(s[20:], 0)
		off = 24
	}
	le.PutUint64(s[off:], uint64(len(mf.folios)))
	b.arr.Desc.Put(s[off+8:])
	return b.ser, nil
}

// writeFolioArray fills the struct memfd_luo_folio_ser array.
func (mf *memfdFile) writeFolioArray() {
	frames := mf.h.l.k.MM.Frames
	le := binary.LittleEndian
	v2 := mf.blob.version >= 2
	for i, pf := range mf.folios {
		var fl uint64
		if v2 || pf.flags&ShmemFolioDirty != 0 {
			fl |= memfdLUOFolioDirty
		}
		if v2 || pf.flags&ShmemFolioUptodate != 0 {
			fl |= memfdLUOFolioUptodate
		}
		page := frames.Frame(mf.blob.arr.Pages[i/memfdLUOFolioPerPg])
		o := (i % memfdLUOFolioPerPg) * memfdLUOFolioSize
		le.PutUint64(page[o:], uint64(pf.pfn)|fl<<memfdLUOPFNBits)
		le.PutUint64(page[o+8:], pf.index)
	}
}

// FreeBlob frees the record's pages (kho_unpreserve_free,
// kho_unpreserve_vmalloc).
func (mf *memfdFile) FreeBlob() {
	b := &mf.blob
	if !b.written {
		return
	}
	kho := mf.h.l.kho
	if err := kho.UnpreserveFree(b.ser); err != nil {
		invariant.Panic("preserve", "memfd-blob", mf.String(), "freeing the memfd_luo record: %v", err)
	}
	kho.VmallocUnpreserve(b.arr)
	*b = blobState{}
}

// blobIn is an incoming record's own pages, claimed at open and freed
// once the file is restored or discarded.
type blobIn struct {
	ser   physmem.Folio
	pages []physmem.Folio
}

func (in *memfdIncoming) freeBlob() {
	if in.blob == nil {
		return
	}
	mm := in.h.l.k.MM
	mm.FolioPut(in.blob.ser)
	for _, p := range in.blob.pages {
		mm.FolioPut(p)
	}
	in.blob = nil
}

// blobFolios reads the struct memfd_luo_folio_ser array in place.
type blobFolios struct {
	frames *physmem.Frames
	pages  []physmem.Folio
	nr     int
	orders []uint8 // the order of each folio, from its claim
}

func (b blobFolios) Len() int { return b.nr }

func (b blobFolios) At(i int) inFolio {
	le := binary.LittleEndian
	page := b.frames.Frame(b.pages[i/memfdLUOFolioPerPg].PFN())
	o := (i % memfdLUOFolioPerPg) * memfdLUOFolioSize
	w := le.Uint64(page[o:])
	pfn := physmem.PFN(w & (1<<memfdLUOPFNBits - 1))
	fl := w >> memfdLUOPFNBits
	f := inFolio{mem: kexec.Mem{Addr: pfn.Phys(), Size: physmem.PageSize << b.orders[i]}, index: le.Uint64(page[o+8:])}
	if fl&memfdLUOFolioDirty != 0 {
		f.flags |= ShmemFolioDirty
	}
	if fl&memfdLUOFolioUptodate != 0 {
		f.flags |= ShmemFolioUptodate
	}
	return f
}

// ReadBlob opens a memfd_luo record at phys, as LUO's deserialization does
// at boot: the memfd_luo_ser block and the folio array are claimed
// (kho_restore_free / kho_restore_vmalloc are deferred to Restore and
// Discard, which free them), and so is every folio the array lists, so
// that after boot the file's memory counts as used, held for the file
// until it is retrieved (Restore) or finished (Discard). A pfn of 0 is an
// empty slot and skipped, as memfd_luo_retrieve_folios does.
//
// Errors: EINVAL for a compatible this kernel does not read or a record
// that does not check (sizes beyond MAX_LFS_FILESIZE, more folios than
// memory, unknown seals or flags, folios not preserved or misaligned);
// ENOMEM (or the kho_claim fault) from a claim. What was claimed is freed
// then; what was not stays for KHO's late pass.
func (h *memfdHandler) ReadBlob(compat string, phys physmem.PhysAddr) (Incoming, error) {
	if !h.ReadsBlob(compat) {
		return nil, fmt.Errorf("memfd: record %q is not one this kernel reads: %w", compat, errno.EINVAL)
	}
	kho, mm := h.l.kho, h.l.k.MM
	bad := func(err error) (Incoming, error) {
		return nil, fmt.Errorf("memfd: record at %#x: %w", uint64(phys), err)
	}
	ser, _, err := kho.ClaimAt(phys)
	if err != nil {
		return bad(err)
	}
	in := &memfdIncoming{h: h, version: compat, fromKHO: true, blob: &blobIn{ser: ser}}
	fail := func(format string, args ...any) (Incoming, error) {
		in.freeBlob()
		return bad(fmt.Errorf(format, args...))
	}
	le := binary.LittleEndian
	s := mm.Frames.Frame(ser.PFN())
	pos, size := le.Uint64(s[0:]), le.Uint64(s[8:])
	off := 16
	if compat == MemfdLUOV2 {
		in.meta.seals = le.Uint32(s[16:])
		if in.meta.seals&^memfdLUOAllSeals != 0 || le.Uint32(s[20:]) != 0 {
			return fail("unknown seals %#x or flags %#x: %w", in.meta.seals, le.Uint32(s[20:]), errno.EINVAL)
		}
		in.hasSeals = true
		off = 24
	}
	nr := le.Uint64(s[off:])
	desc := kexec.ReadKHOVmalloc(s[off+8:])
	if pos > math.MaxInt64 || size > math.MaxInt64 || nr > mm.Frames.NumFrames() ||
		uint64(desc.TotalPages)*memfdLUOFolioPerPg < nr {
		return fail("pos %#x size %#x nr_folios %d beyond what memory holds: %w", pos, size, nr, errno.EINVAL)
	}
	in.meta.pos, in.meta.size = int64(pos), int64(size)
	if nr > 0 {
		pages, err := kho.VmallocRestore(desc)
		if err != nil {
			return fail("folio array: %w", err)
		}
		in.blob.pages = pages
	}
	src := blobFolios{frames: mm.Frames, pages: in.blob.pages, nr: int(nr), orders: make([]uint8, nr)}
	// Claim every folio: read its pfn, restore the folio, record its
	// order (the array carries none: the KHO page magic does).
	for i := range int(nr) {
		fo := src.At(i) // order 0 until claimed
		if fo.mem.Addr == 0 {
			continue
		}
		f, order, err := kho.ClaimAt(fo.mem.Addr)
		if err != nil {
			for j := range i {
				if g := src.At(j); g.mem.Addr != 0 {
					mm.FolioPut(physmem.Folio(g.mem.PFN()))
				}
			}
			return fail("folio %d at %v: %w", i, fo.mem.Addr, err)
		}
		_ = f // held until Restore inserts it or Discard frees it
		src.orders[i] = uint8(order)
	}
	in.src = src
	in.claimed = true
	h.l.holdIncoming(in)
	return in, nil
}
