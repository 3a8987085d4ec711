package scn

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
	"khosim/uapi"
)

// Error is one error in a scenario file.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

// Error returns "FILE:LINE:COL: message".
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ErrorList is every error found in a file, sorted by position. Parse
// returns one (as error) when a file has errors.
type ErrorList []*Error

// Error returns the errors one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the errors, for errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// constants are the names an expression resolves at parse time: the Linux
// constants of uapi and the errno names (value: the errno number).
var constants = func() map[string]uint64 {
	m := uapi.Constants()
	for _, n := range errno.Names() {
		e, _ := errno.Lookup(n)
		m[n] = uint64(e)
	}
	return m
}()

// Constant returns the value of a constant or errno name.
func Constant(name string) (uint64, bool) {
	v, ok := constants[name]
	return v, ok
}

// ConstantNames returns every constant and errno name, sorted.
func ConstantNames() []string { return slices.Sorted(maps.Keys(constants)) }

// maxDepth bounds the nesting of parentheses and unary operators, so that
// no input can exhaust the stack.
const maxDepth = 100

// Parse parses a whole scenario file, with the system calls and
// expression functions of lang. It returns the script and, if the file has
// errors, an ErrorList with every one of them (lexical and syntactic, and
// the checks the parser makes) sorted by position. The script then holds
// only the statements that parsed, and must not be run.
//
// Parse never runs anything and never panics.
func Parse(filename string, src []byte, lang *Lang) (*Script, error) {
	if lang == nil {
		lang = NewLang(nil, nil)
	}
	if err := checkText(filename, src); err != nil {
		return &Script{File: filename}, err
	}
	p := &parser{file: filename, src: src, lang: lang, bound: map[string]int{}}
	toks := lex(src, p.report)
	s := &Script{File: filename}
	var heads []lineHead
	for start := 0; toks[start].kind != tEOF; {
		end := start
		for toks[end].kind != tEOL {
			end++
		}
		line := toks[start : end+1]
		start = end + 1
		if len(line) == 1 {
			continue // blank or comment only
		}
		heads = append(heads, lineHead{
			pos:     line[0].pos,
			machine: line[0].kind == tName && line[0].text == "machine" && line[1].kind != tColon,
		})
		if st := p.parseLine(line); st != nil {
			s.Stmts = append(s.Stmts, st)
		}
	}
	p.checkMachine(heads)
	p.reportUnbound()
	if len(s.Stmts) > 0 {
		s.Machine, _ = s.Stmts[0].(*Machine)
	}
	if len(p.errs) == 0 {
		return s, nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int {
		switch {
		case a.Pos.Before(b.Pos):
			return -1
		case b.Pos.Before(a.Pos):
			return 1
		}
		return 0
	})
	if n := len(p.errs); n > MaxErrors {
		more := &Error{File: filename, Pos: p.errs[MaxErrors].Pos, Msg: fmt.Sprintf("and %d more errors", n-MaxErrors)}
		p.errs = append(p.errs[:MaxErrors:MaxErrors], more)
	}
	return s, p.errs
}

// scratchAlign is the granule the kernel rounds scratch sizes up to
// (kernel.scratchAlign, a pageblock: CMA_MIN_ALIGNMENT_BYTES).
const scratchAlign = 2 << 20

// MaxErrors is how many errors Parse reports of one file; past it, one
// more says how many it left out.
const MaxErrors = 20

// checkText refuses a file that is not text — a binary, a DTB, an image:
// a NUL byte, or bytes that are not UTF-8, in its first 64 KiB — with one
// error, rather than one per byte.
func checkText(filename string, src []byte) error {
	head := src[:min(len(src), 64<<10)]
	at := bytes.IndexByte(head, 0)
	why := "a NUL byte"
	if at < 0 && !utf8.Valid(head) {
		for i := 0; i < len(head); {
			r, n := utf8.DecodeRune(head[i:])
			if r == utf8.RuneError && n == 1 && len(head)-i >= utf8.UTFMax {
				at, why = i, "a byte that is not UTF-8"
				break
			}
			i += n
		}
	}
	if at < 0 {
		return nil
	}
	line := bytes.Count(head[:at], []byte("\n")) + 1
	return ErrorList{{File: filename, Pos: Pos{Line: line, Col: at - bytes.LastIndexByte(head[:at], '\n')},
		Msg: fmt.Sprintf("not a scenario file: %s at offset %d (binary data; scenarios are text)", why, at)}}
}

