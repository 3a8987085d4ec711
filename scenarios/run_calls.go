package scenarios

import (
	"fmt"
	"strings"

	"khosim/fdbox"
	"khosim/kernel"
	"khosim/uapi"
)

// callEnv is one system call being run: the process, its statement and
// its evaluated arguments.
type callEnv struct {
	r   *runner
	p   *proc
	st  *Syscall
	pos []Expr          // positional arguments
	kv  map[string]Expr // key=value arguments (ioctl)
	// state is what explains a failure of the call: the files its fd
	// arguments name, the box listing of an FDBox ioctl.
	state []string
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

func (r *runner) syscall(st *Syscall) (string, error) {
	p, err := r.proc(st.Proc)
	if err != nil {
		return "", err
	}
	env := &callEnv{r: r, p: p, st: st, kv: map[string]Expr{}}
	for _, a := range st.Args {
		if a.Key == "" {
			env.pos = append(env.pos, a.Value)
		} else {
			env.kv[a.Key] = a.Value
		}
	}
	res, callErr, err := env.run()
	if err != nil {
		return "", err // a mistake of the scenario, before the call ran
	}
	if ferr := r.checkErrno(st.Name, callErr, st.Errno, res.show()); ferr != nil {
		f := ferr.(*failure).with(env.state...).with(r.logSince()...)
		if env.box != "" {
			f.with(r.revivalState(env.box, env.file)...)
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

// int evaluates the i-th positional argument as an integer.
func (c *callEnv) int(i int) (uint64, error) {
	return c.r.evalInt(c.pos[i], evalCtx{p: c.p}, c.st.Name+": argument "+fmt.Sprint(i+1))
}

// str evaluates the i-th positional argument as a string.
func (c *callEnv) str(i int) (string, error) {
	return c.r.evalString(c.pos[i], evalCtx{p: c.p}, c.st.Name+": argument "+fmt.Sprint(i+1))
}

// fd evaluates an argument that is a file descriptor: a resource of the
// calling process that is an fd, or a number (so close(99) can test
// EBADF). A mapping is not an fd.
func (c *callEnv) fd(e Expr) (int, error) {
	if id, ok := e.(*Ident); ok {
		if rs, ok := c.p.res[id.Name]; ok && rs.kind == resMap {
			return 0, failf("%s is a mapping of %s, not an fd", id.Name, c.p.name)
		}
	}
	n, err := c.r.evalInt(e, evalCtx{p: c.p}, c.st.Name+": fd")
	if err != nil {
		return 0, err
	}
	fd := int(int32(n))
	if f, err := c.p.task.FD(fd); err == nil {
		c.state = append(c.state, fmt.Sprintf("fd %d of %s: %s", fd, c.p.name, f))
	}
	return fd, nil
}

// mapping evaluates an argument that is a mapping: a resource of the
// calling process that is a mapping (mapped or not: the kernel decides
// what using an unmapped one does), or a number naming the mapping of the
// process that starts at that address.
func (c *callEnv) mapping(e Expr) (*kernel.VMA, error) {
	if id, ok := e.(*Ident); ok {
		if rs, ok := c.p.res[id.Name]; ok {
			if rs.kind != resMap {
				return nil, failf("%s is %s of %s, not a mapping", id.Name, rs.describe(), c.p.name)
			}
			c.state = append(c.state, fmt.Sprintf("%s of %s: %s", id.Name, c.p.name, rs.vma))
			return rs.vma, nil
		}
	}
	addr, err := c.r.evalInt(e, evalCtx{p: c.p}, c.st.Name+": mapping")
	if err != nil {
		return nil, err
	}
	for _, v := range c.p.task.MM.VMAs() {
		if v.Start == addr {
			return v, nil
		}
	}
	return nil, failf("%s has no mapping at %#x", c.p.name, addr)
}

// data evaluates a DATA argument: a generator, a string, or content(...)
// (read into memory, at most maxKeep bytes).
func (c *callEnv) data(e Expr, n uint64) (Data, []byte, error) {
	v, err := c.r.eval(e, evalCtx{p: c.p})
	if err != nil {
		return Data{}, nil, err
	}
	if _, ok := v.(contentVal); ok {
		if v, err = c.r.keep(v); err != nil {
			return Data{}, nil, err
		}
	}
	switch v := v.(type) {
	case Data:
		return v, nil, nil
	case strVal:
		if uint64(len(v)) != n {
			return Data{}, nil, failf("the string is %d bytes, LEN is %d", len(v), n)
		}
		return TextData(string(v)), nil, nil
	case bytesVal:
		if uint64(len(v)) != n {
			return Data{}, nil, failf("the content is %d bytes, LEN is %d", len(v), n)
		}
		return Data{}, v, nil
	}
	return Data{}, nil, failf("%s is %s, not data", e, v.show())
}

// source returns the kernel.DataSource of a write of n bytes whose first
// byte goes to file offset start, reporting progress for long writes.
func (c *callEnv) source(d Data, kept []byte, start int64, n uint64) (kernel.DataSource, func()) {
	prog := c.r.progress(c.st.Source(), n)
	var done uint64
	fill := func(dst []byte, off int64) {
		if kept != nil {
			i := off - start
			m := 0
			if i >= 0 && i < int64(len(kept)) {
				m = copy(dst, kept[i:])
			}
			clear(dst[m:])
		} else {
			d.Fill(dst, start, off)
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

// ints evaluates the positional arguments [first, first+n) as integers.
func (c *callEnv) ints(first, n int) ([]uint64, error) {
	out := make([]uint64, n)
	for i := range out {
		v, err := c.int(first + i)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// fdArgs evaluates the calls whose first argument is an fd followed by n
// integers: ftruncate(FD, LEN), lseek(FD, OFF, WHENCE), ...
func (c *callEnv) fdArgs(n int) (int, []uint64, error) {
	fd, err := c.fd(c.pos[0])
	if err != nil {
		return 0, nil, err
	}
	a, err := c.ints(1, n)
	return fd, a, err
}

// mapArgs is fdArgs for calls on a mapping: store(MAP, OFF, LEN, ...).
func (c *callEnv) mapArgs(n int) (*kernel.VMA, []uint64, error) {
	v, err := c.mapping(c.pos[0])
	if err != nil {
		return nil, nil, err
	}
	a, err := c.ints(1, n)
	return v, a, err
}

// run makes the call. err is a scenario mistake found before the call
// (a bad argument); callErr is what the call returned.
func (c *callEnv) run() (res callResult, callErr error, err error) {
	t := c.p.task
	res.kind = resCount
	switch name := c.st.Name; name {
	case "open", "memfd_create":
		path, err := c.str(0)
		if err != nil {
			return res, nil, err
		}
		flags, err := c.int(1)
		if err != nil {
			return res, nil, err
		}
		if name == "memfd_create" {
			fd, cerr := t.MemfdCreate(path, uint(flags))
			return fdResult(fd), cerr, nil
		}
		if box, ok := strings.CutPrefix(path, fdbox.DevDir); ok && box != "fdbox" {
			c.box = box
		}
		fd, cerr := t.Open(path, int(flags))
		return fdResult(fd), cerr, nil

	case "close", "dup":
		fd, _, err := c.fdArgs(0)
		if err != nil {
			return res, nil, err
		}
		if name == "close" {
			return res, t.Close(fd), nil
		}
		nfd, cerr := t.Dup(fd)
		return fdResult(nfd), cerr, nil

	case "ftruncate":
		fd, a, err := c.fdArgs(1)
		if err != nil {
			return res, nil, err
		}
		return res, t.Ftruncate(fd, int64(a[0])), nil

	case "fallocate":
		fd, a, err := c.fdArgs(3)
		if err != nil {
			return res, nil, err
		}
		return res, t.Fallocate(fd, int(a[0]), int64(a[1]), int64(a[2])), nil

	case "pwrite", "write":
		// pwrite(FD, OFF, LEN, DATA) / write(FD, LEN, DATA)
		nint := 1
		if name == "pwrite" {
			nint = 2
		}
		fd, a, err := c.fdArgs(nint)
		if err != nil {
			return res, nil, err
		}
		n := a[nint-1]
		d, kept, err := c.data(c.pos[nint+1], n)
		if err != nil {
			return res, nil, err
		}
		off := a[0]
		if name == "write" {
			off = uint64(c.writeStart(fd))
		}
		src, done := c.source(d, kept, int64(off), n)
		defer done()
		if name == "pwrite" {
			res.n, callErr = t.Pwrite(fd, int64(off), int64(n), src)
		} else {
			res.n, callErr = t.Write(fd, int64(n), src)
		}
		return res, callErr, nil

	case "pread", "read":
		// pread(FD, OFF, LEN) / read(FD, LEN)
		nint := 1
		if name == "pread" {
			nint = 2
		}
		fd, a, err := c.fdArgs(nint)
		if err != nil {
			return res, nil, err
		}
		n := a[nint-1]
		sink, done := c.discard(n)
		defer done()
		if name == "pread" {
			res.n, callErr = t.Pread(fd, int64(a[0]), int64(n), sink)
		} else {
			res.n, callErr = t.Read(fd, int64(n), sink)
		}
		return res, callErr, nil

	case "lseek":
		fd, a, err := c.fdArgs(2)
		if err != nil {
			return res, nil, err
		}
		res.n, callErr = t.Lseek(fd, int64(a[0]), int(a[1]))
		return res, callErr, nil

	case "fcntl":
		// fcntl(FD, CMD) or fcntl(FD, CMD, ARG)
		fd, a, err := c.fdArgs(len(c.pos) - 1)
		if err != nil {
			return res, nil, err
		}
		a = append(a, 0)
		res.n, callErr = t.Fcntl(fd, int(a[0]), a[1])
		return res, callErr, nil

	case "mmap":
		fd, a, err := c.fdArgs(4)
		if err != nil {
			return res, nil, err
		}
		vma, cerr := t.Mmap(fd, int64(a[0]), int64(a[1]), int(a[2]), int(a[3]))
		res = callResult{kind: resMap}
		if cerr == nil {
			res.vma, res.addr, res.len = vma, vma.Start, vma.Len
		}
		return res, cerr, nil

	case "munmap":
		v, _, err := c.mapArgs(0)
		if err != nil {
			return res, nil, err
		}
		return res, t.Munmap(v), nil

	case "store", "load":
		v, a, err := c.mapArgs(2)
		if err != nil {
			return res, nil, err
		}
		off, n := a[0], a[1]
		if name == "load" {
			sink, done := c.discard(n)
			defer done()
			res.n, callErr = t.Load(v, int64(off), int64(n), sink)
			return res, callErr, nil
		}
		d, kept, err := c.data(c.pos[3], n)
		if err != nil {
			return res, nil, err
		}
		// The generator is positioned by file offset, as the kernel hands
		// it the file offset of every page.
		src, done := c.source(d, kept, int64(v.PgOff)*pageSize+int64(off), n)
		defer done()
		res.n, callErr = t.Store(v, int64(off), int64(n), src)
		return res, callErr, nil

	case "madvise":
		v, a, err := c.mapArgs(3)
		if err != nil {
			return res, nil, err
		}
		return res, t.Madvise(v, int64(a[0]), int64(a[1]), int(a[2])), nil

	case "ioctl":
		return c.ioctl()
	}
	return res, nil, failf("system call %s is not supported by the runner", c.st.Name)
}

func fdResult(fd int) callResult { return callResult{kind: resFD, n: int64(fd)} }

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

// ioctl builds the UAPI structure of the command from the key=value
// arguments and makes the call.
func (c *callEnv) ioctl() (res callResult, callErr error, err error) {
	res.kind = resCount
	fd, err := c.fd(c.pos[0])
	if err != nil {
		return res, nil, err
	}
	cmd64, err := c.int(1)
	if err != nil {
		return res, nil, err
	}
	cmd := uint32(cmd64)
	ctx := evalCtx{p: c.p}
	var (
		name  [uapi.FDBOX_NAME_LEN]byte
		flags uint64
		argFD uint64
	)
	if e, ok := c.kv["name"]; ok {
		s, err := c.r.evalString(e, ctx, "ioctl: name=")
		if err != nil {
			return res, nil, err
		}
		uapi.SetName(&name, s) // a name that does not fit is passed unterminated, as a user could
	}
	if e, ok := c.kv["flags"]; ok {
		if flags, err = c.r.evalInt(e, ctx, "ioctl: flags="); err != nil {
			return res, nil, err
		}
	}
	if e, ok := c.kv["fd"]; ok {
		n, err := c.fd(e)
		if err != nil {
			return res, nil, err
		}
		argFD = uint64(uint32(n))
	}
	// The argument: the command's UAPI structure built from the key=value
	// arguments, or a NULL pointer when there are none (only possible
	// with a numeric command: `ioctl(ctl, 0x2e00) -> EFAULT`). FDBOX_LIST
	// always gets a result buffer.
	var arg any
	var list *uapi.FdboxList
	switch {
	case cmd == uapi.FDBOX_LIST:
		list = &uapi.FdboxList{}
		arg = list
	case len(c.kv) == 0:
	case cmd == uapi.FDBOX_CREATE_BOX:
		arg = &uapi.FdboxCreateBox{Flags: flags, Name: name}
	case cmd == uapi.FDBOX_DELETE_BOX:
		arg = &uapi.FdboxDeleteBox{Flags: flags, Name: name}
	case cmd == uapi.FDBOX_PUT_FD:
		arg = &uapi.FdboxPutFD{Flags: flags, FD: uint32(argFD), Name: name}
	case cmd == uapi.FDBOX_GET_FD:
		arg = &uapi.FdboxGetFD{Flags: flags, Name: name}
		if e, ok := c.kv["name"]; ok {
			c.file, _ = c.r.evalString(e, ctx, "")
		}
	}
	if isFDBoxCmd(cmd) {
		c.state = append(c.state, c.r.boxState()...)
		if f, err := c.p.task.FD(fd); err == nil {
			if b, ok := f.Private.(*fdbox.Box); ok {
				c.box = b.Name()
			}
		}
	}
	n, callErr := c.p.task.Ioctl(fd, cmd, arg)
	res.n = n
	if cmd == uapi.FDBOX_GET_FD {
		res.kind = resFD
	}
	if list != nil && callErr == nil {
		names := make([]string, len(list.Entries))
		for i, e := range list.Entries {
			names[i] = Quote(e.Name)
		}
		state := "unsealed"
		if list.Sealed {
			state = "sealed"
		}
		res.note = "[" + strings.Join(names, ", ") + "] (" + state + ")"
	}
	return res, callErr, nil
}

func isFDBoxCmd(cmd uint32) bool {
	switch cmd {
	case uapi.FDBOX_CREATE_BOX, uapi.FDBOX_DELETE_BOX, uapi.FDBOX_PUT_FD, uapi.FDBOX_GET_FD,
		uapi.FDBOX_SEAL, uapi.FDBOX_UNSEAL, uapi.FDBOX_LIST:
		return true
	}
	return false
}

// boxState lists the running kernel's boxes, for the failure of an FDBox
// ioctl.
func (r *runner) boxState() []string {
	d := r.m.FDBox()
	if d == nil {
		return []string{"no FDBox driver in this kernel"}
	}
	dump := strings.TrimRight(d.Dump(), "\n")
	if dump == "" {
		return []string{"boxes: none"}
	}
	return append([]string{"boxes before the call:"}, strings.Split(dump, "\n")...)
}
