package kernel

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
	"khosim/physmem"
)

// Hardware is what a kernel boots on: the machine's parts, which outlive
// every kernel.
type Hardware struct {
	Frames *physmem.Frames // physical memory
	Swap   *SwapDevice     // the swap disk; nil for none
	Faults *fault.Injector // armed faults; nil for none
}

// BootParams is what a kernel is booted with.
type BootParams struct {
	// BootID numbers the boot (1 for the first cold boot).
	BootID int
	// Cmdline is the kernel command line. Boot reads
	// kho_scratch=SIZE|N% (the scratch a cold boot reserves: default
	// 1/16 of memory, at least 16 MiB, in 2 MiB units),
	// transparent_hugepage_shmem= (memfds and shmem_file_setup files) and
	// transparent_hugepage_tmpfs= (/tmp), each never (the default),
	// always, within_size, advise, deny or force.
	Cmdline string
	// Scratch is the KHO scratch memory the previous kernel handed over
	// (kexec boot), or nil for a cold boot.
	Scratch []physmem.MemblockRegion
	// Build is the kernel build booted: what this kernel speaks across a
	// live update (its KHO tracker, front-ends and serializations).
	// The zero value means kbuild.Default().
	Build kbuild.Build
	// EarlyInit runs while memblock is still the allocator, after the
	// early allocations (KHO's kho_populate/kho_memory_init: read the
	// handover FDT and memblock-reserve what it preserves). May be nil.
	EarlyInit func(k *Kernel) error
}

// Boot-time memory layout (x86-64).
const (
	lowMemSize       = 1 << 20  // the first 1 MiB, reserved (real-mode and BIOS areas)
	kernelImageStart = 16 << 20 // CONFIG_PHYSICAL_START
	kernelImageSize  = 16 << 20 // _end - _text of the simulated kernel
	minMemory        = 128 << 20
	scratchAlign     = physmem.PageblockNrPages * physmem.PageSize // CMA_MIN_ALIGNMENT_BYTES
	minScratch       = 16 << 20
	structPageSize   = 64      // sizeof(struct page): the memmap costs 64 bytes per frame
	vmemmapChunk     = 2 << 20 // vmemmap_populate_hugepages maps the memmap in PMDs
)

// BootReservedEnd is the end of what every boot reserves at fixed
// addresses (the low 1 MiB and the kernel image, [0, 32 MiB)).
const BootReservedEnd = kernelImageStart + kernelImageSize

// Boot boots a kernel on hw, as start_kernel does:
//
//  1. a fresh memory model over the frames (memblock_add of all memory);
//  2. memblock_reserve of the first 1 MiB and the kernel image (16 MiB at
//     16 MiB); machines under 128 MiB are refused (EINVAL);
//  3. KHO scratch: a cold boot reserves it (kho_reserve_scratch) and
//     records it in k.Scratch; a kexec boot takes params.Scratch and
//     allocates from scratch only (memblock_set_kho_scratch_only);
//  4. the early allocations a kernel makes before it knows what is
//     preserved: the memmap (64 bytes per frame, sparse_init/
//     vmemmap_populate in 2 MiB blocks) with memblock_phys_alloc, zeroed in
//     the frames — on a kexec boot it lands in scratch;
//  5. params.EarlyInit (KHO reserves what the previous kernel preserved);
//  6. scratch-only mode ends and memblock_free_all hands memory to the
//     buddy allocator, scratch as MIGRATE_CMA (a cold boot releases the
//     scratch it reserved, as kho_init does); the slab allocator comes up
//     with the kernel's caches (kmem_cache_init and the subsystems'
//     caches): nothing before allocates kernel metadata but from memblock;
//  7. subsystems: shmem (shm_mnt and the tmpfs on /tmp), /dev/null, and
//     swapon of hw.Swap.
//
// The caller registers initcalls and runs them (RunInitcalls).
//
// Errors: EINVAL without frames, below 128 MiB, or for scratch ranges
// memblock refuses; a boot-time allocation failure ("kernel panic",
// wrapping ENOMEM or the injected fault); EarlyInit's error.
func Boot(hw Hardware, params BootParams) (*Kernel, error) {
	if hw.Frames == nil || hw.Frames.Size() < minMemory {
		return nil, errno.EINVAL
	}
	k := newKernel(params.BootID, params.Cmdline)
	k.hw = hw
	k.build = params.Build
	if k.build == (kbuild.Build{}) {
		k.build = kbuild.Default()
	}
	mm, err := physmem.NewMM(hw.Frames, hw.Faults)
	if err != nil {
		return nil, err
	}
	k.MM = mm
	if err := k.bootMemory(params); err != nil {
		_ = mm.Close()
		k.MM = nil
		return nil, err
	}
	k.registerSlab()
	k.shmemInit()
	if err := k.registerDevNull(); err != nil {
		return nil, err
	}
	if hw.Swap != nil {
		if err := k.swapon(hw.Swap); err != nil {
			k.Printk(LogErr, "swapon: /dev/swap0: %v", err)
		}
	}
	return k, nil
}

