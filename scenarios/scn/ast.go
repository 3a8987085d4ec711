package scn

import (
	"fmt"
	"strconv"
	"strings"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
)

// Script is a parsed scenario file.
type Script struct {
	File  string
	Stmts []Stmt // in file order; Stmts[0] is Machine in a valid script
	// Machine is the machine statement (Stmts[0]); nil only when Parse
	// returned errors.
	Machine *Machine
}

// String prints the script in canonical form, one statement per line,
// without comments.
func (s *Script) String() string {
	var b strings.Builder
	for _, st := range s.Stmts {
		b.WriteString(st.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Stmt is a statement: one non-blank line of the file.
type Stmt interface {
	// Pos is the position of the statement's first token.
	Pos() Pos
	// Source is the statement as written: from its first token to its
	// last, without the comment or the surrounding blanks. Failures are
	// printed as FILE:LINE: Source(): what happened.
	Source() string
	// String is the statement in canonical form.
	String() string
	// Keyword classifies the statement by its type: its first keyword
	// ("machine", "boot", "kho", "expect", ...), or "call" for a system
	// call. It never formats the statement.
	Keyword() string
	stmtNode()
}

// Loc is where a statement is, and how it was written. Every statement
// embeds one.
type Loc struct {
	At   Pos
	Text string
}

// Pos returns the position of the statement's first token.
func (l *Loc) Pos() Pos { return l.At }

// Source returns the statement as written.
func (l *Loc) Source() string { return l.Text }

// Machine is `machine memory=SIZE [swap=SIZE] [seed=N] [scratch=PCT%|SIZE]`.
type Machine struct {
	Loc
	Memory  uint64 // bytes, > 0
	Swap    uint64 // bytes of swap device; 0 = no swap
	Seed    uint64
	SeedSet bool    // seed= was given (otherwise the runner picks, e.g. --seed)
	Scratch Scratch // KHO scratch size
}

// Scratch is the KHO scratch size of a machine: at most one field is
// non-zero; both zero means the implementation's default.
type Scratch struct {
	Percent uint64 // scratch=PCT%: 1..100 percent of memory
	Bytes   uint64 // scratch=SIZE: bytes, > 0
}

// Boot is `boot [KEY=VALUE...]`: the cold boot of the first kernel, of
// the build kbuild.Default() with Build applied.
type Boot struct {
	Loc
	// Build are the kernel build keys as written, in order; a key given
	// twice counts with its last value (ApplyBuild).
	Build []BuildKey
}

// BuildKey is one `KEY=VALUE` of boot or kexec: a key of kbuild.Keys()
// with one of its values (the parser has checked both).
type BuildKey struct {
	At         Pos // of the key
	Key, Value string
}

func (k BuildKey) String() string { return k.Key + "=" + k.Value }

// ApplyBuild returns base with keys applied in order (kbuild.Build.With),
// so that a key given twice counts with its last value. Keys from Parse
// are valid; an invalid one is an error (EINVAL) naming the values its key
// takes.
func ApplyBuild(base kbuild.Build, keys []BuildKey) (kbuild.Build, error) {
	for _, k := range keys {
		b, err := base.With(k.Key, k.Value)
		if err != nil {
			return base, err
		}
		base = b
	}
	return base, nil
}

func buildString(keys []BuildKey) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(" " + k.String())
	}
	return b.String()
}

// Process is `process NAME [uid=N] [caps=CAP_A|CAP_B|all|none]`.
type Process struct {
	Loc
	Name   string
	UID    uint32 // resolved: 1000 unless uid= was given
	UIDSet bool
	// Caps is the caps= list as written (CAP_* names, or the single word
	// "all" or "none"); nil when caps= was not given.
	Caps []string
	// CapMask is the resolved capability set, bit n for capability n:
	// caps= if given; otherwise uapi.CapAll when uid=0 was given, else 0.
	CapMask uint64
	// NoFile is the nofile= limit (RLIMIT_NOFILE, as `ulimit -n` sets
	// it); 0 when not given: the kernel's default.
	NoFile int
}

// Exit is `exit NAME`.
type Exit struct {
	Loc
	Name string
}

// KHO is `kho activate|deactivate [-> ERRNO]`.
type KHO struct {
	Loc
	Activate bool        // activate (true) or deactivate (false)
	Errno    errno.Errno // the errno it must fail with; 0: it must succeed
}

// Kexec is `kexec [KEY=VALUE...] [-> ERRNO]`: kexec into a kernel of the
// running kernel's build with Build applied (a key not given is
// inherited).
type Kexec struct {
	Loc
	Build []BuildKey  // as for Boot
	Errno errno.Errno // the errno it must fail with; 0: it must succeed
}

// Reboot is `reboot`.
type Reboot struct{ Loc }

// Snapshot is `snapshot NAME`: the memory map of the running kernel at
// this point, kept under NAME for a report (`khosim run --report`) and
// for `khosim memmap --at NAME`. An extension of khosim's: the contract
// has no such statement, and it changes nothing in the simulation.
type Snapshot struct {
	Loc
	Name string // unique in the file
}

// Fault is `fault SITE [nth=N] [times=M]`.
type Fault struct {
	Loc
	Site  fault.Site // a site fault.Lookup knows
	Nth   int        // >= 1, default 1
	Times int        // >= 1, default 1
}

// CorruptFDT is `corrupt fdt OFFSET LEN`.
type CorruptFDT struct {
	Loc
	Offset, Len uint64
}

// Syscall is `PROC: [RES =] CALL(ARG, ...) [-> ERRNO]`.
type Syscall struct {
	Loc
	Proc    string // the process that makes the call
	Result  string // the resource of Proc bound to the result; "" if none
	Name    string // a system call of the Lang it was parsed with
	NamePos Pos
	Args    []Arg
	Errno   errno.Errno // the errno it must fail with; 0: it must succeed
}

// Arg is one argument of a system call: a value, or key=value.
type Arg struct {
	At    Pos    // of the key, or of the value when there is no key
	Key   string // "" for a positional argument
	Value Expr
}

func (a Arg) String() string {
	if a.Key != "" {
		return a.Key + "=" + a.Value.String()
	}
	return a.Value.String()
}

// Let is `let NAME = EXPR`.
type Let struct {
	Loc
	Name  string
	Value Expr
}

// Expect is `expect X == Y` (Equal) or `expect X != Y`.
type Expect struct {
	Loc
	X, Y  Expr
	Equal bool
}

// ExpectInvariants is `expect invariants`.
type ExpectInvariants struct{ Loc }

func (*Machine) stmtNode()          {}
func (*Boot) stmtNode()             {}
func (*Process) stmtNode()          {}
func (*Exit) stmtNode()             {}
func (*KHO) stmtNode()              {}
func (*Kexec) stmtNode()            {}
func (*Reboot) stmtNode()           {}
func (*Snapshot) stmtNode()         {}
func (*Fault) stmtNode()            {}
func (*CorruptFDT) stmtNode()       {}
func (*Syscall) stmtNode()          {}
func (*Let) stmtNode()              {}
func (*Expect) stmtNode()           {}
func (*ExpectInvariants) stmtNode() {}

func (*Machine) Keyword() string          { return "machine" }
func (*Boot) Keyword() string             { return "boot" }
func (*Process) Keyword() string          { return "process" }
func (*Exit) Keyword() string             { return "exit" }
func (*KHO) Keyword() string              { return "kho" }
func (*Kexec) Keyword() string            { return "kexec" }
func (*Reboot) Keyword() string           { return "reboot" }
func (*Snapshot) Keyword() string         { return "snapshot" }
func (*Fault) Keyword() string            { return "fault" }
func (*CorruptFDT) Keyword() string       { return "corrupt" }
func (*Syscall) Keyword() string          { return "call" }
func (*Let) Keyword() string              { return "let" }
func (*Expect) Keyword() string           { return "expect" }
func (*ExpectInvariants) Keyword() string { return "expect" }

func (s *Machine) String() string {
	var b strings.Builder
	b.WriteString("machine memory=" + FormatSize(s.Memory))
	if s.Swap != 0 {
		b.WriteString(" swap=" + FormatSize(s.Swap))
	}
	if s.SeedSet {
		b.WriteString(" seed=" + strconv.FormatUint(s.Seed, 10))
	}
	switch {
	case s.Scratch.Percent != 0:
		fmt.Fprintf(&b, " scratch=%d%%", s.Scratch.Percent)
	case s.Scratch.Bytes != 0:
		b.WriteString(" scratch=" + FormatSize(s.Scratch.Bytes))
	}
	return b.String()
}

func (s *Boot) String() string { return "boot" + buildString(s.Build) }

func (s *Process) String() string {
	out := "process " + s.Name
	if s.UIDSet {
		out += " uid=" + strconv.FormatUint(uint64(s.UID), 10)
	}
	if s.Caps != nil {
		out += " caps=" + strings.Join(s.Caps, "|")
	}
	if s.NoFile != 0 {
		out += " nofile=" + strconv.Itoa(s.NoFile)
	}
	return out
}

func (s *Exit) String() string { return "exit " + s.Name }

func (s *KHO) String() string {
	out := "kho deactivate"
	if s.Activate {
		out = "kho activate"
	}
	return out + errnoSuffix(s.Errno)
}

func (s *Kexec) String() string  { return "kexec" + buildString(s.Build) + errnoSuffix(s.Errno) }
func (s *Reboot) String() string { return "reboot" }

func (s *Snapshot) String() string { return "snapshot " + s.Name }

func (s *Fault) String() string {
	out := "fault " + string(s.Site)
	if s.Nth != 1 {
		out += " nth=" + strconv.Itoa(s.Nth)
	}
	if s.Times != 1 {
		out += " times=" + strconv.Itoa(s.Times)
	}
	return out
}

func (s *CorruptFDT) String() string { return fmt.Sprintf("corrupt fdt %d %d", s.Offset, s.Len) }

func (s *Syscall) String() string {
	var b strings.Builder
	b.WriteString(s.Proc + ": ")
	if s.Result != "" {
		b.WriteString(s.Result + " = ")
	}
	b.WriteString(s.Name + "(")
	for i, a := range s.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	b.WriteString(")" + errnoSuffix(s.Errno))
	return b.String()
}

func (s *Let) String() string { return "let " + s.Name + " = " + s.Value.String() }

func (s *Expect) String() string {
	op := " != "
	if s.Equal {
		op = " == "
	}
	var b strings.Builder
	b.WriteString("expect ")
	writeExpr(&b, s.X)
	b.WriteString(op)
	writeExpr(&b, s.Y)
	return b.String()
}

func (s *ExpectInvariants) String() string { return "expect invariants" }

func errnoSuffix(e errno.Errno) string {
	if e == 0 {
		return ""
	}
	return " -> " + e.Name()
}

// Expr is an expression.
//
// A bare name is resolved at parse time in this order: a constant or errno
// name is a *Const; a bare function (`zeros`) is a *Func; a name bound
// earlier in the file is an *Ident the runner resolves; anything else is a
// parse error.
type Expr interface {
	// Pos is the position of the expression's first token.
	Pos() Pos
	// String prints the expression so that it parses back to the same
	// tree, with only the parentheses precedence needs.
	String() string
	exprNode()
}

// IntLit is an integer literal: 42, 0x2a, 4KiB, 1G.
type IntLit struct {
	At    Pos
	Value uint64
	Text  string // as written, e.g. "1GiB"
}

// StringLit is a string literal; Value is decoded.
type StringLit struct {
	At    Pos
	Value string
}

// Const is a Linux constant (uapi.Constants) or an errno name (value: the
// errno number), resolved at parse time.
type Const struct {
	At    Pos
	Name  string
	Value uint64
}

// Ident is a bare name bound earlier in the file (by let or RES =). In a
// system call's arguments it names a resource of the calling process or a
// script variable (the runner decides, resources first or variables first
// as it documents); elsewhere it names a script variable.
type Ident struct {
	At   Pos
	Name string
}

// ResRef is `PROC:RES`, the resource RES of process PROC.
type ResRef struct {
	At   Pos
	Proc string
	Res  string
}

// Word is a bare word that is not a value: the process of fds(PROC), the
// frame state of frames(STATE). It is never resolved as a constant or a
// variable.
type Word struct {
	At   Pos
	Name string
}

// Func is a call of an expression function of the Lang the script was
// parsed with (content, hash, size, ... in the runner's table); the parser
// has checked it against its signature. `zeros` and `zeros()` are the same
// Func with no Args.
//
// Arguments of kind KindRes are *ResRef, or, inside a system call's
// arguments only, an *Ident naming a resource of the calling process.
// Arguments of kind KindWord are *Word (fds' process, frames' state).
type Func struct {
	At   Pos
	Name string
	Args []Expr
	// Bare is the signature's: with no Args, the call prints without
	// parentheses.
	Bare bool
}

// Op is an arithmetic or bitwise operator.
type Op int

// Operators, by increasing precedence: | then + - then * then unary -.
const (
	OpOr  Op = iota + 1 // A | B
	OpAdd               // A + B
	OpSub               // A - B
	OpMul               // A * B
	OpNeg               // -A (Unary only)
)

var opText = [...]string{OpOr: "|", OpAdd: "+", OpSub: "-", OpMul: "*", OpNeg: "-"}

func (op Op) String() string {
	if op <= 0 || int(op) >= len(opText) {
		return fmt.Sprintf("Op(%d)", int(op))
	}
	return opText[op]
}

// Apply computes x op y (or op y for OpNeg, ignoring x) on 64-bit integers.
// Arithmetic wraps modulo 2^64 as in the registers a system call receives,
// so -1 is 0xffffffffffffffff.
func (op Op) Apply(x, y uint64) uint64 {
	switch op {
	case OpOr:
		return x | y
	case OpAdd:
		return x + y
	case OpSub:
		return x - y
	case OpMul:
		return x * y
	case OpNeg:
		return -y
	}
	panic(fmt.Sprintf("scn: Apply of %v", op))
}

func (op Op) prec() int {
	switch op {
	case OpOr:
		return 1
	case OpAdd, OpSub:
		return 2
	case OpMul:
		return 3
	}
	return 4 // unary
}

// Unary is `-X` (extension): the two's complement of X.
type Unary struct {
	At Pos // of the operator
	Op Op  // OpNeg
	X  Expr
}

// Binary is `X | Y`, `X + Y`, `X - Y` or `X * Y` (+ - * are extensions).
type Binary struct {
	X     Expr
	Op    Op
	OpPos Pos
	Y     Expr
}

func (e *IntLit) Pos() Pos    { return e.At }
func (e *StringLit) Pos() Pos { return e.At }
func (e *Const) Pos() Pos     { return e.At }
func (e *Ident) Pos() Pos     { return e.At }
func (e *ResRef) Pos() Pos    { return e.At }
func (e *Word) Pos() Pos      { return e.At }
func (e *Func) Pos() Pos      { return e.At }
func (e *Unary) Pos() Pos     { return e.At }
func (e *Binary) Pos() Pos    { return e.X.Pos() }

func (*IntLit) exprNode()    {}
func (*StringLit) exprNode() {}
func (*Const) exprNode()     {}
func (*Ident) exprNode()     {}
func (*ResRef) exprNode()    {}
func (*Word) exprNode()      {}
func (*Func) exprNode()      {}
func (*Unary) exprNode()     {}
func (*Binary) exprNode()    {}

func (e *IntLit) String() string    { return e.Text }
func (e *StringLit) String() string { return Quote(e.Value) }
func (e *Const) String() string     { return e.Name }
func (e *Ident) String() string     { return e.Name }
func (e *ResRef) String() string    { return e.Proc + ":" + e.Res }
func (e *Word) String() string      { return e.Name }

func (e *Func) String() string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

func (e *Unary) String() string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

func (e *Binary) String() string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

// writeExpr prints e into b, with only the parentheses precedence needs.
// A chain of left-associative operators is printed by walking its left
// spine (BinaryChain), not by recursion: the recursion depth is bounded by
// the nesting of parentheses and precedence levels, never by the length of
// a chain, and the time is linear in the output.
func writeExpr(b *strings.Builder, e Expr) {
	switch e := e.(type) {
	case *Binary:
		first, chain := BinaryChain(e)
		writeOperand(b, first, chain[0].Op.prec(), false)
		for _, n := range chain {
			b.WriteString(" " + n.Op.String() + " ")
			writeOperand(b, n.Y, n.Op.prec(), true)
		}
	case *Unary:
		b.WriteString(e.Op.String())
		writeOperand(b, e.X, e.Op.prec(), false)
	case *Func:
		if e.Bare && len(e.Args) == 0 {
			b.WriteString(e.Name)
			return
		}
		b.WriteString(e.Name + "(")
		for i, a := range e.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			writeExpr(b, a)
		}
		b.WriteString(")")
	default:
		b.WriteString(e.String())
	}
}

