package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"khosim/errno"
	"khosim/invariant"
	"khosim/scenarios"
	"khosim/scenarios/scn"
)

// Scenario is a generated scenario: its statements and what the
// recording run saw of them.
type Scenario struct {
	Seed  uint64
	stmts []*stmt
	// Faults is set when the scenario arms faults or corrupts the FDT:
	// where a fault fires depends on how many allocations each tracker
	// makes, so such a scenario is not compared across trackers.
	Faults bool
	// Runs counts the runs the recording and the check made; Steps the
	// statements they executed.
	Runs, Steps int
}

// Finding is a failure the oracle found.
type Finding struct {
	// Kind is "panic", "invariant", "lost" (in the recording: a file
	// handed over cleanly did not come back), "expect" (an expectation failed:
	// a handed-over file differs, or a replay observed another value),
	// "errno" (a statement's outcome differs from the recording's),
	// "other" (another failure of a statement), each prefixed with
	// "divergence:" when the scenario passes under its own tracker and
	// fails under another.
	Kind string
	// Stmt is the failing statement's kind: a call's name (and an
	// ioctl's command), "kexec", "kho activate", "expect", "expect
	// invariants", ...
	Stmt    string
	Line    int
	Message string
	// Source is the failing statement as written.
	Source string
	// Variant is the kernel tracker rotation that failed ("" for the
	// scenario as written).
	Variant string
}

// Same reports whether two findings fail the same way (kind and
// statement kind), the reducer's criterion.
func (f *Finding) Same(g *Finding) bool {
	if f == nil || g == nil || f.Kind != g.Kind || f.Stmt != g.Stmt {
		return false
	}
	// An expectation must be the same one: the reducer never edits
	// them, so another one failing is another failure.
	if strings.HasSuffix(f.Kind, "expect") {
		return f.Source == g.Source
	}
	return true
}

