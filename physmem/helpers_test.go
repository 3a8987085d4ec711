package physmem

import (
	"errors"
	"fmt"
	"testing"

	"khosim/fault"
	"khosim/invariant"
)

// The tests use small local assertions that name the errno they expect
// (errors.Is) and work with *testing.T, *testing.B and *rapid.T alike.

// tb is what the assertions need: *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func noErr(t tb, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t tb, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("error %v, want %v", got, want)
	}
}

func eq[T comparable](t tb, got, want T, what string, args ...any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", fmt.Sprintf(what, args...), got, want)
	}
}

func isTrue(t tb, cond bool, what string, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf(what, args...)
	}
}

// newTestFrames maps a machine of n frames, closed when the test ends.
func newTestFrames(t testing.TB, n uint64) *Frames {
	t.Helper()
	f, err := NewFrames(n * PageSize)
	noErr(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// newTestMM boots a memory model over a fresh machine of n frames without
// running memblock_free_all; closed when the test ends.
func newTestMM(t testing.TB, n uint64, faults *fault.Injector) *MM {
	t.Helper()
	mm, err := NewMM(newTestFrames(t, n), faults)
	noErr(t, err)
	t.Cleanup(func() { mm.Close() })
	return mm
}

// bootedMM is newTestMM followed by memblock_free_all, with the invariants
// checked.
func bootedMM(t testing.TB, n uint64) *MM {
	t.Helper()
	mm := newTestMM(t, n, nil)
	noErr(t, mm.MemblockFreeAll())
	noErr(t, mm.CheckInvariants())
	return mm
}

// panicOf runs f and returns what it panicked with, or nil.
func panicOf(f func()) (got any) {
	defer func() { got = recover() }()
	f()
	return nil
}

// requireViolation asserts that f panics with a Violation of invariant name.
func requireViolation(t tb, name string, f func()) {
	t.Helper()
	got := panicOf(f)
	if got == nil {
		t.Fatalf("no panic, want invariant %q", name)
	}
	err, ok := got.(error)
	var v *invariant.Violation
	if !ok || !errors.As(err, &v) {
		t.Fatalf("panic %v is not an invariant.Violation", got)
	}
	if v.Package != pkg || v.Invariant != name {
		t.Fatalf("violation of %s/%q, want %q:\n%v", v.Package, v.Invariant, name, v)
	}
}

// requireCheckFails asserts that CheckInvariants reports invariant name.
func requireCheckFails(t tb, mm *MM, name string) {
	t.Helper()
	err := mm.CheckInvariants()
	var v *invariant.Violation
	if !errors.As(err, &v) {
		t.Fatalf("CheckInvariants = %v, want invariant %q", err, name)
	}
	if v.Invariant != name {
		t.Fatalf("CheckInvariants reports %q, want %q:\n%v", v.Invariant, name, v)
	}
}
