// Package scenarios runs khosim scenario files on a simulated machine.
// A script parsed in the scenario language (package scn, by Parse here)
// runs on a fresh machine.Machine: Run boots the kernels of the builds the
// script names, starts its processes as tasks of the running kernel and
// makes their system calls, activates KHO, kexecs, arms faults, corrupts
// the handover FDT, and checks the script's expectations and the machine's
// audit; it reports a Result: each failure as FILE:LINE: statement: what
// happened (with the state that explains it), a panic inside the simulator
// as an internal error, statistics and timings.
//
// The package also owns the language's table (table.go): one description
// per system call, ioctl command and expression function, holding its
// signature, the decoding of its arguments (by kind, decode.go) and its
// handler. Lang returns the signatures, which the parser checks calls
// against and a generator of random scenarios can enumerate; Parse parses
// with them.
//
// The library (Library, LibraryFiles) holds the scenarios that document
// the language and run as tests.
package scenarios

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"khosim/errno"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/machine"
	"khosim/report"
	"khosim/scenarios/scn"
	"khosim/uapi"
)

// Options control a run. The zero value runs quietly with seed 0 for
// files whose machine statement gives no seed=.
type Options struct {
	// Seed is the machine seed of a file whose machine statement has no
	// seed= (the file's own seed always wins).
	Seed uint64
	// Verbose, when set, receives every statement with its result, e.g.
	// `vmm: ram = memfd_create("guest-ram", 0) = 3`, followed by the
	// kernel log lines the statement produced, indented.
	Verbose io.Writer
	// Progress, when set, is told how far long steps (writes, reads,
	// comparisons and hashes of at least ProgressMin bytes) have got.
	Progress func(p Progress)
	// KeepGoing runs the statements after a failure too, collecting
	// every failure (the contract's default, and the command line's, is
	// to stop at the first). An internal error always stops the run.
	// The fuzzer uses it to reach deep into random scripts.
	KeepGoing bool
	// Trace, when set, is called before each statement runs (for
	// tracing and debugging). Like the simulator, it runs under the
	// runner's recover: a panic in it is an internal error of the
	// statement.
	Trace func(st scn.Stmt)
	// Report, when set, records the run for an HTML report
	// (report.Write): a snapshot at every machine phase, every statement
	// with its time and live-update work, the blackout, each `snapshot
	// NAME`, each failure with its state. The runner calls Finish.
	Report *report.Run
	// AtSnapshot, when set, is shown the machine at each `snapshot NAME`.
	AtSnapshot func(name string, m *machine.Machine)
	// AtEnd, when set, is shown the machine after the last statement
	// that ran (passed or not), before it is closed, if a kernel runs.
	AtEnd func(m *machine.Machine)
	// Build, when set, changes the default kernel build of the file: its
	// keys are applied to kbuild.Default() before the boot statement's
	// own, so `boot` alone boots that build and `boot kho=arrays` still
	// pins its tracker. kexec and reboot inherit from the running kernel
	// as always. The metamorphic test runs the library under each
	// tracker with it (khosim run --build kho=radix).
	Build []scn.BuildKey
}

// ProgressMin is the size from which a data step reports progress.
const ProgressMin = 64 << 20

// Progress is the state of one long step. Done == Total (or Finished) is
// the step's last report.
type Progress struct {
	What        string // the statement, as written
	Done, Total uint64 // bytes
	Finished    bool
}

// Result is the outcome of running one scenario file.
type Result struct {
	File   string
	Passed bool
	// Failures holds the failure that stopped the file (a file stops at
	// its first failure, so there is at most one, unless KeepGoing).
	Failures []Failure
	// Internal reports that the run stopped on a panic inside the
	// simulator: a bug, not a scenario failure (exit status 3).
	Internal bool
	Stats    Stats
	// FDT is the last KHO handover FDT the run saw (at kho activate,
	// corrupt fdt and kexec), nil if KHO was never activated.
	FDT []byte
	// Warnings are the run's warnings (Warning), in order.
	Warnings []Warning
	// Preserved describes what the last successful kho activate
	// serialized: the sealed boxes and their files.
	Preserved []PreservedBox
	// Steps are the statements that ran, with their wall times.
	Steps []Step
}