// bootMemory runs steps 1-6 of Boot.
func (k *Kernel) bootMemory(params BootParams) error {
	mb := k.MM.Memblock
	size := k.MM.Frames.Size()
	k.Printk(LogInfo, "Linux version khosim (boot %d)", k.BootID)
	k.Printk(LogInfo, "Command line: %s", k.Cmdline)
	if err := mb.Reserve(0, lowMemSize); err != nil {
		return err
	}
	if err := mb.Reserve(kernelImageStart, kernelImageSize); err != nil {
		return err
	}
	cold := params.Scratch == nil
	if cold {
		k.khoReserveScratch(size)
	} else {
		for _, r := range params.Scratch {
			if err := mb.MarkKHOScratch(r.Base, r.Size); err != nil {
				return fmt.Errorf("KHO scratch %v: %w", r, err)
			}
		}
		k.Scratch = append([]physmem.MemblockRegion(nil), params.Scratch...)
		mb.SetKHOScratchOnly()
	}
	if err := k.allocMemmap(); err != nil {
		return err
	}
	if params.EarlyInit != nil {
		if err := params.EarlyInit(k); err != nil {
			return err
		}
	}
	mb.ClearKHOScratchOnly()
	if err := k.MM.MemblockFreeAll(); err != nil {
		return err
	}
	if err := k.kmemCachesInit(); err != nil {
		return fmt.Errorf("kernel panic: kmem_cache_create: %w", err)
	}
	if cold {
		// kho_init: the scratch reserved above goes to the buddy
		// allocator as MIGRATE_CMA, for movable allocations only.
		for _, r := range k.Scratch {
			for pfn := r.Base.PFN(); pfn < r.End().PFN(); pfn += physmem.PageblockNrPages {
				if err := k.MM.InitCMAReservedPageblock(pfn); err != nil {
					return fmt.Errorf("kho_init: releasing scratch pageblock %v: %w", pfn, err)
				}
			}
		}
	}
	k.Printk(LogInfo, "Memory: %dK/%dK available", k.MM.Zone.NrFreePages()*physmem.PageSize>>10, size>>10)
	return nil
}

// khoReserveScratch is kho_reserve_scratch(): a cold boot reserves the
// scratch area the next kernel will boot from. On failure KHO is disabled
// and boot goes on.
func (k *Kernel) khoReserveScratch(memSize uint64) {
	size, ok := scratchSize(k, memSize)
	if !ok {
		return
	}
	mb := k.MM.Memblock
	addr, err := mb.PhysAlloc(size, scratchAlign)
	if err == nil {
		err = mb.MarkKHOScratch(addr, size)
	}
	if err != nil {
		k.Printk(LogWarn, "KHO: failed to reserve scratch area (%dK): %v; disabling kexec handover", size>>10, err)
		return
	}
	k.Scratch = []physmem.MemblockRegion{{Base: addr, Size: size, Flags: physmem.MemblockKHOScratch}}
	k.Printk(LogInfo, "KHO: reserved %dK of scratch at %v", size>>10, addr)
}

// scratchSize reads kho_scratch= (SIZE with a K/M/G/T suffix, or N% of
// memory) and rounds it up to whole pageblocks; the default is 1/16 of
// memory, at least 16 MiB. ok is false for kho_scratch=0 (no KHO).
func scratchSize(k *Kernel, memSize uint64) (uint64, bool) {
	size := max(memSize/16, minScratch)
	if v, found := k.HasParam("kho_scratch"); found {
		if n, err := parseScratch(v, memSize); err != nil {
			k.Printk(LogWarn, "KHO: invalid kho_scratch=%s, using the default", v)
		} else {
			size = n
		}
	}
	if size == 0 {
		return 0, false
	}
	return (size + scratchAlign - 1) &^ (scratchAlign - 1), true
}

