package scenarios

import (
	"runtime/debug"
	"strings"
	"testing"

	"khosim/scenarios/scn"
)

// TestLongChain runs a let of 200,000 terms with the goroutine stack
// limited to 8 MiB (issue 16 #3: evaluating, printing or classifying a
// left-deep chain recursed once per term, and 2,000,000 terms overflowed
// the default 1 GB stack: "fatal error: stack overflow", exit 2). A chain
// is now walked along its spine: nothing recurses on its length.
func TestLongChain(t *testing.T) {
	const n = 200000
	defer debug.SetMaxStack(debug.SetMaxStack(8 << 20))
	src := termsScript(n) + "process p\np: m = memfd_create(\"m\", 0)\np: ftruncate(m, 0" + strings.Repeat(" + 1", n) + ")\nexpect size(p:m) == x\n"
	s, err := Parse("long.scn", []byte("machine memory=128MiB\nboot\n"+strings.TrimPrefix(src, "machine memory=128MiB\n")))
	if err != nil {
		t.Fatal(err)
	}
	let := s.Stmts[2].(*scn.Let)
	if v, ok := scn.Fold(let.Value); !ok || v != n {
		t.Errorf("Fold = %d, %v", v, ok)
	}
	if str := let.String(); len(str) != len("let x = 1")+4*(n-1) {
		t.Errorf("String is %d bytes", len(str))
	}
	res := Run(s, Options{})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	if res.Stats.Timings["let"] == 0 || res.Stats.Timings["ftruncate"] == 0 {
		t.Errorf("timings %v", res.Stats.Timings)
	}
}

// TestNoDumpForPassingCalls puts 200 memfds into a box (issue 16 #5: the
// runner built the driver's whole dump before every FDBox ioctl, in case
// it failed, which made n PUT_FDs cost n² time): no dump may be built for
// calls that pass, and one for a call that fails.
func TestNoDumpForPassingCalls(t *testing.T) {
	boxDumps = 0
	res := runSource(t, "put.scn", putFDScript(200), Options{})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	if boxDumps != 0 {
		t.Errorf("%d dumps built for calls that passed", boxDumps)
	}
	res = runSource(t, "put.scn", putFDScript(2)+"p: ioctl(box, FDBOX_PUT_FD, fd=m, name=\"f0\")\n", Options{})
	if res.Passed || boxDumps != 1 || !strings.Contains(res.Failures[0].Message, "boxes before the call:") {
		t.Errorf("passed=%v dumps=%d failures=%v", res.Passed, boxDumps, res.Failures)
	}
}
