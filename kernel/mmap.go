package kernel

import (
	"fmt"
	"slices"

	"khosim/errno"
	"khosim/physmem"
	"khosim/uapi"
)

// TaskMM is a task's address space (struct mm_struct): its shared file
// mappings and their page tables.
//
// Page tables: a present PTE maps one page of a folio. It holds one
// reference on the folio and one mapcount on the page, as
// folio_add_file_rmap_pte() and the reference finish_fault() keeps do.
// khosim maps with PTEs only (no PMD mappings, no fault-around): a fault
// maps the one page it touched.
type TaskMM struct {
	t    *Task
	vmas []*VMA

	ptes     map[uint64]*pteTable // by vpn / ptrsPerPTE
	mmapBase uint64               // top of the next top-down allocation
}

// ptrsPerPTE is PTRS_PER_PTE: one page table maps 2 MiB.
const ptrsPerPTE = 512

// pteTable is one page table: pfn+1 of each mapped page, 0 for none.
type pteTable struct {
	pte     [ptrsPerPTE]uint64
	present int
}

// Virtual memory layout (x86-64, 4-level paging).
const (
	taskSize       = 0x7ffffffff000 // TASK_SIZE_MAX
	mmapTop        = 0x7f0000000000 // mmap_base, below the stack gap
	mmapMinAddr    = 0x10000        // vm.mmap_min_addr
	maxMapCount    = 65530          // vm.max_map_count
	pmdSize        = physmem.PageSize << physmem.HPageOrder
	legacyMapMask  = uapi.MAP_SHARED | uapi.MAP_PRIVATE | uapi.MAP_FIXED | uapi.MAP_ANONYMOUS | 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 // LEGACY_MAP_MASK
	mapType        = 0x0f                                                                                                                                     // MAP_TYPE
	mapSharedValid = 0x03                                                                                                                                     // MAP_SHARED_VALIDATE
	mapGrowsdown   = 0x0100                                                                                                                                   // MAP_GROWSDOWN
	mapHugetlb     = 0x40000                                                                                                                                  // MAP_HUGETLB
)

// vm_flags bits (include/linux/mm.h).
const (
	vmRead     = 0x1
	vmWrite    = 0x2
	vmExec     = 0x4
	vmShared   = 0x8
	vmMayRead  = 0x10
	vmMayWrite = 0x20
	vmMayExec  = 0x40
	vmMayShare = 0x80
)

// VMA is one mapping (struct vm_area_struct). It holds a reference to its
// file (vm_file) for its whole life.
//
// States: mapped (Mmap) -> unmapped (Munmap or exit). An unmapped VMA is
// no longer in its task's list; using it for an access is a SIGSEGV.
type VMA struct {
	mm    *TaskMM
	File  *File
	Start uint64 // virtual address
	Len   uint64
	PgOff uint64 // file offset / PageSize
	Prot  int
	Flags int

	vmFlags  uint64
	unmapped bool
	obj      physmem.SlabObj // its vm_area_struct object
}

// End returns the first address after the mapping (vm_end).
func (v *VMA) End() uint64 { return v.Start + v.Len }

// Mapped reports whether the VMA is still mapped.
func (v *VMA) Mapped() bool { return !v.unmapped }

func (v *VMA) String() string {
	return fmt.Sprintf("vma [%#x-%#x) pgoff %#x prot %#x flags %#x vm_flags %#x %s",
		v.Start, v.End(), v.PgOff, v.Prot, v.Flags, v.vmFlags, v.File.Name)
}

// isSharedMaywrite is is_shared_maywrite(): the mapping counts in
// i_mmap_writable.
func (v *VMA) isSharedMaywrite() bool {
	return v.vmFlags&(vmShared|vmMayWrite) == vmShared|vmMayWrite
}

// thpSuitable is thp_vma_suitable_order(): a folio of the order could be
// mapped by a PMD at addr: the file offset and the address agree modulo
// its size, and the aligned range lies inside the VMA.
func (v *VMA) thpSuitable(addr uint64, order uint) bool {
	nr := uint64(1) << order
	if ((v.Start>>physmem.PageShift)-v.PgOff)&(nr-1) != 0 {
		return false
	}
	haddr := addr &^ (nr<<physmem.PageShift - 1)
	return haddr >= v.Start && haddr+nr<<physmem.PageShift <= v.End()
}

// pgoffOf returns the file page a virtual address of the VMA maps.
func (v *VMA) pgoffOf(addr uint64) uint64 { return v.PgOff + (addr-v.Start)>>physmem.PageShift }

