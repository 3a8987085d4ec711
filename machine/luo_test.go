package machine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/luo"
	"khosim/uapi"
)

// Machine-level LUO round trips: the front-end wired by the machine, the
// reboot path run by Machine.Kexec, Machine.CheckInvariants with LUO's
// part.

func luoWorld(t testing.TB, cfg Config, kv ...string) *world {
	t.Helper()
	if cfg.Memory == 0 {
		cfg.Memory = 256 * MiB
	}
	m, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	b := kbuild.Default()
	b.LUO = true
	for i := 0; i+1 < len(kv); i += 2 {
		b, err = b.With(kv[i], kv[i+1])
		require.NoError(t, err)
	}
	require.NoError(t, Supported(b), "luo=on is built")
	require.NoError(t, m.Boot(b))
	return &world{t: t, m: m}
}

func (w *world) luoOpen(t *kernel.Task) int {
	w.t.Helper()
	return w.open(t, luo.DevPath)
}

func (w *world) luoCreate(t *kernel.Task, lu int, name string) int {
	w.t.Helper()
	a := &uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
	uapi.SetSessionName(&a.Name, name)
	_, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, a)
	require.NoError(w.t, err)
	return int(a.FD)
}

func (w *world) luoRetrieve(t *kernel.Task, lu int, name string) int {
	w.t.Helper()
	a := &uapi.LiveupdateIoctlRetrieveSession{Size: uapi.SizeofLiveupdateIoctlRetrieveSession}
	uapi.SetSessionName(&a.Name, name)
	_, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, a)
	require.NoError(w.t, err)
	return int(a.FD)
}

func (w *world) luoPreserve(t *kernel.Task, s, fd int, token uint64) error {
	_, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_PRESERVE_FD,
		&uapi.LiveupdateSessionPreserveFD{Size: uapi.SizeofLiveupdateSessionPreserveFD, FD: int32(fd), Token: token})
	return err
}

func (w *world) luoRetrieveFD(t *kernel.Task, s int, token uint64) int {
	w.t.Helper()
	a := &uapi.LiveupdateSessionRetrieveFD{Size: uapi.SizeofLiveupdateSessionRetrieveFD, Token: token}
	_, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_RETRIEVE_FD, a)
	require.NoError(w.t, err)
	return int(a.FD)
}

func (w *world) luoFinish(t *kernel.Task, s int) {
	w.t.Helper()
	_, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_FINISH, &uapi.LiveupdateSessionFinish{Size: uapi.SizeofLiveupdateSessionFinish})
	require.NoError(w.t, err)
}

func (w *world) usedFrames() uint64 {
	c := w.m.FrameCounts()
	return c["used"] + c["tracker"] + c["preserved"] // slab: see luo/harness_test.go used()
}

// TestLUOMachineRoundTrip: luo_kexec_simple through Machine.Kexec under
// every tracker khosim has: no `kho activate`, the reboot path finalizes
// KHO by itself; the memfd arrives with its data, size and position; the
// audit holds; nothing leaks.
func TestLUOMachineRoundTrip(t *testing.T) {
	for _, tr := range kexec.Trackers() {
		t.Run(string(tr.Name), func(t *testing.T) {
			w := luoWorld(t, Config{}, "kho", string(tr.Name))
			base := w.usedFrames()
			p := w.proc("vmm")
			lu := w.luoOpen(p)
			s := w.luoCreate(p, lu, "test-session")
			fd := w.memfd(p, "guest", 0)
			require.NoError(t, p.Ftruncate(fd, 3*MiB))
			w.pwrite(p, fd, 0, 3*MiB, 5)
			_, err := p.Lseek(fd, 12345, uapi.SEEK_SET)
			require.NoError(t, err)
			require.NoError(t, w.luoPreserve(p, s, fd, 0x1A))
			require.NoError(t, p.Close(fd))
			w.check()
			require.False(t, w.m.KHO().Active())

			w.kexec()
			require.True(t, w.m.Stats().HandedOver, "the reboot path finalized KHO")
			rb := w.m.Stats().LUOReboot
			require.Equal(t, luo.RebootStats{Sessions: 1, Files: 1, Folios: 768, Pages: 768, Bytes: 8 + 80 + 64, Freeze: rb.Freeze}, rb,
				"the blackout's LUO counts: deterministic")
			l := w.m.LUO()
			require.NotNil(t, l)
			require.Equal(t, uint64(1), l.LiveupdateNumber())
			p2 := w.proc("vmm2")
			lu2 := w.luoOpen(p2)
			s2 := w.luoRetrieve(p2, lu2, "test-session")
			fd2 := w.luoRetrieveFD(p2, s2, 0x1A)
			require.Equal(t, int64(3*MiB), w.size(p2, fd2))
			require.Equal(t, int64(12345), w.pos(p2, fd2))
			w.content(p2, fd2, 0, 3*MiB, 5)
			w.luoFinish(p2, s2)
			require.NoError(t, p2.Close(s2))
			w.check()
			require.NoError(t, p2.Close(fd2))
			require.NoError(t, p2.Close(lu2))
			require.Equal(t, base, w.usedFrames())
		})
	}
}

