package scenarios

import (
	"fmt"

	"khosim/kernel"
	"khosim/scenarios/scn"
)

// arg is an argument decoded by the kind of its parameter. Which fields
// are set depends on the kind:
//
//	KindInt     n
//	KindString  s
//	KindWord    s (the word)
//	KindFD      fd (and n, the number as given)
//	KindMap     vma (and n, its start address)
//	KindData    data, or kept: the bytes of content(...)
//	KindRes     p and rs
type arg struct {
	n    uint64
	s    string
	fd   int
	vma  *kernel.VMA
	data scn.Data
	kept []byte
	p    *proc
	rs   *resource
}

// decode evaluates the arguments of a system call by the kinds of the
// parameters of its signature (the command's form when the command is
// one of the signature's Commands), positional ones in order, DATA after
// the LEN it is sized by, then the key=value ones. An error is a mistake
// of the scenario found before the call runs.
func (c *callEnv) decode() error {
	sg := &c.call.Signature
	var pos []scn.Expr
	var keyed []scn.Arg
	for _, a := range c.st.Args {
		if a.Key == "" {
			pos = append(pos, a.Value)
		} else {
			keyed = append(keyed, a)
		}
	}
	params := sg.Params
	if len(sg.Commands) > 0 && len(pos) > sg.Cmd {
		if k, ok := pos[sg.Cmd].(*scn.Const); ok {
			if cmd := sg.Command(k.Name); cmd != nil {
				params = sg.CommandParams(cmd)
			}
		}
	}
	if len(pos) > len(params) {
		return failf("%s takes at most %d arguments (the parser lets no more through)", sg.Name, len(params))
	}
	c.args = make([]arg, len(pos))
	for pass := range 2 { // data after the lengths they are sized by
		for i, e := range pos {
			prm := params[i]
			if (prm.Kind == scn.KindData) != (pass == 1) {
				continue
			}
			a, err := c.decodeArg(e, prm, params, sg.Name+": "+prm.Name)
			if err != nil {
				return err
			}
			c.args[i] = a
		}
	}
	for _, ka := range keyed {
		prm, ok := sg.Key(ka.Key)
		if !ok {
			return failf("%s takes no %s= (the parser lets it through)", sg.Name, ka.Key)
		}
		a, err := c.decodeArg(ka.Value, prm, nil, sg.Name+": "+ka.Key+"=")
		if err != nil {
			return err
		}
		c.keys[ka.Key] = a
	}
	return nil
}

// decodeArg decodes one argument of a system call; params are the
// positional parameters (for the LEN a DATA is sized by), what names the
// argument in messages.
func (c *callEnv) decodeArg(e scn.Expr, prm scn.Param, params []scn.Param, what string) (arg, error) {
	ctx := evalCtx{p: c.p}
	var a arg
	var err error
	switch prm.Kind {
	case scn.KindInt:
		a.n, err = c.r.evalInt(e, ctx, what)
	case scn.KindString:
		a.s, err = c.r.evalString(e, ctx, what)
	case scn.KindFD:
		a.fd, a.n, err = c.fd(e, what)
	case scn.KindMap:
		a.vma, err = c.mapping(e, what)
		if a.vma != nil {
			a.n = a.vma.Start
		}
	case scn.KindRes:
		a.p, a.rs, err = c.r.resRef(e, ctx)
	case scn.KindData:
		var n uint64
		sized := false
		for i, q := range params {
			if q.Name == prm.SizedBy && i < len(c.args) {
				n, sized = c.args[i].n, true
			}
		}
		a.data, a.kept, err = c.data(e, n, sized)
	default:
		err = failf("%s: the runner cannot decode a parameter of kind %s", what, prm.Kind)
	}
	return a, err
}

// decodeFunc evaluates the arguments of an expression function by the
// kinds of its parameters, in order.
func (r *runner) decodeFunc(f *function, e *scn.Func, ctx evalCtx) ([]arg, error) {
	out := make([]arg, len(e.Args))
	for i, x := range e.Args {
		if i >= len(f.Params) {
			return nil, failf("%s takes %d arguments", f.Name, len(f.Params))
		}
		prm := f.Params[i]
		what := f.Name + ": " + prm.Name
		var err error
		switch prm.Kind {
		case scn.KindRes:
			out[i].p, out[i].rs, err = r.resRef(x, ctx)
		case scn.KindInt:
			out[i].n, err = r.evalInt(x, ctx, what)
		case scn.KindString:
			out[i].s, err = r.evalString(x, ctx, what)
		case scn.KindWord:
			w, ok := x.(*scn.Word)
			if !ok {
				return nil, failf("%s: want a name, got %s", what, x)
			}
			out[i].s = w.Name
		default:
			err = failf("%s: the runner cannot decode a parameter of kind %s", what, prm.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fd decodes an argument that is a file descriptor: a resource of the
// calling process that is an fd, or a number (so close(99) can test
// EBADF). A mapping is not an fd.
func (c *callEnv) fd(e scn.Expr, what string) (int, uint64, error) {
	if id, ok := e.(*scn.Ident); ok {
		if rs, ok := c.p.res[id.Name]; ok && rs.kind == resMap {
			return 0, 0, failf("%s is a mapping of %s, not an fd", id.Name, c.p.name)
		}
	}
	n, err := c.r.evalInt(e, evalCtx{p: c.p}, what)
	if err != nil {
		return 0, 0, err
	}
	fd := int(int32(n))
	if f, err := c.p.task.FD(fd); err == nil {
		c.state = append(c.state, fmt.Sprintf("fd %d of %s: %s", fd, c.p.name, f))
	}
	return fd, n, nil
}

// mapping decodes an argument that is a mapping: a resource of the
// calling process that is a mapping (mapped or not: the kernel decides
// what using an unmapped one does), or a number naming the mapping of the
// process that starts at that address.
func (c *callEnv) mapping(e scn.Expr, what string) (*kernel.VMA, error) {
	if id, ok := e.(*scn.Ident); ok {
		if rs, ok := c.p.res[id.Name]; ok {
			if rs.kind != resMap {
				return nil, failf("%s is %s of %s, not a mapping", id.Name, rs.describe(), c.p.name)
			}
			c.state = append(c.state, fmt.Sprintf("%s of %s: %s", id.Name, c.p.name, rs.vma))
			return rs.vma, nil
		}
	}
	addr, err := c.r.evalInt(e, evalCtx{p: c.p}, what)
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

// data decodes a DATA argument: a generator, a string, or content(...)
// (read into memory, at most maxKeep bytes). When sized, n is the length
// it must have (its LEN).
func (c *callEnv) data(e scn.Expr, n uint64, sized bool) (scn.Data, []byte, error) {
	v, err := c.r.eval(e, evalCtx{p: c.p})
	if err != nil {
		return scn.Data{}, nil, err
	}
	if _, ok := v.(contentVal); ok {
		if v, err = c.r.keep(v); err != nil {
			return scn.Data{}, nil, err
		}
	}
	switch v := v.(type) {
	case dataVal:
		return v.d, nil, nil
	case strVal:
		if sized && uint64(len(v)) != n {
			return scn.Data{}, nil, failf("the string is %d bytes, LEN is %d", len(v), n)
		}
		return scn.TextData(string(v)), nil, nil
	case bytesVal:
		if sized && uint64(len(v)) != n {
			return scn.Data{}, nil, failf("the content is %d bytes, LEN is %d", len(v), n)
		}
		return scn.Data{}, v, nil
	}
	return scn.Data{}, nil, failf("%s is %s, not data", e, v.show())
}
