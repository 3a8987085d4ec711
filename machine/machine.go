// Package machine is the box the kernels run on: its physical memory
// (physmem.Frames), its swap disk and its fault injector, which outlive
// every kernel, and the orchestration of cold boot, KHO activation, kexec
// and reboot, with the initcall wiring each boot needs. The scenario
// runner and the demo drive the simulation through a Machine.
//
// Each boot wires, in Linux's order:
//
//	kernel.Boot            memblock, scratch, memmap; EarlyInit: kexec.New +
//	                       kho_populate/kho_memory_init (KHO.Populate)
//	device initcall        fdbox_init (fdbox.Init) + its KHO part
//	                       (fdbox.KHOInit: register_kho_notifier,
//	                       fdbox_kho_recover)
//	late initcall          memfd_fdbox_init (fdbox.MemfdKHOInit: the memfd
//	                       handler; pending memfd nodes recover here)
//
// and, with luo=on (frontend_luo.go), liveupdate_early_init as an early
// initcall and luo_late_startup, liveupdate_ioctl_init and
// luo_session_deserialize as late ones (luo.Register), then
//
//	late initcall (last)   kho_return_unclaimed (KHO.ReturnUnclaimed)
//
// A Machine is not safe for concurrent use.
package machine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"khosim/blackout"
	"khosim/errno"
	"khosim/fault"
	"khosim/fdbox"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/luo"
	"khosim/physmem"
	"khosim/preserve"
)

// Config describes a machine.
type Config struct {
	// Memory is the size of physical memory in bytes: a multiple of 4 KiB,
	// at least 128 MiB (the kernel refuses smaller machines).
	Memory uint64
	// Swap is the size of the swap disk in bytes; 0 for none.
	Swap uint64
	// Seed is the scenario's seed. The simulation itself is
	// deterministic; the seed is kept for the runner's data generators.
	Seed uint64
	// ScratchBytes, if not 0, is the KHO scratch size (kho_scratch=SIZE).
	ScratchBytes uint64
	// ScratchPercent, if not 0, is the KHO scratch size in percent of
	// memory (passed to the kernel as kho_scratch=BYTES: the kernel's
	// kho_scratch=N% is mainline's scale over memblock-reserved memory). With neither set the kernel's default
	// applies: 1/16 of memory, at least 16 MiB, in 2 MiB units.
	ScratchPercent int
	// NoScratchCheck lets `kho activate` hand over with a scratch too
	// small for the next kernel's early boot, as Linux does (it then
	// panics in early boot): kho_scratch_check=off.
	NoScratchCheck bool
}

// Stats are the machine's counters and the last timings. Timings are
// wall clock, for reporting only: nothing in the simulation depends on
// them.
type Stats struct {
	Boots       int // every kernel booted (cold, kexec, reboot)
	Kexecs      int
	Reboots     int
	Activations int // successful KHO activations

	// The last successful activation: what it preserved and the size of
	// its FDT.
	PreservedFolios int
	PreservedPages  uint64
	PreservedBytes  uint64
	FDTBytes        uint64

	// The last kexec: frames scrubbed (poisoned or discarded, see
	// kexec.Scrub), whether a handover was passed,
	// and what the new kernel did with it.
	ScrubbedFrames uint64
	HandedOver     bool
	Incoming       kexec.IncomingStats
	Recovered      fdbox.RecoverStats

	// LUOReboot is what the last successful kexec's reboot path froze
	// (the running kernel's LUO before it went): the blackout's LUO part.
	LUOReboot luo.RebootStats

	ActivateTime time.Duration // the last KHO activation
	KexecTime    time.Duration // the last kexec up to the new kernel's initcalls (scrub, early boot, kho_populate)
	RestoreTime  time.Duration // the new kernel's initcalls: box and memfd recovery, the late return pass
}

