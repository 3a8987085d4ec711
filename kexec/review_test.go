package kexec_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/kbuild"
	"khosim/machine"
)

// TestReviewNoScratchNoHandover: a kernel whose scratch reservation failed
// has KHO disabled (kho_enable = false in Linux). Activation must fail:
// otherwise the kexec would hand over an FDT without scratch ranges and
// the next kernel would place its early allocations (the memmap)
// anywhere, before it knows what is preserved.
func TestReviewNoScratchNoHandover(t *testing.T) {
	m, err := machine.New(machine.Config{Memory: 128 * MiB, ScratchBytes: 512 * MiB})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Boot(kbuild.Default()))
	require.Empty(t, m.Kernel().Scratch)
	c := &testClient{m: m}
	require.NoError(t, m.KHO().RegisterNotifier(c.notifier()))
	require.Equal(t, errno.EOPNOTSUPP, errno.Of(m.KHOActivate()))
	require.False(t, m.KHO().Active())
	require.Empty(t, c.events, "no notifier ran")
	require.NoError(t, m.CheckInvariants())
	require.NoError(t, m.Kexec(m.Build()))
	require.False(t, m.Stats().HandedOver)
	require.NoError(t, m.CheckInvariants())
}
