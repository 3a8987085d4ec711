package scenarios

import (
	"strings"
	"sync"

	"khosim/fdbox"
	"khosim/scenarios/scn"
	"khosim/uapi"
)

// This file is the language's table: one description per system call, per
// ioctl command and per expression function, each holding its signature
// (parameters and their kinds: what the parser checks and what a generator
// of random calls enumerates, see Lang), the decoding of its arguments
// (by the kind of each parameter, decode.go) and its handler. To add a
// call, a command or a function, add its entry here; nothing else in the
// parser or the runner changes.

// syscall is one system call: its signature and its handler.
type syscall struct {
	scn.Signature
	// run makes the call in c.p with the arguments decoded in c (c.args
	// by position, c.keys by key) and returns what it returned and its
	// error (an errno.Errno, possibly wrapped).
	run func(c *callEnv) (callResult, error)
}

// ioctlCommand is one ioctl command: its form (the keys it takes) and how
// its argument is built.
type ioctlCommand struct {
	scn.Command
	// arg builds the command's argument, its UAPI structure, from the
	// decoded key=value arguments; nil for a command without one. It is
	// called when key=value arguments are given, or always when out is
	// set; otherwise the command gets a NULL pointer (`ioctl(ctl,
	// 0x2e00) -> EFAULT`).
	arg func(c *callEnv) any
	out bool
	// note, if set, describes for -v what the call returned through its
	// argument (FDBOX_LIST's names).
	note func(arg any) string
	// ret, if set, is the call's result when it succeeds, read from its
	// argument (the fd LUO's session ioctls return through their
	// structure).
	ret func(arg any) int64
	// explain, if set, is the state that explains a failure of the
	// command (the FDBox boxes). It runs only when the statement fails,
	// after the call, so that no dump is built for calls that pass;
	// callErr is what the call returned.
	explain func(c *callEnv, callErr error) []string
}

// function is one expression function: its signature and its evaluation,
// given the arguments decoded by kind.
type function struct {
	scn.Signature
	eval func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error)
}

// Parameters shared by several signatures.
var (
	pFD    = scn.Param{Name: "FD", Kind: scn.KindFD}
	pMap   = scn.Param{Name: "MAP", Kind: scn.KindMap}
	pOff   = scn.Param{Name: "OFF", Kind: scn.KindInt}
	pLen   = scn.Param{Name: "LEN", Kind: scn.KindInt}
	pData  = scn.Param{Name: "DATA", Kind: scn.KindData, SizedBy: "LEN"}
	pRes   = scn.Param{Name: "PROC:RES", Kind: scn.KindRes}
	pIndex = scn.Param{Name: "INDEX", Kind: scn.KindInt}
	pCmd   = scn.Param{Name: "CMD", Kind: scn.KindInt}

	kName  = scn.Param{Name: "name", Kind: scn.KindString}
	kFD    = scn.Param{Name: "fd", Kind: scn.KindFD}
	kFlags = scn.Param{Name: "flags", Kind: scn.KindInt, Optional: true}
	kToken = scn.Param{Name: "token", Kind: scn.KindInt}
)

func optional(p scn.Param) scn.Param { p.Optional = true; return p }

func consts(p scn.Param, names ...string) scn.Param { p.Consts = names; return p }

// sig builds a signature of positional parameters.
func sig(name string, result scn.Kind, params ...scn.Param) scn.Signature {
	return scn.Signature{Name: name, Result: result, Params: params}
}

var openFlags = []string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND"}