// Machine is one simulated machine.
type Machine struct {
	cfg     Config
	frames  *physmem.Frames
	swap    *kernel.SwapDevice
	faults  *fault.Injector
	meter   *blackout.Meter // live-update work and blackouts, across kernels
	cmdline string
	booted  bool // Boot ran (the machine has been switched on)
	bootID  int

	build kbuild.Build // the build of the running kernel (or of the last one booted)

	k     *kernel.Kernel
	kho   *kexec.KHO
	layer *preserve.Layer
	// fe holds what each front-end built into the running kernel left
	// for the machine's accessors (FDBox, FDBoxKHO, ...), by front-end
	// name; it is dropped with the kernel.
	fe map[string]any

	// The FDT the last kexec handed over, for HandoverFDT: a copy, or,
	// while it lies intact in the frames, where it lies (lastFDTAt; the
	// copy is then taken only when those frames are about to be lost).
	lastFDT   []byte
	lastFDTAt *kexec.Handover
	stats     Stats
	earlyTime time.Duration // the last boot up to its initcalls
	scrubTime time.Duration // the last kexec's reboot path and scrub, for the phase hook

	phaseHook func(PhaseEvent) // SetPhaseHook
}

// New creates a machine: its memory (all zero), its swap disk and an
// empty fault injector. No kernel runs until Boot.
//
// Errors: EINVAL for a memory size that is not a positive multiple of 4
// KiB, a swap disk under 40 KiB, or both scratch sizes set or a percentage
// outside 1..100; ENOMEM if the host cannot map the memory.
func New(cfg Config) (*Machine, error) {
	if cfg.Memory == 0 || cfg.Memory%physmem.PageSize != 0 {
		return nil, fmt.Errorf("machine: memory %d is not a multiple of %d: %w", cfg.Memory, physmem.PageSize, errno.EINVAL)
	}
	if cfg.ScratchBytes != 0 && cfg.ScratchPercent != 0 || cfg.ScratchPercent < 0 || cfg.ScratchPercent > 100 {
		return nil, fmt.Errorf("machine: bad scratch size: %w", errno.EINVAL)
	}
	frames, err := physmem.NewFrames(cfg.Memory)
	if err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, frames: frames, faults: fault.New(), meter: blackout.New()}
	if cfg.Swap != 0 {
		if m.swap, err = kernel.NewSwapDevice(cfg.Swap); err != nil {
			_ = frames.Close()
			return nil, fmt.Errorf("machine: swap of %d bytes: %w", cfg.Swap, err)
		}
	}
	return m, nil
}

// Config returns the machine's configuration.
func (m *Machine) Config() Config { return m.cfg }

// Frames returns the machine's physical memory.
func (m *Machine) Frames() *physmem.Frames { return m.frames }

// Updates returns the blackout accounting of every kexec so far (the one
// in progress last): the live-update work before and inside each
// blackout.
func (m *Machine) Updates() []blackout.Update { return m.meter.Updates() }

// Work returns the live-update work counted since the machine started.
func (m *Machine) Work() blackout.Counts { return m.meter.Counts }

// Faults returns the machine's fault injector: faults armed there stay
// armed across kexec and reboot until they fire.
func (m *Machine) Faults() *fault.Injector { return m.faults }

// Kernel returns the running kernel, or nil before Boot (or after a kexec
// whose new kernel failed to boot).
func (m *Machine) Kernel() *kernel.Kernel { return m.k }

// Build returns the build of the running kernel, or of the last kernel
// booted if none runs; the zero Build before Boot.
func (m *Machine) Build() kbuild.Build { return m.build }

// Layer returns the running kernel's preservation layer, or nil.
func (m *Machine) Layer() *preserve.Layer { return m.layer }

// KHO returns the running kernel's KHO state, or nil.
func (m *Machine) KHO() *kexec.KHO { return m.kho }

// Cmdline returns the command line every kernel of the machine boots with.
func (m *Machine) Cmdline() string { return m.cmdline }

// Stats returns the machine's counters and last timings.
func (m *Machine) Stats() Stats { return m.stats }

// Boot cold-boots the first kernel, of build b. Every later kernel boots
// with the machine's command line for its own build: kexec with the build
// it is given, reboot with the build of the kernel it replaces.
//
// Errors: EBUSY if the machine was already booted; EINVAL for an invalid
// build; ENOSYS for a build khosim cannot make yet (a tracker or
// front-end not built: see Supported); a boot failure (a machine under
// 128 MiB, a boot-time allocation failure).
func (m *Machine) Boot(b kbuild.Build) error {
	if m.booted {
		return errno.EBUSY
	}
	if err := Supported(b); err != nil {
		return err
	}
	m.booted = true
	return m.bootKernel(nil, b)
}

