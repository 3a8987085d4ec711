package machine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/blackout"
	"khosim/kbuild"
)

// handoverOne runs the standard workload — a 4 MiB memfd, written — through
// one design and a kexec, and returns the kexec's accounting.
func handoverOne(t *testing.T, design string) blackout.Update {
	b := kbuild.Default()
	var err error
	switch design {
	case "seal":
		b, err = b.With("fdbox", "seal")
	case "luo":
		b, err = b.With("luo", "on")
	}
	require.NoError(t, err)
	w := newWorldBuild(t, Config{}, b)
	p := w.proc("vmm")
	fd := w.memfd(p, "ram", 0)
	w.pwrite(p, fd, 0, 4*MiB, 5)
	switch design {
	case "stash", "seal":
		box := w.createBox(p, "vm")
		w.put(p, box, fd, "ram")
		if design == "seal" {
			require.NoError(t, p.Close(fd))
		}
		w.seal(p, box)
		require.NoError(t, w.m.KHOActivate())
		w.kexec()
		p2 := w.proc("vmm2")
		box2 := w.openBox(p2, "vm")
		got := w.mustGet(p2, box2, "ram")
		w.content(p2, got, 0, 4*MiB, 5)
	case "luo":
		lu := w.luoOpen(p)
		s := w.luoCreate(p, lu, "vm")
		require.NoError(t, w.luoPreserve(p, s, fd, 7))
		w.kexec()
		p2 := w.proc("vmm2")
		lu2 := w.luoOpen(p2)
		s2 := w.luoRetrieve(p2, lu2, "vm")
		got := w.luoRetrieveFD(p2, s2, 7)
		w.content(p2, got, 0, 4*MiB, 5)
	}
	w.check()
	u := w.m.Updates()
	require.Len(t, u, 1)
	require.True(t, u[0].Ended, "%s: the file came back", design)
	require.Equal(t, 1, u[0].Carried)
	return u[0]
}

// TestBlackoutPerDesign: the same workload under the three designs shows,
// in deterministic counts, what each does before the blackout and inside
// it: the stash and seal serialize inside it (seal at SEAL, after the
// workload let go), LUO before it, at PRESERVE_FD; all three restore
// inside it.
func TestBlackoutPerDesign(t *testing.T) {
	const folios = 4 * MiB / 4096
	stash := handoverOne(t, "stash")
	require.Zero(t, stash.Before.FoliosSerialized)
	require.Equal(t, uint64(folios), stash.Inside.FoliosSerialized)
	require.Equal(t, uint64(folios), stash.Inside.PageCacheRemoved)
	require.Equal(t, uint64(folios), stash.Inside.PageCacheInserted)
	require.Equal(t, uint64(folios), stash.Inside.StructPagesWritten)
	require.Positive(t, stash.Inside.FDTBytes)

	seal := handoverOne(t, "seal")
	require.Zero(t, seal.Before.FoliosSerialized)
	require.Equal(t, uint64(folios), seal.Inside.FoliosSerialized, "SEAL serializes inside the blackout")
	require.Equal(t, uint64(folios), seal.Inside.PageCacheRemoved)
	require.Equal(t, uint64(folios), seal.Inside.StructPagesWritten)

	luo := handoverOne(t, "luo")
	// The file's folios and the pages of LUO's and memfd_luo's records.
	require.GreaterOrEqual(t, luo.Before.FoliosSerialized, uint64(folios), "LUO serializes before the blackout")
	require.Positive(t, luo.Before.RecordBytes)
	require.Less(t, luo.Inside.FoliosSerialized, uint64(8), "only LUO's own final records")
	require.Zero(t, luo.Inside.PageCacheRemoved, "memfd_luo keeps the page cache")
	require.Equal(t, uint64(folios), luo.Inside.PageCacheInserted)
	// The file's folios and its records' pages, claimed at boot.
	require.GreaterOrEqual(t, luo.Inside.StructPagesWritten, uint64(folios))
}