// syscalls are the system calls of the language (the contract's table).
var syscalls = []*syscall{
	{sig("open", scn.KindFD, scn.Param{Name: "PATH", Kind: scn.KindString}, consts(scn.Param{Name: "FLAGS", Kind: scn.KindInt}, openFlags...)), runOpen},
	{sig("close", scn.KindInt, pFD), func(c *callEnv) (callResult, error) {
		return countResult(0), c.p.task.Close(c.args[0].fd)
	}},
	{sig("dup", scn.KindFD, pFD), func(c *callEnv) (callResult, error) {
		fd, err := c.p.task.Dup(c.args[0].fd)
		return fdResult(fd), err
	}},
	{sig("memfd_create", scn.KindFD, scn.Param{Name: "NAME", Kind: scn.KindString},
		consts(scn.Param{Name: "FLAGS", Kind: scn.KindInt}, "MFD_CLOEXEC", "MFD_ALLOW_SEALING", "MFD_HUGETLB", "MFD_NOEXEC_SEAL", "MFD_EXEC")),
		func(c *callEnv) (callResult, error) {
			fd, err := c.p.task.MemfdCreate(c.args[0].s, uint(c.args[1].n))
			return fdResult(fd), err
		}},
	{sig("ftruncate", scn.KindInt, pFD, pLen), func(c *callEnv) (callResult, error) {
		return countResult(0), c.p.task.Ftruncate(c.args[0].fd, int64(c.args[1].n))
	}},
	{sig("fallocate", scn.KindInt, pFD, consts(scn.Param{Name: "MODE", Kind: scn.KindInt}, "FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE"), pOff, pLen),
		func(c *callEnv) (callResult, error) {
			a := c.args
			return countResult(0), c.p.task.Fallocate(a[0].fd, int(a[1].n), int64(a[2].n), int64(a[3].n))
		}},
	{sig("pwrite", scn.KindInt, pFD, pOff, pLen, pData), func(c *callEnv) (callResult, error) {
		a := c.args
		src, done := c.source(a[3], int64(a[1].n), a[2].n)
		defer done()
		n, err := c.p.task.Pwrite(a[0].fd, int64(a[1].n), int64(a[2].n), src)
		c.r.warnShortWrite("pwrite", a[2].n, n)
		return countResult(n), err
	}},
	{sig("pread", scn.KindInt, pFD, pOff, pLen), func(c *callEnv) (callResult, error) {
		a := c.args
		sink, done := c.discard(a[2].n)
		defer done()
		n, err := c.p.task.Pread(a[0].fd, int64(a[1].n), int64(a[2].n), sink)
		return countResult(n), err
	}},
	{sig("write", scn.KindInt, pFD, pLen, pData), func(c *callEnv) (callResult, error) {
		a := c.args
		src, done := c.source(a[2], c.writeStart(a[0].fd), a[1].n)
		defer done()
		n, err := c.p.task.Write(a[0].fd, int64(a[1].n), src)
		c.r.warnShortWrite("write", a[1].n, n)
		return countResult(n), err
	}},
	{sig("read", scn.KindInt, pFD, pLen), func(c *callEnv) (callResult, error) {
		a := c.args
		sink, done := c.discard(a[1].n)
		defer done()
		n, err := c.p.task.Read(a[0].fd, int64(a[1].n), sink)
		return countResult(n), err
	}},
	{sig("lseek", scn.KindInt, pFD, pOff, consts(scn.Param{Name: "WHENCE", Kind: scn.KindInt}, "SEEK_SET", "SEEK_CUR", "SEEK_END")),
		func(c *callEnv) (callResult, error) {
			a := c.args
			n, err := c.p.task.Lseek(a[0].fd, int64(a[1].n), int(a[2].n))
			return countResult(n), err
		}},
	{scn.Signature{
		Name: "fcntl", Result: scn.KindInt, Cmd: 1,
		Params: []scn.Param{pFD, consts(pCmd, "F_ADD_SEALS", "F_GET_SEALS"), {Name: "ARG", Kind: scn.KindInt, Optional: true}},
		Commands: []*scn.Command{
			{Name: "F_ADD_SEALS", Value: uapi.F_ADD_SEALS, Result: scn.KindInt, Params: []scn.Param{
				consts(scn.Param{Name: "SEALS", Kind: scn.KindInt}, "F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE", "F_SEAL_FUTURE_WRITE")}},
			{Name: "F_GET_SEALS", Value: uapi.F_GET_SEALS, Result: scn.KindInt},
		},
	}, func(c *callEnv) (callResult, error) {
		a := c.args
		var arg uint64
		if len(a) > 2 {
			arg = a[2].n
		}
		n, err := c.p.task.Fcntl(a[0].fd, int(a[1].n), arg)
		return countResult(n), err
	}},
	{sig("mmap", scn.KindMap, pFD, pOff, pLen, consts(scn.Param{Name: "PROT", Kind: scn.KindInt}, "PROT_READ", "PROT_WRITE"),
		consts(scn.Param{Name: "FLAGS", Kind: scn.KindInt}, "MAP_SHARED")),
		func(c *callEnv) (callResult, error) {
			a := c.args
			vma, err := c.p.task.Mmap(a[0].fd, int64(a[1].n), int64(a[2].n), int(a[3].n), int(a[4].n))
			res := callResult{kind: resMap}
			if err == nil {
				res.vma, res.addr, res.len = vma, vma.Start, vma.Len
			}
			return res, err
		}},
	{sig("munmap", scn.KindInt, pMap), func(c *callEnv) (callResult, error) {
		return countResult(0), c.p.task.Munmap(c.args[0].vma)
	}},
	{sig("store", scn.KindInt, pMap, pOff, pLen, pData), func(c *callEnv) (callResult, error) {
		a := c.args
		v := a[0].vma
		// The generator is positioned by file offset, as the kernel hands
		// it the file offset of every page.
		src, done := c.source(a[3], int64(v.PgOff)*pageSize+int64(a[1].n), a[2].n)
		defer done()
		n, err := c.p.task.Store(v, int64(a[1].n), int64(a[2].n), src)
		return countResult(n), err
	}},
	{sig("load", scn.KindInt, pMap, pOff, pLen), func(c *callEnv) (callResult, error) {
		a := c.args
		sink, done := c.discard(a[2].n)
		defer done()
		n, err := c.p.task.Load(a[0].vma, int64(a[1].n), int64(a[2].n), sink)
		return countResult(n), err
	}},
	{sig("madvise", scn.KindInt, pMap, pOff, pLen, consts(scn.Param{Name: "ADVICE", Kind: scn.KindInt}, "MADV_PAGEOUT")),
		func(c *callEnv) (callResult, error) {
			a := c.args
			k := c.r.kernel()
			swapFree, used := k.NrSwapPages(), k.FrameCounts().Used
			err := c.p.task.Madvise(a[0].vma, int64(a[1].n), int64(a[2].n), int(a[3].n))
			if err == nil && k.NrSwapPages() == swapFree && k.FrameCounts().Used == used {
				why := "none of its pages is mapped (MADV_PAGEOUT reclaims only pages the mapping maps: touch them first)"
				if k.TotalSwapPages() == 0 {
					why = "the machine has no swap (machine swap=SIZE)"
				}
				c.r.warnf("madvise MADV_PAGEOUT moved nothing: %s", why)
			}
			return countResult(0), err
		}},
	{scn.Signature{
		Name: "ioctl", Result: scn.KindInt, Cmd: 1,
		Params: []scn.Param{pFD, pCmd},
		Keys:   []scn.Param{optional(kName), optional(kFD), kFlags},
		// Commands: ioctlCommands' forms, filled in by init.
	}, runIoctl},
}