func (f *Finding) String() string {
	v := ""
	if f.Variant != "" {
		v = " under " + f.Variant
	}
	return fmt.Sprintf("%s at line %d (%s)%s: %s", f.Kind, f.Line, f.Stmt, v, firstLine(f.Message))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// render prints the statements, one a line; final turns observations
// into expectations of the values the recording saw.
func render(stmts []*stmt, final bool) string {
	var b strings.Builder
	for _, s := range stmts {
		b.WriteString(line(s, final))
		b.WriteByte('\n')
	}
	return b.String()
}

func line(s *stmt, final bool) string {
	switch {
	case final && s.role == roleObserve:
		return "expect " + s.expr + " == " + s.value
	case final && s.role == roleCount && s.errno == "" && s.value != "":
		return s.text + "\nexpect " + s.expr + " == " + s.value
	}
	if s.errno != "" {
		return s.text + " -> " + s.errno
	}
	return s.text
}

// failedWith matches a statement's errno failure.
var failedWith = regexp.MustCompile(`^(?:[a-z_]+|kho activate|kho deactivate) failed with (E[A-Z0-9]+)`)

// mismatch matches the runner's messages of an expectation that was
// evaluated and is false (run_expr.go's comparisons).
var mismatch = regexp.MustCompile(` != |^byte |, want |differs|has \d+ bytes|has more bytes`)
var wantErrno = regexp.MustCompile(`(?:succeeded|failed with E[A-Z0-9]+).*, want E[A-Z0-9]+$`)
var errnoWord = regexp.MustCompile(`\bE[A-Z0-9]{2,}\b`)

// errnoOf returns the errno a failed statement reports, "" if its
// failure is no errno of the simulated kernel.
func errnoOf(st scn.Stmt, msg string) string {
	rest := strings.TrimPrefix(firstLine(msg), st.Source()+": ")
	if m := failedWith.FindStringSubmatch(rest); m != nil && !strings.Contains(rest, ", want ") {
		return m[1]
	}
	if strings.HasPrefix(rest, "kexec failed: ") && !strings.Contains(rest, "cannot build") {
		for _, w := range errnoWord.FindAllString(rest, -1) {
			if _, ok := errno.Lookup(w); ok {
				return w
			}
		}
	}
	return ""
}

// runText parses and runs a scenario; trace, if set, receives the
// verbose output with a marker before every statement.
func runText(name, text string, keepGoing bool, verbose *bytes.Buffer) (*scn.Script, *scenarios.Result, error) {
	script, err := scenarios.Parse(name, []byte(text))
	if err != nil {
		return nil, nil, err
	}
	opts := scenarios.Options{KeepGoing: keepGoing}
	if verbose != nil {
		opts.Verbose = verbose
		opts.Trace = func(st scn.Stmt) { fmt.Fprintf(verbose, "\x00%d\n", st.Pos().Line) }
	}
	return script, scenarios.Run(script, opts), nil
}

// stmtAt returns the statement of script at line.
func stmtAt(script *scn.Script, line int) scn.Stmt {
	for _, st := range script.Stmts {
		if st.Pos().Line == line {
			return st
		}
	}
	return nil
}

// stmtKind names a statement's kind for Finding.Stmt.
func stmtKind(st scn.Stmt) string {
	switch st := st.(type) {
	case *scn.Syscall:
		if st.Name == "ioctl" && len(st.Args) > 1 {
			return "ioctl " + st.Args[1].Value.String()
		}
		return st.Name
	case *scn.KHO:
		if st.Activate {
			return "kho activate"
		}
		return "kho deactivate"
	case *scn.ExpectInvariants:
		return "expect invariants"
	case nil:
		return "?"
	}
	return st.Keyword()
}

// classify turns the first failure of a run into a finding.
func classify(script *scn.Script, res *scenarios.Result) *Finding {
	if res.Passed || len(res.Failures) == 0 {
		return nil
	}
	f := res.Failures[0]
	st := stmtAt(script, f.Line)
	fd := &Finding{Stmt: stmtKind(st), Line: f.Line, Message: f.Message}
	if st != nil {
		fd.Source = st.Source()
	}
	var v *invariant.Violation
	switch {
	case res.Internal:
		fd.Kind = "panic"
		fd.Message += "\n" + f.Stack
	case errors.As(f.Err, &v):
		fd.Kind = "invariant"
	default:
		switch st.(type) {
		case *scn.Expect:
			// A mismatch, not an expression that cannot be evaluated
			// (a process or resource gone): the reducer must not trade
			// one for the other.
			fd.Kind = "other"
			if mismatch.MatchString(strings.TrimPrefix(firstLine(f.Message), st.Source()+": ")) {
				fd.Kind = "expect"
			}
		case *scn.Syscall, *scn.KHO, *scn.Kexec, *scn.Reboot:
			// An errno other than the recorded one, or none where one
			// was recorded; a failure without an errno (no kernel
			// runs, an unknown resource) is another kind.
			fd.Kind = "other"
			if errnoOf(st, f.Message) != "" || wantErrno.MatchString(firstLine(f.Message)) {
				fd.Kind = "errno"
			}
		default:
			fd.Kind = "other"
		}
	}
	return fd
}

// Record runs a generated scenario and fixes what the generator could not
// know: the errno each failing statement returns becomes its `-> ERRNO`,
// statements that cannot run (on a resource whose binding failed) are
// dropped, and the observations take the values they had. It stops at a
// finding: a panic, a broken invariant, or a handed-over file that is not
// what it was. It returns the scenario text (for a finding, up to the
// failing statement) and the finding, if any.
func (sc *Scenario) Record() (string, *Finding) {
	stmts := sc.stmts
	for round := 0; round < 8; round++ {
		var out bytes.Buffer
		text := render(stmts, false)
		script, res, err := runText(sc.name(), text, true, &out)
		if err != nil {
			return text, &Finding{Kind: "parse", Stmt: "?", Message: err.Error()}
		}
		sc.Runs++
		sc.Steps += res.Stats.Statements
		failed := map[*stmt]bool{}
		drop := map[*stmt]bool{}
		for i, f := range res.Failures {
			idx := f.Line - 1
			if idx < 0 || idx >= len(stmts) {
				continue
			}
			s := stmts[idx]
			st := stmtAt(script, f.Line)
			failed[s] = true
			switch fd := classify(script, &scenarios.Result{Failures: res.Failures[i : i+1], Internal: res.Internal && i == len(res.Failures)-1}); {
			case fd.Kind == "panic", fd.Kind == "invariant":
				return render(applyDrops(stmts[:idx+1], drop), false), fd
			case s.role == roleOracle:
				if !anyFailed(s.deps, failed) {
					return render(applyDrops(stmts[:idx+1], drop), false), fd
				}
				drop[s] = true
			case s.role == roleMust && !anyFailed(s.deps, failed) && errnoOf(st, f.Message) != "":
				fd.Kind = "lost"
				return render(applyDrops(stmts[:idx+1], drop), false), fd
			case s.errno == "":
				if e := errnoOf(st, f.Message); e != "" {
					s.errno = e
					continue
				}
				drop[s] = true
			default:
				drop[s] = true
			}
		}
		if len(res.Failures) == 0 {
			sc.observe(stmts, script, out.String())
			sc.stmts = stmts
			return render(stmts, true), nil
		}
		stmts = applyDrops(stmts, drop)
	}
	// It did not settle: leave out what still fails.
	sc.stmts = stmts
	return render(stmts, true), &Finding{Kind: "unsettled", Stmt: "?", Message: "the recording did not settle in 8 runs"}
}

// applyDrops leaves out the dropped statements. A dropped binding stays a
// binding, of a variable, so that the statements naming it still parse
// (and fail at run time, to be dropped or to record EBADF).
func applyDrops(stmts []*stmt, drop map[*stmt]bool) []*stmt {
	var kept []*stmt
	for _, s := range stmts {
		if !drop[s] {
			kept = append(kept, s)
			continue
		}
		if m := bindsName.FindStringSubmatch(s.text); m != nil && !s.dropped {
			*s = stmt{text: "let " + m[1] + m[2] + " = 99", dropped: true}
			kept = append(kept, s)
		}
	}
	return kept
}

// bindsName matches a statement that binds a name.
var bindsName = regexp.MustCompile(`^(?:let (\w+) =|\w+: (\w+) = )`)

func anyFailed(deps []*stmt, failed map[*stmt]bool) bool {
	for _, d := range deps {
		if d == nil || failed[d] || d.errno != "" || d.dropped {
			return true
		}
	}
	return false
}

func (sc *Scenario) name() string { return fmt.Sprintf("fuzz-%d.scn", sc.Seed) }

// observe takes the values of the observations from a verbose run.
func (sc *Scenario) observe(stmts []*stmt, script *scn.Script, out string) {
	lines := map[int]string{}
	for _, chunk := range strings.Split(out, "\x00")[1:] {
		num, rest, _ := strings.Cut(chunk, "\n")
		var n int
		fmt.Sscan(num, &n)
		echo, _, _ := strings.Cut(rest, "\n")
		lines[n] = echo
	}
	for i, s := range stmts {
		if s.role != roleObserve && s.role != roleCount {
			continue
		}
		st := stmtAt(script, i+1)
		echo := strings.TrimPrefix(lines[i+1], st.Source())
		v, ok := strings.CutPrefix(echo, " = ")
		if !ok {
			if s.role == roleObserve {
				s.role = rolePlain
			}
			continue
		}
		s.value, _, _ = strings.Cut(v, " ")
	}
}

// A variant is the same scenario under another KHO tracker. Only a
// scenario that keeps one tracker throughout has variants (a kexec from
// one tracker to another may legitimately lose what the next kernel
// cannot read: docs/compat.md), and it is run under each other tracker.
// arrays and bitmaps both refuse preservation once KHO is active (kho
// finalize); radix is "stateless" (it preserves while active and hands
// over without an activation, docs/kho.md), so radix is compared with the
// others only for scenarios that activate KHO just before each kexec,
// where the models agree.
type variantMap struct {
	name   string
	from   string
	to     string
	onlyIf func(text string) bool
}

// trackers are the KHO trackers of kbuild.
var trackers = []string{"arrays", "bitmaps", "radix"}

var khoKey = regexp.MustCompile(`\bkho=(\w+)`)

// variantsOf returns the variants a scenario is compared under.
func variantsOf(text string) []variantMap {
	if hasFaults(text) {
		return nil
	}
	used := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "boot") && !khoKey.MatchString(l) {
			used["arrays"] = true
		}
		if strings.HasPrefix(l, "boot") || strings.HasPrefix(l, "kexec") {
			for _, m := range khoKey.FindAllStringSubmatch(l, -1) {
				used[m[1]] = true
			}
		}
	}
	if len(used) != 1 {
		return nil
	}
	var from string
	for t := range used {
		from = t
	}
	clean := activatesOnlyBeforeKexec(text)
	var vs []variantMap
	for _, to := range trackers {
		if to == from || (to == "radix" || from == "radix") && !clean {
			continue
		}
		vs = append(vs, variantMap{name: "kho=" + to + " for kho=" + from, from: from, to: to})
	}
	return vs
}

