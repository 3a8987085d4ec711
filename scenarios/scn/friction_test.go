package scn

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fileErrs parses src and returns its errors' messages.
func fileErrs(t *testing.T, src []byte) []string {
	t.Helper()
	_, err := Parse("t.scn", src, nil)
	var l ErrorList
	if err != nil && !errors.As(err, &l) {
		t.Fatalf("not an ErrorList: %v", err)
	}
	var out []string
	for _, e := range l {
		out = append(out, e.Error())
	}
	return out
}

// TestBinaryInputIsOneError: a binary (a NUL byte, or bytes that are not
// UTF-8) is refused with one error, not one per byte.
func TestBinaryInputIsOneError(t *testing.T) {
	bin := []byte("machine memory=128MiB\n\x7fELF\x02\x01\x01\x00\x00\x00")
	for range 10000 {
		bin = append(bin, 0xff, 0x00, '(', '"')
	}
	errs := fileErrs(t, bin)
	if len(errs) != 1 || !strings.Contains(errs[0], "t.scn:2:8: not a scenario file: a NUL byte at offset 29") {
		t.Fatalf("%d errors, first %q", len(errs), errs[0])
	}
	errs = fileErrs(t, []byte("machine memory=128MiB\nboot \xc3\x28 \xa0\xa1 and more text to be long enough\n"))
	if len(errs) != 1 || !strings.Contains(errs[0], "a byte that is not UTF-8") {
		t.Fatalf("%q", errs)
	}
}

// TestErrorsAreCapped: past MaxErrors errors, one line says how many more.
func TestErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("machine memory=128MiB\nboot\n")
	for i := range 50 {
		fmt.Fprintf(&b, "p: bogus%d(\n", i)
	}
	errs := fileErrs(t, []byte(b.String()))
	if len(errs) != MaxErrors+1 || !strings.HasSuffix(errs[MaxErrors], ": and 30 more errors") {
		t.Fatalf("%d errors, last %q", len(errs), errs[len(errs)-1])
	}
}

// TestDidYouMean: a typo in a constant or a bound name gets the nearest.
func TestDidYouMean(t *testing.T) {
	src := "machine memory=128MiB\nboot\nprocess p uid=0\np: guest_ram = memfd_create(\"m\", MFD_ALLOW_SEALING)\n" +
		"p: fcntl(guest_ram, F_ADD_SEALS, F_SEAL_WRIT)\np: close(guest_rma)\np: close(QQQQQQQQQQ)\n"
	var errs []string
	for _, e := range fileErrs(t, []byte(src)) { // a nil Lang knows no calls: keep the names' errors
		if strings.Contains(e, "unknown name") {
			errs = append(errs, e)
		}
	}
	if len(errs) != 3 {
		t.Fatalf("%q", errs)
	}
	for i, want := range []string{"did you mean F_SEAL_WRITE?", "did you mean guest_ram?", ""} {
		if want == "" {
			if strings.Contains(errs[i], "did you mean") {
				t.Errorf("a far name got a suggestion: %s", errs[i])
			}
		} else if !strings.HasSuffix(errs[i], want) {
			t.Errorf("error %d: %s, want ...%s", i, errs[i], want)
		}
	}
	if got := Suggest("F_SEAL_WRIT", []string{"F_SEAL_GROW", "F_SEAL_WRITE"}); got != "F_SEAL_WRITE" {
		t.Errorf("Suggest: %q", got)
	}
}

// TestNameWithDash: `process vmm-a` is one error that says why.
func TestNameWithDash(t *testing.T) {
	errs := fileErrs(t, []byte("machine memory=128MiB\nboot\nprocess vmm-a uid=0\n"))
	if len(errs) != 1 || !strings.Contains(errs[0], `"vmm-a" is not a name: names are letters, digits and _`) || !strings.Contains(errs[0], `try "vmm_a"`) {
		t.Fatalf("%q", errs)
	}
}

// TestStringLengthAtParseTime: a string literal DATA of another length
// than a literal LEN is a parse error, not a failure after the setup.
func TestStringLengthAtParseTime(t *testing.T) {
	lang := NewLang([]*Signature{{Name: "pwrite", Params: []Param{{Name: "FD", Kind: KindInt}, {Name: "OFF", Kind: KindInt}, {Name: "LEN", Kind: KindInt}, {Name: "DATA", Kind: KindData}}}}, nil)
	_, err := Parse("t.scn", []byte("machine memory=128MiB\nboot\nprocess p\np: pwrite(3, 0, 10, \"short\")\np: pwrite(3, 0, 5, \"short\")\n"), lang)
	if err == nil || err.Error() != `t.scn:4:21: pwrite: the string is 5 bytes, LEN is 10` {
		t.Fatalf("%v", err)
	}
}
