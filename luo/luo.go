package luo

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/preserve"
	"khosim/uapi"
)

// DevPath is the LUO character device (the miscdevice "liveupdate").
const DevPath = "/dev/liveupdate"

// DevMode is its permission: a miscdevice without .mode gets devtmpfs's
// 0600, owned by root.
const DevMode = 0o600

// LUO is the Live Update Orchestrator of one kernel: what mainline keeps
// in luo_global (kernel/liveupdate/luo_core.c), luo_session_global
// (luo_session.c), luo_preserved_files (luo_file.c) and the miscdevice
// state luo_dev.
//
// State machine of the kernel's LUO:
//
//	disabled (liveupdate=0, or KHO disabled, or the outgoing setup failed): no /dev/liveupdate
//	enabled --Reboot ok--> frozen (every outgoing file frozen, records written)
//	frozen --Unreboot--> enabled
//	frozen --kexec--> gone with the kernel
//
// The incoming state, read at boot, is either available (the sessions the
// previous kernel handed over, each retrievable once) or unavailable
// (in.err: an unreadable LUO FDT or file record): then every open of
// /dev/liveupdate fails with EIO.
//
// References: LUO holds one reference on every file preserved in an
// outgoing session (luo_preserve_file's fget) and on every file retrieved
// from an incoming session until the session is finished. Session files
// and the /dev/liveupdate file are held by fd tables only. LUO's blocks
// of preserved memory are held by KHO (kho_alloc_preserve).
type LUO struct {
	k      *kernel.Kernel
	kho    *kexec.KHO
	layer  *preserve.Layer
	faults *fault.Injector

	enabled bool // luo_global.enabled
	inUse   bool // luo_dev.in_use: /dev/liveupdate is open

	devOps  *devOps
	sessOps *sessionOps

	// outgoing is luo_session_global.outgoing.list, in creation order;
	// released are outgoing sessions whose fd was closed while KHO was
	// finalized (their files stay preserved until KHO deactivates).
	outgoing []*Session
	released []*Session
	// nrRecords counts LUO's live kmalloc'd records (sessions and files):
	// CheckInvariants matches it against the lists, so a record dropped
	// without kfree is a leak it names.
	nrRecords int
	// incoming is luo_session_global.incoming.list.
	incoming []*Session
	// preserved is luo_preserved_files: the inode of every file preserved
	// in an outgoing session or retrieved and not yet finished.
	preserved map[any]*luoFile

	out struct {
		fdt    block // the outgoing LUO FDT (one page)
		header block // struct luo_session_header_ser and the session array
		number uint64
	}
	in struct {
		active bool        // the previous kernel handed over a LUO state
		fdt    incomingFDT // what its FDT said
		err    error       // the state is unavailable (open gets EIO)
	}

	frozen   bool // between a successful Reboot and its Unreboot
	aborting bool // inside KHO's abort: unpreserving is allowed
	nb       *kexec.Notifier
	stats    Stats
}

// Stats counts LUO's work in this kernel; Reboot is the last successful
// reboot path (the blackout's share of LUO).
type Stats struct {
	SessionsCreated   int
	SessionsRetrieved int
	FilesPreserved    int
	FilesRetrieved    int
	FilesDiscarded    int // incoming files finished without a retrieve
	// Incoming: what boot deserialized.
	IncomingSessions int
	IncomingFiles    int
	Reboot           RebootStats
}

// RebootStats is what the reboot path's freeze did (liveupdate_reboot):
// deterministic counts first, then the wall time (for reporting only).
type RebootStats struct {
	Sessions int
	Files    int
	// Folios and Pages are those of the files frozen: their records
	// are final from the freeze on.
	Folios int
	Pages  uint64
	// Bytes are the bytes of LUO records written at the freeze
	// (luo_session_header_ser, luo_session_ser, luo_file_ser); the file
	// handlers' own rewrites (memfd_luo_ser) are not included.
	Bytes  uint64
	Freeze time.Duration
}

// New is the start of liveupdate_early_init(): LUO's state in kernel k,
// enabled by the "liveupdate" early parameter (kstrtobool: liveupdate=1,
// y, on, true). It registers LUO as a holder of file references for the
// audit. Register wires the initcalls that bring it up.
func New(k *kernel.Kernel, kho *kexec.KHO, layer *preserve.Layer, faults *fault.Injector) *LUO {
	l := &LUO{k: k, kho: kho, layer: layer, faults: faults, preserved: map[any]*luoFile{}}
	if v, ok := k.HasParam("liveupdate"); ok {
		switch strings.ToLower(v) {
		case "1", "y", "yes", "on", "true":
			l.enabled = true
		}
	}
	l.devOps = &devOps{l: l}
	l.sessOps = &sessionOps{l: l}
	k.RegisterRefOwner("luo", l.visitRefs)
	return l
}