// variantNamed returns the variant of that name.
func variantNamed(name string) (variantMap, bool) {
	from, to, ok := parseVariantName(name)
	return variantMap{name: name, from: from, to: to}, ok
}

func parseVariantName(name string) (from, to string, ok bool) {
	a, b, ok := strings.Cut(name, " for ")
	return strings.TrimPrefix(b, "kho="), strings.TrimPrefix(a, "kho="), ok
}

// variant rewrites a scenario's tracker as v says (a boot without a kho=
// key gets the default's, arrays, first).
func variant(text string, v variantMap) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "boot") && !khoKey.MatchString(l) {
			l += " kho=arrays"
		}
		if strings.HasPrefix(l, "boot") || strings.HasPrefix(l, "kexec") {
			l = strings.ReplaceAll(l, "kho="+v.from, "kho="+v.to)
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// activatesOnlyBeforeKexec reports whether every kho statement is an
// activation that the next statement other than an audit, a let or an
// expect follows with kexec, and every kexec follows one.
func activatesOnlyBeforeKexec(text string) bool {
	pending := false
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "expect") || strings.HasPrefix(l, "let "):
			continue
		case strings.HasPrefix(l, "kho deactivate"):
			return false
		case strings.HasPrefix(l, "kho activate"):
			pending = true
			continue
		case strings.HasPrefix(l, "kexec"):
			if !pending {
				return false // radix hands over without an activation
			}
			pending = false
			continue
		case strings.HasPrefix(l, "reboot"):
			pending = false
			continue
		}
		if pending {
			return false
		}
	}
	return true
}

