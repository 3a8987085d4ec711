package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"runtime/pprof"
	"time"

	"khosim/kbuild"
	"khosim/kernel"
	"khosim/machine"
	"khosim/physmem"
	"khosim/uapi"
)

// BoxName is the box every benchmark hands over.
const BoxName = "bench"

// stampMagic marks the first 8 bytes of every page of a benchmark memfd:
// page index XOR stampMagic, so a restored file is checked cheaply.
const stampMagic uint64 = 0x6b686f73_696d4b48

// Rig is a machine running one or more memfds boxed in BoxName, filled,
// sealed, and ready to be handed over, and the process that owns them. It
// drives the handover cycle the benchmarks time:
//
//	Activate (kho active <- 1)  ->  Kexec  ->  Restore (open box, UNSEAL, GET_FD)
//	                                                |
//	Prepare (PUT_FD, SEAL; or PRESERVE_FD)  <-------+
//
// so that one fill serves any number of cycles, each on a newly kexec'd
// kernel.
type Rig struct {
	M      *machine.Machine
	Design Design // how the memfds are handed over
	Size   uint64 // bytes of each memfd
	Order  int    // folio order of the memfds
	Names  []string

	// Faults are the host page faults (MinorFaults) each timed phase of
	// the last cycle took: activate, kexec, restore.
	Faults [3]int64

	// Cycle labels the samples of a CPU profile taken during the timed
	// phases: pprof label "cycle" = Cycle, next to "phase" = activate,
	// kexec or restore (see timed). Measure sets "warmup" or "measured".
	CycleLabel string

	task   *kernel.Task
	boxfd  int            // FDBox: the box's fd
	sessfd int            // LUO: the outgoing session's fd
	fds    map[string]int // the workload's fds of its files, by name; empty while boxed
}

// RigConfig says what a Rig holds.
type RigConfig struct {
	// Files memfds of Size bytes each, with folios of Order (0 or 9).
	Files int
	Size  uint64
	Order int
	Seed  uint64
	// Design is how the files are handed over ("": the stash) and KHO
	// the tracker ("": the default build's).
	Design Design
	KHO    kbuild.Tracker
	// Memory, if non-zero, is the machine's RAM instead of
	// MachineMemory(Files*Size), and Fallocate makes the files by
	// fallocate instead of the fill: their folios are !uptodate and
	// untouched (no host memory), but for the first and last page of each,
	// which get their stamp for CheckUsable. Both are for MeasureMachine
	// and MeasurePreserve. NoPrepare leaves the first Prepare to the
	// caller, who times it (MeasurePreserve).
	Memory               uint64
	Fallocate, NoPrepare bool
	// DeferredInit boots kernels with deferred_struct_page_init=on
	// (CONFIG_DEFERRED_STRUCT_PAGE_INIT), as MeasureMachine does: a
	// machine far larger than the host boots only with it.
	DeferredInit bool
}

// MachineMemory is the simulated RAM a rig of total memfd bytes gets: the
// data, 1/8 more for the handover FDT (25 bytes per 4 KiB page is 0.6%),
// the kernels and slack, and the KHO scratch. Frames are host memory only
// once touched, so the slack costs nothing.
func MachineMemory(total uint64) uint64 {
	base := total + total/8 + 512*MiB
	return base + ScratchBytes(base)
}

// ScratchBytes is the KHO scratch of a machine of (about) mem bytes: what
// a kexec'd kernel allocates from before it has reserved the preserved
// memory — its memmap (64 bytes per 4 KiB frame) and early allocations —
// with 64 MiB to spare, in 2 MiB units.
func ScratchBytes(mem uint64) uint64 {
	s := mem/64 + 64*MiB
	return (s + 2*MiB - 1) &^ (2*MiB - 1)
}

