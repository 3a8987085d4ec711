// Package scenarios reads khosim scenario files (*.scn), the language of
// the contract /work/shared/spec/scenario-language.md: a lexer, an AST and a
// parser. Nothing here runs a scenario.
//
// Parse reads a whole file and returns a *Script and, when the file has
// errors, an ErrorList holding every one of them as FILE:LINE:COL: message,
// sorted by position. A script that came with errors must not be run.
// Positions are 1-based lines and 1-based byte columns (see Pos).
//
// # Grammar
//
// One statement per line; `#` starts a comment outside strings.
//
//	stmt    = "machine" {key "=" value}            memory= swap= seed= scratch=
//	        | "boot" ["shmem_huge" "=" NAME]
//	        | "process" NAME {("uid" "=" INT | "caps" "=" NAME {"|" NAME})}
//	        | "exit" NAME | "kexec" | "reboot"
//	        | "kho" ("activate" | "deactivate") ["->" ERRNO]
//	        | "fault" SITE {("nth" | "times") "=" INT}
//	        | "corrupt" "fdt" INT INT
//	        | "let" NAME "=" expr
//	        | "expect" "invariants" | "expect" expr ("==" | "!=") expr
//	        | NAME ":" [NAME "="] NAME "(" [arg {"," arg}] ")" ["->" ERRNO]
//	arg     = [NAME "="] expr
//	expr    = sum {"|" sum}
//	sum     = product {("+" | "-") product}
//	product = unary {"*" unary}
//	unary   = "-" unary | primary
//	primary = INT | STRING | "(" expr ")" | NAME ":" NAME | NAME "(" [expr {"," expr}] ")" | NAME
//
// A line whose first two tokens are NAME ":" is a system call, so a
// process may be named like a keyword (`kexec: close(3)`). Options of
// machine, boot, process and fault may come in any order; their values are
// integer literals (or names where shown), not expressions.
//
// # What the parser resolves and checks
//
// Constant and errno names become their values (keeping their names for
// printing); size suffixes are applied; process credentials get their
// defaults (uid=1000, caps=none; uid=0 alone means caps=all); machine keys,
// boot values, fault sites and errno names are checked. System calls are
// checked against the contract's table (parse_calls.go): an unknown call
// name is an error (so a typo is caught before anything runs), as are a
// wrong number of arguments, key=value arguments anywhere but ioctl, the
// wrong keys for an FDBox ioctl command, and arguments that cannot have the
// right type (a string for an fd, an integer for a path or for DATA,
// name= that is not a string). The same goes for expression functions,
// whose set is closed. What needs a machine (which process or resource a
// name denotes, whether a variable is bound) is left to the runner.
//
// # Extensions
//
//   - Integer arithmetic `+ - *`, unary `-` and parentheses, with `|`
//     binding loosest, then `+ -`, then `*`. Arithmetic wraps modulo 2^64
//     (Op.Apply), so `lseek(f, -1, SEEK_END)` passes the off_t -1 as Linux
//     would. Fold evaluates constant expressions.
//   - `zeros()` is accepted as a synonym of `zeros`.
//   - Functions of a resource (content, hash, size, pos, seals, refcount,
//     mapcount) may name a resource of the calling process bare inside a
//     system call's arguments: `pwrite(f, 0, size(f), zeros)`.
//
// Every statement and expression prints back (String) to source that parses
// to the same tree, so the runner can quote expressions in its messages.
package scenarios

import (
	"fmt"
	"strconv"
	"strings"

	"khosim/errno"
	"khosim/fault"
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

// Boot is `boot [shmem_huge=never|always|within_size]`.
type Boot struct {
	Loc
	// ShmemHuge is "never", "always", "within_size", or "" when not given
	// (the runner's default, Linux's "never").
	ShmemHuge string
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

// Kexec is `kexec`.
type Kexec struct{ Loc }

// Reboot is `reboot`.
type Reboot struct{ Loc }

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
	Name    string // a known system call (the table in parse_calls.go)
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
func (*Fault) stmtNode()            {}
func (*CorruptFDT) stmtNode()       {}
func (*Syscall) stmtNode()          {}
func (*Let) stmtNode()              {}
func (*Expect) stmtNode()           {}
func (*ExpectInvariants) stmtNode() {}

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

func (s *Boot) String() string {
	if s.ShmemHuge == "" {
		return "boot"
	}
	return "boot shmem_huge=" + s.ShmemHuge
}

func (s *Process) String() string {
	out := "process " + s.Name
	if s.UIDSet {
		out += " uid=" + strconv.FormatUint(uint64(s.UID), 10)
	}
	if s.Caps != nil {
		out += " caps=" + strings.Join(s.Caps, "|")
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

func (s *Kexec) String() string  { return "kexec" }
func (s *Reboot) String() string { return "reboot" }

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
	return "expect " + s.X.String() + op + s.Y.String()
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
// name is a *Const; `zeros` is the data generator (*Func); anything else is
// an *Ident the runner resolves.
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

// Ident is a bare name the parser could not resolve. In a system call's
// arguments it names a resource of the calling process or a script
// variable (the runner decides, resources first or variables first as it
// documents); elsewhere it names a script variable.
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

// Func is a call of an expression function: content, hash, size, pos,
// seals, refcount, mapcount, fds, frames, rand, zeros. Their signatures
// are the table funcs in parse_calls.go, and the parser has checked them.
// `zeros` and `zeros()` are the same Func with no Args.
//
// Arguments written PROC:RES in the signature are *ResRef, or, inside a
// system call's arguments only, an *Ident naming a resource of the calling
// process. The argument of fds is a *Word (a process name); that of frames
// is a *Word holding one of free, used, preserved, reserved, scratch.
type Func struct {
	At   Pos
	Name string
	Args []Expr
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
	panic(fmt.Sprintf("scenarios: Apply of %v", op))
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
	if e.Name == "zeros" && len(e.Args) == 0 {
		return "zeros"
	}
	args := make([]string, len(e.Args))
	for i, a := range e.Args {
		args[i] = a.String()
	}
	return e.Name + "(" + strings.Join(args, ", ") + ")"
}

func (e *Unary) String() string { return e.Op.String() + operand(e.X, e.Op.prec(), false) }

func (e *Binary) String() string {
	return operand(e.X, e.Op.prec(), false) + " " + e.Op.String() + " " + operand(e.Y, e.Op.prec(), true)
}

// operand prints x as an operand of an operator of precedence prec,
// parenthesized when x binds less tightly (or, on the right of a
// left-associative operator, equally tightly).
func operand(x Expr, prec int, right bool) string {
	if b, ok := x.(*Binary); ok {
		p := b.Op.prec()
		if p < prec || right && p == prec {
			return "(" + x.String() + ")"
		}
	}
	return x.String()
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
		x, ok1 := Fold(e.X)
		y, ok2 := Fold(e.Y)
		if !ok1 || !ok2 {
			return 0, false
		}
		return e.Op.Apply(x, y), true
	}
	return 0, false
}
