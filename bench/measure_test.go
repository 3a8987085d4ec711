package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
)

// TestMeasureSmall measures one 64 MiB row at each order with two cycles
// (after one warm-up cycle at order 9) and checks that the row is
// consistent.
func TestMeasureSmall(t *testing.T) {
	for _, order := range []int{0, MaxOrder} {
		var log *os.File
		if testing.Verbose() {
			log = os.Stderr
		}
		opts := Options{Runs: 2, Seed: 1}
		if order == MaxOrder {
			opts.Warmup = 1
		}
		if log != nil {
			opts.Log = log
		}
		r, err := Measure(64*MiB, order, opts)
		require.NoError(t, err)
		require.Equal(t, uint64(64*MiB), r.SizeBytes)
		require.Equal(t, order, r.FolioOrder)
		require.Equal(t, uint64(64*MiB/4096)>>order, r.Pages)
		require.Equal(t, 2, r.Runs)
		require.Equal(t, opts.Warmup, r.Warmup)
		require.Positive(t, r.ActivateNS)
		require.Positive(t, r.KexecNS)
		require.Positive(t, r.RestoreNS)
		require.Positive(t, r.CopyOutNS)
		require.Positive(t, r.CopyInNS)
		require.Equal(t, r.CopyOutNS+r.CopyInNS, r.CopyNS)
		require.Equal(t, uint64(64*MiB), r.CopyBufferBytes)
		require.InDelta(t, float64(r.CopyNS)/float64(r.TotalNS()), r.CopyRatio, 1e-9)
		// The FDT holds at least the shmem-v2 arrays: 25 bytes per folio.
		require.GreaterOrEqual(t, r.MetadataBytes, 25*r.Pages)
		require.Less(t, r.MetadataBytes, 25*r.Pages+16*KiB)
		require.InDelta(t, float64(r.MetadataBytes)*16, r.MetadataPerGiB, 1e-6)
		t.Logf("%+v", r)
	}
}

// TestRigManySmall runs two handover cycles of 64 small memfds, with the
// full invariant audit after each, and checks every page.
func TestRigManySmall(t *testing.T) {
	r, err := NewRig(RigConfig{Files: 64, Size: 64 * KiB, Seed: 1})
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, uint64(64*16), r.Pages())
	require.Equal(t, uint64(4*MiB), r.Bytes())
	for i := range 2 {
		if i > 0 {
			_, err = r.Prepare()
			require.NoError(t, err)
		}
		_, _, _, meta, err := r.Cycle()
		require.NoError(t, err)
		require.Greater(t, meta, 25*r.Pages())
		require.NoError(t, r.M.CheckInvariants())
		spans, err := r.Spans()
		require.NoError(t, err)
		var n uint64
		for _, s := range spans {
			n += uint64(len(s))
		}
		require.Equal(t, r.Bytes(), n)
		require.Equal(t, r.Pages(), r.M.Stats().PreservedPages)
	}
}

func TestMachineSizing(t *testing.T) {
	require.Equal(t, uint64(0), ScratchBytes(4*GiB)%(2*MiB))
	require.GreaterOrEqual(t, ScratchBytes(5*GiB), uint64(5*GiB/64+64*MiB))
	m := MachineMemory(4 * GiB)
	require.Greater(t, m, uint64(4*GiB+4*GiB/64))
	require.Less(t, m, uint64(6*GiB))
}

// TestMeasureDesigns: every design over every tracker hands the rig's
// memfd over, and the deterministic counts say where each does its work:
// the FDBox designs serialize inside the blackout, LUO before it.
func TestMeasureDesigns(t *testing.T) {
	const size = 8 * MiB
	for _, d := range Designs {
		for _, tr := range []kbuild.Tracker{kbuild.TrackerArrays, kbuild.TrackerBitmaps, kbuild.TrackerRadix} {
			t.Run(string(d)+"/"+string(tr), func(t *testing.T) {
				row, err := Measure(size, 0, Options{Runs: 1, Seed: 1, Design: d, KHO: tr})
				require.NoError(t, err)
				require.Equal(t, string(d), row.Design)
				require.Equal(t, string(tr), row.KHO)
				folios := uint64(size / PageSize)
				if d == DesignLUO {
					require.GreaterOrEqual(t, row.Before.FoliosSerialized, folios)
					require.Less(t, row.Inside.FoliosSerialized, uint64(16))
				} else {
					require.Equal(t, folios, row.Inside.FoliosSerialized)
				}
				require.GreaterOrEqual(t, row.Inside.StructPagesWritten, folios)
				require.Equal(t, row.TotalNS(), row.BlackoutNS)
				require.Positive(t, row.AbortNS)
				if tr != kbuild.TrackerArrays {
					require.Positive(t, row.TrackerBytes)
				}
			})
		}
	}
}

// TestMeasurePreserveSmall: P4's measurement at a small size under every
// tracker: the file is preserved and finalized, the radix tree and the
// bitmaps have a record of their own, and the table shows the ratio line.
func TestMeasurePreserveSmall(t *testing.T) {
	var rows []PreserveRow
	for _, tr := range []kbuild.Tracker{"arrays", "bitmaps", "radix"} {
		r, err := MeasurePreserve(16*MiB, tr, Options{Seed: 1})
		require.NoError(t, err, tr)
		require.Equal(t, uint64(4096), r.Pages)
		require.Positive(t, r.ReserveNS)
		require.Positive(t, r.SerializeNS)
		require.Positive(t, r.MetadataBytes)
		if tr != "arrays" {
			require.Positive(t, r.TrackerBytes, tr)
		}
		rows = append(rows, r)
	}
	var buf strings.Builder
	require.NoError(t, WritePreserveTable(&buf, rows))
	require.Contains(t, buf.String(), "P4 16MiB reserve+serialize arrays : bitmaps : radix = ")
	require.Contains(t, buf.String(), "ratio 1.23")
}