// writeOperand prints x as an operand of an operator of precedence prec,
// parenthesized when x binds less tightly (or, on the right of a
// left-associative operator, equally tightly).
func writeOperand(b *strings.Builder, x Expr, prec int, right bool) {
	if bx, ok := x.(*Binary); ok {
		p := bx.Op.prec()
		if p < prec || right && p == prec {
			b.WriteString("(")
			writeExpr(b, x)
			b.WriteString(")")
			return
		}
	}
	writeExpr(b, x)
}

// BinaryChain flattens the left spine of e: the operators that print
// without parentheses to the left of e's, innermost first. It returns the
// leftmost operand and the chain, whose last element is e:
// `1 + 2 * 3 - 4` gives 1 and [(+ 2*3), (- 4)]; each element's Y is its
// right operand. The value of e is first, then each element's Op applied
// with its Y in order. Walking a chain this way instead of recursing on X
// keeps the stack depth independent of its length.
func BinaryChain(e *Binary) (first Expr, chain []*Binary) {
	n := 1
	for x := e; ; n++ {
		next, ok := x.X.(*Binary)
		if !ok || next.Op.prec() < x.Op.prec() {
			break
		}
		x = next
	}
	chain = make([]*Binary, n)
	x := e
	for i := n - 1; i >= 0; i-- {
		chain[i] = x
		if i > 0 {
			x = x.X.(*Binary)
		}
	}
	return chain[0].X, chain
}

