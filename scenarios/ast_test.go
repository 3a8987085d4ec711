package scenarios

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"khosim/scenarios/scn"
)

// dumpExpr prints an expression tree with its node types and resolved
// values, for table tests: int(1GiB=1073741824), const(O_RDWR=2),
// ident(ram), res(vmm:ram), word(vmm), str("a"), hash(...), (| X Y), (- X).
func dumpExpr(e scn.Expr) string {
	switch e := e.(type) {
	case *scn.IntLit:
		if e.Text == strconv.FormatUint(e.Value, 10) {
			return fmt.Sprintf("int(%d)", e.Value)
		}
		return fmt.Sprintf("int(%s=%d)", e.Text, e.Value)
	case *scn.StringLit:
		return "str(" + scn.Quote(e.Value) + ")"
	case *scn.Const:
		return fmt.Sprintf("const(%s=%d)", e.Name, e.Value)
	case *scn.Ident:
		return "ident(" + e.Name + ")"
	case *scn.ResRef:
		return "res(" + e.Proc + ":" + e.Res + ")"
	case *scn.Word:
		return "word(" + e.Name + ")"
	case *scn.Func:
		args := make([]string, len(e.Args))
		for i, a := range e.Args {
			args[i] = dumpExpr(a)
		}
		return e.Name + "[" + strings.Join(args, " ") + "]"
	case *scn.Unary:
		return "(" + e.Op.String() + " " + dumpExpr(e.X) + ")"
	case *scn.Binary:
		return "(" + e.Op.String() + " " + dumpExpr(e.X) + " " + dumpExpr(e.Y) + ")"
	}
	return fmt.Sprintf("?%T", e)
}

// dumpStmt prints a statement with every field of its node.
func dumpStmt(s scn.Stmt) string {
	switch s := s.(type) {
	case *scn.Machine:
		return fmt.Sprintf("machine memory=%d swap=%d seed=%d/%v scratch=%d%%/%dB",
			s.Memory, s.Swap, s.Seed, s.SeedSet, s.Scratch.Percent, s.Scratch.Bytes)
	case *scn.Boot:
		return "boot build=" + dumpBuild(s.Build)
	case *scn.Process:
		return fmt.Sprintf("process %s uid=%d/%v caps=%q mask=%#x", s.Name, s.UID, s.UIDSet, s.Caps, s.CapMask)
	case *scn.Exit:
		return "exit " + s.Name
	case *scn.KHO:
		return fmt.Sprintf("kho activate=%v errno=%d", s.Activate, s.Errno)
	case *scn.Kexec:
		return fmt.Sprintf("kexec build=%s errno=%d", dumpBuild(s.Build), s.Errno)
	case *scn.Reboot:
		return "reboot"
	case *scn.Fault:
		return fmt.Sprintf("fault %s nth=%d times=%d", s.Site, s.Nth, s.Times)
	case *scn.CorruptFDT:
		return fmt.Sprintf("corrupt off=%d len=%d", s.Offset, s.Len)
	case *scn.Syscall:
		var args []string
		for _, a := range s.Args {
			if a.Key != "" {
				args = append(args, a.Key+"="+dumpExpr(a.Value))
			} else {
				args = append(args, dumpExpr(a.Value))
			}
		}
		return fmt.Sprintf("call proc=%s res=%s %s[%s] errno=%d", s.Proc, s.Result, s.Name, strings.Join(args, " "), s.Errno)
	case *scn.Let:
		return "let " + s.Name + " " + dumpExpr(s.Value)
	case *scn.Expect:
		op := "!="
		if s.Equal {
			op = "=="
		}
		return "expect " + dumpExpr(s.X) + " " + op + " " + dumpExpr(s.Y)
	case *scn.ExpectInvariants:
		return "expect-invariants"
	case *scn.Snapshot:
		return "snapshot " + s.Name
	}
	return fmt.Sprintf("?%T", s)
}

