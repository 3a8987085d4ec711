package scn

import "slices"

// kindOf is the static kind of an expression's value.
func (p *parser) kindOf(e Expr) Kind {
	switch e := e.(type) {
	case *IntLit, *Const, *Unary, *Binary:
		return KindInt
	case *StringLit:
		return KindString
	case *Func:
		if sg, ok := p.lang.Func(e.Name); ok {
			return sg.Result
		}
	case *Word:
		return KindWord
	}
	return KindAny
}

// checkArg reports an argument that cannot be what the parameter wants.
func (p *parser) checkArg(what string, e Expr, prm Param) {
	switch prm.Kind {
	case KindRes:
		_, isRef := e.(*ResRef)
		id, isIdent := e.(*Ident)
		if isRef || isIdent && p.inCall {
			return
		}
		if isIdent {
			p.cover(id) // this message says what is wrong with it
		}
	case KindWord:
		w, ok := e.(*Word)
		if ok && (prm.Words == nil || slices.Contains(prm.Words, w.Name)) {
			return
		}
		if ok {
			noun := prm.Noun
			if noun == "" {
				noun = "word for " + prm.Name
			}
			p.errorf(w.At, "unknown %s %q (want %s)", noun, w.Name, orList(prm.Words))
			return
		}
	default:
		if prm.Kind.accepts(p.kindOf(e)) {
			return
		}
	}
	p.errorf(e.Pos(), "%s must be %s, got %s", what, prm.Kind.describe(p.inCall), e)
}

// cover drops the "unknown name" error of an identifier another error of
// the line already reports.
func (p *parser) cover(id *Ident) {
	if p.covered == nil {
		p.covered = map[*Ident]bool{}
	}
	p.covered[id] = true
}

// checkSyscall checks a system call against its signature: its name, the
// number and kinds of its positional arguments, its key=value arguments
// and, when its command is one of the signature's Commands, that form.
func (p *parser) checkSyscall(s *Syscall) {
	sg, ok := p.lang.Syscall(s.Name)
	if !ok {
		p.errorf(s.NamePos, "unknown system call %q", s.Name)
		return
	}
	var pos, keyed []Arg
	seen := map[string]bool{}
	for _, a := range s.Args {
		switch {
		case a.Key == "" && len(keyed) > 0:
			p.errorf(a.At, "positional argument after key=value")
			return
		case a.Key == "":
			pos = append(pos, a)
		case len(sg.Keys) == 0:
			p.errorf(a.At, "%s takes no key=value arguments", s.Name)
			return
		case seen[a.Key]:
			p.errorf(a.At, "duplicate argument %s=", a.Key)
			return
		default:
			seen[a.Key] = true
			keyed = append(keyed, a)
		}
	}
	if lo, hi := sg.Arity(); len(pos) < lo || len(pos) > hi {
		p.errorf(s.NamePos, "%s takes %s: %s", s.Name, arityText(lo, hi), sg)
		return
	}
	var cmd *Command
	if len(sg.Commands) > 0 {
		if c, ok := pos[sg.Cmd].Value.(*Const); ok {
			cmd = sg.Command(c.Name)
		}
	}
	params := sg.Params
	if cmd != nil {
		params = sg.CommandParams(cmd)
		if lo, hi := arity(params); len(pos) < lo || len(pos) > hi {
			p.errorf(s.NamePos, "%s %s takes %s: %s", s.Name, cmd.Name, arityText(lo, hi), sg.CommandString(cmd))
			return
		}
	} else if lo, hi := arity(params); len(pos) < lo || len(pos) > hi {
		p.errorf(s.NamePos, "%s takes %s: %s", s.Name, arityText(lo, hi), sg)
		return
	}
	for i, a := range pos {
		p.checkArg(s.Name+": "+params[i].Name, a.Value, params[i])
	}
	p.checkSizedString(s, pos, params)
	for _, a := range keyed {
		k, ok := sg.Key(a.Key)
		if !ok {
			p.errorf(a.At, "unknown %s argument %s= (want %s)", s.Name, a.Key, orList(keyList(sg.Keys)))
			continue
		}
		p.checkArg(s.Name+": "+a.Key+"=", a.Value, k)
		if cmd != nil && !slices.ContainsFunc(cmd.Keys, func(c Param) bool { return c.Name == a.Key }) {
			p.errorf(a.At, "%s %s does not take %s=", s.Name, cmd.Name, a.Key)
		}
	}
	if cmd == nil {
		return
	}
	for _, k := range cmd.Keys {
		if !k.Optional && !seen[k.Name] {
			p.errorf(s.NamePos, "%s %s needs %s=", s.Name, cmd.Name, k.Name)
		}
	}
}

// keyList spells keys for a message: "name=", "fd=", ...
func keyList(keys []Param) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name + "="
	}
	return out
}

// checkSizedString checks, when a call's LEN and DATA are both literals, that
// a string DATA is LEN bytes — what the runner would refuse after setting
// up everything before the call ("pwrite(m, 0, 10, \"short\")").
func (p *parser) checkSizedString(s *Syscall, pos []Arg, params []Param) {
	var n *IntLit
	for i, a := range pos {
		switch params[i].Name {
		case "LEN":
			n, _ = a.Value.(*IntLit)
		case "DATA":
			if str, ok := a.Value.(*StringLit); ok && n != nil && uint64(len(str.Value)) != n.Value {
				p.errorf(a.Value.Pos(), "%s: the string is %d bytes, LEN is %d", s.Name, len(str.Value), n.Value)
			}
		}
	}
}