// NewRig builds and boots the machine, creates the memfds (named m0, m1,
// ...), fills them with the stamp pattern, puts them in box BoxName and
// seals it. Nothing of this is timed.
func NewRig(c RigConfig) (*Rig, error) {
	if c.Files < 1 || c.Size == 0 || c.Size%(PageSize<<c.Order) != 0 || (c.Order != 0 && c.Order != MaxOrder) {
		return nil, fmt.Errorf("bench: bad rig %+v", c)
	}
	mem := MachineMemory(uint64(c.Files) * c.Size)
	if c.Memory != 0 {
		mem = c.Memory
	}
	m, err := machine.New(machine.Config{
		Memory:       mem,
		Seed:         c.Seed,
		ScratchBytes: ScratchBytes(mem),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: machine: %w", err)
	}
	if c.Design == "" {
		c.Design = DesignStash
	}
	r := &Rig{M: m, Design: c.Design, Size: c.Size, Order: c.Order, fds: map[string]int{}}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	huge := "never"
	if c.Order == MaxOrder {
		huge = "always"
	}
	b, err := c.Design.build(c.KHO, huge)
	if err != nil {
		return nil, err
	}
	b.DeferredInit = c.DeferredInit
	if err := m.Boot(b); err != nil {
		return nil, fmt.Errorf("bench: boot: %w", err)
	}
	t := r.newTask("bench", c.Files)
	if err := r.setup(); err != nil {
		return nil, err
	}
	for i := range c.Files {
		name := fmt.Sprintf("m%d", i)
		fd, err := t.MemfdCreate(name, 0)
		if err != nil {
			return nil, fmt.Errorf("bench: memfd_create: %w", err)
		}
		if !c.Fallocate {
			if err := t.Ftruncate(fd, int64(c.Size)); err != nil {
				return nil, fmt.Errorf("bench: ftruncate: %w", err)
			}
		} else {
			if err := t.Fallocate(fd, 0, 0, int64(c.Size)); err != nil {
				return nil, fmt.Errorf("bench: fallocate %s: %w", FormatSize(c.Size), err)
			}
			for _, off := range []int64{0, int64(c.Size) - PageSize} {
				if n, err := t.Pwrite(fd, off, PageSize, stamp); err != nil || n != PageSize {
					return nil, fmt.Errorf("bench: pwrite at %#x: %d bytes: %v", off, n, err)
				}
			}
		}
		// One write moves at most MAX_RW_COUNT (2 GiB - 4 KiB) bytes:
		// write 1 GiB at a time, so that no write ends inside a huge folio.
		for off := int64(0); off < int64(c.Size) && !c.Fallocate; {
			n, err := t.Pwrite(fd, off, min(int64(c.Size)-off, GiB), stamp)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("bench: pwrite %s at %#x: %d bytes: %v", FormatSize(c.Size), off, n, err)
			}
			off += n
		}
		r.Names = append(r.Names, name)
		r.fds[name] = fd
	}
	if !c.NoPrepare {
		if _, err := r.Prepare(); err != nil {
			return nil, err
		}
	}
	ok = true
	return r, nil
}

// stamp is the fill: zeroes, with page index ^ stampMagic in the first 8
// bytes of each page. dst starts on a page boundary (shmem writes whole
// folios here).
func stamp(dst []byte, off int64) {
	clear(dst)
	for i := 0; i+8 <= len(dst); i += PageSize {
		binary.LittleEndian.PutUint64(dst[i:], uint64(off+int64(i))/PageSize^stampMagic)
	}
}

// newTask creates a root process with room for files fds besides the
// control and box devices.
func (r *Rig) newTask(name string, files int) *kernel.Task {
	t := r.M.Kernel().NewTask(name, kernel.Cred{UID: 0, Caps: uapi.CapAll})
	t.NoFile = max(t.NoFile, files+64)
	r.task = t
	return t
}

// Close releases the machine.
func (r *Rig) Close() error { return r.M.Close() }

// Pages returns the folios of all the rig's memfds (Row.Pages of them).
func (r *Rig) Pages() uint64 { return uint64(len(r.Names)) * (r.Size / PageSize >> r.Order) }

// Bytes returns the bytes of all the rig's memfds.
func (r *Rig) Bytes() uint64 { return uint64(len(r.Names)) * r.Size }

// timed runs one timed phase of the cycle after a garbage collection
// (so that no collection of earlier garbage lands in it), counts the host
// page faults it takes in r.Faults, and returns its wall time. A CPU profile taken meanwhile sees its samples labelled
// phase=PHASE and cycle=r.CycleLabel:
//
//	go tool pprof -tagfocus phase=kexec -tagfocus cycle=measured khosim cpu.prof
func (r *Rig) timed(phase int, f func() error) (d time.Duration, err error) {
	runtime.GC()
	labels := pprof.Labels("phase", phaseNames[phase], "cycle", r.CycleLabel)
	pprof.Do(context.Background(), labels, func(context.Context) {
		faults := MinorFaults()
		start := time.Now()
		err = f()
		d = time.Since(start)
		r.Faults[phase] = MinorFaults() - faults
	})
	return d, err
}

// The timed phases of a cycle, indexes of Rig.Faults.
const (
	phaseActivate = iota
	phaseKexec
	phaseRestore
)

var phaseNames = [...]string{"activate", "kexec", "restore"}

// Activate is the design's first step inside the blackout (enter: kho
// activate, preceded by SEAL for the seal lifecycle; nothing for LUO). It
// returns the wall time.
func (r *Rig) Activate() (time.Duration, error) {
	return r.timed(phaseActivate, r.enter)
}