// Step is one statement that ran and how long it took.
type Step struct {
	Stmt scn.Stmt
	Wall time.Duration
}

// Failure is one failed statement.
type Failure struct {
	Line int `json:"line"`
	// Message is "<statement as written>: <what happened>", followed by
	// indented lines of state when they help ("internal error: ..." and
	// the statement for an internal error).
	Message string `json:"message"`
	// Stack is the goroutine stack of an internal error.
	Stack string `json:"stack,omitempty"`
	// Err is the error behind the failure, for errors.As: it wraps, for
	// instance, the *invariant.Violation of a broken invariant (from
	// `expect invariants`, or the panic value of an internal error).
	Err error `json:"-"`
}

// Format returns the failure as printed: FILE:LINE: message (and the
// stack of an internal error).
func (f Failure) Format(file string) string {
	s := fmt.Sprintf("%s:%d: %s", file, f.Line, f.Message)
	if f.Stack != "" {
		s += "\n" + strings.TrimRight(f.Stack, "\n")
	}
	return s
}

// PreservedBox is a box serialized by kho activate.
type PreservedBox struct {
	Name  string
	Files []PreservedFile
}

// PreservedFile is a boxed file serialized by kho activate.
type PreservedFile struct {
	Name  string // its name in the box
	Kind  string // the file kind, e.g. "memfd"
	Size  int64  // i_size
	Pages uint64 // its pages, in the page cache or on swap
}

// Stats are figures of one run.
type Stats struct {
	Statements int // statements executed
	Kexecs     int
	Reboots    int
	// PreservedPages and FDTBytes are the machine's figures for the last
	// KHO handover.
	PreservedPages uint64
	FDTBytes       uint64
	// Wall is the run's wall time; Timings splits it by statement kind
	// ("kho activate", "kexec", "pwrite", "expect", ...).
	Wall    time.Duration
	Timings map[string]time.Duration
	// Machine is the machine's own statistics at the end of the run.
	Machine machine.Stats
}

// Run runs a parsed script on a fresh machine and reports the outcome. It
// never panics: a panic inside the simulator is recovered and reported as
// an internal error of the statement that caused it.
//
// script must come from Parse without errors.
func Run(script *scn.Script, opts Options) *Result {
	r := newRunner(script, opts)
	start := time.Now()
	defer func() {
		r.res.Stats.Wall = time.Since(start)
	}()
	if opts.Verbose != nil {
		fmt.Fprintf(opts.Verbose, "=== %s\n", script.File)
	}
	defer r.closeMachine()
	defer r.reportEnd()
	for _, st := range script.Stmts {
		if !r.step(st) && (r.res.Internal || !opts.KeepGoing) {
			return r.res
		}
	}
	r.finishStats()
	r.res.Passed = len(r.res.Failures) == 0
	return r.res
}

func newRunner(script *scn.Script, opts Options) *runner {
	return &runner{
		script: script,
		opts:   opts,
		procs:  map[string]*proc{},
		past:   map[string]*proc{},
		vars:   map[string]value{},
		rep:    reportState{lossEvent: -1},
		res: &Result{
			File:  script.File,
			Stats: Stats{Timings: map[string]time.Duration{}},
		},
	}
}

