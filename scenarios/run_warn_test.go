package scenarios

import (
	"strings"
	"testing"
)

// TestWarnings: legal statements that rarely do what their author meant
// say so, under their line: an unsealed box at kho activate and kexec, a
// write cut at MAX_RW_COUNT, an MADV_PAGEOUT of pages not mapped, and one
// on a machine without swap.
func TestWarnings(t *testing.T) {
	src := `machine memory=4GiB swap=16MiB seed=1
boot
process p uid=0
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
p: ioctl(ctl, FDBOX_CREATE_BOX, name="open")
p: o = open("/dev/fdbox/open", O_RDWR)
p: b = memfd_create("b", 0)
p: ftruncate(b, 4KiB)
p: ioctl(o, FDBOX_PUT_FD, fd=b, name="b")
p: m = memfd_create("m", 0)
p: ftruncate(m, 64KiB)
p: map = mmap(m, 0, 64KiB, PROT_READ|PROT_WRITE, MAP_SHARED)
p: madvise(map, 0, 64KiB, MADV_PAGEOUT)
p: big = memfd_create("big", 0)
p: pwrite(big, 0, 2GiB, zeros)
kho activate
kexec
`
	res := runSource(t, "w.scn", src, Options{})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	want := []struct {
		line int
		msg  string
	}{
		{13, "madvise MADV_PAGEOUT moved nothing: none of its pages is mapped"},
		{15, "pwrite wrote 2147479552 of 2147483648 bytes: one write moves at most MAX_RW_COUNT"},
		{16, `kho activate: box "open" is not sealed: its 1 files (b, 4KiB) are not carried across kexec`},
		{17, `kexec: box "open" is not sealed`},
	}
	if len(res.Warnings) != len(want) {
		t.Fatalf("warnings: %+v", res.Warnings)
	}
	for i, w := range want {
		if got := res.Warnings[i]; got.Line != w.line || !strings.HasPrefix(got.Message, w.msg) {
			t.Errorf("warning %d: %+v, want line %d %q", i, got, w.line, w.msg)
		}
	}
}

// TestFramesEchoAsCounts: -v prints frames(...) as a count, never with a
// size suffix ("4096", not "4096 (4KiB)").
func TestFramesEchoAsCounts(t *testing.T) {
	var out strings.Builder
	res := runSource(t, "c.scn", "machine memory=256MiB seed=4\nboot\nlet a = frames(scratch)\nexpect frames(scratch) == a\n", Options{Verbose: &out})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	if !strings.Contains(out.String(), "let a = frames(scratch) = 4096\n") || !strings.Contains(out.String(), "expect frames(scratch) == a = ok (4096)\n") || strings.Contains(out.String(), "KiB)") {
		t.Fatalf("-v:\n%s", out.String())
	}
}
