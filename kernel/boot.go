package kernel

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"khosim/blackout"
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
	// Meter counts the live-update work and the blackouts of every
	// kernel of the machine; nil gives the kernel a meter of its own.
	Meter *blackout.Meter
}

// BootParams is what a kernel is booted with.
type BootParams struct {
	// BootID numbers the boot (1 for the first cold boot).
	BootID int
	// Cmdline is the kernel command line. Boot reads
	// kho_scratch=N%|L,G,P|SIZE|0 (the scratch a cold boot reserves, see
	// scratchSizes: default 1/16 of memory, at least 16 MiB, in 2 MiB
	// units),
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
	if hw.Frames == nil {
		return nil, errno.EINVAL
	}
	if size := hw.Frames.Size(); size < minMemory {
		return nil, fmt.Errorf("kernel: %d MiB of RAM is below the %d MiB a khosim kernel needs "+
			"(the low 1 MiB and the 16 MiB kernel image at 16 MiB are reserved, then %d MiB of KHO scratch "+
			"and the memmap, with room for the buddy allocator): %w",
			size>>20, minMemory>>20, minScratch>>20, errno.EINVAL)
	}
	k := newKernel(params.BootID, params.Cmdline)
	k.hw = hw
	if k.hw.Meter == nil {
		k.hw.Meter = blackout.New()
	}
	k.build = params.Build
	if k.build == (kbuild.Build{}) {
		k.build = kbuild.Default()
	}
	mm, err := physmem.NewMM(hw.Frames, hw.Faults)
	if err != nil {
		return nil, err
	}
	k.MM = mm
	_ = mm.SetDeferredStructPageInit(k.build.DeferredInit) // before memblock_free_all: cannot fail
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
	if d := k.MM.DeferredPages(); d != 0 {
		// Linux prints "node 0 deferred pages initialised in Nms" once
		// page_alloc_init_late is done; khosim initialises them as the
		// allocator needs them (physmem/deferred.go).
		k.Printk(LogInfo, "Deferred struct page init: %dK initialised on demand", d*physmem.PageSize>>10)
	}
	return nil
}

// khoReserveScratch is kho_reserve_scratch(): a cold boot reserves the
// scratch areas the next kernel will boot from, in Linux's order: lowmem
// (below 4 GiB), global (anywhere), then one per node (khosim has one
// node). If one cannot be reserved, those already reserved are freed and
// KHO is disabled, and boot goes on. An area of size 0 reserves nothing
// and is not listed (Linux records it with size 0, which no one uses).
func (k *Kernel) khoReserveScratch(memSize uint64) {
	areas, err := k.scratchSizes(memSize)
	if err != nil {
		k.Printk(LogWarn, "KHO: %v; disabling kexec handover", err)
		return
	}
	mb := k.MM.Memblock
	var got []physmem.MemblockRegion
	for _, a := range areas {
		if a.size == 0 {
			continue
		}
		var addr physmem.PhysAddr
		var err error
		if a.limit != 0 {
			addr, err = memblockPhysAllocRange(mb, a.size, scratchAlign, a.limit)
		} else {
			addr, err = mb.PhysAlloc(a.size, scratchAlign)
		}
		if err == nil {
			err = mb.MarkKHOScratch(addr, a.size)
		}
		if err != nil {
			k.Printk(LogWarn, "KHO: failed to reserve %s scratch area (%dK): %v; disabling kexec handover", a.name, a.size>>10, err)
			for _, r := range got { // err_free_scratch_areas
				_ = mb.ClearKHOScratch(r.Base, r.Size)
				_ = mb.PhysFree(r.Base, r.Size)
			}
			return
		}
		got = append(got, physmem.MemblockRegion{Base: addr, Size: a.size, Flags: physmem.MemblockKHOScratch})
		k.Printk(LogInfo, "KHO: reserved %dK of %s scratch at %v", a.size>>10, a.name, addr)
	}
	k.Scratch = got
}

// archLowAddressLimit is ARCH_LOW_ADDRESS_LIMIT on x86-64: the lowmem
// scratch area lies below 4 GiB.
const archLowAddressLimit = 1 << 32