func dumpBuild(keys []scn.BuildKey) string {
	var parts []string
	for _, k := range keys {
		parts = append(parts, k.Key+"="+k.Value)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// normalize returns a deep copy of the script's statements with every
// position and source text cleared, so that trees parsed from differently
// laid-out sources compare equal with reflect.DeepEqual.
func normalize(stmts []scn.Stmt) []scn.Stmt {
	out := make([]scn.Stmt, len(stmts))
	for i, s := range stmts {
		c := deepCopy(reflect.ValueOf(s))
		out[i] = c.Interface().(scn.Stmt)
	}
	return out
}

var (
	posType = reflect.TypeFor[scn.Pos]()
	locType = reflect.TypeFor[scn.Loc]()
)

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(deepCopy(v.Elem()))
		return c
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		c := reflect.New(v.Type()).Elem()
		c.Set(deepCopy(v.Elem()))
		return c
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			c.Index(i).Set(deepCopy(v.Index(i)))
		}
		return c
	case reflect.Struct:
		c := reflect.New(v.Type()).Elem()
		if v.Type() == posType || v.Type() == locType {
			return c // cleared
		}
		for i := range v.NumField() {
			c.Field(i).Set(deepCopy(v.Field(i)))
		}
		return c
	}
	return v
}

// TestNormalizeClearsPositions makes sure the round-trip comparison can
// fail: two statements differing only in position are equal once
// normalized, and differing in a value are not.
func TestNormalizeClearsPositions(t *testing.T) {
	a := &scn.Let{Loc: scn.Loc{At: scn.Pos{Line: 3, Col: 1}, Text: "let x = 1"}, Name: "x", Value: &scn.IntLit{At: scn.Pos{Line: 3, Col: 9}, Value: 1, Text: "1"}}
	b := &scn.Let{Loc: scn.Loc{At: scn.Pos{Line: 7, Col: 5}, Text: "let  x=1"}, Name: "x", Value: &scn.IntLit{At: scn.Pos{Line: 7, Col: 12}, Value: 1, Text: "1"}}
	c := &scn.Let{Name: "x", Value: &scn.IntLit{Value: 2, Text: "2"}}
	if !reflect.DeepEqual(normalize([]scn.Stmt{a}), normalize([]scn.Stmt{b})) {
		t.Error("positions not cleared")
	}
	if reflect.DeepEqual(normalize([]scn.Stmt{a}), normalize([]scn.Stmt{c})) {
		t.Error("different values compare equal")
	}
	if a.At != (scn.Pos{Line: 3, Col: 1}) {
		t.Error("normalize changed its input")
	}
}