// lineHead is what the machine-first check needs to know of each line,
// including lines that did not parse.
type lineHead struct {
	pos     Pos
	machine bool
}

// parser parses one line at a time.
type parser struct {
	file   string
	src    []byte
	lang   *Lang
	errs   ErrorList
	toks   []token // the current line, ending with its tEOL
	i      int     // index of the current token in toks
	inCall bool    // parsing a system call's arguments
	depth  int     // expression nesting
	// bound are the names bound so far (by let or RES =), with the line
	// of their first binding.
	bound map[string]int
	// snapshots are the names of the snapshot statements so far, with
	// their lines.
	snapshots map[string]int
	// unbound are the bare names of the current line that are neither
	// constants nor bound; lineUnbound moves them to allUnbound once the
	// line is done, unless another error already covers them.
	unbound    []*Ident
	covered    map[*Ident]bool
	allUnbound []*Ident
}

// bailout is the panic value that abandons the current line after a
// syntax error; parseLine recovers it.
type bailout struct{}

func (p *parser) report(pos Pos, msg string) {
	p.errs = append(p.errs, &Error{File: p.file, Pos: pos, Msg: msg})
}

// errorf records an error and lets parsing go on: the line is still
// well-formed, so later errors on it are worth reporting too.
func (p *parser) errorf(pos Pos, format string, args ...any) {
	p.report(pos, fmt.Sprintf(format, args...))
}

// failf records a syntax error and abandons the line.
func (p *parser) failf(pos Pos, format string, args ...any) {
	p.errorf(pos, format, args...)
	panic(bailout{})
}

func (p *parser) tok() token { return p.toks[p.i] }

// peek returns the token n ahead of the current one (the tEOL at most).
func (p *parser) peek(n int) token { return p.toks[min(p.i+n, len(p.toks)-1)] }

func (p *parser) at(k tokKind) bool { return p.toks[p.i].kind == k }

// next consumes and returns the current token; it never moves past tEOL.
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOL {
		p.i++
	}
	return t
}

// got consumes the current token if it is of kind k.
func (p *parser) got(k tokKind) bool {
	if p.at(k) {
		p.next()
		return true
	}
	return false
}

// expect consumes a token of kind k or fails with "expected K<context>".
func (p *parser) expect(k tokKind, context string) token {
	t := p.tok()
	if t.kind != k {
		p.failf(t.pos, "expected %s%s, found %s", k, context, t.describe())
	}
	return p.next()
}

// name consumes a name or fails with "expected WHAT".
func (p *parser) name(what string) token {
	t := p.tok()
	if t.kind != tName {
		p.failf(t.pos, "expected %s, found %s", what, t.describe())
	}
	// "vmm-a": a name runs into a character no name holds. Say so once,
	// for the whole word, instead of an error per piece.
	if n := p.peek(1); n.off == t.end && (n.text == "-" || n.text == ".") {
		end := n.end
		for i := 2; p.peek(i).off == end && p.peek(i).kind != tEOL; i++ {
			end = p.peek(i).end
		}
		word := string(p.src[t.off:end])
		p.failf(t.pos, "%q is not a name: names are letters, digits and _, not starting with a digit (%q has %q); try %q",
			word, word, n.text, strings.NewReplacer("-", "_", ".", "_").Replace(word))
	}
	return p.next()
}