// memblockPhysAllocRange is memblock_phys_alloc_range(size, align, 0, end):
// the highest free range below end that fits, reserved.
func memblockPhysAllocRange(mb *physmem.Memblock, size, align uint64, end physmem.PhysAddr) (physmem.PhysAddr, error) {
	var found physmem.PhysAddr
	for r := range mb.FreeRanges() {
		lo, hi := max(r.Base, physmem.PageSize), min(r.End(), end)
		if hi <= lo || uint64(hi-lo) < size {
			continue
		}
		if cand := (hi - physmem.PhysAddr(size)) &^ physmem.PhysAddr(align-1); cand >= lo {
			found = cand // ascending: the last fit is the highest
		}
	}
	if found == 0 {
		return 0, errno.ENOMEM
	}
	return found, mb.Reserve(found, size)
}

// scratchArea is one scratch area to reserve: limit 0 for anywhere.
type scratchArea struct {
	name  string
	size  uint64
	limit physmem.PhysAddr
}

// scratchSizes decides the scratch areas from kho_scratch=
// (kho_parse_scratch_size, scratch_size_update, scratch_size_node). Every
// size is rounded up to whole pageblocks (CMA_MIN_ALIGNMENT_BYTES; Linux
// rounds the scaled ones only), and a size that overflows when scaled or
// rounded is an error: no such area can be reserved.
//
//   - no kho_scratch= (khosim's default, a deliberate difference: Linux
//     scales 200% of the kernel's memblock memory, which khosim's small
//     kernel makes too small to be useful): one global area of 1/16 of
//     memory, at least 16 MiB;
//   - kho_scratch=N%: mainline's scale, N percent of the memory the
//     kernel reserved in memblock for itself (memblock_reserved_kern_size:
//     the kernel image and the memmap) for a lowmem area (what of it lies
//     below 4 GiB), a global area (the rest), and the node's area (all of
//     it);
//   - kho_scratch=L,G,P (memparse sizes, not all 0): lowmem, global and
//     per-node areas of those sizes;
//   - kho_scratch=SIZE (a khosim extension, what the machine passes for a
//     size in bytes): one global area of SIZE;
//   - kho_scratch=0 (a khosim extension): no scratch, KHO disabled.
//
// A value that does not parse is ignored with a warning, as Linux's
// early_param failing leaves the defaults.
func (k *Kernel) scratchSizes(memSize uint64) ([]scratchArea, error) {
	def := []scratchArea{{name: "global", size: max(memSize/16, minScratch)}}
	v, found := k.HasParam("kho_scratch")
	if !found {
		return roundScratch(def)
	}
	if v == "0" {
		return nil, nil
	}
	p, err := parseScratch(v)
	if err != nil {
		k.Printk(LogWarn, "KHO: invalid kho_scratch=%s, using the default", v)
		return roundScratch(def)
	}
	if p.single {
		return roundScratch([]scratchArea{{name: "global", size: p.sizes[1]}})
	}
	sizes := p.sizes
	if p.scale {
		var ok bool
		if sizes, ok = k.scaleScratch(memSize, p.percent); !ok {
			return nil, fmt.Errorf("kho_scratch=%s: scaled size overflows", v)
		}
	}
	areas, err := roundScratch([]scratchArea{
		{name: "lowmem", size: sizes[0], limit: archLowAddressLimit},
		{name: "global", size: sizes[1]},
		{name: "node 0", size: sizes[2]},
	})
	if err != nil {
		return nil, fmt.Errorf("kho_scratch=%s: %w", v, err)
	}
	return areas, nil
}

