package fault

import (
	"testing"

	"khosim/errno"
)

func TestNthAndTimes(t *testing.T) {
	in := New()
	if err := in.Arm(KHOWrite, 2, 3); err != nil {
		t.Fatal(err)
	}
	var got []bool
	for i := 0; i < 6; i++ {
		got = append(got, in.Hit(KHOWrite) != nil)
	}
	want := []bool{false, true, true, true, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("hit %d: fired=%v want %v (all %v)", i+1, got[i], want[i], got)
		}
	}
	if in.Armed(KHOWrite) || in.Fired(KHOWrite) != 3 {
		t.Fatalf("armed=%v fired=%d", in.Armed(KHOWrite), in.Fired(KHOWrite))
	}
}

func TestErrnoPerSite(t *testing.T) {
	for _, s := range Sites() {
		in := New()
		if err := in.Arm(s.Site, 1, 1); err != nil {
			t.Fatal(err)
		}
		if err := in.Hit(s.Site); err != s.Errno {
			t.Errorf("%s: got %v want %v", s.Site, err, s.Errno)
		}
	}
	if (*Injector)(nil).Hit(PageAlloc) != nil {
		t.Fatal("nil injector fired")
	}
}

func TestArmErrors(t *testing.T) {
	in := New()
	for _, tc := range []struct {
		site       Site
		nth, times int
	}{{"nope", 1, 1}, {FDT, 0, 1}, {FDT, 1, 0}} {
		if err := in.Arm(tc.site, tc.nth, tc.times); errno.Of(err) != errno.EINVAL {
			t.Errorf("Arm(%q,%d,%d) = %v, want EINVAL", tc.site, tc.nth, tc.times, err)
		}
	}
}
