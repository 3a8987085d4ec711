package scenarios

import (
	"fmt"
	"slices"
	"strings"
)

// kind is what the parser knows statically about the value of an
// expression, for the argument checks it can make without running.
type kind int

const (
	kAny    kind = iota // known only at run time: a variable or a resource
	kInt                // an integer
	kString             // a string literal
	kData               // bytes: a data generator or content(...)
	kRes                // PROC:RES (as a parameter: a resource is wanted)
	kWord               // a bare word (as a parameter: fds, frames)
)

// describe says what a parameter of this kind must be, for messages.
func (k kind) describe(inCall bool) string {
	switch k {
	case kInt:
		return "an integer"
	case kString:
		return "a string"
	case kData:
		return "data (a string, rand(SEED), zeros or content(...))"
	case kRes:
		if inCall {
			return "a resource (RES or PROC:RES)"
		}
		return "a resource PROC:RES"
	}
	return "a value"
}

// accepts reports whether a value of kind got may be passed where k is
// wanted. A kAny value (a variable, a resource) is checked at run time.
func (k kind) accepts(got kind) bool {
	switch k {
	case kInt:
		return got == kAny || got == kInt
	case kString:
		return got == kAny || got == kString
	case kData:
		return got == kAny || got == kString || got == kData
	}
	return true
}

// param is one positional parameter of a signature.
type param struct {
	name     string // as printed in the signature, e.g. "FD", "PROC:RES"
	kind     kind
	optional bool // may be left out (only trailing parameters)
}

// signature is the shape of a system call or expression function.
type signature struct {
	name   string
	params []param
	result kind // value kind of an expression function
}

