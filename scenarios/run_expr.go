package scenarios

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/zeebo/xxh3"

	"khosim/fdt"
	"khosim/kernel"
	"khosim/scenarios/scn"
)

// value is the value of an expression: intVal, strVal, dataVal,
// contentVal or bytesVal.
type value interface {
	// show prints the value for messages and -v.
	show() string
}

// intVal is an integer (an fd, a size, a hash, a constant...).
type intVal uint64

// strVal is a string.
type strVal string

// dataVal is a data generator: rand(SEED), zeros, or a string used as
// data.
type dataVal struct{ d scn.Data }

// contentVal is content(PROC:RES, OFF, LEN): a range of a file, read only
// when compared, hashed or kept.
type contentVal struct {
	fr   fileRange
	expr string // as written, for messages
}

// bytesVal is content kept in a variable (let x = content(...)).
type bytesVal []byte

func (v intVal) show() string     { return showInt(uint64(v)) }
func (v strVal) show() string     { return scn.Quote(string(v)) }
func (v dataVal) show() string    { return v.d.String() }
func (v contentVal) show() string { return v.expr }
func (v bytesVal) show() string   { return fmt.Sprintf("%d bytes of content", len(v)) }

// showInt prints an integer with its size or hex form when that reads
// better: 1073741824 (1GiB), 3, 16045690984833335023 (0xdeadbeefdeadbeef).
func showInt(n uint64) string {
	s := strconv.FormatUint(n, 10)
	switch {
	case n >= 1024 && n%1024 == 0:
		return s + " (" + scn.FormatSize(n) + ")"
	case n > 1<<32:
		return s + fmt.Sprintf(" (%#x)", n)
	}
	return s
}

// maxKeep is the most content a variable or a write's source may hold:
// larger ranges are compared and hashed streaming, never copied.
const maxKeep = 64 << 20

// evalCtx is where an expression is evaluated: in a system call of a
// process (a bare name is first a resource of it, then a variable) or in
// let/expect (a bare name is a variable).
type evalCtx struct {
	p *proc
}

// eval evaluates an expression. A chain of binary operators is evaluated
// along its left spine (scn.BinaryChain), so the recursion depth is
// bounded by the nesting of parentheses and precedence levels, which the
// parser bounds, never by the length of a chain.
func (r *runner) eval(e scn.Expr, ctx evalCtx) (value, error) {
	switch e := e.(type) {
	case *scn.IntLit:
		return intVal(e.Value), nil
	case *scn.StringLit:
		return strVal(e.Value), nil
	case *scn.Const:
		return intVal(e.Value), nil
	case *scn.Unary:
		x, err := r.evalInt(e.X, ctx, "operand of "+e.Op.String())
		if err != nil {
			return nil, err
		}
		return intVal(e.Op.Apply(0, x)), nil
	case *scn.Binary:
		first, chain := scn.BinaryChain(e)
		v, err := r.evalInt(first, ctx, "operand of "+chain[0].Op.String())
		if err != nil {
			return nil, err
		}
		for _, n := range chain {
			y, err := r.evalInt(n.Y, ctx, "operand of "+n.Op.String())
			if err != nil {
				return nil, err
			}
			v = n.Op.Apply(v, y)
		}
		return intVal(v), nil
	case *scn.Ident:
		if ctx.p != nil {
			if rs, ok := ctx.p.res[e.Name]; ok {
				return intVal(rs.number()), nil
			}
		}
		v, ok := r.vars[e.Name]
		if !ok {
			if ctx.p != nil {
				return nil, failf("%s is neither a resource of %s nor a variable%s", e.Name, ctx.p.name, resList(ctx.p))
			}
			return nil, failf("variable %s is not defined", e.Name)
		}
		return v, nil
	case *scn.ResRef:
		_, rs, err := r.resRef(e, ctx)
		if err != nil {
			return nil, err
		}
		return intVal(rs.number()), nil
	case *scn.Word:
		return nil, failf("%s is not a value", e.Name)
	case *scn.Func:
		f := lookupFunc(e.Name)
		if f == nil {
			return nil, failf("function %s is not in the runner's table", e.Name)
		}
		a, err := r.decodeFunc(f, e, ctx)
		if err != nil {
			return nil, err
		}
		return f.eval(r, e, a, ctx)
	}
	return nil, failf("expression %T is not supported by the runner", e)
}

