// Package invariant is how khosim's stateful packages report a broken
// invariant: a Violation names the invariant and carries a dump of the state
// behind it.
//
// Check functions (CheckInvariants in each package) return a *Violation, so
// that `expect invariants` in a scenario can report it as a failure with its
// line; code that finds an invariant broken in the middle of an operation
// panics with one (Panic), because that is a simulator bug.
package invariant

import (
	"fmt"
	"strings"
)

// Violation is a broken invariant.
type Violation struct {
	Package   string // the package that owns the state, e.g. "physmem"
	Invariant string // a short name, e.g. "free-page-refcount-zero"
	Detail    string // one line: what is wrong
	Dump      string // the state behind it, multi-line
}

func (v *Violation) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: invariant %q broken: %s", v.Package, v.Invariant, v.Detail)
	if v.Dump != "" {
		b.WriteString("\n")
		b.WriteString(strings.TrimRight(v.Dump, "\n"))
	}
	return b.String()
}

// New builds a Violation; detail is formatted with args.
func New(pkg, name, dump, detail string, args ...any) *Violation {
	return &Violation{Package: pkg, Invariant: name, Detail: fmt.Sprintf(detail, args...), Dump: dump}
}

// Panic panics with a Violation: for invariants found broken inside an
// operation, which are bugs in the simulator.
func Panic(pkg, name, dump, detail string, args ...any) {
	panic(New(pkg, name, dump, detail, args...))
}

// Must panics if err (a CheckInvariants result) is not nil.
func Must(err error) {
	if err != nil {
		panic(err)
	}
}