// parseLine parses the statement of one line; it returns nil if the line
// had any error.
func (p *parser) parseLine(line []token) (st Stmt) {
	for _, t := range line {
		if t.kind == tIllegal {
			return nil // the lexer reported it
		}
	}
	p.toks, p.i, p.inCall, p.depth = line, 0, false, 0
	p.unbound, p.covered = p.unbound[:0], nil
	nerr := len(p.errs)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(bailout); !ok {
				panic(r)
			}
			st = nil
			return // a syntax error: the names of the line are not worth reporting
		}
		for _, id := range p.unbound {
			if !p.covered[id] {
				p.allUnbound = append(p.allUnbound, id)
			}
		}
	}()
	st = p.stmt()
	if t := p.tok(); t.kind != tEOL {
		p.failf(t.pos, "unexpected %s at end of statement", t.describe())
	}
	if len(p.errs) > nerr {
		return nil
	}
	last := line[len(line)-2] // line ends with tEOL
	st.(interface{ setLoc(Loc) }).setLoc(Loc{At: line[0].pos, Text: string(p.src[line[0].off:last.end])})
	return st
}

func (l *Loc) setLoc(x Loc) { *l = x }

func (p *parser) stmt() Stmt {
	t := p.tok()
	if t.kind != tName {
		p.failf(t.pos, "expected a statement, found %s", t.describe())
	}
	if p.peek(1).kind == tColon {
		return p.syscall()
	}
	p.next()
	switch t.text {
	case "machine":
		return p.machine(t)
	case "boot":
		return p.boot()
	case "process":
		return p.process()
	case "exit":
		return &Exit{Name: p.name("a process name").text}
	case "kho":
		return p.kho()
	case "kexec":
		k := &Kexec{Build: p.build("kexec")}
		k.Errno = p.errnoSuffix()
		return k
	case "reboot":
		return &Reboot{}
	case "snapshot":
		return p.snapshot()
	case "fault":
		return p.fault()
	case "corrupt":
		return p.corrupt()
	case "let":
		return p.let()
	case "expect":
		return p.expectStmt()
	}
	p.failf(t.pos, "unknown statement %q", t.text)
	return nil
}

// options parses `key=value...` up to the end of the line, calling set with
// the current token on the value for each known key. It reports unknown
// and repeated keys and skips the value of an unknown one.
func (p *parser) options(stmt string, keys []string, set func(key token)) {
	seen := map[string]bool{}
	for !p.at(tEOL) {
		key := p.name(stmt + " key=value")
		p.expect(tAssign, " after "+key.text)
		if !slices.Contains(keys, key.text) {
			want := make([]string, len(keys))
			for i, k := range keys {
				want[i] = k + "="
			}
			p.errorf(key.pos, "unknown %s key %q (want %s)", stmt, key.text, orList(want))
			for !p.at(tEOL) && !(p.at(tName) && p.peek(1).kind == tAssign) {
				p.next()
			}
			continue
		}
		if seen[key.text] {
			p.errorf(key.pos, "duplicate %s key %s=", stmt, key.text)
		}
		seen[key.text] = true
		set(key)
	}
}

// orList spells a list for a message: "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// number consumes an integer literal, the value of the option or operand
// named what.
func (p *parser) number(what string) (uint64, Pos) {
	t := p.tok()
	if t.kind != tInt {
		p.failf(t.pos, "expected an integer for %s, found %s", what, t.describe())
	}
	p.next()
	return t.num, t.pos
}

func (p *parser) machine(kw token) *Machine {
	m := &Machine{}
	hasMemory := false
	p.options("machine", []string{"memory", "swap", "seed", "scratch"}, func(key token) {
		switch key.text {
		case "memory":
			var pos Pos
			m.Memory, pos = p.number("memory=")
			hasMemory = true
			if m.Memory == 0 {
				p.errorf(pos, "memory= must not be 0")
			}
		case "swap":
			m.Swap, _ = p.number("swap=")
		case "seed":
			m.Seed, _ = p.number("seed=")
			m.SeedSet = true
		case "scratch":
			v, pos := p.number("scratch=")
			if p.got(tPercent) {
				if v < 1 || v > 100 {
					p.errorf(pos, "scratch= percentage must be 1..100, got %d%%", v)
				}
				m.Scratch = Scratch{Percent: v}
				return
			}
			switch {
			case v == 0:
				p.errorf(pos, "scratch= must not be 0")
			case v > math.MaxUint64-(scratchAlign-1):
				// The kernel rounds scratch sizes up to 2 MiB
				// (CMA_MIN_ALIGNMENT_BYTES, kernel/boot.go): this
				// one would wrap around to 0.
				p.errorf(pos, "scratch=%d overflows when the kernel rounds it up to 2 MiB (at most %d)", v, uint64(math.MaxUint64)&^(scratchAlign-1))
			}
			m.Scratch = Scratch{Bytes: v}
		}
	})
	if !hasMemory {
		p.errorf(kw.pos, "machine needs memory=")
	}
	return m
}