func newTaskMM(t *Task) *TaskMM {
	return &TaskMM{t: t, ptes: map[uint64]*pteTable{}, mmapBase: mmapTop}
}

// VMAs returns the task's mappings in creation order.
func (mm *TaskMM) VMAs() []*VMA { return mm.vmas }

// findVMA returns the mapping holding addr (find_vma + the vm_start check).
func (mm *TaskMM) findVMA(addr uint64) *VMA {
	for _, v := range mm.vmas {
		if addr >= v.Start && addr < v.End() {
			return v
		}
	}
	return nil
}

// exitMMap unmaps everything (exit_mmap).
func (mm *TaskMM) exitMMap() {
	for len(mm.vmas) > 0 {
		mm.unmapVMA(mm.vmas[len(mm.vmas)-1])
	}
}

// getUnmappedArea picks a free range top-down (arch_get_unmapped_area_topdown).
// Ranges of at least a PMD are placed so that the file offset and the
// address agree modulo 2 MiB, as shmem_get_unmapped_area() does so that
// large folios can be PMD-aligned. Mmap moves the base below a range it
// takes, so addresses are never reused.
func (mm *TaskMM) getUnmappedArea(length, pgoff uint64) (uint64, error) {
	if length > mm.mmapBase-mmapMinAddr {
		return 0, errno.ENOMEM
	}
	addr := mm.mmapBase - length
	if length >= pmdSize {
		off := (pgoff << physmem.PageShift) & (pmdSize - 1)
		addr = (addr&^(pmdSize-1) | off)
		if addr > mm.mmapBase-length {
			addr -= pmdSize
		}
	}
	if addr < mmapMinAddr || addr > mm.mmapBase {
		return 0, errno.ENOMEM
	}
	return addr, nil
}

// pte returns the PTE slot of addr, creating the page table if create.
func (mm *TaskMM) pte(addr uint64, create bool) (*pteTable, *uint64) {
	vpn := addr >> physmem.PageShift
	t := mm.ptes[vpn/ptrsPerPTE]
	if t == nil {
		if !create {
			return nil, nil
		}
		t = &pteTable{}
		mm.ptes[vpn/ptrsPerPTE] = t
	}
	return t, &t.pte[vpn%ptrsPerPTE]
}

// setPTE maps page pfn at addr: the PTE takes over a folio reference the
// caller holds, and adds a mapcount to the page (folio_add_file_rmap_pte).
func (mm *TaskMM) setPTE(addr uint64, pfn physmem.PFN) {
	t, slot := mm.pte(addr, true)
	if *slot != 0 {
		panicViolation("pte-none", fmt.Sprintf("addr %#x maps %v", addr, physmem.PFN(*slot-1)), "mapping over a present PTE")
	}
	*slot = uint64(pfn) + 1
	t.present++
	mm.t.k.MM.Page(pfn).AddMapCount(1)
}

// zapRange clears every PTE in [start, end) (zap_pte_range): each page
// loses a mapcount and its folio the PTE's reference
// (folio_remove_rmap_ptes, then the TLB-gather put).
func (mm *TaskMM) zapRange(start, end uint64) {
	k := mm.t.k
	for addr := start; addr < end; {
		vpn := addr >> physmem.PageShift
		t := mm.ptes[vpn/ptrsPerPTE]
		next := (vpn/ptrsPerPTE + 1) * ptrsPerPTE << physmem.PageShift
		if next > end || next == 0 {
			next = end
		}
		if t == nil || t.present == 0 {
			addr = next
			continue
		}
		for ; addr < next; addr += physmem.PageSize {
			slot := &t.pte[(addr>>physmem.PageShift)%ptrsPerPTE]
			if *slot == 0 {
				continue
			}
			pfn := physmem.PFN(*slot - 1)
			*slot = 0
			t.present--
			k.MM.Page(pfn).AddMapCount(-1)
			k.MM.PutPage(pfn)
		}
		if t.present == 0 {
			delete(mm.ptes, vpn/ptrsPerPTE)
		}
	}
}

// unmapVMA removes a mapping (do_vmi_munmap of the whole VMA +
// remove_vma): its PTEs go, the file leaves i_mmap, and the VMA's file
// reference is dropped.
func (mm *TaskMM) unmapVMA(v *VMA) {
	i := slices.Index(mm.vmas, v)
	if i < 0 {
		return
	}
	mm.zapRange(v.Start, v.End())
	mm.vmas = slices.Delete(mm.vmas, i, i+1)
	if info := shmemI(v.File.Inode); info != nil {
		delete(info.mmaps, v)
		if v.isSharedMaywrite() {
			info.mmapWritable-- // mapping_unmap_writable
		}
	}
	v.unmapped = true
	mm.t.k.caches.vmArea.Free(v.obj) // vm_area_free
	v.obj = 0
	v.File.Put()
}