// evalInt evaluates an expression that must be an integer.
func (r *runner) evalInt(e scn.Expr, ctx evalCtx, what string) (uint64, error) {
	v, err := r.eval(e, ctx)
	if err != nil {
		return 0, err
	}
	n, ok := v.(intVal)
	if !ok {
		return 0, failf("%s must be an integer, %s is %s", what, e, v.show())
	}
	return uint64(n), nil
}

// evalString evaluates an expression that must be a string.
func (r *runner) evalString(e scn.Expr, ctx evalCtx, what string) (string, error) {
	v, err := r.eval(e, ctx)
	if err != nil {
		return "", err
	}
	s, ok := v.(strVal)
	if !ok {
		return "", failf("%s must be a string, %s is %s", what, e, v.show())
	}
	return string(s), nil
}

// resRef resolves a resource argument: PROC:RES anywhere, or a bare RES of
// the calling process inside a system call.
func (r *runner) resRef(e scn.Expr, ctx evalCtx) (*proc, *resource, error) {
	switch e := e.(type) {
	case *scn.ResRef:
		p, err := r.proc(e.Proc)
		if err != nil {
			return nil, nil, err
		}
		rs, err := r.resource(p, e.Res)
		return p, rs, err
	case *scn.Ident:
		if ctx.p == nil {
			return nil, nil, failf("%s must be PROC:RES", e.Name)
		}
		rs, err := r.resource(ctx.p, e.Name)
		return ctx.p, rs, err
	}
	return nil, nil, failf("%s is not a resource", e)
}

// fileRange is a byte range of the file behind a resource.
type fileRange struct {
	p    *proc
	rs   *resource
	f    *kernel.File
	off  int64 // file offset
	n    int64
	name string // PROC:RES, for messages
}

// fileOf returns the file behind a resource and the file offset of its
// byte 0: the fd's file, or the mapped file at the mapping's offset.
func (r *runner) fileOf(p *proc, rs *resource) (*kernel.File, int64, error) {
	switch rs.kind {
	case resFD:
		f, err := p.task.FD(rs.fd)
		if err != nil {
			return nil, 0, failf("%s:%s is fd %d, which is not open in %s (bound at line %d)", p.name, rs.name, rs.fd, p.name, rs.line)
		}
		return f, 0, nil
	case resMap:
		if !rs.vma.Mapped() {
			return nil, 0, failf("%s:%s is a mapping that was unmapped (bound at line %d)", p.name, rs.name, rs.line)
		}
		return rs.vma.File, int64(rs.vma.PgOff) * pageSize, nil
	}
	return nil, 0, failf("%s:%s is a number (%d), not a file or a mapping", p.name, rs.name, rs.n)
}

const pageSize = 4096

// rangeOf is the range the decoded (PROC:RES, OFF, LEN) arguments of
// content and hash name.
func (r *runner) rangeOf(a []arg, fn string) (fileRange, error) {
	p, rs, off, n := a[0].p, a[0].rs, a[1].n, a[2].n
	if int64(off) < 0 || int64(n) < 0 || int64(off+n) < int64(off) {
		return fileRange{}, failf("%s: range %d+%d is out of bounds", fn, off, n)
	}
	f, base, err := r.fileOf(p, rs)
	if err != nil {
		return fileRange{}, err
	}
	return fileRange{p: p, rs: rs, f: f, off: base + int64(off), n: int64(n), name: p.name + ":" + rs.name}, nil
}