// Walk calls fn for e and every expression under it, parents before
// children, and does not descend below an expression for which fn returns
// false. It uses an explicit stack, so any chain length is fine.
func Walk(e Expr, fn func(Expr) bool) {
	stack := []Expr{e}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x == nil || !fn(x) {
			continue
		}
		switch x := x.(type) {
		case *Binary:
			stack = append(stack, x.Y, x.X)
		case *Unary:
			stack = append(stack, x.X)
		case *Func:
			for i := len(x.Args) - 1; i >= 0; i-- {
				stack = append(stack, x.Args[i])
			}
		}
	}
}

// Fold returns the value of an expression made only of integer literals,
// constants and operators, and false for any other expression.
func Fold(e Expr) (uint64, bool) {
	switch e := e.(type) {
	case *IntLit:
		return e.Value, true
	case *Const:
		return e.Value, true
	case *Unary:
		x, ok := Fold(e.X)
		return e.Op.Apply(0, x), ok
	case *Binary:
		first, chain := BinaryChain(e)
		v, ok := Fold(first)
		if !ok {
			return 0, false
		}
		for _, n := range chain {
			y, ok := Fold(n.Y)
			if !ok {
				return 0, false
			}
			v = n.Op.Apply(v, y)
		}
		return v, true
	}
	return 0, false
}