// unmapMappingRange is unmap_mapping_range(mapping, holebegin, holelen,
// even_cows): zaps every PTE mapping a file page in the byte range
// (holelen 0: to the end of the file) in every VMA of the file.
func (k *Kernel) unmapMappingRange(info *ShmemInodeInfo, holebegin, holelen int64) {
	first := uint64(holebegin) >> physmem.PageShift
	nr := (uint64(holelen) + physmem.PageSize - 1) >> physmem.PageShift
	last := first + nr - 1
	if last < first || holelen == 0 {
		last = ^uint64(0)
	}
	k.unmapMappingPages(info, first, last)
}

// unmapMappingPages zaps file pages [first, last] from every VMA of the
// file (unmap_mapping_range_tree).
func (k *Kernel) unmapMappingPages(info *ShmemInodeInfo, first, last uint64) {
	for v := range info.mmaps {
		vba := v.PgOff
		vea := vba + v.Len>>physmem.PageShift - 1
		if first > vea || last < vba {
			continue
		}
		zs, zl := max(first, vba), min(last, vea)
		v.mm.zapRange(v.Start+(zs-vba)<<physmem.PageShift, v.Start+(zl-vba+1)<<physmem.PageShift)
	}
}

// unmapMappingFolio is unmap_mapping_folio(): zaps the PTEs of one folio
// in every VMA of its file.
func (k *Kernel) unmapMappingFolio(info *ShmemInodeInfo, f physmem.Folio) {
	index := k.folioIndex(f)
	k.unmapMappingPages(info, index, index+k.folioNrPages(f)-1)
}