// cmdlineFor returns the command line a kernel of build b boots with on
// this machine: the machine's scratch size (kho_scratch=), the build's
// transparent_hugepage_shmem= and, for a LUO build, liveupdate=1.
func (m *Machine) cmdlineFor(b kbuild.Build) string {
	args := []string{"console=ttyS0"}
	switch {
	case m.cfg.ScratchBytes != 0:
		args = append(args, fmt.Sprintf("kho_scratch=%d", m.cfg.ScratchBytes))
	case m.cfg.ScratchPercent != 0:
		// machine scratch=N% is N% of RAM; the kernel's kho_scratch=N%
		// is mainline's scale over its own memblock memory, so pass
		// the size.
		args = append(args, fmt.Sprintf("kho_scratch=%d", m.cfg.Memory/100*uint64(m.cfg.ScratchPercent)))
	}
	if m.cfg.NoScratchCheck {
		args = append(args, kexec.ScratchCheckParam+"=off")
	}
	args = append(args, "transparent_hugepage_shmem="+b.Value("shmem_huge"))
	if b.LUO {
		args = append(args, "liveupdate=1")
	}
	return strings.Join(args, " ")
}

// bootKernel boots a kernel of build b on the machine with the given
// handover (nil: cold boot), wires its KHO and the front-ends its build
// has, and runs its initcalls.
func (m *Machine) bootKernel(ho *kexec.Handover, b kbuild.Build) error {
	start := time.Now()
	m.bootID++
	m.build = b
	m.cmdline = m.cmdlineFor(b)
	tracker, _ := kexec.LookupTracker(b.KHO) // Supported checked it
	var kho *kexec.KHO
	params := kernel.BootParams{
		BootID:  m.bootID,
		Cmdline: m.cmdline,
		Build:   b,
		EarlyInit: func(k *kernel.Kernel) error {
			kho = kexec.New(k, m.faults, tracker.New)
			kho.Populate(ho)
			if ho != nil && m.lastFDTAt == ho && kho.GetFDT() == nil {
				// Refused: its frames are about to become free memory.
				// Nothing but scratch has been allocated yet, and the
				// FDT lies outside scratch (see Kexec).
				m.copyLastFDT()
			}
			return nil
		},
	}
	if ho != nil {
		params.Scratch = ho.Scratch
	}
	hw := kernel.Hardware{Frames: m.frames, Swap: m.swap, Faults: m.faults, Meter: m.meter}
	k, err := kernel.Boot(hw, params)
	m.stats.Boots++
	if err != nil {
		m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
		m.copyLastFDT() // no kernel holds its frames
		return fmt.Errorf("machine: boot %d failed: %w", m.bootID, err)
	}
	m.k, m.kho, m.fe = k, kho, map[string]any{}
	k.RegisterRefOwner("kho", kho.VisitRefs)
	k.RegisterFrameCounter("preserved", kho.FramesPreserved)
	k.RegisterFrameCounter("tracker", kho.FramesTracker)
	m.layer = preserve.New(k, kho, m.faults)
	bc := &BootContext{m: m, Kernel: k, KHO: kho, Layer: m.layer, Build: b, Faults: m.faults}
	for _, fe := range frontends {
		if fe.Enabled(b) {
			fe.Wire(bc)
		}
	}
	k.RegisterInitcall(kernel.InitcallLate, "kho_return_unclaimed", func(k *kernel.Kernel) error {
		kho.ReturnUnclaimed()
		return nil
	})
	m.earlyTime = time.Since(start)
	m.phase(PhaseEvent{Phase: PhaseEarlyBoot, Kexec: ho != nil, Took: m.scrubTime + m.earlyTime})
	m.scrubTime = 0
	restore := time.Now()
	k.RunInitcalls()
	m.stats.RestoreTime = time.Since(restore)
	m.stats.Incoming = kho.Incoming()
	if c := m.FDBoxKHO(); c != nil {
		m.stats.Recovered = c.Recovered()
	}
	m.phase(PhaseEvent{Phase: PhaseRestored, Kexec: ho != nil, Took: m.stats.RestoreTime})
	return nil
}

func (m *Machine) running() error {
	if m.k == nil {
		return fmt.Errorf("machine: no running kernel: %w", errno.EINVAL)
	}
	return nil
}