// Deactivate undoes Activate (kho active <- 0). Untimed.
func (r *Rig) Deactivate() error {
	if err := r.M.KHODeactivate(); err != nil {
		return fmt.Errorf("bench: kho deactivate: %w", err)
	}
	return nil
}

// Metadata returns the size of the handover FDT (the active one, or the
// one the last kexec handed over).
func (r *Rig) Metadata() (uint64, error) {
	blob, err := r.M.HandoverFDT()
	if err != nil {
		return 0, fmt.Errorf("bench: handover FDT: %w", err)
	}
	return uint64(len(blob)), nil
}

// Kexec kexecs into a new kernel. It returns the wall time.
func (r *Rig) Kexec() (time.Duration, error) {
	r.task = nil
	d, err := r.timed(phaseKexec, func() error { return r.M.Kexec(r.M.Build()) })
	if err != nil {
		return d, fmt.Errorf("bench: kexec: %w", err)
	}
	return d, nil
}

// Restore is the new process's part after a kexec (restore): FDBox's
// open, UNSEAL and GET_FDs, or LUO's retrieves and FINISH. It returns the
// wall time (the process's creation is not counted).
func (r *Rig) Restore() (time.Duration, error) {
	r.newTask("restore", len(r.Names))
	d, err := r.timed(phaseRestore, r.restore)
	if err != nil {
		return 0, err
	}
	return d, nil
}

// CheckUsable checks that every restored fd works: its size is the
// memfd's and its first and last pages read back with their stamps.
func (r *Rig) CheckUsable() error {
	t := r.task
	for _, name := range r.Names {
		fd := r.fds[name]
		end, err := t.Lseek(fd, 0, uapi.SEEK_END)
		if err != nil || end != int64(r.Size) {
			return fmt.Errorf("bench: restored %s: size %d (want %d): %v", name, end, r.Size, err)
		}
		for _, off := range []int64{0, int64(r.Size) - PageSize} {
			var got uint64
			n, err := t.Pread(fd, off, 8, func(src []byte, _ int64) error {
				got = binary.LittleEndian.Uint64(src)
				return nil
			})
			if err != nil || n != 8 {
				return fmt.Errorf("bench: restored %s: pread at %#x: %d bytes: %v", name, off, n, err)
			}
			if want := uint64(off)/PageSize ^ stampMagic; got != want {
				return fmt.Errorf("bench: restored %s: page %#x reads %#x, want %#x", name, off/PageSize, got, want)
			}
		}
	}
	return nil
}

// Spans checks every restored file in full — each folio cached, of the
// rig's order, every page stamped — and returns the files' bytes in
// physical memory as runs of contiguous frames, in file order: what the
// copy baseline copies.
func (r *Rig) Spans() ([][]byte, error) {
	k := r.M.Kernel()
	mm := k.MM
	var spans [][]byte
	var runStart, runEnd physmem.PFN
	flush := func() {
		if runEnd > runStart {
			spans = append(spans, mm.Frames.Span(runStart, uint64(runEnd-runStart)))
		}
	}
	step := uint64(1) << r.Order
	for _, name := range r.Names {
		f, err := r.task.FD(r.fds[name])
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		for index := uint64(0); index < r.Size/PageSize; index += step {
			pfn, _, _, ok := k.FolioAt(f, index)
			if !ok {
				return nil, fmt.Errorf("bench: restored %s: no folio at index %#x", name, index)
			}
			if o := mm.FolioOrder(physmem.Folio(pfn)); o != uint(r.Order) {
				return nil, fmt.Errorf("bench: restored %s: folio at index %#x has order %d, want %d", name, index, o, r.Order)
			}
			for i := range step {
				got := binary.LittleEndian.Uint64(mm.Frames.Frame(pfn + physmem.PFN(i)))
				if want := (index + i) ^ stampMagic; got != want {
					return nil, fmt.Errorf("bench: restored %s: page %#x holds %#x, want %#x", name, index+i, got, want)
				}
			}
			if pfn != runEnd {
				flush()
				runStart = pfn
			}
			runEnd = pfn + physmem.PFN(step)
		}
	}
	flush()
	return spans, nil
}

// Cycle runs one handover: Activate, Kexec, Restore, with the handover
// FDT's size read after the kexec, and checks the restored fds. The rig
// must be prepared (Prepare); afterwards the files are restored (Prepare
// again before the next).
func (r *Rig) Cycle() (act, kx, rest time.Duration, meta uint64, err error) {
	if act, err = r.Activate(); err != nil {
		return
	}
	if kx, err = r.Kexec(); err != nil {
		return
	}
	if meta, err = r.Metadata(); err != nil {
		return
	}
	if rest, err = r.Restore(); err != nil {
		return
	}
	err = r.CheckUsable()
	return
}