// read streams the bytes of a range to fn in file order. It returns how
// many bytes the file has in the range (fewer than fr.n at end of file).
func (r *runner) read(fr fileRange, what string, fn func(chunk []byte, off int64) error) (int64, error) {
	if _, ok := fr.f.Ops.(kernel.ReadWriter); !ok {
		return 0, failf("%s is a %s file, which has no data", fr.name, fr.f.Ops.Kind())
	}
	prog := r.progress(what, uint64(fr.n))
	var done int64
	// PeekFile, not the read path: an expression observes the file without
	// swapping pages in, allocating, consulting fault sites or moving
	// f_pos (docs/scenarios.md, "Expressions never change what they
	// observe").
	n, err := r.kernel().PeekFile(fr.f, fr.off, fr.n, func(src []byte, off int64) error {
		if err := fn(src, off); err != nil {
			return err
		}
		done += int64(len(src))
		prog.at(uint64(done))
		return nil
	})
	prog.finish()
	if err != nil {
		if f, ok := err.(*failure); ok {
			return n, f
		}
		return n, failf("reading %s at %d: %v", fr.name, fr.off, err)
	}
	return n, nil
}

// evalHash is hash(PROC:RES, OFF, LEN).
func evalHash(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
	fr, err := r.rangeOf(a, "hash")
	if err != nil {
		return nil, err
	}
	h := xxh3.New()
	if _, err := r.read(fr, "hash "+fr.name, func(b []byte, _ int64) error {
		_, _ = h.Write(b)
		return nil
	}); err != nil {
		return nil, err
	}
	return intVal(h.Sum64()), nil
}

// evalFolioCount is refcount(PROC:RES, INDEX) and mapcount(PROC:RES,
// INDEX).
func evalFolioCount(r *runner, e *scn.Func, a []arg, ctx evalCtx) (value, error) {
	p, rs, index := a[0].p, a[0].rs, a[1].n
	f, _, err := r.fileOf(p, rs)
	if err != nil {
		return nil, err
	}
	fi, ok := folioAt(f, index)
	if !ok {
		return nil, failf("%s: page %d of %s:%s is not in the page cache", e.Name, index, p.name, rs.name).with(cacheSummary(f))
	}
	r.folios = append(r.folios, fmt.Sprintf("%s:%s page %d: %s", p.name, rs.name, index, fi))
	if e.Name == "refcount" {
		return intVal(fi.Refcount), nil
	}
	return intVal(fi.Mapcount), nil
}

// fileSize is i_size, or the kind's size for files without an inode.
func fileSize(f *kernel.File) int64 {
	if f.Inode != nil {
		return f.Inode.Size
	}
	if s, ok := f.Ops.(kernel.Seeker); ok {
		return s.Size(f)
	}
	return 0
}

// keep turns a value into one that can outlive the statement: content is
// read into bytes (at most maxKeep of them).
func (r *runner) keep(v value) (value, error) {
	c, ok := v.(contentVal)
	if !ok {
		return v, nil
	}
	if c.fr.n > maxKeep {
		return nil, failf("%s is %s: too large to keep in a variable (at most %s); keep hash(...) instead",
			c.expr, scn.FormatSize(uint64(c.fr.n)), scn.FormatSize(maxKeep))
	}
	buf := make([]byte, 0, c.fr.n)
	if _, err := r.read(c.fr, "read "+c.fr.name, func(b []byte, _ int64) error {
		buf = append(buf, b...)
		return nil
	}); err != nil {
		return nil, err
	}
	return bytesVal(buf), nil
}

// errMismatch stops a streaming comparison at the first differing byte.
type errMismatch struct{ at int64 }

func (*errMismatch) Error() string { return "mismatch" }

