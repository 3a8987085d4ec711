package compat

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatrix runs the whole catalogue: no pair breaks (every invariant
// holds in both kernels, no revived file is corrupt), a build hands over
// to itself whatever it carries, and the known refusals are the ones the
// spec's version skew rules give.
func TestMatrix(t *testing.T) {
	builds := Catalogue()
	require.GreaterOrEqual(t, len(builds), 12)
	cells := Matrix(builds)
	require.NoError(t, Check(cells))
	n := len(builds)
	find := func(from, to string) Cell {
		for i, c := range cells {
			if c.From == from && c.To == to {
				_ = i
				return c
			}
		}
		t.Fatalf("no pair %s -> %s", from, to)
		return Cell{}
	}
	for i := range builds {
		for _, o := range cells[i*n+i].Outcomes {
			want := "revived"
			if o.Frontend == "luo" && builds[i].Build.Memfd == 1 {
				want = "revived-lossy" // memfd-v1 carries no seals
			}
			require.Equal(t, want, o.Result, "%s -> itself: %s %s", builds[i].Name, o.Frontend, o.Why)
		}
	}
	// The kho-v1 hazard: arrays and bitmaps share the compatible, and
	// each refuses the other's layout rather than misread it.
	c := find("rfc", "rfc+kho=bitmaps")
	require.Equal(t, "refused", c.Outcomes[0].Result)
	require.Contains(t, c.Outcomes[0].Why, "preserved-memory-map")
	// A radix handover into a bitmaps kernel: nothing handed over.
	c = find("stateless", "6.19")
	require.Equal(t, "refused", c.Outcomes[0].Result)
	// memfd-v2 into a memfd=v1 kernel: LUO unavailable (EIO); memfd-v1
	// into memfd=v2: revived without seals.
	c = find("6.19+memfd=v2", "6.19")
	require.Equal(t, "refused", c.Outcomes[0].Result)
	require.Contains(t, c.Outcomes[0].Why, "EIO")
	c = find("6.19", "6.19+memfd=v2")
	require.Equal(t, "revived-lossy", c.Outcomes[0].Result)

	// The FDBox storage node: shmem-v3 (named) into a kernel that reads
	// up to v2 is refused by compatible; v2 into the default is revived.
	c = find("rfc", "rfc+fdbox_shmem=v2")
	require.Equal(t, "refused", c.Outcomes[0].Result)
	require.Contains(t, c.Outcomes[0].Why, `failed to recover fd "ram"`)
	c = find("rfc+fdbox_shmem=v2", "rfc")
	require.Equal(t, "revived", c.Outcomes[0].Result)

	var b bytes.Buffer
	Write(&b, builds, cells)
	require.Contains(t, b.String(), "Why (pairs old>new)")
}
