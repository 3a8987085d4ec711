package fault

import (
	"slices"
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

// TestRearmReplaces pins what docs/scenarios.md says of arming a site
// that is already armed: the new plan replaces the old one (its count
// restarts from the new arm, the rest of the old plan is dropped), and
// Fired keeps counting across plans. Disarm drops a plan at once.
func TestRearmReplaces(t *testing.T) {
	in := New()
	must(t, in.Arm(PageAlloc, 1, 5))
	if in.Hit(PageAlloc) == nil {
		t.Fatal("first plan did not fire")
	}
	must(t, in.Arm(PageAlloc, 3, 1)) // replaces the 4 failures left
	var got []bool
	for range 5 {
		got = append(got, in.Hit(PageAlloc) != nil)
	}
	if want := []bool{false, false, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("after re-arm nth=3: fired %v, want %v", got, want)
	}
	if in.Fired(PageAlloc) != 2 {
		t.Errorf("Fired %d, want 2 (one per plan)", in.Fired(PageAlloc))
	}
	must(t, in.Arm(PageAlloc, 2, 1))
	in.Disarm(PageAlloc)
	if in.Hit(PageAlloc) != nil || in.Hit(PageAlloc) != nil || in.Armed(PageAlloc) {
		t.Error("a disarmed site fired")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
