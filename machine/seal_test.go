package machine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/kbuild"
	"khosim/uapi"
)

// newWorldBuild is newWorld for a kernel of build b.
func newWorldBuild(t testing.TB, cfg Config, b kbuild.Build) *world {
	t.Helper()
	if cfg.Memory == 0 {
		cfg.Memory = 256 * MiB
	}
	m, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Boot(b))
	return &world{t: t, m: m}
}

func sealBuild(t testing.TB) kbuild.Build {
	b, err := kbuild.Default().With("fdbox", "seal")
	require.NoError(t, err)
	return b
}

// TestSealLifecycle: fdbox=seal (Pratyush Yadav's proposal). PUT_FD leaves
// the fd; SEAL is EBUSY until the workload closed it, then serializes the
// file (preserved, out of the page cache) and drops the struct file; an
// activation then only writes the records, and its abort costs nothing;
// UNSEAL rebuilds the file, and the handover after a second SEAL revives
// it in the next kernel, whose box works as the stash's does.
func TestSealLifecycle(t *testing.T) {
	w := newWorldBuild(t, Config{}, sealBuild(t))
	require.Equal(t, kbuild.FDBoxSeal, w.m.FDBox().Lifecycle().Mode())
	p := w.proc("vmm")
	fd := w.memfd(p, "ram", uapi.MFD_ALLOW_SEALING)
	require.NoError(t, p.Ftruncate(fd, 4*MiB))
	w.pwrite(p, fd, 0, 3*MiB, 11)
	want := w.hash(p, fd, 0, 4*MiB)
	box := w.createBox(p, "vm1")
	w.put(p, box, fd, "ram")
	_, err := p.FD(fd)
	require.NoError(t, err, "PUT_FD leaves the fd installed")
	_, err = p.Ioctl(box, uapi.FDBOX_SEAL, nil)
	wantErr(t, errno.EBUSY, err) // the workload still holds the file
	w.check()
	require.NoError(t, p.Close(fd))
	w.seal(p, box)
	bfd := w.m.FDBox().Box("vm1").FD("ram")
	require.Nil(t, bfd.File(), "the struct file is dropped at SEAL")
	require.NotNil(t, bfd.Record())
	require.Equal(t, 768, w.m.KHO().PreservedFolios(), "serialized at SEAL, before any activation")
	w.check()

	// Activation writes the records; deactivation has nothing to undo.
	require.NoError(t, w.m.KHOActivate())
	w.check()
	used := w.m.FrameCounts()["used"]
	require.NoError(t, w.m.KHODeactivate())
	require.Equal(t, 768, w.m.KHO().PreservedFolios(), "the records stay")
	require.Less(t, w.m.FrameCounts()["used"], used, "only the FDT buffer went")
	w.check()

	// UNSEAL rebuilds the file; GET_FD hands it out with its contents.
	w.unseal(p, box)
	require.Zero(t, w.m.KHO().PreservedFolios())
	got := w.mustGet(p, box, "ram")
	require.Equal(t, want, w.hash(p, got, 0, 4*MiB))
	require.Equal(t, "memfd:ram", w.file(p, got).Name)
	w.check()

	// Again, across kexec.
	w.put(p, box, got, "ram")
	require.NoError(t, p.Close(got))
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	w.kexec()
	require.Equal(t, kbuild.FDBoxSeal, w.m.Build().FDBox)
	p2 := w.proc("vmm2")
	box2 := w.openBox(p2, "vm1") // and unseals it
	fd2 := w.mustGet(p2, box2, "ram")
	require.Equal(t, want, w.hash(p2, fd2, 0, 4*MiB))
	w.check()
}

// TestSealFailsCleanly: a SEAL whose serialization cannot get memory
// leaves the box unsealed and every file as it was; so does an UNSEAL
// that cannot rebuild (nothing is lost: the records stay).
func TestSealFailsCleanly(t *testing.T) {
	w := newWorldBuild(t, Config{}, sealBuild(t))
	p := w.proc("vmm")
	box := w.createBox(p, "b")
	var fds []int
	for i, name := range []string{"a", "b"} {
		fd := w.memfd(p, name, 0)
		w.pwrite(p, fd, 0, 64*KiB, uint64(i+1))
		w.put(p, box, fd, name)
		require.NoError(t, p.Close(fd))
		fds = append(fds, fd)
	}
	// A KHO that finalized refuses to preserve: SEAL fails, nothing
	// changed.
	require.NoError(t, w.m.KHOActivate())
	_, err := p.Ioctl(box, uapi.FDBOX_SEAL, nil)
	wantErr(t, errno.EBUSY, err)
	require.NoError(t, w.m.KHODeactivate())
	require.False(t, w.m.FDBox().Box("b").Sealed())
	for _, bfd := range w.m.FDBox().Box("b").FDs() {
		require.NotNil(t, bfd.File())
	}
	require.Zero(t, w.m.KHO().PreservedFolios())
	w.check()
	w.seal(p, box)
	w.unseal(p, box)
	for i, name := range []string{"a", "b"} {
		fd := w.mustGet(p, box, name)
		w.content(p, fd, 0, 64*KiB, uint64(i+1))
	}
	w.check()
}