func (p *parser) boot() *Boot { return &Boot{Build: p.build("boot")} }

// build parses the kernel build keys of boot or kexec, as long as KEY=
// follows: `kho=radix fdbox=seal`. Keys and values are those of
// kbuild.Keys(); a key given twice is not an error (the last counts).
func (p *parser) build(stmt string) []BuildKey {
	var keys []BuildKey
	for p.at(tName) && p.peek(1).kind == tAssign {
		key := p.next()
		p.next() // "="
		info, ok := buildKey(key.text)
		if !ok {
			p.errorf(key.pos, "unknown %s key %q (want %s)", stmt, key.text, orList(buildKeyList()))
			for !p.at(tEOL) && !p.at(tArrow) && !(p.at(tName) && p.peek(1).kind == tAssign) {
				p.next()
			}
			continue
		}
		v := p.name(fmt.Sprintf("a value for %s= (%s)", key.text, orList(info.Values)))
		if !slices.Contains(info.Values, v.text) {
			p.errorf(v.pos, "unknown %s value %q (want %s)", key.text, v.text, orList(info.Values))
		}
		keys = append(keys, BuildKey{At: key.pos, Key: key.text, Value: v.text})
	}
	return keys
}

// buildKey returns the kbuild key named name.
func buildKey(name string) (kbuild.KeyInfo, bool) {
	for _, k := range kbuild.Keys() {
		if k.Name == name {
			return k, true
		}
	}
	return kbuild.KeyInfo{}, false
}

// buildKeyList lists the build keys as "kho=", "fdbox=", ...
func buildKeyList() []string {
	var out []string
	for _, k := range kbuild.KeyNames() {
		out = append(out, k+"=")
	}
	return out
}

func (p *parser) process() *Process {
	pr := &Process{Name: p.name("a process name").text, UID: 1000}
	p.options("process", []string{"uid", "caps", "nofile"}, func(key token) {
		switch key.text {
		case "nofile":
			v, pos := p.number("nofile=")
			if v < 3 || v > maxNoFile {
				p.errorf(pos, "nofile=%d is out of range (3..%d)", v, maxNoFile)
			}
			pr.NoFile = int(min(v, maxNoFile))
		case "uid":
			v, pos := p.number("uid=")
			if v > math.MaxUint32 {
				p.errorf(pos, "uid=%d is out of range (0..%d)", v, uint32(math.MaxUint32))
			}
			pr.UID, pr.UIDSet = uint32(v), true
		case "caps":
			pr.Caps, pr.CapMask = p.caps()
		}
	})
	if pr.Caps == nil && pr.UIDSet && pr.UID == 0 {
		pr.CapMask = uapi.CapAll
	}
	return pr
}

// maxNoFile bounds a process's nofile=: Linux's fs.nr_open default
// (1024*1024), the ceiling of RLIMIT_NOFILE.
const maxNoFile = 1 << 20

// caps parses `CAP_A|CAP_B`, `all` or `none`.
func (p *parser) caps() (names []string, mask uint64) {
	for {
		t := p.name("a capability (CAP_*, all or none)")
		names = append(names, t.text)
		v, isConst := constants[t.text]
		switch {
		case t.text == "all" || t.text == "none":
			if t.text == "all" {
				mask = uapi.CapAll
			}
			if len(names) > 1 || p.at(tPipe) {
				p.errorf(t.pos, "caps=%s cannot be combined with other capabilities", t.text)
			}
		case strings.HasPrefix(t.text, "CAP_") && isConst && v < 64:
			mask |= 1 << v
		default:
			p.errorf(t.pos, "unknown capability %q", t.text)
		}
		if !p.got(tPipe) {
			return names, mask
		}
	}
}