// runner is the state of one run: the machine, the kernels it booted, the
// processes with their resources, and the script's variables.
type runner struct {
	script *scn.Script
	opts   Options
	res    *Result
	rep    reportState // Options.Report

	m       *machine.Machine
	kernels []*kernelRec // every kernel booted, in boot order
	// procs are the processes of the running kernel by name; past holds,
	// for each name, the last process of that name that is gone (its
	// kernel replaced, or exited), to say why a name no longer works.
	procs map[string]*proc
	past  map[string]*proc
	vars  map[string]value
	// folios are the folios refcount() and mapcount() looked at while the
	// current expect was evaluated, for its failure message.
	folios []string
	// pendingWarnings are the current statement's warnings, for -v.
	pendingWarnings []string

	// incoming is the handover FDT the running kernel was booted with
	// (nil after a cold boot or a kexec without KHO active).
	incoming []byte

	cur     scn.Stmt // the statement being run
	logMark int      // kernel log lines of the running kernel already echoed
	// stmtLog is the kernel log mark at the start of the statement.
	stmtLog int
}

// kernelRec is a kernel the run booted.
type kernelRec struct {
	k        *kernel.Kernel
	boot     int    // 1 for the first kernel, +1 at every kexec/reboot
	how      string // "boot", "kexec" or "reboot"
	line     int    // the statement that booted it
	goneLine int    // the kexec or reboot that replaced it; 0 while running
	goneHow  string
}

// proc is a process of the scenario: a task with named resources.
type proc struct {
	name     string
	task     *kernel.Task
	kern     *kernelRec
	line     int // the process statement
	exitLine int // the exit statement; 0 while running
	res      map[string]*resource
}

// resKind is what a resource name denotes.
type resKind int

const (
	resFD    resKind = iota + 1 // a file descriptor
	resMap                      // a shared mapping
	resCount                    // a count or other number a call returned
)

// resource is a name bound in a process by `RES = CALL(...)`.
type resource struct {
	name string
	kind resKind
	fd   int         // resFD
	vma  *kernel.VMA // resMap
	addr uint64      // resMap: the mapping's start address
	len  uint64      // resMap: its length
	n    int64       // resCount
	line int         // where it was bound
}

// number is the resource's value as an integer: the fd, the mapping's
// address or the count.
func (rs *resource) number() uint64 {
	switch rs.kind {
	case resFD:
		return uint64(rs.fd)
	case resMap:
		return rs.addr
	}
	return uint64(rs.n)
}

func (rs *resource) describe() string {
	switch rs.kind {
	case resFD:
		return fmt.Sprintf("fd %d", rs.fd)
	case resMap:
		return fmt.Sprintf("mapping %#x+%#x", rs.addr, rs.len)
	}
	return fmt.Sprintf("number %d", rs.n)
}

// failure is a scenario failure of the current statement: what happened,
// and the state that explains it (printed indented below); cause is the
// error behind it, if any (errors.As reaches it through Unwrap).
type failure struct {
	msg   string
	state []string
	cause error
}

func (f *failure) Error() string { return f.msg }

func (f *failure) Unwrap() error { return f.cause }

// failf returns a failure of the current statement.
func failf(format string, args ...any) *failure {
	return &failure{msg: fmt.Sprintf(format, args...)}
}

// with appends lines of state to a failure.
func (f *failure) with(lines ...string) *failure {
	for _, l := range lines {
		for _, s := range strings.Split(strings.TrimRight(l, "\n"), "\n") {
			if s != "" {
				f.state = append(f.state, s)
			}
		}
	}
	return f
}

// step runs one statement; it returns false when the run must stop.
func (r *runner) step(st scn.Stmt) (ok bool) {
	r.cur = st
	r.folios = r.folios[:0]
	r.pendingWarnings = r.pendingWarnings[:0]
	r.res.Stats.Statements++
	if k := r.kernel(); k != nil {
		r.stmtLog = len(k.Log())
	}
	r.reportBefore()
	start := time.Now()
	var err error
	defer func() {
		d := time.Since(start)
		r.res.Stats.Timings[timingKey(st)] += d
		r.res.Steps = append(r.res.Steps, Step{Stmt: st, Wall: d})
		p := recover()
		if p != nil {
			err = fmt.Errorf("internal error: %v", p)
		}
		r.reportStep(st, d, err)
		if p != nil {
			r.internal(st, p)
			ok = false
		}
	}()
	if r.opts.Trace != nil {
		r.opts.Trace(st)
	}
	var echo string
	echo, err = r.exec(st)
	if err != nil {
		r.fail(st, err)
		return false
	}
	r.echo(st, echo)
	return true
}