// Register wires LUO into a booting kernel, in Linux's initcall order:
//
//	early  liveupdate_early_init   New + EarlyStartup (luo_early_startup: the incoming LUO FDT)
//	late   luo_late_startup        LateStartup (luo_fdt_setup: the outgoing FDT, kho_add_subtree)
//	late   liveupdate_ioctl_init   IoctlInit (misc_register of /dev/liveupdate)
//	late   luo_session_deserialize Deserialize (khosim deserializes at boot; see its doc)
//
// They must run before KHO's late return pass. publish receives the LUO
// as soon as it exists.
func Register(k *kernel.Kernel, kho *kexec.KHO, layer *preserve.Layer, faults *fault.Injector, publish func(*LUO)) {
	var l *LUO
	k.RegisterInitcall(kernel.InitcallEarly, "liveupdate_early_init", func(k *kernel.Kernel) error {
		l = New(k, kho, layer, faults)
		publish(l)
		return l.EarlyStartup()
	})
	k.RegisterInitcall(kernel.InitcallLate, "luo_late_startup", func(*kernel.Kernel) error { return l.LateStartup() })
	k.RegisterInitcall(kernel.InitcallLate, "liveupdate_ioctl_init", func(*kernel.Kernel) error { return l.IoctlInit() })
	k.RegisterInitcall(kernel.InitcallLate, "luo_session_deserialize", func(*kernel.Kernel) error { return l.Deserialize() })
}

// Enabled is liveupdate_enabled().
func (l *LUO) Enabled() bool { return l.enabled }

// Kernel returns LUO's kernel.
func (l *LUO) Kernel() *kernel.Kernel { return l.k }

// Stats returns LUO's counters.
func (l *LUO) Stats() Stats { return l.stats }

// LiveupdateNumber is the number of live updates this machine went
// through before this kernel (the incoming liveupdate-number; 0 after a
// cold boot).
func (l *LUO) LiveupdateNumber() uint64 { return l.in.fdt.number }

// IncomingErr is why the incoming LUO state is unavailable, or nil.
func (l *LUO) IncomingErr() error { return l.in.err }

// Outgoing and Incoming list the sessions by name, in list order.
func (l *LUO) Outgoing() []*Session { return slices.Clone(l.outgoing) }

// Incoming lists the sessions handed over by the previous kernel that are
// not finished and closed.
func (l *LUO) Incoming() []*Session { return slices.Clone(l.incoming) }

func (l *LUO) mustAlive(op string) {
	if l.k.Gone() {
		invariant.Panic("luo", "luo-alive", "", "%s on the LUO of boot %d, which is gone", op, l.k.BootID)
	}
}

// EarlyStartup is luo_early_startup(): without KHO there is no live
// update; otherwise the LUO subtree the previous kernel handed over, if
// any, is found (kho_retrieve_subtree), claimed and checked: compatible
// "luo-v1", its liveupdate-number, and the luo-session node
// (luo_session_setup_incoming). The FDT page is freed once read.
//
// Differs from Linux, which panics (luo_restore_fail) when the incoming
// tree does not check: khosim marks the incoming state unavailable (every
// open of /dev/liveupdate then gets EIO), logs why, and leaves the memory
// to KHO's late return pass.
func (l *LUO) EarlyStartup() error {
	if !l.kho.Enabled() {
		if l.enabled {
			l.k.Printk(kernel.LogWarn, "liveupdate: Disabling liveupdate because KHO is disabled")
		}
		l.enabled = false
		return nil
	}
	phys, size, err := l.kho.GetSubtree(FDTKHOEntryName)
	if errors.Is(err, errno.ENOENT) {
		return nil
	}
	l.in.active = true
	if err != nil {
		return l.unavailable(fmt.Errorf("failed to retrieve FDT '%s' from KHO: %w", FDTKHOEntryName, err))
	}
	f, order, err := l.kho.ClaimAt(phys)
	if err != nil {
		return l.unavailable(fmt.Errorf("claiming FDT '%s' at %#x: %w", FDTKHOEntryName, uint64(phys), err))
	}
	b := l.k.MM.Frames.Span(f.PFN(), 1<<order)
	in, err := readFDT(b[:min(uint64(len(b)), size)])
	l.k.MM.FolioPut(f) // kho_restore_free: read, no longer needed
	if err != nil {
		return l.unavailable(err)
	}
	l.in.fdt = in
	l.k.Printk(kernel.LogInfo, "liveupdate: Retrieved live update data, liveupdate number: %d", in.number)
	return nil
}