// TestExprString checks that expressions print with just the parentheses
// they need, and that what they print parses back to the same tree.
func TestExprString(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`1 + 2 * 3`, `1 + 2 * 3`},
		{`(1 + 2) * 3`, `(1 + 2) * 3`},
		{`1 - (2 - 3)`, `1 - (2 - 3)`},
		{`(1 - 2) - 3`, `1 - 2 - 3`},
		{`1 + (2 + 3)`, `1 + (2 + 3)`},
		{`-(1 + 2)`, `-(1 + 2)`},
		{`- -1`, `--1`},
		{`-1 * 2`, `-1 * 2`},
		{`((O_RDWR))|O_CREAT|  O_EXCL`, `O_RDWR | O_CREAT | O_EXCL`},
		{`O_RDWR | (O_CREAT | O_EXCL)`, `O_RDWR | (O_CREAT | O_EXCL)`},
		{`(F_SEAL_WRITE | F_SEAL_GROW) + 1`, `(F_SEAL_WRITE | F_SEAL_GROW) + 1`},
		{`1GiB-4KiB`, `1GiB - 4KiB`},
		{`0x10`, `0x10`},
		{`"a\"b\\c\n\t\0\x01\xffé"`, `"a\"b\\c\n\t\0\x01\xffé"`},
		{`"\x41"`, `"A"`},
		{`hash(vmm:ram,0,  1GiB)`, `hash(vmm:ram, 0, 1GiB)`},
		{`zeros()`, `zeros`},
		{`frames( free )`, `frames(free)`},
		{`fds(vmm)`, `fds(vmm)`},
		{`EBUSY`, `EBUSY`},
	} {
		s, err := Parse("t.scn", []byte("machine memory=1G\nlet x = "+tc.src+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		e := s.Stmts[1].(*scn.Let).Value
		if got := e.String(); got != tc.want {
			t.Errorf("%s: String() = %s, want %s", tc.src, got, tc.want)
		}
		s2, err := Parse("t.scn", []byte("machine memory=1G\nlet x = "+e.String()+"\n"))
		if err != nil {
			t.Errorf("%s: reparse of %s: %v", tc.src, e, err)
			continue
		}
		if d1, d2 := dumpExpr(e), dumpExpr(s2.Stmts[1].(*scn.Let).Value); d1 != d2 {
			t.Errorf("%s: round trip changed the tree:\n%s\n%s", tc.src, d1, d2)
		}
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want uint64
		ok   bool
	}{
		{`1GiB - 4KiB`, 1<<30 - 4096, true},
		{`-1`, math.MaxUint64, true},
		{`0 - 4096`, math.MaxUint64 - 4095, true},
		{`O_RDWR | O_CREAT`, 0x42, true},
		{`EBUSY`, 16, true},
		{`2 * (3 + 4)`, 14, true},
		{`0x8000000000000000 * 2`, 0, true}, // wraps
		{`b`, 0, false},
		{`1 + b`, 0, false},
		{`size(vmm:ram)`, 0, false},
		{`"a"`, 0, false},
	} {
		s, err := Parse("t.scn", []byte(machineLine+bindings+"let x = "+tc.src+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		got, ok := scn.Fold(s.Stmts[len(s.Stmts)-1].(*scn.Let).Value)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Fold(%s) = %d, %v; want %d, %v", tc.src, got, ok, tc.want, tc.ok)
		}
	}
}

// TestStmtString checks the canonical form of statements whose printing
// normalizes what was written.
func TestStmtString(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`machine memory=2048M swap=0 seed=0 scratch=10%`, `machine memory=2GiB seed=0 scratch=10%`},
		{`machine memory=0x1001 swap=1T scratch=64MiB`, `machine memory=4097 swap=1TiB scratch=64MiB`},
		{`boot shmem_huge=within_size`, `boot shmem_huge=within_size`},
		{`process  p  caps=CAP_SYS_ADMIN|CAP_CHOWN uid=0`, `process p uid=0 caps=CAP_SYS_ADMIN|CAP_CHOWN`},
		{`fault kho_claim nth=1 times=4`, `fault kho_claim times=4`},
		{`corrupt fdt 0x40 0x8`, `corrupt fdt 64 8`},
		{`kho deactivate->ENOTSUP`, `kho deactivate -> EOPNOTSUPP`},
		{`p:r=dup( 3 )->EBADF`, `p: r = dup(3) -> EBADF`},
		{`p: ioctl(b,FDBOX_PUT_FD,fd=r,name="x",flags=0)`, `p: ioctl(b, FDBOX_PUT_FD, fd=r, name="x", flags=0)`},
		{`expect  size(p:r)!=0`, `expect size(p:r) != 0`},
		{`expect    invariants`, `expect invariants`},
	} {
		src := tc.src
		if !strings.HasPrefix(src, "machine") {
			src = machineLine + bindings + "let r = 3\n" + src
		}
		s, err := Parse("t.scn", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := s.Stmts[len(s.Stmts)-1].String(); got != tc.want {
			t.Errorf("%s: String() = %s, want %s", tc.src, got, tc.want)
		}
	}
}