// timingKey names a statement's kind for Stats.Timings, by its type
// (never by formatting it: a let of a million terms would print in a
// million steps).
func timingKey(st scn.Stmt) string {
	switch st := st.(type) {
	case *scn.Syscall:
		return st.Name
	case *scn.KHO:
		if st.Activate {
			return "kho activate"
		}
		return "kho deactivate"
	}
	return st.Keyword()
}

// fail records the failure of st.
func (r *runner) fail(st scn.Stmt, err error) {
	var f *failure
	if !errors.As(err, &f) {
		f = failf("%v", err)
	}
	var b strings.Builder
	b.WriteString(st.Source() + ": " + f.msg)
	for _, l := range f.state {
		b.WriteString("\n    " + l)
	}
	r.res.Failures = append(r.res.Failures, Failure{Line: st.Pos().Line, Message: b.String(), Err: err})
	r.reportFail(st.Pos().Line, st.Source(), f.msg, f.state)
	r.finishStats()
}

// internal records a panic inside the simulator while st ran.
func (r *runner) internal(st scn.Stmt, p any) {
	r.res.Internal = true
	err, _ := p.(error)
	r.res.Failures = append(r.res.Failures, Failure{
		Line:    st.Pos().Line,
		Message: fmt.Sprintf("internal error: %v\n    while running: %s", p, st.Source()),
		Stack:   string(debug.Stack()),
		Err:     err,
	})
	r.reportFail(st.Pos().Line, st.Source(), fmt.Sprintf("internal error: %v", p), nil)
	// The machine's state is suspect; statistics are best effort.
	func() {
		defer func() { _ = recover() }()
		r.finishStats()
	}()
}

// echo prints a statement and its result for -v, and the kernel log lines
// it produced.
func (r *runner) echo(st scn.Stmt, result string) {
	w := r.opts.Verbose
	if w == nil {
		return
	}
	line := st.Source()
	if result != "" {
		line += " " + result
	}
	fmt.Fprintln(w, line)
	for _, m := range r.pendingWarnings {
		fmt.Fprintf(w, "    warning: %s\n", m)
	}
	k := r.kernel()
	if k == nil {
		return
	}
	log := k.Log()
	if r.logMark > len(log) {
		r.logMark = 0
	}
	for _, l := range log[r.logMark:] {
		fmt.Fprintf(w, "    [kernel %d] %s\n", k.BootID, l)
	}
	r.logMark = len(log)
}

// kernel returns the running kernel, or nil before boot and after a
// failed kexec or reboot.
func (r *runner) kernel() *kernel.Kernel {
	if len(r.kernels) == 0 {
		return nil
	}
	kr := r.kernels[len(r.kernels)-1]
	if kr.goneLine != 0 {
		return nil
	}
	return kr.k
}

// running returns the running kernel or fails: nothing runs before boot,
// nor after a kexec or reboot that failed to bring up a kernel.
func (r *runner) running() (*kernelRec, error) {
	if len(r.kernels) == 0 {
		return nil, failf("no kernel is running (boot first)")
	}
	kr := r.kernels[len(r.kernels)-1]
	if kr.goneLine != 0 {
		return nil, failf("no kernel is running: the %s at line %d did not bring one up", kr.goneHow, kr.goneLine)
	}
	return kr, nil
}

// logSince returns the running kernel's log lines since the statement
// started, formatted for a failure's state.
func (r *runner) logSince() []string {
	k := r.kernel()
	if k == nil {
		return nil
	}
	log := k.Log()
	if r.stmtLog > len(log) {
		r.stmtLog = 0
	}
	var out []string
	for _, l := range log[r.stmtLog:] {
		out = append(out, fmt.Sprintf("[kernel %d] %s", k.BootID, l))
	}
	if len(out) > 0 {
		out = append([]string{"kernel log since this statement:"}, out...)
	}
	return out
}