// unavailable marks the incoming LUO state unavailable: what Linux's
// luo_session_deserialize() error (and, for khosim, luo_restore_fail)
// leads to.
func (l *LUO) unavailable(err error) error {
	l.in.err = err
	l.k.Printk(kernel.LogErr, "liveupdate: the incoming live update state is unavailable: %v; /dev/liveupdate opens fail with EIO, the preserved memory is returned", err)
	return err
}

// LateStartup is luo_late_startup() -> luo_fdt_setup(): the outgoing LUO
// FDT (one preserved page, kho_alloc_preserve) with liveupdate-number one
// more than the incoming one, the session array (LUO_SESSION_PGCNT
// preserved pages, luo_session_setup_outgoing), and kho_add_subtree("LUO").
// LUO also registers a KHO notifier, for the ABORT of a deactivation (see
// Session.release). A failure disables live update in this kernel.
func (l *LUO) LateStartup() error {
	if !l.enabled {
		return nil
	}
	err := l.fdtSetup()
	if err != nil {
		l.k.Printk(kernel.LogErr, "liveupdate: failed to prepare LUO FDT: %v", err)
		l.enabled = false
	}
	return err
}

func (l *LUO) fdtSetup() error {
	l.out.number = l.in.fdt.number + 1
	fb, err := l.allocBlock(FDTSize)
	if err != nil {
		return fmt.Errorf("failed to allocate/preserve FDT memory: %w", err)
	}
	hb, err := l.allocBlock(blockSize(0, sessionPgcnt))
	if err != nil {
		l.freeBlock(fb)
		return err
	}
	l.out.fdt, l.out.header = fb, hb
	l.rewriteFDT()
	st := kexec.Subtree{Name: FDTKHOEntryName, Blob: fb.mem(), Size: FDTSize, Records: l.records}
	fail := func(err error) error {
		l.freeBlock(hb)
		l.freeBlock(fb)
		l.out.fdt, l.out.header = block{}, block{}
		return err
	}
	if err := l.kho.AddSubtree(st); err != nil {
		return fail(err)
	}
	l.nb = &kexec.Notifier{Name: "luo", Call: l.notifier}
	if err := l.kho.RegisterNotifier(l.nb); err != nil {
		_ = l.kho.RemoveSubtree(FDTKHOEntryName)
		return fail(err)
	}
	return nil
}

// rewriteFDT writes the outgoing FDT for the current session array. A
// page holds it many times over: failing is a bug.
func (l *LUO) rewriteFDT() {
	if _, err := writeFDT(l.out.fdt.b, l.out.number, l.out.header.phys); err != nil {
		invariant.Panic("luo", "luo-fdt", l.Dump(), "writing the LUO FDT: %v", err)
	}
}

// IoctlInit is liveupdate_ioctl_init(): /dev/liveupdate exists where live
// update is enabled.
func (l *LUO) IoctlInit() error {
	if !l.enabled {
		return nil
	}
	return l.k.RegisterDevice(&kernel.Device{Path: DevPath, Mode: DevMode, UID: 0, Open: l.open})
}

// records yields every range LUO and its files preserve: its FDT page, the
// session array, each outgoing (or released) session's file array and
// each file's own ranges. KHO writes them as the LUO subtree's "mem"
// records under a tracker that has client records (kexec.Subtree).
func (l *LUO) records() iter.Seq[kexec.Mem] {
	return func(yield func(kexec.Mem) bool) {
		for _, b := range []block{l.out.fdt, l.out.header} {
			if b.valid() && !yield(b.mem()) {
				return
			}
		}
		for _, s := range slices.Concat(l.outgoing, l.released) {
			if s.arr.valid() && !yield(s.arr.mem()) {
				return
			}
			for _, lf := range s.files {
				for m := range lf.rec.Mems() {
					if !yield(m) {
						return
					}
				}
			}
		}
	}
}

// notifier is LUO's KHO notifier. LUO hands its state over through its
// subtree, so DUMP and COMMIT have nothing to do; ABORT (kho deactivate)
// ends the preservation of the sessions closed while KHO was finalized.
func (l *LUO) notifier(cmd kexec.Cmd, _ *fdt.Writer) error {
	if cmd != kexec.KEXEC_KHO_ABORT {
		return nil
	}
	l.aborting = true
	defer func() { l.aborting = false }()
	for _, s := range l.released {
		s.unpreserveFiles()
		l.kfree(&s.obj)
	}
	l.released = nil
	return nil
}