func (p *parser) kho() *KHO {
	t := p.name("activate or deactivate after kho")
	if t.text != "activate" && t.text != "deactivate" {
		p.failf(t.pos, "expected activate or deactivate after kho, found %s", t.describe())
	}
	return &KHO{Activate: t.text == "activate", Errno: p.errnoSuffix()}
}

// errnoSuffix parses an optional `-> ERRNO`.
func (p *parser) errnoSuffix() errno.Errno {
	if !p.got(tArrow) {
		return 0
	}
	t := p.name("an errno name after ->")
	e, ok := errno.Lookup(t.text)
	if !ok {
		p.errorf(t.pos, "unknown errno %q", t.text)
	}
	return e
}

func (p *parser) fault() *Fault {
	t := p.name("a fault site")
	f := &Fault{Site: fault.Site(t.text), Nth: 1, Times: 1}
	if _, ok := fault.Lookup(t.text); !ok {
		var sites []string
		for _, s := range fault.Sites() {
			sites = append(sites, string(s.Site))
		}
		p.errorf(t.pos, "unknown fault site %q (want %s)", t.text, orList(sites))
	}
	p.options("fault", []string{"nth", "times"}, func(key token) {
		v, pos := p.number(key.text + "=")
		switch {
		case v < 1:
			p.errorf(pos, "%s= must be at least 1", key.text)
		case v > math.MaxInt32:
			p.errorf(pos, "%s=%d is too large", key.text, v)
		}
		if key.text == "nth" {
			f.Nth = int(min(v, math.MaxInt32))
		} else {
			f.Times = int(min(v, math.MaxInt32))
		}
	})
	return f
}

// snapshot parses `snapshot NAME`; a NAME given twice is an error, so
// that `khosim memmap --at NAME` names one moment.
func (p *parser) snapshot() *Snapshot {
	t := p.name("a snapshot name after snapshot")
	if line, ok := p.snapshots[t.text]; ok {
		p.errorf(t.pos, "snapshot %s is already taken at line %d", t.text, line)
	} else {
		if p.snapshots == nil {
			p.snapshots = map[string]int{}
		}
		p.snapshots[t.text] = t.pos.Line
	}
	return &Snapshot{Name: t.text}
}

func (p *parser) corrupt() *CorruptFDT {
	t := p.name("fdt after corrupt")
	if t.text != "fdt" {
		p.failf(t.pos, "expected fdt after corrupt, found %s", t.describe())
	}
	c := &CorruptFDT{}
	c.Offset, _ = p.number("OFFSET")
	c.Len, _ = p.number("LEN")
	return c
}

// bindable reports names that cannot be bound, because a bare use of them
// would never reach the binding: constants and bare functions (`zeros`).
func (p *parser) bindable(t token) {
	if _, ok := constants[t.text]; ok {
		p.errorf(t.pos, "cannot bind %s: it is a constant", t.text)
	} else if f, ok := p.lang.Func(t.text); ok && f.Bare {
		what := "a function"
		if f.Result == KindData {
			what = "a data generator"
		}
		p.errorf(t.pos, "cannot bind %s: it is %s", t.text, what)
	}
}

// bind records that name is bound from the next line on.
func (p *parser) bind(t token) {
	if _, ok := p.bound[t.text]; !ok {
		p.bound[t.text] = t.pos.Line
	}
}

func (p *parser) let() *Let {
	t := p.name("a variable name after let")
	p.bindable(t)
	p.expect(tAssign, " after let "+t.text)
	l := &Let{Name: t.text, Value: p.expr()}
	p.bind(t)
	return l
}