func (r *runner) closeMachine() {
	if r.m == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil && !r.res.Internal {
			r.internal(r.cur, p)
			r.res.Passed = false
		}
	}()
	if err := r.m.Close(); err != nil && r.res.Passed {
		r.res.Passed = false
		r.res.Failures = append(r.res.Failures, Failure{
			Line:    r.cur.Pos().Line,
			Message: "closing the machine after the last statement: " + err.Error(),
		})
	}
	r.m = nil
}

// finishStats copies the machine's figures into the result.
func (r *runner) finishStats() {
	if r.m == nil {
		return
	}
	ms := r.m.Stats()
	r.res.Stats.Machine = ms
	r.res.Stats.PreservedPages = ms.PreservedPages
	r.res.Stats.FDTBytes = ms.FDTBytes
}

// exec runs one statement and returns what -v prints after it.
func (r *runner) exec(st scn.Stmt) (string, error) {
	switch st := st.(type) {
	case *scn.Machine:
		return r.machine(st)
	case *scn.Boot:
		return r.boot(st)
	case *scn.Process:
		return r.process(st)
	case *scn.Exit:
		return r.exit(st)
	case *scn.KHO:
		return r.kho(st)
	case *scn.Kexec:
		return r.kexec(st)
	case *scn.Reboot:
		return r.reboot(st)
	case *scn.Snapshot:
		return r.snapshot(st)
	case *scn.Fault:
		return r.fault(st)
	case *scn.CorruptFDT:
		return r.corrupt(st)
	case *scn.Syscall:
		return r.syscall(st)
	case *scn.Let:
		return r.let(st)
	case *scn.Expect:
		return r.expect(st)
	case *scn.ExpectInvariants:
		return r.invariants(st)
	}
	return "", failf("statement %T is not supported by the runner", st)
}

func (r *runner) machine(st *scn.Machine) (string, error) {
	if r.m != nil {
		return "", failf("the machine already exists")
	}
	seed := r.opts.Seed
	if st.SeedSet {
		seed = st.Seed
	}
	m, err := machine.New(machine.Config{
		Memory:         st.Memory,
		Swap:           st.Swap,
		Seed:           seed,
		ScratchBytes:   st.Scratch.Bytes,
		ScratchPercent: int(st.Scratch.Percent),
	})
	if err != nil {
		return "", failf("cannot build the machine: %v", err)
	}
	r.m = m
	if r.opts.Report != nil {
		r.opts.Report.Watch(m)
	}
	if testOnMachine != nil {
		testOnMachine(m)
	}
	return fmt.Sprintf("(seed %d)", seed), nil
}

// testOnMachine, set by tests only, sees the machine of each run as soon
// as it is built.
var testOnMachine func(*machine.Machine)

// needMachine fails before the machine statement ran (the parser makes
// it first, so this only guards scripts built by hand).
func (r *runner) needMachine() error {
	if r.m == nil {
		return failf("no machine (the first statement must be machine)")
	}
	return nil
}

// boot cold-boots the first kernel, of kbuild.Default() with the
// statement's keys applied (machine.Boot).
func (r *runner) boot(st *scn.Boot) (string, error) {
	if err := r.needMachine(); err != nil {
		return "", err
	}
	if len(r.kernels) > 0 {
		return "", failf("a kernel is already running (use kexec or reboot)")
	}
	b, err := r.buildFor(kbuild.Default(), append(slices.Clip(r.opts.Build), st.Build...))
	if err != nil {
		return "", err
	}
	if err := r.m.Boot(b); err != nil {
		return "", failf("boot failed: %v", err).with(r.newKernelLog()...)
	}
	r.addKernel("boot", st)
	out := fmt.Sprintf("= kernel %d", r.kernel().BootID)
	if len(st.Build) > 0 || len(r.opts.Build) > 0 {
		out += " (" + b.String() + ")"
	}
	return out, nil
}