// canUnpreserve reports whether LUO may give preserved memory back now:
// not while KHO is finalized (kho_unpreserve_folio's EBUSY), except in
// its abort.
func (l *LUO) canUnpreserve() bool { return l.aborting || !l.kho.Finalized() }

// allocBlock is kho_alloc_preserve(): a zeroed, preserved block of size
// bytes. Errors: ENOMEM (or the page_alloc fault, or a block beyond
// MAX_PAGE_ORDER); EBUSY once KHO is finalized.
func (l *LUO) allocBlock(size uint64) (block, error) {
	phys, b, err := l.kho.AllocPreserve(size)
	if err != nil {
		if errno.Of(err) == errno.EINVAL {
			err = fmt.Errorf("a block of %d bytes is beyond MAX_PAGE_ORDER: %w", size, errno.ENOMEM)
		}
		return block{}, err
	}
	return block{phys: phys, b: b}, nil
}

// freeBlock is kho_unpreserve_free(). Preconditions: canUnpreserve.
func (l *LUO) freeBlock(b block) {
	if !b.valid() {
		return
	}
	if err := l.kho.UnpreserveFree(b.phys); err != nil {
		invariant.Panic("luo", "luo-block", l.Dump(), "freeing block %v: %v", b.mem(), err)
	}
}

// ensureSessions makes room in the session array for n sessions
// (kho_block_set_grow in liveupdate-v7.2): a larger block replaces it, and
// the FDT is rewritten to point at it. The array is written only at the
// reboot path, so nothing is copied. Errors: allocBlock's.
//
// Differs from Linux 6.19, whose array is LUO_SESSION_PGCNT pages for
// good (ENOMEM at session 820), and from liveupdate-v7.2, which chains
// 4 KiB blocks: khosim keeps the luo-session-v2 layout, one contiguous
// array, and sizes it as needed, up to MAX_PAGE_ORDER (52,428 sessions).
func (l *LUO) ensureSessions(n int) error {
	if sessionCap(l.out.header) >= n {
		return nil
	}
	nb, err := l.allocBlock(blockSize(sessionHeaderSerSize+uint64(n)*sessionSerSize, sessionPgcnt))
	if err != nil {
		return err
	}
	l.freeBlock(l.out.header)
	l.out.header = nb
	l.rewriteFDT()
	return nil
}

// fitSessions shrinks the session array to what n sessions need
// (kho_block_set_shrink), where KHO allows it and memory can be had for
// the smaller block.
func (l *LUO) fitSessions(n int) {
	size := blockSize(sessionHeaderSerSize+uint64(n)*sessionSerSize, sessionPgcnt)
	if size >= uint64(len(l.out.header.b)) || !l.canUnpreserve() || l.kho.Finalized() {
		return
	}
	nb, err := l.allocBlock(size)
	if err != nil {
		return
	}
	l.freeBlock(l.out.header)
	l.out.header = nb
	l.rewriteFDT()
}

// open is luo_open(): one opener at a time (EBUSY), and never while the
// incoming state is unavailable (EIO, every time).
func (l *LUO) open(t *kernel.Task, flags int) (kernel.FileOps, any, error) {
	l.mustAlive("open")
	if l.inUse {
		return nil, nil, errno.EBUSY
	}
	if l.in.err != nil {
		return nil, nil, errno.EIO
	}
	l.inUse = true
	return l.devOps, l, nil
}

// devOps is luo_fops: the /dev/liveupdate file.
type devOps struct{ l *LUO }

func (*devOps) Kind() string { return "liveupdate" }

// Release is luo_release(): the device may be opened again. Sessions stay.
func (o *devOps) Release(*kernel.File) { o.l.inUse = false }

// Ioctl is luo_ioctl(): LIVEUPDATE_IOCTL_CREATE_SESSION and
// LIVEUPDATE_IOCTL_RETRIEVE_SESSION, checked as Linux does: a number
// outside the table EINVAL, a bad argument EFAULT, another ioctl with the
// same nr ENOTTY (ENOIOCTLCMD), a size below the structure's last field
// EINVAL.
func (o *devOps) Ioctl(t *kernel.Task, f *kernel.File, cmd uint32, arg any) (int64, error) {
	l := o.l
	l.mustAlive("ioctl")
	switch nr := cmd & 0xff; nr - uapi.LIVEUPDATE_CMD_BASE {
	case uapi.LIVEUPDATE_CMD_CREATE_SESSION:
		a, ok := arg.(*uapi.LiveupdateIoctlCreateSession)
		if !ok || a == nil {
			return 0, errno.EFAULT
		}
		if cmd != uapi.LIVEUPDATE_IOCTL_CREATE_SESSION {
			return 0, errno.ENOTTY
		}
		if a.Size < uapi.SizeofLiveupdateIoctlCreateSession {
			return 0, errno.EINVAL
		}
		fd, err := l.createSession(t, a.Name)
		if err != nil {
			return 0, err
		}
		a.FD = int32(fd)
		return 0, nil
	case uapi.LIVEUPDATE_CMD_RETRIEVE_SESSION:
		a, ok := arg.(*uapi.LiveupdateIoctlRetrieveSession)
		if !ok || a == nil {
			return 0, errno.EFAULT
		}
		if cmd != uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION {
			return 0, errno.ENOTTY
		}
		if a.Size < uapi.SizeofLiveupdateIoctlRetrieveSession {
			return 0, errno.EINVAL
		}
		fd, err := l.retrieveSession(t, a.Name)
		if err != nil {
			return 0, err
		}
		a.FD = int32(fd)
		return 0, nil
	}
	return 0, errno.EINVAL
}

