package scenarios

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"khosim/fdbox"
	"khosim/kernel"
	"khosim/scenarios/scn"
	"khosim/uapi"
)

// callEnv is one system call being run: the process, its statement, its
// table entry and its decoded arguments.
type callEnv struct {
	r    *runner
	p    *proc
	st   *scn.Syscall
	call *syscall
	args []arg          // positional, decoded by kind
	keys map[string]arg // key=value, decoded by kind
	cmd  *ioctlCommand  // ioctl: the command, when it is one of the table's
	// state is what explains a failure of the call, gathered as the
	// arguments are decoded: the files its fd arguments name (one line
	// each, cheap). explain is state that costs more to build (the FDBox
	// boxes): it is built only if the statement fails.
	state   []string
	explain []func(callErr error) []string
	// box (and file) are the FDBox box the call is about (an open of its
	// node, or an ioctl on it) and the file it names, for the handover
	// FDT node shown when the call fails.
	box, file string
}

// callResult is what a system call returned.
type callResult struct {
	kind resKind // what RES = binds: resFD, resMap or resCount
	n    int64
	vma  *kernel.VMA
	addr uint64
	len  uint64
	note string // extra -v text, e.g. the names FDBOX_LIST returned
}

func (c callResult) show() string {
	s := ""
	switch c.kind {
	case resMap:
		s = fmt.Sprintf("%#x", c.addr)
	default:
		s = fmt.Sprint(c.n)
	}
	if c.note != "" {
		s += " " + c.note
	}
	return s
}

func fdResult(fd int) callResult     { return callResult{kind: resFD, n: int64(fd)} }
func countResult(n int64) callResult { return callResult{kind: resCount, n: n} }
func resultKind(k scn.Kind) resKind {
	switch k {
	case scn.KindFD:
		return resFD
	case scn.KindMap:
		return resMap
	}
	return resCount
}

func (r *runner) syscall(st *scn.Syscall) (string, error) {
	p, err := r.proc(st.Proc)
	if err != nil {
		return "", err
	}
	call := lookupSyscall(st.Name)
	if call == nil {
		return "", failf("system call %s is not in the runner's table", st.Name)
	}
	c := &callEnv{r: r, p: p, st: st, call: call, keys: map[string]arg{}}
	if err := c.decode(); err != nil {
		return "", err // a mistake of the scenario, before the call ran
	}
	res, callErr := call.run(c)
	if ferr := r.checkErrno(st.Name, callErr, st.Errno, res.show()); ferr != nil {
		f := ferr.(*failure).with(c.state...)
		for _, explain := range c.explain {
			f.with(explain(callErr)...)
		}
		f.with(r.logSince()...)
		if c.box != "" {
			f.with(r.revivalState(c.box, c.file)...)
		}
		return "", f
	}
	if callErr != nil {
		return "", nil // failed as expected; the statement shows the errno
	}
	if st.Result != "" {
		p.res[st.Result] = &resource{
			name: st.Result, kind: res.kind, fd: int(res.n), n: res.n,
			vma: res.vma, addr: res.addr, len: res.len, line: st.Pos().Line,
		}
	}
	return "= " + res.show(), nil
}

// key returns the decoded key=value argument named name (the zero arg
// when it was not given).
func (c *callEnv) key(name string) arg { return c.keys[name] }

// boxName is the name= argument as the FDBox UAPI structures carry it: a
// name that does not fit is passed unterminated, as a user could.
func (c *callEnv) boxName() [uapi.FDBOX_NAME_LEN]byte {
	var name [uapi.FDBOX_NAME_LEN]byte
	uapi.SetName(&name, c.key("name").s)
	return name
}