// buildFor returns base with the keys applied, or a failure if khosim
// cannot build that kernel yet (machine.Supported: ENOSYS for a tracker or
// a front-end not built). That is a limit of the simulator, not an errno
// of the simulated kernel, so it is a failure whatever the statement
// expects.
func (r *runner) buildFor(base kbuild.Build, keys []scn.BuildKey) (kbuild.Build, error) {
	b, err := scn.ApplyBuild(base, keys)
	if err != nil {
		return b, failf("%v", err)
	}
	if err := machine.Supported(b); err != nil {
		return b, failf("khosim cannot build this kernel yet: %v", err)
	}
	return b, nil
}

// addKernel records the kernel the machine now runs.
func (r *runner) addKernel(how string, st scn.Stmt) {
	k := r.m.Kernel()
	r.kernels = append(r.kernels, &kernelRec{k: k, boot: len(r.kernels) + 1, how: how, line: st.Pos().Line})
	r.logMark = 0
	r.stmtLog = 0
}

// newKernelLog returns the error and warning lines of the machine's
// kernel log, when boot or kexec failed or revived less than it should.
func (r *runner) newKernelLog() []string {
	k := r.m.Kernel()
	if k == nil || k.Gone() {
		return nil
	}
	var out []string
	for _, l := range k.Log() {
		if l.Level <= kernel.LogWarn {
			out = append(out, fmt.Sprintf("[kernel %d] %s", k.BootID, l))
		}
	}
	if len(out) > 0 {
		out = append([]string{"kernel errors and warnings:"}, out...)
	}
	return out
}

// retire ends the running kernel's processes: kexec or reboot at st.
func (r *runner) retire(how string, st scn.Stmt) {
	kr := r.kernels[len(r.kernels)-1]
	if kr.goneLine == 0 {
		kr.goneLine = st.Pos().Line
		kr.goneHow = how
	}
	for name, p := range r.procs {
		r.past[name] = p
	}
	clear(r.procs)
}

func (r *runner) process(st *scn.Process) (string, error) {
	kr, err := r.running()
	if err != nil {
		return "", err
	}
	if p, ok := r.procs[st.Name]; ok {
		return "", failf("process %s already runs in kernel %d (started at line %d)", st.Name, kr.boot, p.line)
	}
	t := kr.k.NewTask(st.Name, kernel.Cred{UID: st.UID, Caps: st.CapMask})
	if st.NoFile != 0 {
		t.NoFile = st.NoFile // setrlimit(RLIMIT_NOFILE) before it runs
	}
	// A process starts the way a shell starts one: stdin, stdout and
	// stderr open (on /dev/null here), so the first fd a scenario gets is
	// 3, as in the contract's example.
	for range 3 {
		if _, err := t.Open("/dev/null", uapi.O_RDWR); err != nil {
			return "", fmt.Errorf("process %s: opening its standard fds: %w", st.Name, err)
		}
	}
	r.procs[st.Name] = &proc{name: st.Name, task: t, kern: kr, line: st.Pos().Line, res: map[string]*resource{}}
	return fmt.Sprintf("= pid %d uid %d caps %#x", t.PID, st.UID, st.CapMask), nil
}

func (r *runner) exit(st *scn.Exit) (string, error) {
	p, err := r.proc(st.Name)
	if err != nil {
		return "", err
	}
	p.task.Exit()
	p.exitLine = st.Pos().Line
	delete(r.procs, p.name)
	r.past[p.name] = p
	return "", nil
}

// proc returns the running process named name, or a failure saying why
// there is none: never started, exited, or its kernel is gone.
func (r *runner) proc(name string) (*proc, error) {
	if p, ok := r.procs[name]; ok {
		return p, nil
	}
	if p, ok := r.past[name]; ok {
		if p.exitLine != 0 {
			return nil, failf("process %s exited at line %d", name, p.exitLine)
		}
		return nil, failf("process %s belongs to kernel %d, which is gone since line %d (%s)",
			name, p.kern.boot, p.kern.goneLine, p.kern.goneHow)
	}
	if _, err := r.running(); err != nil {
		return nil, err
	}
	return nil, failf("no process %s in kernel %d%s", name, r.kernels[len(r.kernels)-1].boot, r.procList())
}

