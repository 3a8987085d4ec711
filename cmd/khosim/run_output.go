package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"khosim/scenarios"
)

// What `khosim run` tells a CI: one outcome per file named, whatever
// became of it, written as text with a totals line, as JSON records
// (--json), as TAP (--tap, kselftest's dialect) or as JUnit XML
// (--junit FILE).

// outcomeKind is what became of one file.
type outcomeKind string

const (
	outPassed     outcomeKind = "passed"
	outFailed     outcomeKind = "failed"
	outInternal   outcomeKind = "internal_error"
	outParseError outcomeKind = "parse_error"
	outMissing    outcomeKind = "missing" // cannot be read
	outNotRun     outcomeKind = "not_run" // another file's parse error stopped the run (no --keep-going)
)

// outcome is one file's result.
type outcome struct {
	file string
	kind outcomeKind
	// problem is the reason for a parse error, a missing file or a file
	// not run, as printed on stderr.
	problem string
	res     *scenarios.Result // passed, failed, internal_error
}

// ok reports whether the outcome counts as passed.
func (o outcome) ok() bool { return o.kind == outPassed }

// reason is the one line a TAP or JUnit report gives a file that did
// not pass.
func (o outcome) reason() string {
	switch {
	case o.res != nil && len(o.res.Failures) > 0:
		f := o.res.Failures[0]
		msg, _, _ := strings.Cut(f.Message, "\n")
		return fmt.Sprintf("line %d: %s", f.Line, msg)
	case o.problem != "":
		first, _, _ := strings.Cut(o.problem, "\n")
		return first
	}
	return string(o.kind)
}

// expandPatterns turns the command line's names into files: a file is
// itself; a directory is the .scn files in it; DIR/... (or ./...) is the
// .scn files under DIR at any depth, as `go test ./...` reads. Files of a
// directory are sorted; names that match nothing stay, to be reported
// missing. filter, if set, keeps the files whose path it matches (-run).
func expandPatterns(args []string, filter *regexp.Regexp) []string {
	var out []string
	for _, a := range args {
		var found []string
		if dir, ok := strings.CutSuffix(a, "..."); ok {
			dir = strings.TrimSuffix(dir, "/")
			if dir == "" {
				dir = "."
			}
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && strings.HasSuffix(p, ".scn") {
					found = append(found, p)
				}
				return nil
			})
			if len(found) == 0 {
				found = []string{a} // reported missing: the pattern matched nothing
			}
		} else if st, err := os.Stat(a); err == nil && st.IsDir() {
			ents, _ := os.ReadDir(a)
			for _, e := range ents {
				if !e.IsDir() && strings.HasSuffix(e.Name(), ".scn") {
					found = append(found, filepath.Join(a, e.Name()))
				}
			}
			if len(found) == 0 {
				found = []string{a}
			}
		} else {
			found = []string{a}
		}
		slices.Sort(found)
		for _, f := range found {
			if filter == nil || filter.MatchString(f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// totals is the last line of a run: "26 passed, 0 failed" and the other
// kinds when there are any.
func totals(outs []outcome) string {
	n := map[outcomeKind]int{}
	for _, o := range outs {
		n[o.kind]++
	}
	s := fmt.Sprintf("%d passed, %d failed", n[outPassed], n[outFailed])
	for _, k := range []outcomeKind{outInternal, outParseError, outMissing, outNotRun} {
		if n[k] > 0 {
			s += fmt.Sprintf(", %d %s", n[k], strings.ReplaceAll(string(k), "_", " "))
		}
	}
	return s
}

// writeTAP writes the outcomes as TAP version 13, the way kselftest
// reports its tests: "ok N - file", "not ok N - file # reason", and a
// skipped file "ok N - file # SKIP reason".
func writeTAP(w io.Writer, outs []outcome) {
	fmt.Fprintln(w, "TAP version 13")
	fmt.Fprintf(w, "1..%d\n", len(outs))
	for i, o := range outs {
		switch {
		case o.ok():
			fmt.Fprintf(w, "ok %d - %s\n", i+1, o.file)
		case o.kind == outNotRun:
			fmt.Fprintf(w, "ok %d - %s # SKIP %s\n", i+1, o.file, o.reason())
		default:
			fmt.Fprintf(w, "not ok %d - %s # %s: %s\n", i+1, o.file, strings.ReplaceAll(string(o.kind), "_", " "), o.reason())
		}
	}
	fmt.Fprintf(w, "# %s\n", totals(outs))
}

// junit* are JUnit XML's elements, as CI systems read them.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes the outcomes as one JUnit test suite, "khosim run",
// with a test case per file: a failed file is a <failure> with every
// failure's text, a parse error, missing file or internal error an
// <error>, a file not run <skipped>.
func writeJUnit(w io.Writer, outs []outcome) error {
	s := junitSuite{Name: "khosim run"}
	for _, o := range outs {
		c := junitCase{Name: o.file, Classname: "khosim.run"}
		var text strings.Builder
		if o.res != nil {
			c.Time = o.res.Stats.Wall.Seconds()
			for _, f := range o.res.Failures {
				fmt.Fprintln(&text, f.Format(o.file))
			}
		} else {
			text.WriteString(o.problem)
		}
		p := &junitProblem{Message: o.reason(), Type: string(o.kind), Text: text.String()}
		switch o.kind {
		case outPassed:
		case outFailed:
			c.Failure = p
			s.Failures++
		case outNotRun:
			c.Skipped = p
			s.Skipped++
		default:
			c.Error = p
			s.Errors++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(outs)
	doc := junitSuites{Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// jsonFailure is one failure in a --json record: the message's first line
// ("<statement>: <what happened>") and the state the runner dumped, apart.
type jsonFailure struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
	State   string `json:"state,omitempty"`
	Stack   string `json:"stack,omitempty"`
}

// jsonOutcome is the --json record of one file, whatever became of it.
type jsonOutcome struct {
	File     string              `json:"file"`
	Status   outcomeKind         `json:"status"`
	Passed   bool                `json:"passed"`
	Internal bool                `json:"internal_error"`
	Problem  string              `json:"problem,omitempty"`
	Failures []jsonFailure       `json:"failures"`
	Warnings []scenarios.Warning `json:"warnings"`
	Stats    *jsonStats          `json:"stats,omitempty"`
}

// jsonRecord builds a file's --json record.
func jsonRecord(o outcome) jsonOutcome {
	rec := jsonOutcome{File: o.file, Status: o.kind, Passed: o.ok(), Internal: o.kind == outInternal, Problem: o.problem, Failures: []jsonFailure{}, Warnings: []scenarios.Warning{}}
	if o.res != nil {
		rec.Warnings = append(rec.Warnings, o.res.Warnings...)
		full := jsonResult(o.res)
		rec.Stats = &full.Stats
		for _, f := range o.res.Failures {
			msg, state, _ := strings.Cut(f.Message, "\n")
			rec.Failures = append(rec.Failures, jsonFailure{Line: f.Line, Message: msg, State: state, Stack: f.Stack})
		}
	}
	return rec
}

// newJSONEncoder is the --json encoder: one record per line, and no HTML
// escaping (a message says "->", not "-\u003e").
func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
