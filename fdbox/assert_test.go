package fdbox

import (
	"fmt"
	"reflect"
	"strings"
)

// The tests use these small assertions with testify's names: testify
// v1.12's packages need go.yaml.in/yaml/v3, which go.sum does not list (and
// this package may not change go.mod). require is a value whose methods
// stop the test at the first failure, like testify's require.
var require requireT

// tb is what the assertions and the test environment need of *testing.T
// and *rapid.T.
type tb interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

type requireT struct{}

func fail(t tb, what string, msg []any) {
	t.Helper()
	if len(msg) > 0 {
		if f, ok := msg[0].(string); ok {
			what += ": " + fmt.Sprintf(f, msg[1:]...)
		}
	}
	t.Fatal(what)
}

func (requireT) NoError(t tb, err error, msg ...any) {
	t.Helper()
	if err != nil {
		fail(t, fmt.Sprintf("unexpected error: %v", err), msg)
	}
}

func (requireT) Error(t tb, err error, msg ...any) {
	t.Helper()
	if err == nil {
		fail(t, "expected an error", msg)
	}
}

func (requireT) Equal(t tb, want, got any, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		fail(t, fmt.Sprintf("not equal:\nwant: %#v\n got: %#v", want, got), msg)
	}
}

// EqualValues compares integers of any type by value, other values as Equal.
func (r requireT) EqualValues(t tb, want, got any, msg ...any) {
	t.Helper()
	w, wok := asInt(want)
	g, gok := asInt(got)
	if wok && gok {
		if w != g {
			fail(t, fmt.Sprintf("not equal: want %d, got %d", w, g), msg)
		}
		return
	}
	r.Equal(t, want, got, msg...)
}

func asInt(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(rv.Uint()), true
	}
	return 0, false
}

func (requireT) True(t tb, v bool, msg ...any) {
	t.Helper()
	if !v {
		fail(t, "expected true", msg)
	}
}

func (requireT) False(t tb, v bool, msg ...any) {
	t.Helper()
	if v {
		fail(t, "expected false", msg)
	}
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

func (requireT) Nil(t tb, v any, msg ...any) {
	t.Helper()
	if !isNil(v) {
		fail(t, fmt.Sprintf("expected nil, got %v", v), msg)
	}
}

func (requireT) NotNil(t tb, v any, msg ...any) {
	t.Helper()
	if isNil(v) {
		fail(t, "expected a value, got nil", msg)
	}
}

func (requireT) Len(t tb, v any, n int, msg ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		fail(t, fmt.Sprintf("length %d, want %d: %v", l, n, v), msg)
	}
}

func (r requireT) Empty(t tb, v any, msg ...any) {
	t.Helper()
	if !isNil(v) && reflect.ValueOf(v).Len() != 0 {
		fail(t, fmt.Sprintf("expected empty, got %v", v), msg)
	}
}

// contains reports whether a string holds a substring or a slice an
// element.
func contains(t tb, in, elem any) bool {
	t.Helper()
	if s, ok := in.(string); ok {
		return strings.Contains(s, elem.(string))
	}
	rv := reflect.ValueOf(in)
	for i := range rv.Len() {
		if reflect.DeepEqual(rv.Index(i).Interface(), elem) {
			return true
		}
	}
	return false
}

func (requireT) Contains(t tb, in, elem any, msg ...any) {
	t.Helper()
	if !contains(t, in, elem) {
		fail(t, fmt.Sprintf("%v does not contain %v", in, elem), msg)
	}
}

func (requireT) NotContains(t tb, in, elem any, msg ...any) {
	t.Helper()
	if contains(t, in, elem) {
		fail(t, fmt.Sprintf("%v contains %v", in, elem), msg)
	}
}