// procList lists the running processes for a message.
func (r *runner) procList() string {
	if len(r.procs) == 0 {
		return " (it runs no process)"
	}
	names := make([]string, 0, len(r.procs))
	for n := range r.procs {
		names = append(names, n)
	}
	slices.Sort(names)
	return " (its processes: " + strings.Join(names, ", ") + ")"
}

// resource returns the resource res of the running process p.
func (r *runner) resource(p *proc, res string) (*resource, error) {
	rs, ok := p.res[res]
	if !ok {
		return nil, failf("process %s has no resource %s%s", p.name, res, resList(p))
	}
	return rs, nil
}

// resList lists a process's resources for a message.
func resList(p *proc) string {
	if len(p.res) == 0 {
		return " (it has none)"
	}
	names := make([]string, 0, len(p.res))
	for n := range p.res {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + p.res[n].describe()
	}
	return " (it has " + strings.Join(parts, ", ") + ")"
}

func (r *runner) kho(st *scn.KHO) (string, error) {
	if _, err := r.running(); err != nil {
		return "", err
	}
	var err error
	what := "deactivate"
	if st.Activate {
		what = "activate"
		preserved := r.preservedNow() // before serialization changes the files
		if err = r.m.KHOActivate(); err == nil {
			r.res.Preserved = preserved
			r.saveFDT()
			r.warnUnsealedBoxes("kho activate")
		}
	} else {
		err = r.m.KHODeactivate()
	}
	if ferr := r.checkErrno("kho "+what, err, st.Errno, ""); ferr != nil {
		f := ferr.(*failure)
		if st.Activate && err == nil {
			f.with(r.fdtSummary()...)
		}
		return "", f.with(r.logSince()...)
	}
	switch {
	case st.Errno != 0:
		return "", nil
	case st.Activate:
		return fmt.Sprintf("= ok (%s)", r.preservedSummary()), nil
	}
	return "= ok", nil
}

// checkErrno compares what a call returned with what the statement wants:
// success (want 0) or exactly the errno want. result is printed when a
// call that should have failed succeeded.
func (r *runner) checkErrno(what string, err error, want errno.Errno, result string) error {
	got := errno.Of(err)
	detail := ""
	if err != nil && err.Error() != got.Name() {
		detail = " (" + err.Error() + ")"
	}
	switch {
	case want == 0 && err != nil:
		return failf("%s failed with %s%s", what, got.Name(), detail)
	case want != 0 && err == nil:
		if result != "" {
			result = " (= " + result + ")"
		}
		return failf("%s succeeded%s, want %s", what, result, want.Name())
	case want != 0 && got != want:
		return failf("%s failed with %s%s, want %s", what, got.Name(), detail, want.Name())
	}
	return nil
}

// saveFDT keeps the current handover FDT for Result.FDT.
func (r *runner) saveFDT() {
	if fdt, err := r.m.HandoverFDT(); err == nil && len(fdt) > 0 {
		r.res.FDT = fdt
	}
}

// kexec kexecs into a kernel of the running kernel's build with the
// statement's keys applied (a key not given is inherited), and checks the
// outcome against `-> ERRNO`.
func (r *runner) kexec(st *scn.Kexec) (string, error) {
	if _, err := r.running(); err != nil {
		return "", err
	}
	from := r.m.Build()
	b, err := r.buildFor(from, st.Build)
	if err != nil {
		return "", err
	}
	// What the next kernel receives: the active FDT, corruption included.
	prevIncoming, prevFDT := r.incoming, r.res.FDT
	r.incoming = nil
	if kho := r.m.KHO(); kho != nil && kho.Active() {
		if fdt, err := r.m.HandoverFDT(); err == nil {
			r.incoming = fdt
			r.res.FDT = fdt
		}
	}
	r.warnUnsealedBoxes("kexec")
	out, replaced, err := r.replace("kexec", st, st.Errno, func() error { return r.m.Kexec(b) })
	if !replaced {
		r.incoming, r.res.FDT = prevIncoming, prevFDT // the running kernel goes on as it was
	}
	if err == nil && out != "" {
		if d := from.Diff(r.m.Build()); len(d) > 0 {
			out += " (" + strings.Join(d, " ") + ")"
		}
	}
	return out, err
}

