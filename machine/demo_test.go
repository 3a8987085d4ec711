package machine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"khosim/uapi"
)

// TestDemo1GiB is the RFC cover letter's demo at full size: a 1 GiB memfd
// on a 2 GiB machine survives kexec (fdbox create / kexec / fdbox restore
// / cmp). Skipped under -short. It logs the FDT size and the timings of
// activate, kexec and restore.
func TestDemo1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB round trip; run without -short")
	}
	for _, huge := range []string{"never", "always"} {
		t.Run(huge, func(t *testing.T) {
			w := newWorld(t, Config{Memory: 2 * GiB, Seed: 1}, huge)
			vmm := w.proc("vmm")
			ram := w.memfd(vmm, "guest-ram", 0)
			require.NoError(t, vmm.Ftruncate(ram, GiB))
			start := time.Now()
			w.pwrite(vmm, ram, 0, GiB, 7)
			t.Logf("write 1 GiB: %v", time.Since(start))
			before := w.hash(vmm, ram, 0, GiB)
			ctl := w.createBox(vmm, "vm1")
			w.put(vmm, ctl, ram, "ram")
			w.seal(vmm, ctl)

			require.NoError(t, w.m.KHOActivate())
			s := w.m.Stats()
			require.Equal(t, uint64(GiB), s.PreservedBytes)
			require.NoError(t, w.m.Kexec(w.m.Build()))
			s2 := w.m.Stats()
			t.Logf("transparent_hugepage_shmem=%s: %d folios, FDT %d bytes (%.1f bytes/folio); activate %v, kexec %v (scrubbed %d frames), restore %v",
				huge, s.PreservedFolios, s.FDTBytes, float64(s.FDTBytes)/float64(s.PreservedFolios),
				s.ActivateTime, s2.KexecTime, s2.ScrubbedFrames, s2.RestoreTime)

			vmm2 := w.proc("vmm2")
			box := w.openBox(vmm2, "vm1")
			ram2 := w.mustGet(vmm2, box, "ram")
			require.Equal(t, int64(GiB), w.size(vmm2, ram2))
			require.Equal(t, before, w.hash(vmm2, ram2, 0, GiB))
			w.content(vmm2, ram2, 0, GiB, 7)
			w.check()
			_ = uapi.O_RDWR
		})
	}
}