// scaleScratch is scratch_size_update() and scratch_size_node() for one
// node: percent of the kernel's memblock memory below 4 GiB for lowmem,
// of all of it less lowmem for global, of the node's for the node. ok is
// false if a product overflows.
//
// khosim reserves scratch before the memmap (a cold boot's layout predates
// this scale), while Linux reserves it after: the memmap the boot is
// about to allocate (vmemmap in 2 MiB blocks) is counted here, as lowmem
// on machines of up to 4 GiB and as global above, where memblock's
// top-down allocation puts it.
func (k *Kernel) scaleScratch(memSize, percent uint64) ([3]uint64, bool) {
	frames := k.MM.Frames.NumFrames()
	memmap := (frames*structPageSize + vmemmapChunk - 1) / vmemmapChunk * vmemmapChunk
	kern := uint64(kernelImageSize) + memmap
	kernLow := uint64(kernelImageSize)
	if memSize <= archLowAddressLimit {
		kernLow = kern
	}
	scale := func(n uint64) (uint64, bool) {
		hi, lo := bits.Mul64(n, percent)
		if hi >= 100 {
			return 0, false
		}
		q, _ := bits.Div64(hi, lo, 100)
		return q, true
	}
	low, ok1 := scale(kernLow)
	all, ok2 := scale(kern)
	lowRounded, ok3 := roundUpScratch(low)
	if !ok1 || !ok2 || !ok3 {
		return [3]uint64{}, false
	}
	// size * scale / 100 - scratch_size_lowmem: in u64 in Linux, where a
	// negative difference rounds up to 0 by wrapping; 0 here.
	global := uint64(0)
	if all > lowRounded {
		global = all - lowRounded
	}
	return [3]uint64{low, global, all}, true
}

// roundScratch rounds every area up to whole pageblocks.
func roundScratch(areas []scratchArea) ([]scratchArea, error) {
	for i := range areas {
		r, ok := roundUpScratch(areas[i].size)
		if !ok {
			return nil, fmt.Errorf("%s scratch size %#x overflows when rounded up to %d KiB", areas[i].name, areas[i].size, scratchAlign>>10)
		}
		areas[i].size = r
	}
	return areas, nil
}

// roundUpScratch is round_up(size, CMA_MIN_ALIGNMENT_BYTES); ok is false
// when the result does not fit in 64 bits (Linux's would wrap to 0).
func roundUpScratch(size uint64) (uint64, bool) {
	if size > ^uint64(0)-(scratchAlign-1) {
		return 0, false
	}
	return (size + scratchAlign - 1) &^ (scratchAlign - 1), true
}

// scratchParam is a parsed kho_scratch= value.
type scratchParam struct {
	scale   bool // N%
	percent uint64
	single  bool // SIZE (khosim): sizes[1] only
	sizes   [3]uint64
}

// parseScratch is kho_parse_scratch_size(): "N%" (N an unsigned int, at
// most 10 digits) or "L,G,P" (three memparse sizes, not all 0, nothing
// after), plus khosim's single "SIZE".
func parseScratch(v string) (scratchParam, error) {
	if v == "" {
		return scratchParam{}, errno.EINVAL
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		if len(v) > 11 { // char s_scale[11]
			return scratchParam{}, errno.EINVAL
		}
		n, err := strconv.ParseUint(pct, 10, 32) // kstrtouint
		if err != nil {
			return scratchParam{}, errno.EINVAL
		}
		return scratchParam{scale: true, percent: n}, nil
	}
	parts := strings.Split(v, ",")
	switch len(parts) {
	case 1:
		n, err := memparse(v)
		if err != nil {
			return scratchParam{}, err
		}
		return scratchParam{single: true, sizes: [3]uint64{0, n, 0}}, nil
	case 3:
	default:
		return scratchParam{}, errno.EINVAL
	}
	var p scratchParam
	var total uint64
	for i, s := range parts {
		n, err := memparse(s)
		if err != nil {
			return scratchParam{}, err
		}
		p.sizes[i] = n
		total |= n
	}
	if total == 0 {
		return scratchParam{}, errno.EINVAL
	}
	return p, nil
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

// EarlyScratchNeed returns the bytes the early boot of a kernel booted by
// kexec on these frames allocates before it knows what was preserved —
// from KHO scratch only (memblock_set_kho_scratch_only): the memmap, in
// its vmemmap blocks (allocMemmap). A handover whose scratch is smaller
// makes the next kernel panic in early boot.
func (k *Kernel) EarlyScratchNeed() uint64 {
	total := k.MM.Frames.NumFrames() * structPageSize
	return (total + vmemmapChunk - 1) &^ (vmemmapChunk - 1)
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