// ioctlCommands are the ioctl commands of the language, with the keys each
// takes (the contract's table).
var ioctlCommands = []*ioctlCommand{
	{
		Command: scn.Command{Name: "FDBOX_CREATE_BOX", Value: uint64(uapi.FDBOX_CREATE_BOX), Keys: []scn.Param{kName, kFlags}, Result: scn.KindInt},
		arg: func(c *callEnv) any {
			return &uapi.FdboxCreateBox{Flags: c.key("flags").n, Name: c.boxName()}
		},
		explain: fdboxExplain,
	},
	{
		Command: scn.Command{Name: "FDBOX_DELETE_BOX", Value: uint64(uapi.FDBOX_DELETE_BOX), Keys: []scn.Param{kName, kFlags}, Result: scn.KindInt},
		arg: func(c *callEnv) any {
			return &uapi.FdboxDeleteBox{Flags: c.key("flags").n, Name: c.boxName()}
		},
		explain: fdboxExplain,
	},
	{
		Command: scn.Command{Name: "FDBOX_PUT_FD", Value: uint64(uapi.FDBOX_PUT_FD), Keys: []scn.Param{kFD, kName, kFlags}, Result: scn.KindInt},
		arg: func(c *callEnv) any {
			return &uapi.FdboxPutFD{Flags: c.key("flags").n, FD: uint32(c.key("fd").fd), Name: c.boxName()}
		},
		explain: fdboxExplain,
	},
	{
		Command: scn.Command{Name: "FDBOX_GET_FD", Value: uint64(uapi.FDBOX_GET_FD), Keys: []scn.Param{kName, kFlags}, Result: scn.KindFD},
		arg: func(c *callEnv) any {
			c.file = c.key("name").s
			return &uapi.FdboxGetFD{Flags: c.key("flags").n, Name: c.boxName()}
		},
		explain: fdboxExplain,
	},
	{Command: scn.Command{Name: "FDBOX_SEAL", Value: uint64(uapi.FDBOX_SEAL), Result: scn.KindInt}, explain: fdboxExplain},
	{Command: scn.Command{Name: "FDBOX_UNSEAL", Value: uint64(uapi.FDBOX_UNSEAL), Result: scn.KindInt}, explain: fdboxExplain},
	{
		Command: scn.Command{Name: "FDBOX_LIST", Value: uint64(uapi.FDBOX_LIST), Result: scn.KindInt},
		arg:     func(c *callEnv) any { return &uapi.FdboxList{} },
		out:     true,
		note: func(arg any) string {
			list := arg.(*uapi.FdboxList)
			names := make([]string, len(list.Entries))
			for i, e := range list.Entries {
				names[i] = scn.Quote(e.Name)
			}
			state := "unsealed"
			if list.Sealed {
				state = "sealed"
			}
			return "[" + strings.Join(names, ", ") + "] (" + state + ")"
		},
		explain: fdboxExplain,
	},
}

