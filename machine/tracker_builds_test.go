package machine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/uapi"
)

// newWorldTracker is newWorld with a kernel build of the given tracker.
func newWorldTracker(t *testing.T, tracker kbuild.Tracker, huge string) *world {
	b, err := kbuild.Default().With("kho", string(tracker))
	require.NoError(t, err)
	b.ShmemHuge = huge
	return newWorldBuild(t, Config{Memory: 256 * MiB}, b)
}

// TestMainlineTrackersFDBoxRoundTrip: `boot kho=bitmaps` and `boot
// kho=radix` hand a boxed memfd over (4 KiB and 2 MiB folios): the tracker
// alone describes the preserved memory (FDBox's "mem" properties are its
// own folio list), its pages count as frames(tracker) while KHO is active,
// and the next kernel, which reads them, owns none.
func TestMainlineTrackersFDBoxRoundTrip(t *testing.T) {
	for _, tracker := range []kbuild.Tracker{kbuild.TrackerBitmaps, kbuild.TrackerRadix} {
		for _, huge := range []string{"never", "always"} {
			t.Run(string(tracker)+"/"+huge, func(t *testing.T) {
				w := newWorldTracker(t, tracker, huge)
				vmm := w.proc("vmm")
				ram := w.memfd(vmm, "guest-ram", uapi.MFD_ALLOW_SEALING)
				require.NoError(t, vmm.Ftruncate(ram, 8*MiB))
				w.pwrite(vmm, ram, 0, 8*MiB, 11)
				box := w.createBox(vmm, "vm1")
				w.put(vmm, box, ram, "ram")
				w.seal(vmm, box)
				require.NoError(t, w.m.KHOActivate())
				w.check()
				require.NotZero(t, w.m.FrameCounts()["tracker"])
				w.kexec()
				require.True(t, w.m.Stats().HandedOver)
				require.Empty(t, w.m.KHO().HandoverRefused())
				require.Zero(t, w.m.FrameCounts()["tracker"], "the previous kernel's record is free memory")
				vmm2 := w.proc("vmm2")
				ram2 := w.mustGet(vmm2, w.openBox(vmm2, "vm1"), "ram")
				w.content(vmm2, ram2, 0, 8*MiB, 11)
				w.check()
			})
		}
	}
}

// TestMainlineTrackersSkewRefused: a kernel refuses a handover whose
// tracker layout it does not speak, whole: arrays and bitmaps share
// "kho-v1" and are told apart by "preserved-memory-map"; radix is
// "kho-v2". No box survives, nothing is reserved.
func TestMainlineTrackersSkewRefused(t *testing.T) {
	for _, c := range []struct {
		from, to kbuild.Tracker
		why      string
	}{
		{kbuild.TrackerArrays, kbuild.TrackerBitmaps, "kho=arrays"},
		{kbuild.TrackerBitmaps, kbuild.TrackerArrays, "kho=bitmaps"},
		{kbuild.TrackerBitmaps, kbuild.TrackerRadix, "kho-v1"},
		{kbuild.TrackerRadix, kbuild.TrackerBitmaps, "kho-v1"},
	} {
		t.Run(string(c.from)+"->"+string(c.to), func(t *testing.T) {
			w := newWorldTracker(t, c.from, "never")
			vmm := w.proc("vmm")
			ram := w.memfd(vmm, "guest-ram", uapi.MFD_ALLOW_SEALING)
			require.NoError(t, vmm.Ftruncate(ram, MiB))
			w.pwrite(vmm, ram, 0, MiB, 3)
			box := w.createBox(vmm, "vm1")
			w.put(vmm, box, ram, "ram")
			w.seal(vmm, box)
			require.NoError(t, w.m.KHOActivate())
			b, err := w.m.Build().With("kho", string(c.to))
			require.NoError(t, err)
			require.NoError(t, w.m.Kexec(b))
			w.check()
			require.Contains(t, w.m.KHO().HandoverRefused(), c.why)
			require.Empty(t, w.m.KHO().InRanges())
			require.Zero(t, w.m.FrameCounts()["preserved"])
		})
	}
}
