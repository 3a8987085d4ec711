package kbuild

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
)

func TestDefaultIsValidAndPrintsEveryKey(t *testing.T) {
	b := Default()
	require.NoError(t, b.Valid())
	require.Equal(t, "kho=arrays fdbox=stash luo=off memfd=v2 shmem_huge=never fdbox_shmem=v3 deferred_struct_page_init=off", b.String())
}

func TestWithRoundTripsEveryValue(t *testing.T) {
	for _, k := range Keys() {
		require.Contains(t, k.Values, Default().Value(k.Name), "default of %s", k.Name)
		for _, v := range k.Values {
			b, err := Default().With(k.Name, v)
			require.NoError(t, err, "%s=%s", k.Name, v)
			require.Equal(t, v, b.Value(k.Name))
			require.NoError(t, b.Valid())
		}
	}
}

func TestWithErrors(t *testing.T) {
	for _, tc := range []struct{ key, value, msg string }{
		{"kho", "lists", "kho=lists: want arrays, bitmaps, radix"},
		{"luo", "1", "luo=1: want on, off"},
		{"memfd", "v3", "memfd=v3: want v1, v2"},
		{"shmem_huge", "sometimes", "want never, always"},
		{"tracker", "radix", `unknown key "tracker"`},
	} {
		b, err := Default().With(tc.key, tc.value)
		require.ErrorIs(t, err, errno.EINVAL)
		require.ErrorContains(t, err, tc.msg)
		require.Equal(t, Default(), b, "a failed With changes nothing")
	}
}

func TestInheritAndDiff(t *testing.T) {
	old, err := Default().With("luo", "on")
	require.NoError(t, err)
	next, err := old.With("kho", "radix")
	require.NoError(t, err)
	require.True(t, next.LUO, "a key not given is inherited")
	require.Equal(t, []string{"kho=radix"}, old.Diff(next))
	last, err := next.With("kho", "bitmaps")
	require.NoError(t, err)
	require.Equal(t, TrackerBitmaps, last.KHO, "the last value of a key counts")
}

func TestReadsMemfd(t *testing.T) {
	v1, _ := Default().With("memfd", "v1")
	require.True(t, v1.ReadsMemfd(1))
	require.False(t, v1.ReadsMemfd(2))
	require.True(t, Default().ReadsMemfd(1))
	require.True(t, Default().ReadsMemfd(2))
	require.False(t, Default().ReadsMemfd(3))
}