// equal compares two values for expect. It returns whether they are
// equal and, if not, why (the first difference) and the state behind it.
func (r *runner) equal(x, y value) (bool, *failure, error) {
	// Put the file side on the left.
	switch y.(type) {
	case contentVal, bytesVal:
		if _, isContent := x.(contentVal); !isContent {
			x, y = y, x
		}
	}
	switch x := x.(type) {
	case intVal:
		if y, ok := y.(intVal); ok {
			if x == y {
				return true, nil, nil
			}
			return false, failf("%s != %s", x.show(), y.show()), nil
		}
	case strVal:
		if y, ok := y.(strVal); ok {
			if x == y {
				return true, nil, nil
			}
			return false, failf("%s != %s", x.show(), y.show()), nil
		}
	case contentVal:
		switch y := y.(type) {
		case dataVal:
			return r.contentVsData(x, y.d)
		case strVal:
			return r.contentVsData(x, scn.TextData(string(y)))
		case bytesVal:
			return r.contentVsBytes(x, y)
		case contentVal:
			return r.contentVsContent(x, y)
		}
	case bytesVal:
		switch y := y.(type) {
		case bytesVal:
			return bytesEqual(x, y, "left", "right")
		case strVal:
			return bytesEqual(x, []byte(y), "the content", "the string")
		case dataVal:
			if i := y.d.Mismatch(x, 0, 0); i >= 0 {
				return false, failf("byte %d is %#02x, want %#02x from %s", i, x[i], y.d.At(0, int64(i)), y.d), nil
			}
			return true, nil, nil
		}
	}
	return false, nil, failf("cannot compare %s with %s", kindName(x), kindName(y))
}

func kindName(v value) string {
	switch v.(type) {
	case intVal:
		return "an integer"
	case strVal:
		return "a string"
	case dataVal:
		return "a data generator (it has no length: compare it with content(...))"
	case contentVal, bytesVal:
		return "content"
	}
	return fmt.Sprintf("%T", v)
}

func bytesEqual(a, b []byte, an, bn string) (bool, *failure, error) {
	if bytes.Equal(a, b) {
		return true, nil, nil
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return false, failf("byte %d differs: %s has %#02x, %s has %#02x", i, an, a[i], bn, b[i]), nil
		}
	}
	return false, failf("%s has %d bytes, %s has %d", an, len(a), bn, len(b)), nil
}

// contentVsData compares a file range with a generator, streaming.
func (r *runner) contentVsData(c contentVal, d scn.Data) (bool, *failure, error) {
	if l := d.Len(); l >= 0 && l != c.fr.n {
		return false, failf("%s is a range of %d bytes, %s has %d", c.expr, c.fr.n, d, l), nil
	}
	start := c.fr.off
	var bad *errMismatch
	n, err := r.read(c.fr, "compare "+c.fr.name, func(b []byte, off int64) error {
		if i := d.Mismatch(b, start, off); i >= 0 {
			bad = &errMismatch{at: off + int64(i)}
			return bad
		}
		return nil
	})
	if bad != nil {
		want := func(o int64) (byte, bool) {
			return d.At(start, o), d.Len() < 0 || o-start < d.Len()
		}
		return false, r.byteMismatch(c, bad.at, want, d.String()), nil
	}
	if err != nil {
		return false, nil, err
	}
	want := c.fr.n
	if l := d.Len(); l >= 0 {
		want = l
	}
	if n != want {
		return false, failf("%s has %d bytes (i_size %d), want %d", c.expr, n, fileSize(c.fr.f), want), nil
	}
	return true, nil, nil
}