// Mmap maps len bytes of the file at fd from offset off (mmap(2) with a
// NULL address hint; the kernel picks the address). It returns the
// mapping, which holds its own reference to the file.
//
// Supported: MAP_SHARED (and MAP_SHARED_VALIDATE) of shmem files
// (memfds, /tmp files). MAP_PRIVATE fails with EINVAL: copy-on-write
// anonymous pages are not simulated. MAP_ANONYMOUS is not simulated
// either (EINVAL), and MAP_FIXED, which needs an address, gets the EPERM
// Linux gives a fixed mapping at address 0.
//
// Errors, in Linux's order: EINVAL for an offset that is not page aligned;
// EBADF for a bad fd; EINVAL for MAP_HUGETLB (no hugetlbfs file) or len 0;
// ENOMEM for a len that rounds up to 0; EOVERFLOW when pgoff + pages
// overflows; ENOMEM for too many mappings, a len beyond TASK_SIZE or no
// room; EOVERFLOW when the file range is beyond the largest file offset;
// EOPNOTSUPP for unknown flags with MAP_SHARED_VALIDATE; EACCES for
// PROT_WRITE on a file not open for writing, or any mapping of a file not
// open for reading; ENODEV for files that cannot be mapped (/dev/null);
// EINVAL for MAP_GROWSDOWN or a bad map type; EPERM for PROT_WRITE on a memfd sealed with
// F_SEAL_WRITE or F_SEAL_FUTURE_WRITE; ENOMEM when the vm_area_struct
// cannot be allocated (the slab fault site, or no memory); EPERM when
// F_SEAL_WRITE denies writable mappings.
func (t *Task) Mmap(fd int, off, length int64, prot, flags int) (*VMA, error) {
	t.mustAlive()
	if off&(physmem.PageSize-1) != 0 {
		return nil, errno.EINVAL
	}
	if flags&uapi.MAP_ANONYMOUS != 0 {
		return nil, errno.EINVAL
	}
	f, err := t.fdget(fd)
	if err != nil {
		return nil, err
	}
	if flags&mapHugetlb != 0 {
		return nil, errno.EINVAL // ksys_mmap_pgoff: not a hugetlbfs file
	}
	if length == 0 {
		return nil, errno.EINVAL
	}
	ulen := (uint64(length) + physmem.PageSize - 1) &^ (physmem.PageSize - 1)
	if ulen == 0 {
		return nil, errno.ENOMEM
	}
	pgoff := uint64(off) >> physmem.PageShift
	npages := ulen >> physmem.PageShift
	if pgoff+npages < pgoff {
		return nil, errno.EOVERFLOW
	}
	if len(t.MM.vmas) >= maxMapCount {
		return nil, errno.ENOMEM
	}
	if ulen > taskSize {
		return nil, errno.ENOMEM // __get_unmapped_area: len > TASK_SIZE
	}
	if flags&uapi.MAP_FIXED != 0 {
		return nil, errno.EPERM // security_mmap_addr(0): below mmap_min_addr
	}
	addr, err := t.MM.getUnmappedArea(ulen, pgoff)
	if err != nil {
		return nil, err
	}
	if !fileMmapOK(f, pgoff, ulen) {
		return nil, errno.EOVERFLOW
	}
	vmFlags := calcVMProtBits(prot) | vmMayRead | vmMayWrite | vmMayExec
	switch flags & mapType {
	case uapi.MAP_SHARED, mapSharedValid:
		if flags&mapType == mapSharedValid && flags&^legacyMapMask != 0 {
			return nil, errno.EOPNOTSUPP
		}
		if prot&uapi.PROT_WRITE != 0 && !f.Writable() {
			return nil, errno.EACCES
		}
		vmFlags |= vmShared | vmMayShare
		if !f.Writable() {
			vmFlags &^= vmMayWrite | vmShared
		}
		fallthrough
	case uapi.MAP_PRIVATE:
		if !f.Readable() {
			return nil, errno.EACCES
		}
		if !IsShmemFile(f) {
			return nil, errno.ENODEV // no ->mmap
		}
		if flags&mapGrowsdown != 0 {
			return nil, errno.EINVAL // VM_GROWSDOWN (calc_vm_flag_bits) on a file
		}
	default:
		return nil, errno.EINVAL
	}
	if flags&mapType == uapi.MAP_PRIVATE {
		return nil, errno.EINVAL // khosim: private (COW) mappings not simulated
	}
	info := shmemI(f.Inode)
	// memfd_check_seals_mmap(): no new writable shared mappings of a
	// write-sealed memfd; a read-only one may never become writable.
	if info.Seals&(uapi.F_SEAL_WRITE|uapi.F_SEAL_FUTURE_WRITE) != 0 && vmFlags&vmShared != 0 {
		if vmFlags&vmWrite != 0 {
			return nil, errno.EPERM
		}
		vmFlags &^= vmMayWrite
	}
	obj, err := t.k.caches.vmArea.Alloc() // mmap_region -> vm_area_alloc
	if err != nil {
		return nil, errno.ENOMEM
	}
	v := &VMA{mm: t.MM, File: f, Start: addr, Len: ulen, PgOff: pgoff, Prot: prot, Flags: flags, vmFlags: vmFlags, obj: obj}
	if v.isSharedMaywrite() {
		if info.mmapWritable < 0 { // mapping_map_writable
			t.k.caches.vmArea.Free(obj)
			return nil, errno.EPERM
		}
		info.mmapWritable++
	}
	t.MM.mmapBase = addr &^ (pmdSize - 1)
	f.Get()
	info.mmaps[v] = struct{}{}
	t.MM.vmas = append(t.MM.vmas, v)
	return v, nil
}

// calcVMProtBits is calc_vm_prot_bits().
func calcVMProtBits(prot int) uint64 {
	var f uint64
	if prot&uapi.PROT_READ != 0 {
		f |= vmRead
	}
	if prot&uapi.PROT_WRITE != 0 {
		f |= vmWrite
	}
	if prot&uapi.PROT_EXEC != 0 {
		f |= vmExec
	}
	return f
}

// fileMmapOK is file_mmap_ok(): the file range [pgoff, pgoff+len) fits
// below the largest file offset (MAX_LFS_FILESIZE for regular files).
func fileMmapOK(f *File, pgoff, length uint64) bool {
	maxsize := uint64(maxLFSFileSize)
	if f.Inode == nil || f.Inode.Mode&sIFMT != sIFREG {
		maxsize = 0 // no limit for devices in khosim
	}
	if maxsize == 0 {
		return true
	}
	if length > maxsize {
		return false
	}
	maxsize -= length
	return pgoff <= maxsize>>physmem.PageShift
}

// Munmap removes the mapping (munmap(2) of its whole range). As in Linux,
// unmapping a range where nothing is mapped succeeds: a mapping already
// unmapped, or another task's (its addresses are not mapped in this
// task).
func (t *Task) Munmap(v *VMA) error {
	t.mustAlive()
	if v.mm == t.MM {
		t.MM.unmapVMA(v)
	}
	return nil
}

// errSIGSEGV and errSIGBUS are what an access through a mapping gets where
// a CPU would raise the signal: khosim reports EFAULT, with the signal in
// the message.
func errSIGSEGV(addr uint64, why string) error {
	return fmt.Errorf("SIGSEGV at %#x (%s): %w", addr, why, errno.EFAULT)
}