// hasFaults reports whether a scenario arms faults or corrupts the FDT.
func hasFaults(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "fault ") || strings.HasPrefix(l, "corrupt ") {
			return true
		}
	}
	return false
}

// Check runs a scenario as `khosim run` does (stopping at its first
// failure) and, when it passes and arms no faults, under each rotation of
// the KHO trackers: the metamorphic oracle. It returns the first finding,
// or nil; runs and steps count the work.
func Check(name, text string) (f *Finding, runs, steps int) {
	script, res, err := runText(name, text, false, nil)
	if err != nil {
		return &Finding{Kind: "parse", Stmt: "?", Message: err.Error()}, 0, 0
	}
	runs, steps = 1, res.Stats.Statements
	if f := classify(script, res); f != nil {
		return f, runs, steps
	}
	for _, v := range variantsOf(text) {
		vt := variant(text, v)
		if vt == text {
			continue
		}
		script, res, err := runText(name, vt, false, nil)
		if err != nil {
			return &Finding{Kind: "parse", Stmt: "?", Message: err.Error()}, runs, steps
		}
		runs++
		steps += res.Stats.Statements
		if f := classify(script, res); f != nil {
			if f.Kind != "panic" && f.Kind != "invariant" {
				f.Kind = "divergence:" + f.Kind
			}
			f.Variant = v.name
			return f, runs, steps
		}
	}
	return nil, runs, steps
}
