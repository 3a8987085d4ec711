package blackout

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fakeClock() func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(time.Millisecond); return t }
}

func TestUpdateBeforeAndInside(t *testing.T) {
	m := New()
	m.now = fakeClock()
	m.Work().FoliosSerialized += 10 // preparation: before the blackout
	m.Lost("a")
	m.Work().FDTBytes += 100 // inside
	m.Lost("a")              // a second loss keeps the first mark
	m.Lost("b")
	m.Lost("gone")
	m.Regained("gone")
	m.Kexec([]string{"a", "b"})
	m.Work().StructPagesWritten += 7
	m.Back("b")
	m.Back("x") // not carried
	require.Len(t, m.Updates(), 1)
	require.False(t, m.Updates()[0].Ended)
	m.Back("a")
	m.Work().StructPagesWritten += 1000 // after: the next update's before
	u := m.Updates()
	require.Len(t, u, 1)
	require.True(t, u[0].Ended)
	require.Equal(t, 2, u[0].Carried)
	require.Equal(t, 2, u[0].Back)
	require.Equal(t, Counts{FoliosSerialized: 10}, u[0].Before)
	require.Equal(t, Counts{FDTBytes: 100, StructPagesWritten: 7}, u[0].Inside)
	require.Positive(t, u[0].InsideWall)

	m.Kexec(nil) // nothing carried: an empty update, ended at once
	u = m.Updates()
	require.Len(t, u, 2)
	require.True(t, u[1].Ended)
	require.Equal(t, Counts{StructPagesWritten: 1000}, u[1].Before)
}

func TestKexecWhileCarryingClosesTheUpdate(t *testing.T) {
	m := New()
	m.now = fakeClock()
	m.Kexec([]string{"a"})
	m.Work().FramesAllocated += 3
	m.Kexec([]string{"c"})
	u := m.Updates()
	require.Len(t, u, 2)
	require.False(t, u[0].Ended)
	require.Zero(t, u[0].Back)
	require.Equal(t, Counts{FramesAllocated: 3}, u[0].Inside)
	require.False(t, u[1].Ended, "in progress")
}
