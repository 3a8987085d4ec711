package scenarios

import (
	"errors"
	"strings"
	"testing"

	"khosim/scenarios/scn"
)

// FuzzParse checks, for any input, that Parse does not panic; that a
// failed parse reports a sorted, non-empty ErrorList whose positions lie in
// the file; and that a successful parse prints (String) to source that
// parses back to the same tree (positions aside) and prints the same again.
//
// Seeds are the contract's example and every valid and invalid input of the
// table tests. Run it longer with
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s -parallel 1 ./scenarios/
func FuzzParse(f *testing.F) {
	f.Add(contractExample)
	for _, tc := range statementCases {
		f.Add(machineLine + bindings + tc.src + "\n")
	}
	for _, tc := range errorCases {
		f.Add(tc.src)
	}
	f.Add("machine memory=1G\nlet x = -(1 + 2) * 3 | 4 - -5\np: lseek(f, -4096, SEEK_END)\n")
	f.Add("machine memory=1G\r\np: write(f, 4, \"\\x00\\xff\\t\\\\\")\r\n")

	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("f.scn", []byte(src))
		if s == nil {
			t.Fatal("Parse returned a nil script")
		}
		lines := strings.Split(src, "\n")
		if err != nil {
			checkErrors(t, err, lines)
			return
		}
		if s.Machine == nil || len(s.Stmts) == 0 || s.Stmts[0] != s.Machine {
			t.Fatalf("valid script without a leading machine: %v", s.Stmts)
		}
		for _, st := range s.Stmts {
			p := st.Pos()
			if p.Line < 1 || p.Line > len(lines) || !strings.Contains(lines[p.Line-1], st.Source()) ||
				!strings.HasPrefix(lines[p.Line-1][p.Col-1:], st.Source()) {
				t.Fatalf("statement at %v has source %q, not in line %q", p, st.Source(), lines[max(0, min(p.Line, len(lines))-1)])
			}
		}
		roundTrip(t, s)
	})
}

func checkErrors(t *testing.T, err error, lines []string) {
	t.Helper()
	var list scn.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("error %v (%T) is not a non-empty ErrorList", err, err)
	}
	for i, e := range list {
		if e.File != "f.scn" || e.Msg == "" || e.Pos.Line < 1 || e.Pos.Line > len(lines) ||
			e.Pos.Col < 1 || e.Pos.Col > len(lines[e.Pos.Line-1])+1 {
			t.Fatalf("error %d out of the file (%d lines): %v", i, len(lines), e)
		}
		if i > 0 && e.Pos.Before(list[i-1].Pos) {
			t.Fatalf("errors not sorted:\n%v", list)
		}
		if !strings.HasPrefix(e.Error(), "f.scn:") {
			t.Fatalf("error %q lacks FILE:LINE:COL", e.Error())
		}
	}
}
