package invariant

import (
	"errors"
	"strings"
	"testing"
)

func TestViolationMessage(t *testing.T) {
	v := New("physmem", "free-page-refcount-zero", "pfn 0x10 refcount 1\n", "pfn %#x is free with refcount %d", 0x10, 1)
	want := "physmem: invariant \"free-page-refcount-zero\" broken: pfn 0x10 is free with refcount 1\npfn 0x10 refcount 1"
	if v.Error() != want {
		t.Fatalf("got %q\nwant %q", v.Error(), want)
	}
	if New("p", "n", "", "x").Error() != `p: invariant "n" broken: x` {
		t.Fatalf("no-dump form: %q", New("p", "n", "", "x").Error())
	}
}

func TestPanicCarriesViolation(t *testing.T) {
	defer func() {
		r := recover()
		v, ok := r.(*Violation)
		if !ok || v.Invariant != "file-live" || !strings.Contains(v.Error(), "file 3") {
			t.Fatalf("recovered %#v", r)
		}
	}()
	Panic("kernel", "file-live", "", "file %d released", 3)
}

func TestMust(t *testing.T) {
	Must(nil)
	err := New("k", "n", "", "d")
	defer func() {
		if r := recover(); !errors.Is(r.(error), err) {
			t.Fatalf("Must panicked with %v", r)
		}
	}()
	Must(err)
}
