package luo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSessionStringWithoutArray: a session with no file yet has no file
// array, and says so (it printed the empty range as [0x0-0xffffffffffffffff]).
func TestSessionStringWithoutArray(t *testing.T) {
	w, p := fixture(t)
	lu, _ := luoOpen(p)
	s, err := createSession(p, lu, "empty")
	require.NoError(t, err)
	require.Contains(t, w.l.Outgoing()[0].String(), `session "empty" (outgoing, 0 files, no file array)`)
	mfd := memfdWith(t, p, "m", "x")
	require.NoError(t, preserveFD(p, s, mfd, 1))
	require.Regexp(t, `session "empty" \(outgoing, 1 files, array \[0x[0-9a-f]+-0x[0-9a-f]+fff\]\)`, w.l.Outgoing()[0].String())
	require.NotContains(t, w.l.Dump(), "0xffffffffffffffff")
}