// reportUnbound reports every bare name used as a value that was neither a
// constant nor bound earlier, saying where it is bound later if it is.
func (p *parser) reportUnbound() {
	for _, id := range p.allUnbound {
		msg := fmt.Sprintf("unknown name %s: it is neither a constant nor bound earlier in the file (by let %s = ... or PROC: %s = CALL(...))",
			id.Name, id.Name, id.Name)
		switch line, ok := p.bound[id.Name]; {
		case ok && line == id.At.Line:
			msg += "; this statement binds it, for the lines after it"
		case ok:
			msg += fmt.Sprintf("; it is bound later, at line %d", line)
		default:
			if near := Suggest(id.Name, slices.Concat(ConstantNames(), slices.Sorted(maps.Keys(p.bound)))); near != "" {
				msg += fmt.Sprintf("; did you mean %s?", near)
			}
		}
		p.report(id.At, msg)
	}
}

func (p *parser) expectStmt() Stmt {
	if t := p.tok(); t.kind == tName && t.text == "invariants" && p.peek(1).kind == tEOL {
		p.next()
		return &ExpectInvariants{}
	}
	x := p.expr()
	op := p.tok()
	if op.kind != tEq && op.kind != tNe {
		p.failf(op.pos, "expected == or !=, found %s", op.describe())
	}
	p.next()
	y := p.expr()
	kx, ky := p.kindOf(x), p.kindOf(y)
	bytesKind := func(k Kind) bool { return k == KindString || k == KindData }
	if kx == KindInt && bytesKind(ky) || ky == KindInt && bytesKind(kx) {
		p.errorf(x.Pos(), "cannot compare %s with %s", x, y)
	}
	return &Expect{X: x, Y: y, Equal: op.kind == tEq}
}

// syscall parses `PROC: [RES =] CALL(ARG, ...) [-> ERRNO]`.
func (p *parser) syscall() *Syscall {
	s := &Syscall{Proc: p.next().text}
	p.next() // ":"
	var res token
	if p.at(tName) && p.peek(1).kind == tAssign {
		res = p.next()
		p.bindable(res)
		p.next()
		s.Result = res.text
	}
	call := p.name("a system call")
	s.Name, s.NamePos = call.text, call.pos
	p.expect(tLParen, " after "+call.text)
	p.inCall = true
	if !p.got(tRParen) {
		for {
			s.Args = append(s.Args, p.arg())
			if p.got(tComma) {
				continue
			}
			p.expect(tRParen, ` or ","`)
			break
		}
	}
	s.Errno = p.errnoSuffix()
	p.checkSyscall(s)
	p.inCall = false
	if s.Result != "" {
		p.bind(res)
	}
	return s
}

// arg parses one system call argument: `key=EXPR` or EXPR.
func (p *parser) arg() Arg {
	if p.at(tName) && p.peek(1).kind == tAssign {
		key := p.next()
		p.next()
		return Arg{At: key.pos, Key: key.text, Value: p.expr()}
	}
	x := p.expr()
	return Arg{At: x.Pos(), Value: x}
}

// expr parses an expression:
//
//	expr    = sum { "|" sum }
//	sum     = product { ("+" | "-") product }
//	product = unary { "*" unary }
//	unary   = "-" unary | primary
//	primary = INT | STRING | "(" expr ")" | NAME ":" NAME | NAME "(" args ")" | NAME
func (p *parser) expr() Expr {
	p.nest()
	defer func() { p.depth-- }()
	return p.binary(OpOr.prec())
}

func (p *parser) nest() {
	p.depth++
	if p.depth > maxDepth {
		p.failf(p.tok().pos, "expression nested too deeply")
	}
}

var binaryOps = map[tokKind]Op{tPipe: OpOr, tPlus: OpAdd, tMinus: OpSub, tStar: OpMul}

// binary parses a chain of left-associative operators of precedence prec.
func (p *parser) binary(prec int) Expr {
	if prec > OpMul.prec() {
		return p.unary()
	}
	x := p.binary(prec + 1)
	for {
		op, ok := binaryOps[p.tok().kind]
		if !ok || op.prec() != prec {
			return x
		}
		t := p.next()
		y := p.binary(prec + 1)
		p.checkOperand(op, x)
		p.checkOperand(op, y)
		x = &Binary{X: x, Op: op, OpPos: t.pos, Y: y}
	}
}