func (s signature) String() string {
	var b strings.Builder
	b.WriteString(s.name + "(")
	for i, p := range s.params {
		switch {
		case p.optional:
			b.WriteString("[, " + p.name + "]")
			continue
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(p.name)
	}
	if s.name == "ioctl" {
		b.WriteString(", key=value...")
	}
	b.WriteString(")")
	return b.String()
}

// arity returns how many positional arguments the signature takes.
func (s signature) arity() (lo, hi int) {
	for _, p := range s.params {
		if !p.optional {
			lo++
		}
	}
	return lo, len(s.params)
}

func (s signature) arityText() string {
	lo, hi := s.arity()
	switch {
	case hi == 0:
		return "no arguments"
	case lo == hi && lo == 1:
		return "1 argument"
	case lo == hi:
		return fmt.Sprintf("%d arguments", lo)
	case hi == lo+1:
		return fmt.Sprintf("%d or %d arguments", lo, hi)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

func sig(name string, result kind, params ...param) signature {
	return signature{name: name, params: params, result: result}
}

var (
	pFD    = param{"FD", kInt, false}
	pMap   = param{"MAP", kInt, false}
	pOff   = param{"OFF", kInt, false}
	pLen   = param{"LEN", kInt, false}
	pFlags = param{"FLAGS", kInt, false}
	pData  = param{"DATA", kData, false}
	pRes   = param{"PROC:RES", kRes, false}
)

// syscalls are the system calls a scenario may make: the contract's table.
// A call not listed here is a parse error; to add a call, add its line.
var syscalls = map[string]signature{
	"open":         sig("open", kAny, param{"PATH", kString, false}, pFlags),
	"close":        sig("close", kAny, pFD),
	"dup":          sig("dup", kAny, pFD),
	"memfd_create": sig("memfd_create", kAny, param{"NAME", kString, false}, pFlags),
	"ftruncate":    sig("ftruncate", kAny, pFD, pLen),
	"fallocate":    sig("fallocate", kAny, pFD, param{"MODE", kInt, false}, pOff, pLen),
	"pwrite":       sig("pwrite", kAny, pFD, pOff, pLen, pData),
	"pread":        sig("pread", kAny, pFD, pOff, pLen),
	"write":        sig("write", kAny, pFD, pLen, pData),
	"read":         sig("read", kAny, pFD, pLen),
	"lseek":        sig("lseek", kAny, pFD, pOff, param{"WHENCE", kInt, false}),
	"fcntl":        sig("fcntl", kAny, pFD, param{"CMD", kInt, false}, param{"ARG", kInt, true}),
	"mmap":         sig("mmap", kAny, pFD, pOff, pLen, param{"PROT", kInt, false}, pFlags),
	"munmap":       sig("munmap", kAny, pMap),
	"store":        sig("store", kAny, pMap, pOff, pLen, pData),
	"load":         sig("load", kAny, pMap, pOff, pLen),
	"madvise":      sig("madvise", kAny, pMap, pOff, pLen, param{"ADVICE", kInt, false}),
	"ioctl":        sig("ioctl", kAny, pFD, param{"CMD", kInt, false}),
}

// funcs are the expression functions.
var funcs = map[string]signature{
	"content":  sig("content", kData, pRes, pOff, pLen),
	"hash":     sig("hash", kInt, pRes, pOff, pLen),
	"size":     sig("size", kInt, pRes),
	"pos":      sig("pos", kInt, pRes),
	"seals":    sig("seals", kInt, pRes),
	"refcount": sig("refcount", kInt, pRes, param{"INDEX", kInt, false}),
	"mapcount": sig("mapcount", kInt, pRes, param{"INDEX", kInt, false}),
	"fds":      sig("fds", kInt, param{"PROC", kWord, false}),
	"frames":   sig("frames", kInt, param{"STATE", kWord, false}),
	"rand":     sig("rand", kData, param{"SEED", kInt, false}),
	"zeros":    sig("zeros", kData),
}

// frameStates are the arguments of frames(STATE).
var frameStates = []string{"free", "used", "slab", "preserved", "reserved", "scratch"}

// ioctlKeys are the key=value arguments ioctl takes, with their kinds.
var ioctlKeys = map[string]kind{"name": kString, "fd": kInt, "flags": kInt}

// fdboxIoctls lists, for each FDBox command, its required and optional
// key=value arguments (contract table; order is the printing order).
var fdboxIoctls = map[string]struct{ required, optional []string }{
	"FDBOX_CREATE_BOX": {[]string{"name"}, []string{"flags"}},
	"FDBOX_DELETE_BOX": {[]string{"name"}, []string{"flags"}},
	"FDBOX_PUT_FD":     {[]string{"fd", "name"}, []string{"flags"}},
	"FDBOX_GET_FD":     {[]string{"name"}, []string{"flags"}},
	"FDBOX_SEAL":       {},
	"FDBOX_UNSEAL":     {},
	"FDBOX_LIST":       {},
}

// kindOf is the static kind of an expression's value.
func kindOf(e Expr) kind {
	switch e := e.(type) {
	case *IntLit, *Const, *Unary, *Binary:
		return kInt
	case *StringLit:
		return kString
	case *Func:
		return funcs[e.Name].result
	case *Word:
		return kWord
	}
	return kAny
}

// checkArg reports an argument that cannot be what the parameter wants.
func (p *parser) checkArg(what string, e Expr, want kind) {
	ok := want.accepts(kindOf(e))
	if want == kRes {
		_, isRef := e.(*ResRef)
		_, isIdent := e.(*Ident)
		ok = isRef || isIdent && p.inCall
	}
	if !ok {
		p.errorf(e.Pos(), "%s must be %s, got %s", what, want.describe(p.inCall), e)
	}
}

// checkSyscall checks a system call's name, arity, argument kinds and, for
// ioctl, its key=value arguments.
func (p *parser) checkSyscall(s *Syscall) {
	sg, ok := syscalls[s.Name]
	if !ok {
		p.errorf(s.NamePos, "unknown system call %q", s.Name)
		return
	}
	var pos []Arg
	keys := map[string]Arg{}
	for _, a := range s.Args {
		switch {
		case a.Key == "" && len(keys) > 0:
			p.errorf(a.At, "positional argument after key=value")
			return
		case a.Key == "":
			pos = append(pos, a)
		case s.Name != "ioctl":
			p.errorf(a.At, "%s takes no key=value arguments", s.Name)
			return
		default:
			if _, dup := keys[a.Key]; dup {
				p.errorf(a.At, "duplicate argument %s=", a.Key)
				return
			}
			keys[a.Key] = a
		}
	}
	if lo, hi := sg.arity(); len(pos) < lo || len(pos) > hi {
		p.errorf(s.NamePos, "%s takes %s: %s", s.Name, sg.arityText(), sg)
		return
	}
	for i, a := range pos {
		p.checkArg(s.Name+": "+sg.params[i].name, a.Value, sg.params[i].kind)
	}
	var cmd *Const // the command of fcntl and ioctl, when it is a constant
	if len(pos) >= 2 {
		cmd, _ = pos[1].Value.(*Const)
	}
	switch s.Name {
	case "fcntl":
		switch {
		case cmd == nil:
		case cmd.Name == "F_ADD_SEALS" && len(pos) != 3:
			p.errorf(s.NamePos, "fcntl F_ADD_SEALS takes 3 arguments: fcntl(FD, F_ADD_SEALS, SEALS)")
		case cmd.Name == "F_GET_SEALS" && len(pos) != 2:
			p.errorf(s.NamePos, "fcntl F_GET_SEALS takes 2 arguments: fcntl(FD, F_GET_SEALS)")
		}
	case "ioctl":
		p.checkIoctl(s, cmd, keys)
	}
}

// checkIoctl checks ioctl's key=value arguments: each must be one ioctl
// takes, of the right kind, and, for an FDBox command, exactly the keys the
// contract gives that command.
func (p *parser) checkIoctl(s *Syscall, cmd *Const, keys map[string]Arg) {
	for _, a := range s.Args {
		if a.Key == "" {
			continue
		}
		k, ok := ioctlKeys[a.Key]
		if !ok {
			p.errorf(a.At, "unknown ioctl argument %s= (want name=, fd= or flags=)", a.Key)
			continue
		}
		p.checkArg("ioctl: "+a.Key+"=", a.Value, k)
	}
	if cmd == nil {
		return
	}
	rule, ok := fdboxIoctls[cmd.Name]
	if !ok {
		return
	}
	for _, a := range s.Args {
		if _, known := ioctlKeys[a.Key]; !known {
			continue // positional, or reported above
		}
		if !slices.Contains(rule.required, a.Key) && !slices.Contains(rule.optional, a.Key) {
			p.errorf(a.At, "ioctl %s does not take %s=", cmd.Name, a.Key)
		}
	}
	for _, k := range rule.required {
		if _, ok := keys[k]; !ok {
			p.errorf(s.NamePos, "ioctl %s needs %s=", cmd.Name, k)
		}
	}
}