// functions are the expression functions of the language.
var functions = []*function{
	{sig("content", scn.KindData, pRes, pOff, pLen), func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		fr, err := r.rangeOf(a, "content")
		if err != nil {
			return nil, err
		}
		return contentVal{fr: fr, expr: e.String()}, nil
	}},
	{sig("hash", scn.KindInt, pRes, pOff, pLen), evalHash},
	{sig("size", scn.KindInt, pRes), func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		f, _, err := r.fileOf(a[0].p, a[0].rs)
		if err != nil {
			return nil, err
		}
		return intVal(fileSize(f)), nil
	}},
	{sig("pos", scn.KindInt, pRes), func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		f, _, err := r.fileOf(a[0].p, a[0].rs)
		if err != nil {
			return nil, err
		}
		return intVal(f.Pos), nil
	}},
	{sig("seals", scn.KindInt, pRes), func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		f, _, err := r.fileOf(a[0].p, a[0].rs)
		if err != nil {
			return nil, err
		}
		seals, err := fileSeals(f)
		if err != nil {
			return nil, failf("seals of %s:%s: %v", a[0].p.name, a[0].rs.name, err)
		}
		return intVal(seals), nil
	}},
	{sig("refcount", scn.KindInt, pRes, pIndex), evalFolioCount},
	{sig("mapcount", scn.KindInt, pRes, pIndex), evalFolioCount},
	{sig("fds", scn.KindInt, scn.Param{Name: "PROC", Kind: scn.KindWord, Noun: "process"}),
		func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
			p, err := r.proc(a[0].s)
			if err != nil {
				return nil, err
			}
			return intVal(len(p.task.FDs())), nil
		}},
	{sig("frames", scn.KindInt, scn.Param{Name: "STATE", Kind: scn.KindWord, Noun: "frame state", Words: frameStates}),
		func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
			if _, err := r.running(); err != nil {
				return nil, err
			}
			// Generic: whatever states the machine counts.
			counts := r.m.FrameCounts()
			n, ok := counts[a[0].s]
			if !ok {
				return nil, failf("frames: the machine counts no frame state %s (it counts %s)", a[0].s, strings.Join(sortedKeys(counts), ", "))
			}
			return intVal(n), nil
		}},
	{sig("rand", scn.KindData, scn.Param{Name: "SEED", Kind: scn.KindInt}), func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		return dataVal{scn.RandData(a[0].n)}, nil
	}},
	{scn.Signature{Name: "zeros", Result: scn.KindData, Bare: true}, func(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
		return dataVal{scn.ZerosData()}, nil
	}},
}

