package scn

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is what a parameter takes, or what kind of value an expression
// (or a function, or a system call's result) has, as far as it is known
// without running.
type Kind int

// Kinds. KindAny is only the static kind of an expression (a variable or
// a resource, known at run time); every other kind is also a parameter
// kind.
const (
	KindAny    Kind = iota // known only at run time: a variable or a resource
	KindInt                // an integer
	KindString             // a string
	KindData               // bytes: a string, a data generator or content(...)
	KindFD                 // a file descriptor: a resource of the calling process, or a number
	KindMap                // a mapping: a resource of the calling process, or its address
	KindRes                // a resource PROC:RES (inside a system call also RES alone)
	KindWord               // a bare word: one of Param.Words, or any name when Words is nil
)

var kindNames = [...]string{
	KindAny: "any", KindInt: "int", KindString: "string", KindData: "data",
	KindFD: "fd", KindMap: "map", KindRes: "res", KindWord: "word",
}

// String names the kind: "int", "fd", ...
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// describe says what a parameter of this kind must be, for messages.
func (k Kind) describe(inCall bool) string {
	switch k {
	case KindInt, KindFD, KindMap:
		return "an integer"
	case KindString:
		return "a string"
	case KindData:
		return "data (a string, rand(SEED), zeros or content(...))"
	case KindRes:
		if inCall {
			return "a resource (RES or PROC:RES)"
		}
		return "a resource PROC:RES"
	}
	return "a value"
}

// accepts reports whether an expression of static kind got may be passed
// where k is wanted. A KindAny expression (a variable, a resource) is
// checked at run time. KindRes and KindWord are checked on the expression
// itself (Lang.checkArg), not on its kind.
func (k Kind) accepts(got Kind) bool {
	switch k {
	case KindInt, KindFD, KindMap:
		return got == KindAny || got == KindInt
	case KindString:
		return got == KindAny || got == KindString
	case KindData:
		return got == KindAny || got == KindString || got == KindData
	}
	return true
}

// Param is one parameter of a signature: positional, or, in
// Signature.Keys and Command.Keys, a key=value argument named Name.
// Everything a generator of random calls needs to know of it is here.
type Param struct {
	// Name is the parameter as printed in the signature: "FD", "OFF",
	// "PROC:RES"; for a key, the key: "name", "fd".
	Name string
	Kind Kind
	// Optional parameters may be left out: positional ones only at the
	// end, keys anywhere.
	Optional bool
	// Words, for KindWord, are the words the parameter takes (nil: any
	// name, e.g. a process); Noun names them in messages ("frame state").
	Words []string
	Noun  string
	// SizedBy, for KindData, names the parameter that gives the data's
	// length: a string passed here must have exactly that many bytes.
	SizedBy string
	// Consts are the constants the parameter is usually made of (combined
	// with | where they are flags): a hint for generators and for
	// documentation, not a check; a number is always accepted.
	Consts []string
}

// Signature is the shape of a system call or of an expression function:
// what the parser checks before anything runs, and what a generator of
// random calls enumerates. The runner's table (package scenarios) holds one
// Signature per call and function, next to the call's argument decoding and
// handler.
type Signature struct {
	Name string
	// Params are the positional parameters. For a call with Commands,
	// they are its generic form, used when the command is not one of
	// Commands (a number, or another constant).
	Params []Param
	// Keys are the key=value parameters of the generic form.
	Keys []Param
	// Result is the kind of a function's value, or of what `RES =` binds
	// to a system call's result: KindFD, KindMap or KindInt.
	Result Kind
	// Bare marks a function without parameters that may be written
	// without parentheses (zeros).
	Bare bool
	// Cmd, when Commands is set, is the index in Params of the command
	// parameter (fcntl's and ioctl's CMD).
	Cmd int
	// Commands are the forms of a call selected by a command constant:
	// each takes its own parameters after the command, and its own keys.
	Commands []*Command
}

// Command is one form of a call with commands: `fcntl(FD, F_ADD_SEALS,
// SEALS)`, `ioctl(BOX, FDBOX_PUT_FD, fd=FD, name=STR [, flags=N])`.
type Command struct {
	Name  string // the constant, e.g. "FDBOX_PUT_FD"
	Value uint64 // its value
	// Params are the positional parameters after the command.
	Params []Param
	// Keys are its key=value parameters; Optional ones may be left out,
	// the others are required.
	Keys []Param
	// Result is the kind of what `RES =` binds.
	Result Kind
}