// KHOActivate writes 1 to /sys/kernel/kho/active in the running kernel
// (kexec.KHO.Activate): every sealed box is serialized into the handover
// FDT. It returns the errno of the first failure, having changed nothing.
func (m *Machine) KHOActivate() error {
	if err := m.running(); err != nil {
		return err
	}
	m.phase(PhaseEvent{Phase: PhaseBeforeActivation})
	start := time.Now()
	err := m.kho.Activate()
	m.stats.ActivateTime = time.Since(start)
	if err != nil {
		m.phase(PhaseEvent{Phase: PhaseActivationFailed, Took: m.stats.ActivateTime, Err: err})
		return err
	}
	m.stats.Activations++
	m.stats.PreservedFolios = m.kho.PreservedFolios()
	m.stats.PreservedPages = m.kho.PreservedPages()
	m.stats.PreservedBytes = m.kho.PreservedPages() * physmem.PageSize
	_, blob, _ := m.kho.FDT()
	m.stats.FDTBytes = uint64(len(blob))
	m.phase(PhaseEvent{Phase: PhaseActivated, Took: m.stats.ActivateTime})
	return nil
}

// KHODeactivate writes 0 to /sys/kernel/kho/active (kexec.KHO.Deactivate):
// every file is put back exactly as it was. EINVAL if KHO is not active.
func (m *Machine) KHODeactivate() error {
	if err := m.running(); err != nil {
		return err
	}
	return m.kho.Deactivate()
}

// Kexec loads and executes a new kernel of build b (kexec -s -l, kexec
// -e); the caller derives b from the running kernel's (Build().With), so
// that a key not given is inherited. If KHO is
// active, the new kernel receives the handover (the FDT's address and
// size and the scratch ranges) and revives what it describes; otherwise
// nothing is handed over. Either way the old kernel is gone: it is
// poisoned, and every frame it used that is neither preserved nor part of
// the handover FDT is overwritten with kexec.PoisonPattern before the new
// kernel boots, with the same command line, from the frames alone.
//
// Before anything is handed over, the reboot path runs: every front-end
// freezes what it carries (LUO's sessions) and, where one needs it, KHO
// finalizes by itself (rebootPath). A failure there leaves the kernel
// running, nothing handed over.
//
// Errors: EINVAL without a running kernel or for an invalid build;
// ENOSYS for a build khosim cannot make yet; a front-end's reboot-path
// errno, or EAGAIN when KHO could not finalize (the kernel runs on); the
// new kernel's boot failure
// (an armed fault can hit it), after which the machine has no kernel
// until Reboot.
func (m *Machine) Kexec(b kbuild.Build) error {
	if err := m.running(); err != nil {
		return err
	}
	if err := Supported(b); err != nil {
		return err
	}
	start := time.Now()
	if err := m.rebootPath(); err != nil {
		return err
	}
	m.stats.LUOReboot = luo.RebootStats{}
	if l := m.LUO(); l != nil {
		m.stats.LUOReboot = l.Stats().Reboot
	}
	old := m.k
	var carried []string
	if m.kho.Active() {
		for _, fe := range frontends {
			if inst := m.fe[fe.Name]; fe.Carried != nil && inst != nil {
				carried = append(carried, fe.Carried(inst)...)
			}
		}
	}
	m.meter.Kexec(carried)
	ho, keep := m.kho.PrepareKexec()
	m.stats.HandedOver = ho != nil
	if ho != nil {
		m.setLastFDT(ho)
	} else {
		m.copyLastFDT() // the running kernel's incoming FDT is about to be scrubbed
	}
	m.stats.ScrubbedFrames = kexec.Scrub(old, keep)
	old.Poison("kexec")
	m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
	m.stats.Kexecs++
	scrub := time.Since(start)
	m.scrubTime = scrub
	err := m.bootKernel(ho, b)
	m.stats.KexecTime = scrub + m.earlyTime
	return err
}