func (p *parser) unary() Expr {
	t := p.tok()
	if t.kind != tMinus {
		return p.primary()
	}
	p.next()
	p.nest()
	x := p.unary()
	p.depth--
	p.checkOperand(OpNeg, x)
	return &Unary{At: t.pos, Op: OpNeg, X: x}
}

// checkOperand reports a string or data operand of an integer operator.
func (p *parser) checkOperand(op Op, x Expr) {
	if k := p.kindOf(x); k == KindString || k == KindData {
		p.errorf(x.Pos(), "operator %s needs integers, got %s", op, x)
	}
}

func (p *parser) primary() Expr {
	t := p.tok()
	switch t.kind {
	case tInt:
		p.next()
		return &IntLit{At: t.pos, Value: t.num, Text: t.text}
	case tString:
		p.next()
		return &StringLit{At: t.pos, Value: t.str}
	case tLParen:
		p.next()
		x := p.expr()
		p.expect(tRParen, "")
		return x
	case tName:
		p.next()
		switch {
		case p.at(tColon):
			p.next()
			res := p.name("a resource name after " + t.text + ":")
			return &ResRef{At: t.pos, Proc: t.text, Res: res.text}
		case p.at(tLParen):
			return p.funcCall(t)
		}
		if f, ok := p.lang.Func(t.text); ok && f.Bare {
			return &Func{At: t.pos, Name: t.text, Bare: true}
		}
		if v, ok := constants[t.text]; ok {
			return &Const{At: t.pos, Name: t.text, Value: v}
		}
		id := &Ident{At: t.pos, Name: t.text}
		if _, ok := p.bound[t.text]; !ok {
			p.unbound = append(p.unbound, id)
		}
		return id
	}
	p.failf(t.pos, "expected an expression, found %s", t.describe())
	return nil
}

// funcCall parses the arguments of the expression function named by t, the
// current token being "(", and checks them against its signature.
func (p *parser) funcCall(t token) *Func {
	sg, ok := p.lang.Func(t.text)
	if !ok {
		p.failf(t.pos, "unknown function %q", t.text)
	}
	p.next() // "("
	f := &Func{At: t.pos, Name: t.text, Bare: sg.Bare}
	if !p.got(tRParen) {
		for {
			if i := len(f.Args); i < len(sg.Params) && sg.Params[i].Kind == KindWord {
				w := p.name(fmt.Sprintf("a name for %s of %s", sg.Params[i].Name, sg))
				f.Args = append(f.Args, &Word{At: w.pos, Name: w.text})
			} else {
				f.Args = append(f.Args, p.expr())
			}
			if p.got(tComma) {
				continue
			}
			p.expect(tRParen, ` or ","`)
			break
		}
	}
	if lo, hi := arity(sg.Params); len(f.Args) < lo || len(f.Args) > hi {
		if hi == 0 {
			p.errorf(t.pos, "%s takes no arguments", t.text)
		} else {
			p.errorf(t.pos, "%s takes %s: %s", t.text, arityText(lo, hi), sg)
		}
		return f
	}
	for i, a := range f.Args {
		p.checkArg(t.text+": "+sg.Params[i].Name, a, sg.Params[i])
	}
	return f
}

// checkMachine checks that the first statement is machine and that there
// is only one.
func (p *parser) checkMachine(heads []lineHead) {
	first := -1
	for i, h := range heads {
		switch {
		case !h.machine:
		case first >= 0:
			p.errorf(h.pos, "machine given twice (first at line %d)", heads[first].pos.Line)
		default:
			first = i
			if i != 0 {
				p.errorf(h.pos, "machine must be the first statement")
			}
		}
	}
	if first < 0 {
		pos := Pos{Line: 1, Col: 1}
		if len(heads) > 0 {
			pos = heads[0].pos
		}
		p.errorf(pos, "missing machine statement (it must be the first statement)")
	}
}