func (r *runner) reboot(st *scn.Reboot) (string, error) {
	// A reboot also brings a machine back after a kexec that failed.
	if len(r.kernels) == 0 {
		return "", failf("no kernel was booted yet (boot first)")
	}
	r.incoming = nil
	out, _, err := r.replace("reboot", st, 0, r.m.Reboot)
	return out, err
}

// replace runs a kexec or reboot and checks its errno against want (0: it
// must succeed). If the running kernel is gone afterwards, its processes
// are gone too, and the machine's new kernel (if one came up) runs; if it
// still runs (a kexec that failed before the handover), nothing changed
// and replaced is false. Whatever machine.Kexec does, the runner looks at
// what the machine runs, not at the errno, to tell the two apart.
func (r *runner) replace(how string, st scn.Stmt, want errno.Errno, do func() error) (out string, replaced bool, err error) {
	old := r.kernel()
	callErr := do()
	k := r.m.Kernel()
	replaced = old == nil || k != old || old.Gone()
	if replaced {
		r.retire(how, st)
		if k != nil && !k.Gone() {
			r.addKernel(how, st)
			if how == "kexec" {
				r.res.Stats.Kexecs++
			} else {
				r.res.Stats.Reboots++
			}
		}
	}
	switch {
	case want == 0 && callErr != nil:
		return "", replaced, failf("%s failed: %v", how, callErr).with(r.newKernelLog()...)
	case want != 0:
		if ferr := r.checkErrno(how, callErr, want, ""); ferr != nil {
			return "", replaced, ferr.(*failure).with(r.newKernelLog()...)
		}
		if !replaced {
			return "", false, nil // failed as expected; the kernel goes on
		}
		return fmt.Sprintf("= failed as expected; %s", r.nowRunning()), true, nil
	}
	if r.kernel() == nil {
		return "", replaced, failf("%s brought up no kernel", how)
	}
	return fmt.Sprintf("= kernel %d", r.kernel().BootID), replaced, nil
}

// nowRunning says which kernel runs, for -v after a failed kexec.
func (r *runner) nowRunning() string {
	if k := r.kernel(); k != nil {
		return fmt.Sprintf("kernel %d runs", k.BootID)
	}
	return "no kernel runs"
}

func (r *runner) fault(st *scn.Fault) (string, error) {
	if err := r.needMachine(); err != nil {
		return "", err
	}
	if err := r.m.Faults().Arm(st.Site, st.Nth, st.Times); err != nil {
		return "", failf("cannot arm the fault: %v", err)
	}
	return "= armed", nil
}

func (r *runner) corrupt(st *scn.CorruptFDT) (string, error) {
	if _, err := r.running(); err != nil {
		return "", err
	}
	if err := r.m.CorruptFDT(st.Offset, st.Len); err != nil {
		return "", failf("cannot corrupt the FDT: %v", err)
	}
	r.saveFDT()
	return "", nil
}

func (r *runner) invariants(st *scn.ExpectInvariants) (string, error) {
	if err := r.needMachine(); err != nil {
		return "", err
	}
	if err := r.m.CheckInvariants(); err != nil {
		f := failf("%s", firstLine(err.Error()))
		f.cause = err
		if rest := restLines(err.Error()); rest != "" {
			f.with(rest)
		}
		return "", f
	}
	return "= ok", nil
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func restLines(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}
