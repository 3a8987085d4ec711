package fuzz

import (
	"bytes"
	"strings"
	"testing"

	"khosim/scenarios"
)

// FuzzScenario runs the generator, the recording and the oracle on a seed:
// a finding fails the test with the scenario's text.
func FuzzScenario(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 4, 5} {
		f.Add(s, uint8(12))
	}
	f.Fuzz(func(t *testing.T, seed uint64, steps uint8) {
		sc := Generate(seed, Config{Steps: 1 + int(steps%24)})
		text, fd := sc.Record()
		if fd == nil {
			fd, _, _ = Check("f.scn", text)
		}
		if fd != nil {
			t.Fatalf("seed %d steps %d: %s\n%s", seed, steps, fd, text)
		}
	})
}

// FuzzExpr runs random expressions (not only parses them): none may
// panic, and an expression evaluated twice gives the same value.
func FuzzExpr(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 4, 5, 6} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		text, pairs := ExprScenario(seed, 12)
		script, err := scenarios.Parse("e.scn", []byte(text))
		if err != nil {
			t.Fatalf("seed %d: generated text does not parse: %v\n%s", seed, err, text)
		}
		res := scenarios.Run(script, scenarios.Options{KeepGoing: true})
		if res.Internal {
			t.Fatalf("seed %d: %s\n%s", seed, res.Failures[len(res.Failures)-1].Format("e.scn"), text)
		}
		failed := map[int]string{}
		for _, fl := range res.Failures {
			failed[fl.Line] = fl.Message
		}
		for _, p := range pairs {
			if _, bad := failed[p[0]]; !bad {
				if msg, bad := failed[p[1]]; bad {
					t.Fatalf("seed %d: an expression evaluated twice differs: line %d: %s\n%s", seed, p[1], msg, text)
				}
			}
		}
	})
}

func TestGenerateDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		a := render(Generate(seed, Config{Steps: 20}).stmts, false)
		b := render(Generate(seed, Config{Steps: 20}).stmts, false)
		if a != b {
			t.Fatalf("seed %d: two generations differ", seed)
		}
		if c := render(Generate(seed+100, Config{Steps: 20}).stmts, false); c == a {
			t.Fatalf("seeds %d and %d generate the same scenario", seed, seed+100)
		}
	}
}

// TestRecordedRoundTrips: a recorded scenario parses, prints as it reads
// (the printer round-trips) and replays to a pass, as khosim run would.
func TestRecordedRoundTrips(t *testing.T) {
	n := 6
	if testing.Short() {
		n = 2
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		sc := Generate(seed, Config{Steps: 15})
		text, fd := sc.Record()
		if fd != nil {
			t.Logf("seed %d: finding %s", seed, fd)
			continue
		}
		script, err := scenarios.Parse("r.scn", []byte(text))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		printed := script.String()
		again, err := scenarios.Parse("r.scn", []byte(printed))
		if err != nil || again.String() != printed || strings.Count(printed, "\n") != strings.Count(text, "\n") {
			t.Fatalf("seed %d: the printed script does not round-trip (%v):\n%s", seed, err, printed)
		}
		if res := scenarios.Run(script, scenarios.Options{}); !res.Passed {
			t.Fatalf("seed %d: recorded scenario does not replay: %s\n%s", seed, res.Failures[0].Format("r.scn"), text)
		}
		if !strings.Contains(text, "expect invariants") {
			t.Fatalf("seed %d: no audit in\n%s", seed, text)
		}
	}
}

// TestCheckFindsDivergence: a scenario whose observation is false under
// another tracker only is a divergence; one wrong as written is an
// expect finding; the reducer shrinks it to the statements that matter.
func TestCheckAndReduce(t *testing.T) {
	src := "machine memory=256MiB\nboot kho=arrays\nprocess p uid=0\np: m = memfd_create(\"m\", 0)\np: pwrite(m, 0, 8KiB, rand(1))\n" +
		"expect invariants\nlet x = 5\np: lseek(m, 7, SEEK_SET)\nexpect invariants\nexpect size(p:m) == 4KiB\nexpect invariants\n"
	f, _, _ := Check("t.scn", src)
	if f == nil || f.Kind != "expect" || f.Line != 10 {
		t.Fatalf("Check = %v, want an expect finding at line 10", f)
	}
	var log bytes.Buffer
	r := &Reducer{Progress: &log}
	out, rf := r.Reduce(src, f)
	if rf == nil || !rf.Same(f) {
		t.Fatalf("reduced finding %v, want %v", rf, f)
	}
	if n := strings.Count(out, "\n"); n > 5 {
		t.Fatalf("reduced to %d statements, want at most 5:\n%s\n%s", n, out, log.String())
	}
	if strings.Contains(out, "lseek") || strings.Contains(out, "let x") {
		t.Fatalf("reducer kept an irrelevant statement:\n%s", out)
	}
}

func TestVariant(t *testing.T) {
	src := "machine memory=1G\nboot fdbox=stash\nkho activate\nkexec\n"
	vs := variantsOf(src)
	if len(vs) != 2 {
		t.Fatalf("variants of a clean arrays scenario: %v", vs)
	}
	got := variant(src, vs[0])
	if want := "machine memory=1G\nboot fdbox=stash kho=bitmaps\nkho activate\nkexec\n"; got != want {
		t.Fatalf("variant:\n%s\nwant\n%s", got, want)
	}
	if v, ok := variantNamed(vs[1].name); !ok || v.from != "arrays" || v.to != "radix" {
		t.Fatalf("variantNamed(%q) = %v", vs[1].name, v)
	}
	for _, src := range []string{
		"machine memory=1G\nboot kho=bitmaps\nkexec kho=arrays\n", // two trackers
		"machine memory=1G\nboot\nfault slab\nkexec\n",            // faults
	} {
		if vs := variantsOf(src); len(vs) != 0 {
			t.Fatalf("variants of %q: %v", src, vs)
		}
	}
	if vs := variantsOf("machine memory=1G\nboot\nkexec\n"); len(vs) != 1 || vs[0].to != "bitmaps" {
		t.Fatalf("a kexec without activation compares arrays with bitmaps only: %v", vs)
	}
	if !activatesOnlyBeforeKexec("boot\nkho activate\nexpect invariants\nkexec\n") ||
		activatesOnlyBeforeKexec("boot\nkho activate\np: close(3)\nkexec\n") ||
		activatesOnlyBeforeKexec("boot\nkexec\n") {
		t.Fatal("activatesOnlyBeforeKexec")
	}
}

func TestSimpler(t *testing.T) {
	got := simpler(`p: pwrite(m, 8KiB, 3, "abc") -> EBADF`)
	want := []string{`p: pwrite(m, 8KiB, 3, "abc")`, `p: pwrite(m, 0, 3, "abc") -> EBADF`}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Fatalf("simpler: %q not among %q", w, got)
		}
	}
	for _, g := range got {
		if strings.Contains(g, `"ab`) && !strings.Contains(g, `"abc"`) {
			t.Fatalf("simpler changed a string: %q", g)
		}
	}
}
