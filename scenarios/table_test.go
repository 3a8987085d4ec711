package scenarios

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"khosim/machine"
	"khosim/scenarios/scn"
)

// exampleArg writes an argument of kind k for the example calls: names
// bound by tableProlog, or literals.
func exampleArg(p scn.Param) string {
	switch p.Kind {
	case scn.KindInt:
		if len(p.Consts) > 0 {
			return p.Consts[0]
		}
		return "0"
	case scn.KindString:
		return `"/dev/null"`
	case scn.KindFD:
		return "f"
	case scn.KindMap:
		return "mp"
	case scn.KindData:
		return "zeros"
	case scn.KindRes:
		return "p:f"
	case scn.KindWord:
		if len(p.Words) > 0 {
			return p.Words[0]
		}
		return "p"
	}
	return "?"
}

// exampleCalls writes, from the signature alone, one call of every form of
// sg: the generic form and each command's, with every key they take.
func exampleCalls(sg *scn.Signature) []string {
	write := func(params []scn.Param, keys []scn.Param, cmd string) string {
		var args []string
		for i, p := range params {
			if p.Optional {
				break
			}
			if i == sg.Cmd && len(sg.Commands) > 0 {
				if cmd == "" {
					cmd = "0" // the generic form: a command that is none of Commands
				}
				args = append(args, cmd)
				continue
			}
			args = append(args, exampleArg(p))
		}
		for _, k := range keys {
			args = append(args, k.Name+"="+exampleArg(k))
		}
		return "p: " + sg.Name + "(" + strings.Join(args, ", ") + ")"
	}
	out := []string{write(sg.Params, nil, "")}
	for _, c := range sg.Commands {
		out = append(out, write(sg.CommandParams(c), c.Keys, c.Name))
	}
	return out
}

const tableProlog = `machine memory=128MiB
boot
process p uid=0
p: f = memfd_create("f", 0)
p: ftruncate(f, 8KiB)
p: mp = mmap(f, 0, 8KiB, PROT_READ|PROT_WRITE, MAP_SHARED)
`

// TestTableComplete checks the language's one table from both sides:
// every call, ioctl command and function the parser accepts has a handler,
// and every handler is reachable from a parseable call. Each example is
// written from the signature alone (as a generator of random scenarios
// would), must parse, and must run into its handler: it may fail with an
// errno, but never with "not in the runner's table" or a parameter the
// runner cannot decode.
func TestTableComplete(t *testing.T) {
	lang := Lang()
	var calls, funcs []string
	for _, sg := range lang.Syscalls() {
		calls = append(calls, sg.Name)
		c := lookupSyscall(sg.Name)
		if c == nil || c.run == nil || &c.Signature != sg {
			t.Errorf("system call %s is parseable but has no handler", sg.Name)
		}
	}
	for _, c := range syscalls {
		if sg, ok := lang.Syscall(c.Name); !ok || sg != &c.Signature {
			t.Errorf("system call %s has a handler but does not parse", c.Name)
		}
	}
	ioctl, _ := lang.Syscall("ioctl")
	for _, ic := range ioctlCommands {
		if ioctl.Command(ic.Name) != &ic.Command {
			t.Errorf("ioctl command %s has a description the parser does not know", ic.Name)
		}
	}
	for _, c := range ioctl.Commands {
		if ic := lookupIoctl(uint32(c.Value)); ic == nil || &ic.Command != c {
			t.Errorf("ioctl command %s is parseable but has no description", c.Name)
		}
	}
	for _, sg := range lang.Funcs() {
		funcs = append(funcs, sg.Name)
		if f := lookupFunc(sg.Name); f == nil || f.eval == nil || &f.Signature != sg {
			t.Errorf("function %s is parseable but has no handler", sg.Name)
		}
	}
	for _, f := range functions {
		if sg, ok := lang.Func(f.Name); !ok || sg != &f.Signature {
			t.Errorf("function %s has a handler but does not parse", f.Name)
		}
	}

	// Every form, written from its signature, parses and reaches its
	// handler.
	var src strings.Builder
	src.WriteString(tableProlog)
	for _, sg := range lang.Syscalls() {
		for _, call := range exampleCalls(sg) {
			src.WriteString(call + "\n")
		}
	}
	for _, sg := range lang.Funcs() {
		var args []string
		for _, p := range sg.Params {
			args = append(args, exampleArg(p))
		}
		e := sg.Name + "(" + strings.Join(args, ", ") + ")"
		if sg.Bare {
			e = sg.Name
		}
		src.WriteString("let x = " + e + "\n")
	}
	s, err := Parse("table.scn", []byte(src.String()))
	if err != nil {
		t.Fatalf("examples written from the signatures do not parse:\n%s\n%v", src.String(), err)
	}
	res := Run(s, Options{KeepGoing: true})
	if res.Internal {
		t.Fatalf("internal error:\n%s", res.Failures[len(res.Failures)-1].Format(res.File))
	}
	for _, f := range res.Failures {
		if strings.Contains(f.Message, "not in the runner's table") || strings.Contains(f.Message, "cannot decode") ||
			strings.Contains(f.Message, "the parser lets") {
			t.Errorf("%s", f.Format(res.File))
		}
	}
	if res.Stats.Statements != len(s.Stmts) {
		t.Errorf("%d of %d statements ran", res.Stats.Statements, len(s.Stmts))
	}

	// And nothing else parses.
	for _, src := range []string{"p: frobnicate(1)", "let x = frobnicate(1)"} {
		if _, err := Parse("x.scn", []byte("machine memory=1G\n"+src+"\n")); err == nil {
			t.Errorf("%s parses", src)
		}
	}
	t.Logf("%d system calls (%d ioctl commands), %d functions: %s; %s", len(calls), len(ioctl.Commands), len(funcs),
		strings.Join(calls, " "), strings.Join(funcs, " "))
}

