package scn

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
)

func TestOpApply(t *testing.T) {
	for _, tc := range []struct {
		op   Op
		x, y uint64
		want uint64
	}{
		{OpOr, 0x40, 0x2, 0x42},
		{OpAdd, math.MaxUint64, 2, 1},
		{OpSub, 1, 2, math.MaxUint64},
		{OpMul, 3, 1 << 30, 3 << 30},
		{OpNeg, 99, 1, math.MaxUint64},
	} {
		if got := tc.op.Apply(tc.x, tc.y); got != tc.want {
			t.Errorf("%v.Apply(%d, %d) = %d, want %d", tc.op, tc.x, tc.y, got, tc.want)
		}
	}
}

// testLang is a small language for the parser's own tests: a call with
// an fd and data sized by a length, one with commands and keys, a
// function of a resource and a bare one.
func testLang() *Lang {
	return NewLang([]*Signature{
		{Name: "put", Result: KindInt, Params: []Param{{Name: "FD", Kind: KindFD}, {Name: "LEN", Kind: KindInt}, {Name: "DATA", Kind: KindData, SizedBy: "LEN"}}},
		{Name: "ctl", Result: KindInt, Cmd: 1,
			Params:   []Param{{Name: "FD", Kind: KindFD}, {Name: "CMD", Kind: KindInt}},
			Keys:     []Param{{Name: "name", Kind: KindString, Optional: true}},
			Commands: []*Command{{Name: "FDBOX_SEAL", Value: constants["FDBOX_SEAL"]}, {Name: "FDBOX_GET_FD", Value: constants["FDBOX_GET_FD"], Keys: []Param{{Name: "name", Kind: KindString}}}}},
	}, []*Signature{
		{Name: "len", Result: KindInt, Params: []Param{{Name: "PROC:RES", Kind: KindRes}}},
		{Name: "nothing", Result: KindData, Bare: true},
	})
}