// rebootPath runs every front-end's Reboot (liveupdate_reboot), then, if
// one needs a handover and KHO is not active, activates KHO (the
// reboot path's kho_finalize). A failure unfreezes the front-ends done,
// in reverse order, and is returned: a front-end's own errno, or EAGAIN
// when KHO could not finalize (its errno is in the message and the log).
func (m *Machine) rebootPath() error {
	var done []Frontend
	undo := func() {
		for _, fe := range slices.Backward(done) {
			if fe.Unreboot != nil {
				fe.Unreboot(m.fe[fe.Name])
			}
		}
	}
	need := false
	for _, fe := range frontends {
		inst := m.fe[fe.Name]
		if fe.Reboot == nil || inst == nil || !fe.Enabled(m.build) {
			continue
		}
		n, err := fe.Reboot(inst)
		if err != nil {
			undo()
			return fmt.Errorf("machine: kexec: reboot path: %s: %w", fe.Name, err)
		}
		done = append(done, fe)
		need = need || n
	}
	if need && !m.kho.Active() {
		if err := m.KHOActivate(); err != nil {
			undo()
			m.k.Printk(kernel.LogErr, "liveupdate: kho_finalize failed: %v; the kexec is aborted", err)
			return fmt.Errorf("machine: kexec: KHO finalize failed (%v): %w", err, errno.EAGAIN)
		}
	}
	return nil
}

// Reboot is a cold reboot: the running kernel (if any) is gone, nothing is
// handed over, and a new kernel cold-boots with the same command line.
// The frames keep their bytes, but the new kernel reserves none of them.
// EINVAL if the machine was never booted.
func (m *Machine) Reboot() error {
	if !m.booted {
		return fmt.Errorf("machine: not booted: %w", errno.EINVAL)
	}
	if m.k != nil {
		m.kho.PrepareKexec() // the old KHO dies too; its handover is dropped
		m.copyLastFDT()      // the next kernel reserves none of the frames
		m.k.Poison("reboot")
	}
	m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
	m.stats.Reboots++
	return m.bootKernel(nil, m.build)
}

// activeFDT returns the active handover FDT in physical memory.
func (m *Machine) activeFDT() ([]byte, error) {
	if m.k == nil || m.kho == nil {
		return nil, fmt.Errorf("machine: no running kernel: %w", errno.EINVAL)
	}
	_, blob, ok := m.kho.FDT()
	if !ok {
		return nil, fmt.Errorf("machine: KHO is not active: %w", errno.EINVAL)
	}
	return blob, nil
}

// CorruptFDT flips (XOR 0xff) the bytes [off, off+n) of the active
// handover FDT in physical memory, for `corrupt fdt`. EINVAL if KHO is not
// active or the range is empty or beyond the FDT.
func (m *Machine) CorruptFDT(off, n uint64) error {
	blob, err := m.activeFDT()
	if err != nil {
		return err
	}
	if n == 0 || off >= uint64(len(blob)) || n > uint64(len(blob))-off {
		return fmt.Errorf("machine: corrupt fdt %d %d: the FDT has %d bytes: %w", off, n, len(blob), errno.EINVAL)
	}
	for i := off; i < off+n; i++ {
		blob[i] ^= 0xff
	}
	m.kho.MarkTampered()
	return nil
}

// HandoverFDT returns a copy of the active handover FDT (as it is in
// physical memory, corruption included) or, when KHO is not active, of the
// FDT the last kexec handed over. ENOENT if there is neither.
func (m *Machine) HandoverFDT() ([]byte, error) {
	if blob, err := m.activeFDT(); err == nil {
		return slices.Clone(blob), nil
	}
	if m.lastFDTAt != nil {
		return m.readFDT(m.lastFDTAt), nil
	}
	if m.lastFDT != nil {
		return slices.Clone(m.lastFDT), nil
	}
	return nil, errno.ENOENT
}

// setLastFDT records the FDT a kexec hands over (ho) for HandoverFDT.
// Copying it (25 MiB for a 4 GiB memfd of 4 KiB pages) is left until its
// frames may change: the next kernel allocates only from scratch until it
// has reserved the FDT for its whole life, or refused it (EarlyInit then
// copies it). An FDT overlapping scratch or what boot reserves (the next
// kernel's early allocations may land there) or beyond memory is copied
// at once, as before the kexec.
func (m *Machine) setLastFDT(ho *kexec.Handover) {
	m.lastFDT, m.lastFDTAt = nil, nil
	end := ho.FDTAddr + physmem.PhysAddr(ho.FDTSize)
	safe := len(ho.Scratch) > 0 && end >= ho.FDTAddr && uint64(end) <= m.frames.Size() &&
		uint64(ho.FDTAddr) >= kernel.BootReservedEnd
	for _, r := range ho.Scratch {
		if ho.FDTAddr < r.End() && r.Base < end {
			safe = false
		}
	}
	if safe {
		m.lastFDTAt = ho
		return
	}
	m.lastFDT = m.readFDT(ho)
}

