package fuzz

import (
	"fmt"
	"strings"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

// ExprScenario draws a scenario that evaluates random expressions: a few
// files of random contents, then expressions built from the language's
// functions (scenarios.Lang().Funcs(), each argument drawn by its kind)
// and operators, each bound by `let` and evaluated again by `expect`, so
// that the runner's evaluation runs, not only the parser. It returns the
// text and, for each let/expect pair, the two line numbers: where the let
// succeeds, its expect must hold (evaluating an expression twice gives
// the same value).
func ExprScenario(seed uint64, n int) (string, [][2]int) {
	g := &gen{rnd: newRand(seed), aliases: map[int]int{}, tainted: map[int]bool{}, sealed: map[string]bool{}, build: map[string]string{}}
	g.lang = scenarios.Lang()
	var lines []string
	add := func(format string, args ...any) int {
		lines = append(lines, fmt.Sprintf(format, args...))
		return len(lines)
	}
	add("machine memory=256MiB%s", g.pick("", " swap=16MiB"))
	add("boot shmem_huge=%s", g.pick("never", "always"))
	add("process p uid=0")
	files := []string{}
	for i := range 1 + g.rnd.IntN(3) {
		f := fmt.Sprintf("m%d", i)
		files = append(files, f)
		add("p: %s = memfd_create(\"%s\", MFD_ALLOW_SEALING)", f, f)
		add("p: pwrite(%s, %d, %d, rand(%d))", f, g.rnd.IntN(3)*4096, 1+g.rnd.IntN(3<<20), i)
		if g.chance(50) {
			add("p: map%d = mmap(%s, 0, 2MiB, PROT_READ|PROT_WRITE, MAP_SHARED)", i, f)
			files = append(files, fmt.Sprintf("map%d", i))
			if g.chance(50) {
				add("p: madvise(map%d, 0, 2MiB, MADV_PAGEOUT)", i)
			}
		}
	}
	var pairs [][2]int
	for i := range n {
		e := g.expr(files, 3)
		l := add("let e%d = %s", i, e)
		x := add("expect %s == e%d", e, i)
		pairs = append(pairs, [2]int{l, x})
		if g.chance(20) {
			add("expect invariants")
		}
	}
	return strings.Join(lines, "\n") + "\n", pairs
}

// expr draws an integer expression of depth at most d.
func (g *gen) expr(files []string, d int) string {
	if d > 0 && g.chance(40) {
		op := g.pick("+", "-", "*", "|")
		return fmt.Sprintf("(%s %s %s)", g.expr(files, d-1), op, g.expr(files, d-1))
	}
	if d > 0 && g.chance(10) {
		return "-" + g.expr(files, d-1)
	}
	var fns []*scn.Signature
	for _, f := range g.lang.Funcs() {
		if f.Result == scn.KindInt {
			fns = append(fns, f)
		}
	}
	if g.chance(25) {
		return g.pick("0", "1", "4KiB", "0x7fffffffffffffff", "F_SEAL_WRITE", "18446744073709551615")
	}
	f := fns[g.rnd.IntN(len(fns))]
	var args []string
	for _, p := range f.Params {
		switch p.Kind {
		case scn.KindRes:
			args = append(args, "p:"+files[g.rnd.IntN(len(files))])
		case scn.KindWord:
			if len(p.Words) > 0 {
				args = append(args, p.Words[g.rnd.IntN(len(p.Words))])
			} else {
				args = append(args, "p")
			}
		case scn.KindInt:
			args = append(args, g.pick("0", "1", "4095", "4KiB", "2MiB", "3MiB + 1", "0x7ffffffffffff000", g.expr(files, 0)))
		default:
			args = append(args, "0")
		}
	}
	return fmt.Sprintf("%s(%s)", f.Name, strings.Join(args, ", "))
}