// frameStates are the states frames(STATE) takes: those of the contracts
// (live-update-designs.md adds slab and tracker). The runner asks the
// machine for whatever it counts (machine.FrameCounts); the parser checks
// the name against this list, and TestFrameStates that the machine counts
// every one. Extensions: scratch_used and scratch_free (the KHO scratch's
// frames in use and free), fdt (the frames of the outgoing handover FDT
// while KHO is active) and migrated (pages this kernel migrated out of
// scratch, less those migrated back by an abort).
var frameStates = []string{"free", "used", "slab", "tracker", "preserved", "reserved", "scratch",
	"scratch_used", "scratch_free", "fdt", "migrated"}

var (
	langOnce sync.Once
	lang     *scn.Lang
	byName   map[string]*syscall
	byFunc   map[string]*function
)

// Lang returns the language the runner runs: the signatures of its table's
// system calls (ioctl with its commands) and expression functions, in table
// order. A generator of random scenarios enumerates it (Lang().Syscalls(),
// each Signature's Params, Keys and Commands, each Param's Kind, Words,
// SizedBy and Consts); Parse parses with it.
func Lang() *scn.Lang {
	langOnce.Do(func() {
		byName, byFunc = map[string]*syscall{}, map[string]*function{}
		var calls, funcs []*scn.Signature
		for _, s := range syscalls {
			if s.Name == "ioctl" {
				s.Commands = nil
				for _, c := range ioctlCommands {
					s.Commands = append(s.Commands, &c.Command)
				}
			}
			calls = append(calls, &s.Signature)
			byName[s.Name] = s
		}
		for _, f := range functions {
			funcs = append(funcs, &f.Signature)
			byFunc[f.Name] = f
		}
		lang = scn.NewLang(calls, funcs)
	})
	return lang
}

// Parse parses a scenario file in the runner's language (scn.Parse with
// Lang()). The script may be run (Run) if err is nil; err is an
// scn.ErrorList.
func Parse(filename string, src []byte) (*scn.Script, error) {
	return scn.Parse(filename, src, Lang())
}

// lookupSyscall returns the table entry of a system call.
func lookupSyscall(name string) *syscall {
	Lang()
	return byName[name]
}

// lookupFunc returns the table entry of an expression function.
func lookupFunc(name string) *function {
	Lang()
	return byFunc[name]
}

// lookupIoctl returns the ioctl command of value cmd, or nil.
func lookupIoctl(cmd uint32) *ioctlCommand {
	for _, c := range ioctlCommands {
		if c.Value == uint64(cmd) {
			return c
		}
	}
	return nil
}

// isBoxPath reports the box name of an open of /dev/fdbox/BOX.
func isBoxPath(path string) (string, bool) {
	box, ok := strings.CutPrefix(path, fdbox.DevDir)
	return box, ok && box != "fdbox" && box != ""
}