// copyLastFDT takes the copy of the last handed over FDT if it still lies
// in the frames only.
func (m *Machine) copyLastFDT() {
	if m.lastFDTAt != nil {
		m.lastFDT, m.lastFDTAt = m.readFDT(m.lastFDTAt), nil
	}
}

// readFDT copies the FDT of ho out of the frames (nil beyond memory).
func (m *Machine) readFDT(ho *kexec.Handover) []byte {
	b := make([]byte, ho.FDTSize)
	if _, err := m.frames.ReadAt(b, ho.FDTAddr); err != nil {
		return nil
	}
	return b
}

// CheckInvariants runs the full audit of the running kernel: the kernel's
// own (memory model, page caches, shmem accounting, every folio's and
// file's references against what their owners, FDBox and KHO included,
// report), the FDBox driver's, and KHO's (preserved folios, the active
// FDT describing exactly them, incoming ranges claimed exactly once or
// returned, none handed out before its claim).
func (m *Machine) CheckInvariants() error {
	if err := m.running(); err != nil {
		return err
	}
	if err := m.k.CheckInvariants(); err != nil {
		return err
	}
	for _, fe := range frontends {
		if fe.Check == nil || m.fe[fe.Name] == nil {
			continue
		}
		if err := fe.Check(m.fe[fe.Name]); err != nil {
			return err
		}
	}
	if err := m.layer.CheckInvariants(); err != nil {
		return err
	}
	return m.kho.CheckInvariants()
}

// FrameCounts returns the running kernel's frames by state: free, used,
// slab, tracker, preserved (handed over and not yet claimed or returned),
// reserved (the rest: kernel image, memmap, the incoming FDT, ...), which
// partition memory; scratch (KHO scratch, whatever its state), split into
// scratch_free (free in the allocator) and scratch_used (allocated or
// reserved: page cache placed there, a kexec'd kernel's memmap); plus
// total. Nil without a running kernel.
func (m *Machine) FrameCounts() map[string]uint64 {
	if m.k == nil {
		return nil
	}
	c := m.k.FrameCounts()
	used, free := m.scratchCounts()
	return map[string]uint64{
		"total": c.Total, "free": c.Free, "used": c.Used, "slab": c.Slab, "tracker": c.Tracker,
		"preserved": c.Preserved, "reserved": c.Reserved, "scratch": c.Scratch,
		"scratch_used": used, "scratch_free": free,
		"fdt": m.fdtFrames(), "migrated": m.migratedPages(),
	}
}

// fdtFrames counts the frames of the outgoing handover FDT while KHO is
// active (0 otherwise).
func (m *Machine) fdtFrames() uint64 {
	if kho := m.KHO(); kho != nil && kho.Active() {
		if _, blob, ok := kho.FDT(); ok {
			return (uint64(len(blob)) + physmem.PageSize - 1) / physmem.PageSize
		}
	}
	return 0
}

// migratedPages counts the pages the running kernel migrated out of KHO
// scratch, less those an abort migrated back (kernel.Migrations).
func (m *Machine) migratedPages() uint64 {
	runs, _ := m.k.Migrations()
	var n int64
	for _, r := range runs {
		if r.Back {
			n -= int64(r.Pages)
		} else {
			n += int64(r.Pages)
		}
	}
	return uint64(max(n, 0))
}

// Close ends the simulation: the running kernel is poisoned and the
// machine's memory unmapped. The Machine must not be used afterwards.
func (m *Machine) Close() error {
	if m.k != nil {
		m.kho.PrepareKexec()
		m.k.Poison("machine closed")
		m.k, m.kho, m.layer, m.fe = nil, nil, nil, nil
	}
	if m.frames == nil {
		return errno.EBADF
	}
	err := m.frames.Close()
	m.frames = nil
	return err
}