func parseErrs(t *testing.T, src string) []string {
	t.Helper()
	_, err := Parse("t.scn", []byte("machine memory=1G\n"+src), testLang())
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// TestParseWithLang checks that the parser takes calls, functions, their
// arity, kinds, keys and commands from the Lang it is given, and nothing
// else.
func TestParseWithLang(t *testing.T) {
	require.Empty(t, parseErrs(t, "let f = 3\np: n = put(f, 3, \"abc\")\np: ctl(f, FDBOX_GET_FD, name=\"x\")\np: ctl(n, 7)\nlet y = nothing\nexpect len(p:f) == 0\n"))
	require.Equal(t, []string{
		`t.scn:2:4: put takes 3 arguments: put(FD, LEN, DATA)`,
		`t.scn:3:4: unknown system call "open"`,
		`t.scn:4:4: ctl FDBOX_GET_FD needs name=`,
		`t.scn:5:23: ctl FDBOX_SEAL does not take name=`,
		`t.scn:6:9: unknown function "size"`,
		`t.scn:7:5: cannot bind nothing: it is a data generator`,
		`t.scn:8:12: len: PROC:RES must be a resource PROC:RES, got 3`,
	}, parseErrs(t, "p: put(3)\np: open(\"/x\", 0)\np: ctl(3, FDBOX_GET_FD)\np: ctl(3, FDBOX_SEAL, name=\"x\")\nlet x = size(p:m)\nlet nothing = 1\nexpect len(3) == 0\n"))
	s, err := Parse("t.scn", []byte("machine memory=1G\nlet y = nothing()\n"), testLang())
	require.NoError(t, err)
	require.Equal(t, "let y = nothing", s.Stmts[1].String())
}

// TestUnboundNames checks the contract's rule: a bare name used as a
// value must be a constant or bound earlier in the file.
func TestUnboundNames(t *testing.T) {
	require.Empty(t, parseErrs(t, "p: r = put(3, 1, \"a\")\np: put(r, 1, \"a\")\nq: put(r, O_RDWR, \"a\")\nlet v = r + 1\nlet v = v + 1\nexpect p:zz == 0\n"))
	require.Equal(t, []string{
		`t.scn:2:8: unknown name r: it is neither a constant nor bound earlier in the file (by let r = ... or PROC: r = CALL(...)); it is bound later, at line 3`,
		`t.scn:4:9: unknown name w: it is neither a constant nor bound earlier in the file (by let w = ... or PROC: w = CALL(...)); this statement binds it, for the lines after it`,
	}, parseErrs(t, "p: put(r, 1, \"a\")\np: r = put(3, 1, \"a\")\nlet w = w\n"))
	// A line with a syntax error reports that error only.
	require.Equal(t, []string{`t.scn:2:12: expected ")" or ",", found end of line`}, parseErrs(t, "p: put(x, 1\n"))
}

// TestBuildKeys checks boot and kexec keys against package kbuild, and
// ApplyBuild: the last of a key given twice counts, kexec inherits.
func TestBuildKeys(t *testing.T) {
	s, err := Parse("t.scn", []byte("machine memory=1G\nboot kho=bitmaps fdbox=seal kho=arrays\nkexec memfd=v1 -> EBUSY\n"), testLang())
	require.NoError(t, err)
	boot, kexec := s.Stmts[1].(*Boot), s.Stmts[2].(*Kexec)
	b, err := ApplyBuild(kbuild.Default(), boot.Build)
	require.NoError(t, err)
	require.Equal(t, "kho=arrays fdbox=seal luo=off memfd=v2 shmem_huge=never fdbox_shmem=v3 deferred_struct_page_init=off", b.String())
	b, err = ApplyBuild(b, kexec.Build)
	require.NoError(t, err)
	require.Equal(t, "kho=arrays fdbox=seal luo=off memfd=v1 shmem_huge=never fdbox_shmem=v3 deferred_struct_page_init=off", b.String())
	require.Equal(t, "kexec memfd=v1 -> EBUSY", kexec.String())
	_, err = ApplyBuild(b, []BuildKey{{Key: "kho", Value: "trees"}})
	require.ErrorContains(t, err, "want arrays, bitmaps, radix")
}

// TestLongChains builds a chain of a million operators and checks that
// printing, folding and walking it is linear and does not recurse on its
// length.
func TestLongChains(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(8 << 20))
	const n = 1000000
	var e Expr = &IntLit{Value: 1, Text: "1"}
	for i := 1; i < n; i++ {
		op := OpAdd
		if i%2 == 0 {
			op = OpSub
		}
		e = &Binary{X: e, Op: op, Y: &IntLit{Value: 1, Text: "1"}}
	}
	first, chain := BinaryChain(e.(*Binary))
	require.Equal(t, n-1, len(chain))
	require.Equal(t, "1", first.String())
	v, ok := Fold(e)
	require.True(t, ok)
	require.Equal(t, uint64(2), v) // 1 + 1 - 1 + 1 ... + 1
	require.Equal(t, 1+4*(n-1), len(e.String()))
	count := 0
	Walk(e, func(Expr) bool { count++; return true })
	require.Equal(t, 2*n-1, count)
	// A product on the right of a sum is its operand, parenthesized
	// where precedence needs it.
	sum := &Binary{X: &IntLit{Value: 1, Text: "1"}, Op: OpAdd, Y: &Binary{X: &IntLit{Value: 2, Text: "2"}, Op: OpAdd, Y: &IntLit{Value: 3, Text: "3"}}}
	require.Equal(t, "1 + (2 + 3)", sum.String())
	prod := &Binary{X: sum, Op: OpMul, Y: &IntLit{Value: 4, Text: "4"}}
	require.Equal(t, "(1 + (2 + 3)) * 4", prod.String())
	v, _ = Fold(prod)
	require.Equal(t, uint64(24), v)
}

// TestNewLangRejectsBadTables checks the table checks NewLang makes.
func TestNewLangRejectsBadTables(t *testing.T) {
	for name, calls := range map[string][]*Signature{
		"duplicate":            {{Name: "a"}, {Name: "a"}},
		"optional first":       {{Name: "a", Params: []Param{{Name: "X", Kind: KindInt, Optional: true}, {Name: "Y", Kind: KindInt}}}},
		"sized by nothing":     {{Name: "a", Params: []Param{{Name: "D", Kind: KindData, SizedBy: "LEN"}}}},
		"word in a call":       {{Name: "a", Params: []Param{{Name: "W", Kind: KindWord}}}},
		"unknown constant":     {{Name: "a", Params: []Param{{Name: "F", Kind: KindInt, Consts: []string{"O_NOPE"}}}}},
		"command not const":    {{Name: "a", Params: []Param{{Name: "CMD", Kind: KindInt}}, Commands: []*Command{{Name: "NOPE"}}}},
		"command key kind":     {{Name: "a", Params: []Param{{Name: "CMD", Kind: KindInt}}, Keys: []Param{{Name: "k", Kind: KindInt}}, Commands: []*Command{{Name: "FDBOX_SEAL", Value: constants["FDBOX_SEAL"], Keys: []Param{{Name: "k", Kind: KindString}}}}}},
		"command out of range": {{Name: "a", Cmd: 3, Commands: []*Command{{Name: "FDBOX_SEAL", Value: constants["FDBOX_SEAL"]}}}},
	} {
		require.Panics(t, func() { NewLang(calls, nil) }, name)
	}
}