// byteMismatch describes the first differing byte of a file range, the
// bytes from there on next to the expected ones, and the folio caching it.
// want returns the expected byte at a file offset (ok false past the
// expected data).
func (r *runner) byteMismatch(c contentVal, at int64, want func(off int64) (byte, bool), from string) *failure {
	const context = 16
	end := min(at+context, c.fr.off+c.fr.n)
	got := r.bytesAt(c.fr, at, end-at)
	var exp []byte
	for o := at; o < end; o++ {
		b, ok := want(o)
		if !ok {
			break
		}
		exp = append(exp, b)
	}
	gotByte := "unreadable"
	if len(got) > 0 {
		gotByte = fmt.Sprintf("%#02x", got[0])
	}
	index := uint64(at) / pageSize
	wantByte := "nothing"
	if len(exp) > 0 {
		wantByte = fmt.Sprintf("%#02x", exp[0])
	}
	f := failf("byte at file offset %d (page %d, offset %#x in it) is %s, want %s from %s",
		at, index, at%pageSize, gotByte, wantByte, from)
	f.with(fmt.Sprintf("at %d: got  % x", at, got), fmt.Sprintf("at %d: want % x", at, exp))
	f.with(fmt.Sprintf("%s: %s", c.fr.name, c.fr.f))
	if fi, ok := folioAt(c.fr.f, index); ok {
		f.with(fmt.Sprintf("page %d: %s", index, fi))
	} else {
		f.with(fmt.Sprintf("page %d is not in the page cache", index), cacheSummary(c.fr.f))
	}
	return f
}

// bytesAt reads up to n bytes of a file at offset at, for a message.
func (r *runner) bytesAt(fr fileRange, at, n int64) []byte {
	var b []byte
	part := fr
	part.off, part.n = at, n
	if _, err := r.read(part, "", func(src []byte, _ int64) error {
		b = append(b, src...)
		return nil
	}); err != nil {
		return nil
	}
	return b
}

// contentVsBytes compares a file range with kept content.
func (r *runner) contentVsBytes(c contentVal, want bytesVal) (bool, *failure, error) {
	var bad *errMismatch
	n, err := r.read(c.fr, "compare "+c.fr.name, func(b []byte, off int64) error {
		i := off - c.fr.off
		for j := range b {
			if i+int64(j) >= int64(len(want)) || b[j] != want[i+int64(j)] {
				bad = &errMismatch{at: off + int64(j)}
				return bad
			}
		}
		return nil
	})
	if bad != nil {
		i := bad.at - c.fr.off
		if i >= int64(len(want)) {
			return false, failf("%s has more bytes than the %d kept", c.expr, len(want)), nil
		}
		wantAt := func(o int64) (byte, bool) {
			k := o - c.fr.off
			if k < 0 || k >= int64(len(want)) {
				return 0, false
			}
			return want[k], true
		}
		return false, r.byteMismatch(c, bad.at, wantAt, "the kept content"), nil
	}
	if err != nil {
		return false, nil, err
	}
	if n != int64(len(want)) {
		return false, failf("%s has %d bytes, the kept content %d", c.expr, n, len(want)), nil
	}
	return true, nil, nil
}

// contentVsContent compares two file ranges window by window.
func (r *runner) contentVsContent(a, b contentVal) (bool, *failure, error) {
	const window = 4 << 20
	bufA := make([]byte, 0, min(window, a.fr.n))
	bufB := make([]byte, 0, min(window, b.fr.n))
	for done := int64(0); ; {
		wa, wb := a.fr, b.fr
		wa.off, wa.n = a.fr.off+done, min(window, a.fr.n-done)
		wb.off, wb.n = b.fr.off+done, min(window, b.fr.n-done)
		bufA, bufB = bufA[:0], bufB[:0]
		if wa.n > 0 {
			if _, err := r.read(wa, "", func(c []byte, _ int64) error { bufA = append(bufA, c...); return nil }); err != nil {
				return false, nil, err
			}
		}
		if wb.n > 0 {
			if _, err := r.read(wb, "", func(c []byte, _ int64) error { bufB = append(bufB, c...); return nil }); err != nil {
				return false, nil, err
			}
		}
		n := min(len(bufA), len(bufB))
		for i := range n {
			if bufA[i] != bufB[i] {
				at := done + int64(i)
				f := failf("byte %d of the ranges differs: %s has %#02x, %s has %#02x", at, a.expr, bufA[i], b.expr, bufB[i])
				for _, c := range []contentVal{a, b} {
					index := uint64(c.fr.off+at) / pageSize
					if fi, ok := folioAt(c.fr.f, index); ok {
						f.with(fmt.Sprintf("%s page %d: %s", c.fr.name, index, fi))
					}
				}
				return false, f, nil
			}
		}
		if len(bufA) != len(bufB) {
			return false, failf("%s has %d bytes, %s has %d", a.expr, done+int64(len(bufA)), b.expr, done+int64(len(bufB))), nil
		}
		if int64(len(bufA)) < window {
			return true, nil, nil
		}
		done += int64(len(bufA))
	}
}