// Reboot is liveupdate_reboot() up to kho_finalize(), which the machine
// does (it reports needHandover: LUO always hands over when enabled):
// luo_session_serialize() freezes every outgoing session's files in
// preservation order (the luo_freeze fault site, then the handler's
// freeze: memfd records f_pos) and writes their luo_file_ser records,
// then every luo_session_ser and the header's count. On a failure every
// file already frozen is unfrozen, the records are cleared, and the error
// is returned (the kernel runs on, its files still preserved and their
// inodes still frozen).
func (l *LUO) Reboot() (needHandover bool, err error) {
	l.mustAlive("liveupdate_reboot")
	if !l.enabled {
		return false, nil
	}
	if l.frozen {
		invariant.Panic("luo", "luo-reboot", l.Dump(), "reboot path run twice without unfreeze")
	}
	start := time.Now()
	st := RebootStats{Bytes: sessionHeaderSerSize}
	hb := l.out.header.b
	for i, s := range l.outgoing {
		if err := s.freeze(&st); err != nil {
			for j := i - 1; j >= 0; j-- {
				l.outgoing[j].unfreeze()
			}
			clear(hb)
			l.k.Printk(kernel.LogErr, "liveupdate: reboot: freezing session %q failed: %v; the live update is aborted", s.name, err)
			return false, err
		}
		putSessionSer(hb[sessionHeaderSerSize+i*sessionSerSize:], s.name, s.arr.phys, uint64(len(s.files)))
		st.Sessions++
		st.Bytes += sessionSerSize
	}
	le.PutUint64(hb, uint64(len(l.outgoing)))
	st.Freeze = time.Since(start)
	for _, s := range l.outgoing { // counted outside the timed freeze
		for _, lf := range s.files {
			st.Folios += lf.rec.Folios()
			st.Pages += lf.rec.Pages()
		}
	}
	l.stats.Reboot = st
	l.k.Work().RecordBytes += st.Bytes
	l.frozen = true
	return true, nil
}

// Carried names, for blackout accounting, the files a kexec after the
// reboot path hands over.
func (l *LUO) Carried() []string {
	if !l.frozen {
		return nil
	}
	var out []string
	for _, s := range l.outgoing {
		for _, lf := range s.files {
			out = append(out, lf.meterKey())
		}
	}
	return out
}

// Unreboot undoes a successful Reboot when a later step of the reboot path
// failed (luo_session_serialize's err_undo for every session): every file
// is unfrozen and the records cleared.
func (l *LUO) Unreboot() {
	l.mustAlive("liveupdate_reboot undo")
	if !l.frozen {
		return
	}
	for _, s := range slices.Backward(l.outgoing) {
		s.unfreeze()
	}
	clear(l.out.header.b)
	l.frozen = false
}

// Dump describes LUO for violations.
func (l *LUO) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "luo: enabled=%v in_use=%v frozen=%v liveupdate-number in %d out %d; header %v (cap %d); %d preserved files",
		l.enabled, l.inUse, l.frozen, l.in.fdt.number, l.out.number, l.out.header.mem(), sessionCap(l.out.header), len(l.preserved))
	if l.in.err != nil {
		fmt.Fprintf(&b, "\n  incoming state unavailable: %v", l.in.err)
	}
	for _, list := range []struct {
		what string
		ss   []*Session
	}{{"outgoing", l.outgoing}, {"released", l.released}, {"incoming", l.incoming}} {
		for _, s := range list.ss {
			fmt.Fprintf(&b, "\n  %s %s", list.what, s)
		}
	}
	return b.String()
}

// blockOf returns the folio of a block, for the audit.
func blockFolio(b block) physmem.Folio { return physmem.Folio(b.phys.PFN()) }