// TestLUOMachineRebootPathFailures: a luo_freeze fault makes kexec fail
// with EIO and a KHO finalize failure with EAGAIN; the kernel runs on,
// everything unfrozen, the files still preserved; a later kexec succeeds.
func TestLUOMachineRebootPathFailures(t *testing.T) {
	for _, tc := range []struct {
		site fault.Site
		want errno.Errno
	}{{fault.LUOFreeze, errno.EIO}, {fault.FDT, errno.EAGAIN}} {
		t.Run(string(tc.site), func(t *testing.T) {
			w := luoWorld(t, Config{})
			p := w.proc("vmm")
			lu := w.luoOpen(p)
			s := w.luoCreate(p, lu, "s")
			var fds []int
			for i := range 3 {
				fd := w.memfd(p, "m", 0)
				w.pwrite(p, fd, 0, 40*KiB, uint64(i+1))
				require.NoError(t, w.luoPreserve(p, s, fd, uint64(i)))
				fds = append(fds, fd)
			}
			k := w.k()
			require.NoError(t, w.m.Faults().Arm(tc.site, 2, 1))
			wantErr(t, tc.want, w.m.Kexec(w.m.Build()))
			require.Same(t, k, w.k(), "the kernel runs on")
			require.False(t, w.m.KHO().Active())
			require.Len(t, w.m.Layer().Live(), 3, "still preserved")
			require.Equal(t, errno.EPERM, errno.Of(p.Ftruncate(fds[0], 0)), "inodes still frozen")
			w.check()
			w.kexec()
			p2 := w.proc("vmm2")
			lu2 := w.luoOpen(p2)
			s2 := w.luoRetrieve(p2, lu2, "s")
			for i := range 3 {
				fd := w.luoRetrieveFD(p2, s2, uint64(i))
				w.content(p2, fd, 0, 40*KiB, uint64(i+1))
			}
			w.check()
		})
	}
}

// TestLUOAndFDBox: both front-ends in one kernel. The reboot path's own
// finalize (no `kho activate`) carries FDBox's sealed box too.
func TestLUOAndFDBox(t *testing.T) {
	w := luoWorld(t, Config{})
	p := w.proc("vmm")
	box := w.createBox(p, "vm1")
	ram := w.memfd(p, "ram", 0)
	w.pwrite(p, ram, 0, 1*MiB, 3)
	w.put(p, box, ram, "ram")
	w.seal(p, box)
	lu := w.luoOpen(p)
	s := w.luoCreate(p, lu, "state")
	st := w.memfd(p, "state", 0)
	w.pwrite(p, st, 0, 200*KiB, 4)
	require.NoError(t, w.luoPreserve(p, s, st, 7))
	w.kexec()

	p2 := w.proc("vmm2")
	b2 := w.openBox(p2, "vm1")
	ram2 := w.mustGet(p2, b2, "ram")
	w.content(p2, ram2, 0, 1*MiB, 3)
	lu2 := w.luoOpen(p2)
	s2 := w.luoRetrieve(p2, lu2, "state")
	st2 := w.luoRetrieveFD(p2, s2, 7)
	w.content(p2, st2, 0, 200*KiB, 4)
	w.check()
}

// TestLUO1GiB: preserve, kexec and retrieve of a 1 GiB memfd on a 2 GiB
// machine, with 4 KiB and 2 MiB folios. Skipped under -short. It logs the
// times (wall clock, for reporting) and the counts.
func TestLUO1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB round trip; run without -short")
	}
	for _, huge := range []string{"never", "always"} {
		t.Run(huge, func(t *testing.T) {
			w := luoWorld(t, Config{Memory: 2 * GiB, Seed: 1}, "shmem_huge", huge)
			p := w.proc("vmm")
			fd := w.memfd(p, "guest-ram", 0)
			require.NoError(t, p.Ftruncate(fd, GiB))
			w.pwrite(p, fd, 0, GiB, 7)
			before := w.hash(p, fd, 0, GiB)
			lu := w.luoOpen(p)
			s := w.luoCreate(p, lu, "vm")

			start := time.Now()
			require.NoError(t, w.luoPreserve(p, s, fd, 1))
			preserve := time.Since(start)
			ls := w.m.Layer().Stats()
			folios := w.m.Layer().Live()[0].Folios()

			require.NoError(t, w.m.Kexec(w.m.Build()))
			ks := w.m.Stats()
			rb := ks.LUOReboot
			w.check()

			p2 := w.proc("vmm2")
			lu2 := w.luoOpen(p2)
			s2 := w.luoRetrieve(p2, lu2, "vm")
			start = time.Now()
			fd2 := w.luoRetrieveFD(p2, s2, 1)
			retrieve := time.Since(start)
			require.Equal(t, before, w.hash(p2, fd2, 0, GiB))
			w.luoFinish(p2, s2)
			w.check()
			t.Logf("transparent_hugepage_shmem=%s: %d folios, memfd record %d bytes; preserve %v; kexec %v (reboot-path freeze %v: %d files, %d folios, %d LUO record bytes; scrubbed %d frames; KHO FDT %d bytes); boot initcalls (deserialize + claim) %v; retrieve %v",
				huge, folios, ls.BlobBytes, preserve, ks.KexecTime, rb.Freeze, rb.Files, rb.Folios, rb.Bytes,
				ks.ScrubbedFrames, ks.FDTBytes, ks.RestoreTime, retrieve)
		})
	}
}