// Command returns the command named name (a constant), or nil.
func (s *Signature) Command(name string) *Command {
	for _, c := range s.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// CommandValue returns the command whose value is v, or nil.
func (s *Signature) CommandValue(v uint64) *Command {
	for _, c := range s.Commands {
		if c.Value == v {
			return c
		}
	}
	return nil
}

// Key returns the key=value parameter of the generic form named key.
func (s *Signature) Key(key string) (Param, bool) {
	for _, p := range s.Keys {
		if p.Name == key {
			return p, true
		}
	}
	return Param{}, false
}

// CommandParams returns the positional parameters of command c: the
// signature's up to and including the command, then the command's own.
func (s *Signature) CommandParams(c *Command) []Param {
	return append(slices.Clone(s.Params[:s.Cmd+1]), c.Params...)
}

func writeParams(b *strings.Builder, params []Param, keys []Param, cmd string, cmdAt int) {
	for i, p := range params {
		name := p.Name
		if i == cmdAt && cmd != "" {
			name = cmd
		}
		switch {
		case p.Optional:
			b.WriteString("[, " + name + "]")
			continue
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(name)
	}
	for _, k := range keys {
		v := k.Name + "=" + keyPlaceholder(k)
		switch {
		case k.Optional && b.Len() > 0:
			b.WriteString(" [, " + v + "]")
		case k.Optional:
			b.WriteString("[" + v + "]")
		case b.Len() > 0:
			b.WriteString(", " + v)
		default:
			b.WriteString(v)
		}
	}
}

// keyPlaceholder is how a key's value is written in a signature.
func keyPlaceholder(k Param) string {
	switch k.Kind {
	case KindString:
		return "STR"
	case KindFD:
		return "FD"
	}
	return "N"
}

// String prints the generic form: "pwrite(FD, OFF, LEN, DATA)",
// "fcntl(FD, CMD[, ARG])", "ioctl(FD, CMD, key=value...)".
func (s *Signature) String() string {
	var b strings.Builder
	writeParams(&b, s.Params, nil, "", -1)
	if len(s.Keys) > 0 {
		b.WriteString(", key=value...")
	}
	return s.Name + "(" + b.String() + ")"
}

// CommandString prints a command's form: "fcntl(FD, F_ADD_SEALS, SEALS)",
// "ioctl(FD, FDBOX_PUT_FD, fd=FD, name=STR [, flags=N])".
func (s *Signature) CommandString(c *Command) string {
	var b strings.Builder
	writeParams(&b, s.CommandParams(c), c.Keys, c.Name, s.Cmd)
	return s.Name + "(" + b.String() + ")"
}

// arity returns how many positional arguments params take.
func arity(params []Param) (lo, hi int) {
	for _, p := range params {
		if !p.Optional {
			lo++
		}
	}
	return lo, len(params)
}

// Arity returns how many positional arguments the call takes, in any of
// its forms.
func (s *Signature) Arity() (lo, hi int) {
	lo, hi = arity(s.Params)
	for _, c := range s.Commands {
		l, h := arity(s.CommandParams(c))
		lo, hi = min(lo, l), max(hi, h)
	}
	return lo, hi
}

func arityText(lo, hi int) string {
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

// Lang is what the parser knows of the calls and functions of the
// language: their signatures. The runner (package scenarios) builds the
// one it runs from its table; the parser rejects any call or function a
// Lang does not have.
type Lang struct {
	calls          []*Signature
	funcs          []*Signature
	byCall, byFunc map[string]*Signature
}

// NewLang returns the language of the given system calls and expression
// functions. It panics on a duplicate name or a malformed signature (a
// required positional parameter after an optional one, a command
// parameter out of range, a command constant that does not exist, keys
// of one name with different kinds), which are bugs of the table.
func NewLang(calls, funcs []*Signature) *Lang {
	l := &Lang{calls: calls, funcs: funcs, byCall: map[string]*Signature{}, byFunc: map[string]*Signature{}}
	add := func(m map[string]*Signature, s *Signature) {
		if _, dup := m[s.Name]; dup || s.Name == "" {
			panic("scn: NewLang: duplicate or empty name " + s.Name)
		}
		checkParams(s.Name, s.Params)
		if len(s.Commands) > 0 && (s.Cmd < 0 || s.Cmd >= len(s.Params)) {
			panic("scn: NewLang: " + s.Name + ": command parameter out of range")
		}
		for _, c := range s.Commands {
			if v, ok := constants[c.Name]; !ok || v != c.Value {
				panic("scn: NewLang: " + s.Name + ": command " + c.Name + " is not a constant of that value")
			}
			checkParams(s.Name+" "+c.Name, s.CommandParams(c))
			for _, k := range c.Keys {
				if g, ok := s.Key(k.Name); !ok || g.Kind != k.Kind {
					panic("scn: NewLang: " + s.Name + " " + c.Name + ": key " + k.Name + " is not a key of the generic form, of the same kind")
				}
			}
		}
		m[s.Name] = s
	}
	for _, s := range calls {
		add(l.byCall, s)
		for _, p := range s.Params {
			if p.Kind == KindWord || p.Kind == KindAny {
				panic("scn: NewLang: system call " + s.Name + ": parameter " + p.Name + " of kind " + p.Kind.String())
			}
		}
	}
	for _, s := range funcs {
		add(l.byFunc, s)
		if s.Bare && len(s.Params) > 0 {
			panic("scn: NewLang: bare function " + s.Name + " has parameters")
		}
	}
	return l
}

func checkParams(what string, params []Param) {
	optional := false
	for _, p := range params {
		if optional && !p.Optional {
			panic("scn: NewLang: " + what + ": required parameter " + p.Name + " after an optional one")
		}
		optional = optional || p.Optional
		if p.SizedBy != "" && !slices.ContainsFunc(params, func(q Param) bool { return q.Name == p.SizedBy }) {
			panic("scn: NewLang: " + what + ": " + p.Name + " is sized by a parameter it does not have: " + p.SizedBy)
		}
		for _, c := range p.Consts {
			if _, ok := constants[c]; !ok {
				panic("scn: NewLang: " + what + ": " + p.Name + ": no constant " + c)
			}
		}
	}
}

// Syscalls returns the system calls, in table order.
func (l *Lang) Syscalls() []*Signature { return slices.Clone(l.calls) }

// Funcs returns the expression functions, in table order.
func (l *Lang) Funcs() []*Signature { return slices.Clone(l.funcs) }

// Syscall returns the signature of the system call named name.
func (l *Lang) Syscall(name string) (*Signature, bool) {
	s, ok := l.byCall[name]
	return s, ok
}

// Func returns the signature of the expression function named name.
func (l *Lang) Func(name string) (*Signature, bool) {
	s, ok := l.byFunc[name]
	return s, ok
}