// source returns the kernel.DataSource of a write of n bytes of the DATA
// argument d whose first byte goes to file offset start, reporting
// progress for long writes.
func (c *callEnv) source(d arg, start int64, n uint64) (kernel.DataSource, func()) {
	prog := c.r.progress(c.st.Source(), n)
	var done uint64
	fill := func(dst []byte, off int64) {
		if d.kept != nil {
			i := off - start
			m := 0
			if i >= 0 && i < int64(len(d.kept)) {
				m = copy(dst, d.kept[i:])
			}
			clear(dst[m:])
		} else {
			d.data.Fill(dst, start, off)
		}
		done += uint64(len(dst))
		prog.at(done)
	}
	return fill, prog.finish
}

// discard is the sink of reads whose bytes the scenario does not keep.
func (c *callEnv) discard(n uint64) (kernel.DataSink, func()) {
	prog := c.r.progress(c.st.Source(), n)
	var done uint64
	return func(src []byte, _ int64) error {
		done += uint64(len(src))
		prog.at(done)
		return nil
	}, prog.finish
}

// writeStart is the file offset where write(2) on fd will put its first
// byte: f_pos, or the end of the file with O_APPEND.
func (c *callEnv) writeStart(fd int) int64 {
	f, err := c.p.task.FD(fd)
	if err != nil {
		return 0
	}
	if f.Flags&uapi.O_APPEND != 0 {
		return fileSize(f)
	}
	return f.Pos
}

func runOpen(c *callEnv) (callResult, error) {
	path := c.args[0].s
	if box, ok := isBoxPath(path); ok {
		c.box = box
	}
	fd, err := c.p.task.Open(path, int(c.args[1].n))
	return fdResult(fd), err
}

// runIoctl makes an ioctl: its argument is the command's UAPI structure
// built from the key=value arguments, or a NULL pointer when there are
// none (only possible with a numeric command: `ioctl(ctl, 0x2e00) ->
// EFAULT`) or the command is not one of the table's. A command that
// returns data through its argument (FDBOX_LIST) always gets one.
func runIoctl(c *callEnv) (callResult, error) {
	fd, cmd := c.args[0].fd, uint32(c.args[1].n)
	res := countResult(0)
	var arg any
	c.cmd = lookupIoctl(cmd)
	if ic := c.cmd; ic != nil {
		if ic.arg != nil && (ic.out || len(c.keys) > 0) {
			arg = ic.arg(c)
		}
		if ic.explain != nil {
			c.explain = append(c.explain, func(callErr error) []string { return ic.explain(c, callErr) })
		}
		res.kind = resultKind(ic.Result)
	}
	n, err := c.p.task.Ioctl(fd, cmd, arg)
	res.n = n
	if c.cmd != nil && c.cmd.note != nil && arg != nil && err == nil {
		res.note = c.cmd.note(arg)
	}
	if c.cmd != nil && c.cmd.ret != nil && arg != nil && err == nil {
		res.n = c.cmd.ret(arg)
	}
	return res, err
}

// fdboxExplain is the state behind a failed FDBox ioctl: the running
// kernel's boxes. It is built after the call, only when the statement
// fails. A failing FDBox ioctl changes nothing (each checks everything
// before it changes anything, as Linux's), so after a call that failed
// the boxes are as they were before it; after a call that succeeded when
// it should have failed, they are as the call left them, and the
// listing says so.
func fdboxExplain(c *callEnv, callErr error) []string {
	boxDumps++
	c.noteBox(c.args[0].fd)
	d := c.r.m.FDBox()
	if d == nil {
		return []string{"no FDBox driver in this kernel"}
	}
	dump := strings.TrimRight(d.Dump(), "\n")
	if dump == "" {
		return []string{"boxes: none"}
	}
	when := "boxes before the call:"
	if callErr == nil {
		when = "boxes after the call:"
	}
	return append([]string{when}, strings.Split(dump, "\n")...)
}

// boxDumps counts the FDBox dumps fdboxExplain built, for tests.
var boxDumps int

// noteBox records the box an FDBox ioctl is made on, for the revival
// state of its failure.
func (c *callEnv) noteBox(fd int) {
	if f, err := c.p.task.FD(fd); err == nil {
		if b, ok := f.Private.(*fdbox.Box); ok {
			c.box = b.Name()
		}
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