func (r *runner) let(st *scn.Let) (string, error) {
	v, err := r.eval(st.Value, evalCtx{})
	if err != nil {
		return "", err
	}
	if v, err = r.keep(v); err != nil {
		return "", err
	}
	r.vars[st.Name] = v
	if i, ok := v.(intVal); ok && countKind(st.Value) == "count" {
		return fmt.Sprintf("= %d", uint64(i)), nil // frames are counts, not sizes
	}
	return "= " + v.show(), nil
}

func (r *runner) expect(st *scn.Expect) (string, error) {
	x, err := r.eval(st.X, evalCtx{})
	if err != nil {
		return "", err
	}
	y, err := r.eval(st.Y, evalCtx{})
	if err != nil {
		return "", err
	}
	eq, why, err := r.equal(x, y)
	if err != nil {
		return "", err
	}
	if xi, ok := x.(intVal); ok && !eq {
		if yi, ok := y.(intVal); ok {
			switch kind := countKind(st.X, st.Y); {
			case kind == "seals":
				// Seals by name: F_SEAL_SHRINK (0x2) != F_SEAL_SHRINK|F_SEAL_GROW (0x6).
				why = failf("%s (%#x) != %s (%#x)", fdt.SealNames(uint64(xi)), uint64(xi), fdt.SealNames(uint64(yi)), uint64(yi))
			case kind != "":
				// Counts are counts: 27897 != 524288, not "(512KiB)".
				why = failf("%d != %d", xi, yi)
			case hasConst(st.X, st.Y):
				// Flags read better in hex: 14 (0xe) != 6 (0x6).
				why = failf("%d (%#x) != %d (%#x)", xi, uint64(xi), yi, uint64(yi))
			}
			why = why.with(r.folios...)
		}
	}
	switch {
	case st.Equal && !eq:
		return "", why
	case !st.Equal && eq:
		if _, isInt := x.(intVal); isInt {
			return "", failf("both are %s", x.show())
		}
		return "", failf("they are equal")
	}
	if xi, ok := x.(intVal); ok {
		if countKind(st.X, st.Y) == "count" {
			return fmt.Sprintf("= ok (%d)", uint64(xi)), nil
		}
		return "= ok (" + xi.show() + ")", nil
	}
	return "= ok", nil
}

// hasConst reports whether any of the expressions uses a named constant
// in its arithmetic.
// countKind names the observer an integer comparison is about when one
// side is one: "seals" for seals(...), "count" for frames(...),
// refcount(...), mapcount(...) and fds(...), whose values are counts
// rather than sizes; "" otherwise.
func countKind(es ...scn.Expr) string {
	kind := ""
	for _, e := range es {
		if f, ok := e.(*scn.Func); ok {
			switch f.Name {
			case "seals":
				return "seals"
			case "frames", "refcount", "mapcount", "fds":
				kind = "count"
			}
		}
	}
	return kind
}

func hasConst(es ...scn.Expr) bool {
	found := false
	for _, e := range es {
		scn.Walk(e, func(x scn.Expr) bool {
			switch x.(type) {
			case *scn.Const:
				found = true
			case *scn.Binary, *scn.Unary:
				return !found
			}
			return false
		})
	}
	return found
}