// parseScratch parses a kho_scratch= value.
func parseScratch(v string, memSize uint64) (uint64, error) {
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.ParseUint(pct, 10, 64)
		if err != nil || n > 100 {
			return 0, errno.EINVAL
		}
		return memSize / 100 * n, nil
	}
	return memparse(v)
}

// memparse is memparse(): a number with an optional K, M, G or T suffix.
func memparse(v string) (uint64, error) {
	shift := 0
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		case 'T', 't':
			shift = 40
		}
		if shift != 0 {
			v = v[:n-1]
		}
	}
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil || n > (^uint64(0))>>shift {
		return 0, errno.EINVAL
	}
	return n << shift, nil
}

// allocMemmap makes the memmap's early allocation: 64 bytes per frame, in
// PMD-sized blocks as vmemmap_populate_hugepages allocates them, each
// zeroed in the frames as memmap_init would write it.
func (k *Kernel) allocMemmap() error {
	total := k.MM.Frames.NumFrames() * structPageSize
	for done := uint64(0); done < total; done += vmemmapChunk {
		addr, err := k.MM.Memblock.PhysAlloc(vmemmapChunk, vmemmapChunk)
		if err != nil {
			return fmt.Errorf("kernel panic: failed to allocate %d bytes of memmap: %w", vmemmapChunk, err)
		}
		k.MM.Frames.Zero(addr.PFN(), vmemmapChunk/physmem.PageSize)
		k.memmapBlocks = append(k.memmapBlocks, addr)
	}
	return nil
}

// UnwrittenReservations returns, sorted by address and with adjacent
// ones merged, the boot-time reservations whose frames the simulation
// never writes data into: the low 1 MiB, the kernel image, and the
// memmap's blocks (khosim's memmap lives in host memory; its blocks in
// the frames only stand for it and are zeroed when allocated). A kexec
// discards these frames rather than poisoning them (kexec.Scrub): they
// hold no data of the kernel's.
func (k *Kernel) UnwrittenReservations() []physmem.MemblockRegion {
	rs := []physmem.MemblockRegion{{Base: 0, Size: lowMemSize}, {Base: kernelImageStart, Size: kernelImageSize}}
	for _, b := range k.memmapBlocks {
		rs = append(rs, physmem.MemblockRegion{Base: b, Size: vmemmapChunk})
	}
	slices.SortFunc(rs, func(a, b physmem.MemblockRegion) int { return cmp.Compare(a.Base, b.Base) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End() >= r.Base {
			out[n-1].Size = uint64(max(out[n-1].End(), r.End()) - out[n-1].Base)
			continue
		}
		out = append(out, r)
	}
	return out
}

// shmemInit is shmem_init() and the mount of /tmp: shm_mnt takes
// transparent_hugepage_shmem= (also the global shmem_huge, where deny and
// force override every mount), /tmp transparent_hugepage_tmpfs= and a
// size limit of half the RAM (the tmpfs default).
func (k *Kernel) shmemInit() {
	huge := func(param string) shmemHuge {
		v, ok := k.HasParam(param)
		if !ok {
			return shmemHugeNever
		}
		h, ok := parseShmemHuge(v)
		if !ok {
			k.Printk(LogWarn, "%s=%s cannot parse, ignored", param, v)
			return shmemHugeNever
		}
		return h
	}
	k.shmemHuge = huge("transparent_hugepage_shmem")
	k.shm = &shmemSB{name: "shm", huge: k.shmemHuge}
	tmpHuge := huge("transparent_hugepage_tmpfs")
	if k.shmemHuge == shmemHugeDeny || k.shmemHuge == shmemHugeForce {
		tmpHuge = k.shmemHuge
	}
	k.tmp = &shmemSB{name: "tmpfs /tmp", huge: tmpHuge, maxBlocks: k.MM.Zone.ManagedPages() / 2}
	k.tmpDir = map[string]*Inode{}
}