// TestTableCheckedByParser makes sure the parser takes its checks from the
// table: a signature changed in the table changes what parses.
func TestTableCheckedByParser(t *testing.T) {
	c := lookupSyscall("close")
	saved := c.Params
	defer func() { c.Params = saved }()
	c.Params = append(slices.Clone(saved), scn.Param{Name: "EXTRA", Kind: scn.KindInt})
	_, err := Parse("x.scn", []byte("machine memory=1G\np: close(3)\n"))
	if err == nil || !strings.Contains(err.Error(), "close takes 2 arguments: close(FD, EXTRA)") {
		t.Errorf("err = %v", err)
	}
}

// TestFrameStates checks that the machine counts every frame state the
// parser accepts in frames(STATE).
func TestFrameStates(t *testing.T) {
	var m *machine.Machine
	var counts map[string]uint64
	testOnMachine = func(mm *machine.Machine) { m = mm }
	defer func() { testOnMachine = nil }()
	res := runSource(t, "t.scn", "machine memory=128MiB\nboot\nexpect frames(free) != 0\n", Options{
		Trace: func(st scn.Stmt) {
			if st.Pos().Line == 3 {
				counts = m.FrameCounts()
			}
		},
	})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	for _, s := range frameStates {
		if _, ok := counts[s]; !ok {
			t.Errorf("frames(%s) parses, but the machine counts no frame state %s (it counts %v)", s, s, sortedKeys(counts))
		}
	}
}

// TestExampleCalls checks the examples themselves, so that the test above
// can fail: they print every form.
func TestExampleCalls(t *testing.T) {
	ioctl, _ := Lang().Syscall("ioctl")
	got := fmt.Sprint(exampleCalls(ioctl))
	for _, want := range []string{"p: ioctl(f, 0)", `p: ioctl(f, FDBOX_PUT_FD, fd=f, name="/dev/null", flags=0)`, "p: ioctl(f, FDBOX_LIST)"} {
		if !strings.Contains(got, want) {
			t.Errorf("examples %s lack %s", got, want)
		}
	}
}