func errSIGBUS(addr uint64, why string) error {
	return fmt.Errorf("SIGBUS at %#x (%s): %w", addr, why, errno.EFAULT)
}

// Store writes n bytes at offset off of the mapping, as a CPU store would:
// each page not yet mapped is faulted in (shmem_fault with SGP_CACHE:
// swapped in, or allocated zeroed) and written in place. It returns the
// bytes stored.
//
// Errors: EINVAL for a negative n; EFAULT (SIGSEGV) outside the mapping, on
// an unmapped mapping or without PROT_WRITE; EFAULT (SIGBUS) for a page at
// or beyond the end of the file; ENOMEM (the OOM a fault would trigger)
// when no page can be allocated. The bytes before the failing page are
// stored.
func (t *Task) Store(v *VMA, off, n int64, src DataSource) (int64, error) {
	return t.access(v, off, n, true, func(b []byte, fileOff int64) error {
		if src != nil {
			src(b, fileOff)
		} else {
			clear(b)
		}
		return nil
	})
}

// Load reads n bytes at offset off of the mapping, faulting pages in as
// Store does, and hands them to sink. Errors as Store (a load needs any
// of PROT_READ, PROT_WRITE, PROT_EXEC), plus the sink's.
func (t *Task) Load(v *VMA, off, n int64, sink DataSink) (int64, error) {
	return t.access(v, off, n, false, func(b []byte, fileOff int64) error {
		if sink == nil {
			return nil
		}
		return sink(b, fileOff)
	})
}

// access walks the pages of [v.Start+off, +n), faulting each in, and
// hands fn each page's bytes with their file offset.
func (t *Task) access(v *VMA, off, n int64, write bool, fn func(b []byte, fileOff int64) error) (int64, error) {
	t.mustAlive()
	if n < 0 {
		return 0, errno.EINVAL
	}
	k := t.k
	var done int64
	for done < n {
		addr := v.Start + uint64(off+done)
		cur := t.MM.findVMA(addr)
		switch {
		case v.unmapped || v.mm != t.MM || cur == nil || off+done < 0:
			return done, errSIGSEGV(addr, "no mapping")
		case write && cur.vmFlags&vmWrite == 0:
			return done, errSIGSEGV(addr, "write to a mapping without PROT_WRITE")
		case !write && cur.vmFlags&(vmRead|vmWrite|vmExec) == 0:
			return done, errSIGSEGV(addr, "read of a PROT_NONE mapping")
		}
		_, slot := t.MM.pte(addr, false)
		var pfn physmem.PFN
		if slot != nil && *slot != 0 {
			pfn = physmem.PFN(*slot - 1)
		} else {
			var err error
			if pfn, err = k.handleMMFault(cur, addr&^(physmem.PageSize-1), write); err != nil {
				return done, err
			}
		}
		if write {
			k.folioMarkDirty(k.MM.PageFolio(pfn))
		}
		pageOff := int64(addr & (physmem.PageSize - 1))
		chunk := min(n-done, physmem.PageSize-pageOff)
		b := k.MM.Frames.Frame(pfn)[pageOff : pageOff+chunk]
		fileOff := int64(cur.pgoffOf(addr)<<physmem.PageShift) + pageOff
		if err := fn(b, fileOff); err != nil {
			return done, err
		}
		done += chunk
	}
	return done, nil
}

// handleMMFault is handle_mm_fault() -> shmem_fault() -> finish_fault() for
// one page of a shared shmem mapping: the file page is found, swapped in
// or allocated (SGP_CACHE: never beyond i_size) and mapped by a PTE that
// keeps the fault's folio reference.
func (k *Kernel) handleMMFault(v *VMA, addr uint64, write bool) (physmem.PFN, error) {
	info := shmemI(v.File.Inode)
	pgoff := v.pgoffOf(addr)
	f, _, err := k.shmemGetFolioGFP(info, pgoff, 0, sgpCache, v, addr)
	switch err {
	case nil:
	case errno.EINVAL:
		return 0, errSIGBUS(addr, fmt.Sprintf("file page %#x is beyond the end of the file", pgoff))
	case errno.ENOSPC:
		return 0, errSIGBUS(addr, "no space in the file system")
	default:
		return 0, err // VM_FAULT_OOM
	}
	pfn := f.PFN() + physmem.PFN(pgoff-k.folioIndex(f))
	v.mm.setPTE(addr, pfn)
	if write {
		k.folioMarkDirty(f)
	}
	return pfn, nil
}
