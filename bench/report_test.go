package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"64MiB": 64 * MiB, "256mib": 256 * MiB, "1GiB": GiB, "4G": 4 * GiB, "2m": 2 * MiB,
		"4096": 4096, "8KiB": 8 * KiB, " 1 GiB ": GiB, "1TiB": 1 << 40, "3gb": 3 * GiB,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "GiB", "1XB", "-1GiB", "1.5GiB", "99999999999999999999", "17179869184TiB"} {
		_, err := ParseSize(in)
		require.Error(t, err, in)
	}
}

func TestParseSizesAndOrders(t *testing.T) {
	s, err := ParseSizes("64MiB,256MiB,1GiB,4GiB")
	require.NoError(t, err)
	require.Equal(t, DefaultSizes, s)
	for _, bad := range []string{"1MiB", "0", "64MiB,", "3MiB", "x"} {
		_, err := ParseSizes(bad)
		require.Error(t, err, bad)
	}
	o, err := ParseOrders("0,9")
	require.NoError(t, err)
	require.Equal(t, DefaultOrders, o)
	o, err = ParseOrders(" 9 ")
	require.NoError(t, err)
	require.Equal(t, []int{9}, o)
	for _, bad := range []string{"1", "0,2", "", "a", "10"} {
		_, err := ParseOrders(bad)
		require.Error(t, err, bad)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[uint64]string{64 * MiB: "64MiB", 4 * GiB: "4GiB", 3000: "3000B", 12 * KiB: "12KiB", 0: "0B"} {
		require.Equal(t, want, FormatSize(n))
	}
	require.Equal(t, "6.0MiB", humanBytes(6*MiB))
	require.Equal(t, "1.50GiB", humanBytes(1.5*GiB))
	require.Equal(t, "512B", humanBytes(512))
}

// row builds a measured row with round figures.
func row(size uint64, order int, perPageNS, copyNS int64) Row {
	r := NewRow(size, order)
	r.Design, r.KHO = "stash", "arrays"
	r.ActivateNS = perPageNS * int64(r.Pages) / 2
	r.KexecNS = perPageNS * int64(r.Pages) / 4
	r.RestoreNS = perPageNS * int64(r.Pages) / 4
	r.MetadataBytes = 25 * size / PageSize
	r.CopyOutNS, r.CopyInNS = copyNS/2, copyNS/2
	r.Runs = 3
	r.finish()
	return r
}

func TestRowDerived(t *testing.T) {
	r := NewRow(4*GiB, 0)
	require.Equal(t, uint64(1<<20), r.Pages)
	r = NewRow(4*GiB, 9)
	require.Equal(t, uint64(2048), r.Pages)
	r = NewRow(64*MiB, 9)
	require.Equal(t, uint64(32), r.Pages)

	r = row(GiB, 0, 100, 1_000_000_000)
	require.Equal(t, int64(100*r.Pages), r.TotalNS())
	require.InDelta(t, 100, r.PerPage(r.TotalNS()), 1e-9)
	require.Equal(t, int64(1_000_000_000), r.CopyNS)
	require.InDelta(t, 1e9/float64(100*r.Pages), r.CopyRatio, 1e-9)
	require.InDelta(t, 25*GiB/PageSize, r.MetadataPerGiB, 1e-6)
	require.Zero(t, Row{}.PerPage(5))
}

func TestWriteJSONFieldNames(t *testing.T) {
	rows := []Row{row(64*MiB, 0, 100, 5e7), row(64*MiB, 9, 1000, 5e7)}
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, rows))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	for i, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		for _, k := range []string{"size_bytes", "folio_order", "pages", "activate_ns", "kexec_ns", "restore_ns", "metadata_bytes", "copy_ns",
			"design", "kho", "blackout_ns", "before_ns", "abort_ns", "before_blackout", "inside_blackout", "tracker_bytes"} {
			require.Contains(t, m, k, "line %d", i)
		}
		require.EqualValues(t, rows[i].Pages, m["pages"])
		require.EqualValues(t, rows[i].FolioOrder, m["folio_order"])
		var back Row
		require.NoError(t, json.Unmarshal([]byte(l), &back))
		require.Equal(t, rows[i], back)
	}
}

func TestWriteTable(t *testing.T) {
	rows := []Row{row(64*MiB, 0, 120, 20e6), row(4*GiB, 9, 30000, 2.4e9)}
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, rows))
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, strings.Fields(strings.ReplaceAll(TableHeader, "\t", " ")), strings.Fields(lines[0]))
	f := strings.Fields(lines[1])
	require.Equal(t, []string{"64MiB", "0", "stash", "arrays", "16384"}, f[:5])
	require.Equal(t, "120", f[10]) // blackout ns/page
	f = strings.Fields(lines[2])
	require.Equal(t, []string{"4GiB", "9", "stash", "arrays", "2048"}, f[:5])
	require.Equal(t, "25.0MiB", f[12]) // 25 B/page * 1Mi pages
	require.Equal(t, "6.2MiB", f[13])
	require.Equal(t, "-", f[len(f)-1]) // no floor measured
	require.Contains(t, lines[2], "2.40s")
	// All data lines are as wide as the header (right-aligned columns).
	require.Equal(t, len([]rune(lines[0])), len([]rune(lines[1])))
	require.Equal(t, len([]rune(lines[0])), len([]rune(lines[2])))
}

func TestFormatters(t *testing.T) {
	require.Equal(t, "2.40s", fmtDur(2.4e9))
	require.Equal(t, "123ms", fmtDur(123e6))
	require.Equal(t, "12.3ms", fmtDur(12.3e6))
	require.Equal(t, "45µs", fmtDur(45e3))
	require.Equal(t, "999ns", fmtDur(999))
	require.Equal(t, "1/12.5", fmtRatio(12.5))
	require.Equal(t, "1/250", fmtRatio(250.2))
	require.Equal(t, "-", fmtRatio(0))
	require.Equal(t, "7.5", fmtPerPage(7.5))
	require.Equal(t, "1234", fmtPerPage(1234.4))
}

func TestSummarize(t *testing.T) {
	rows := []Row{
		row(64*MiB, 0, 100, 20e6), row(4*GiB, 0, 120, 2.4e9),
		row(64*MiB, 9, 100000, 20e6), row(4*GiB, 9, 300000, 2.4e9),
	}
	// The same sizes under bitmaps, order 0 only: cheaper, with a tracker
	// record of 32 KiB per GiB.
	b0, b1 := row(64*MiB, 0, 90, 20e6), row(4*GiB, 0, 100, 2.4e9)
	b0.KHO, b1.KHO = "bitmaps", "bitmaps"
	b0.TrackerBytes, b1.TrackerBytes = 2*KiB, 128*KiB
	rows[3].FloorNS = 400e6 // order 9: 614 ms of blackout against a 400 ms floor
	for i := range rows {
		rows[i].finish()
	}
	b0.finish()
	b1.finish()
	rows = append(rows, b0, b1)
	s := Summarize(rows, 5*GiB)
	require.Len(t, s.Scaling, 3)
	require.Equal(t, 0, s.Scaling[0].Order)
	require.InDelta(t, 1.2, s.Scaling[0].Ratio, 1e-9)
	require.True(t, s.Scaling[0].Flat)
	require.Equal(t, "bitmaps", s.Scaling[1].KHO)
	require.InDelta(t, 100.0/90, s.Scaling[1].Ratio, 1e-9)
	require.InDelta(t, 3, s.Scaling[2].Ratio, 1e-9)
	require.False(t, s.Scaling[2].Flat)

	byName := map[string]Verdict{}
	for _, v := range s.Verdicts {
		byName[v.Name] = v
	}
	// P1: bitmaps at 4 GiB order 0: 2.4 s of copy against 100 ns * 1Mi
	// pages = 105 ms: 1/22.9, ok (the arrays row is reported beside it).
	p1 := byName["P1 4GiB order 0: blackout vs two memcpys, best of bitmaps/radix"]
	require.True(t, p1.Measured && p1.OK, p1.Got)
	require.Contains(t, p1.Got, "stash kho=arrays 1/19.1, stash kho=bitmaps 1/22.9")
	// P1': 614 ms against a 400 ms floor: 1.54x, missed.
	p1f := byName["P1' 4GiB order 9 stash kho=arrays: blackout vs the struct-page floor"]
	require.True(t, p1f.Measured)
	require.False(t, p1f.OK)
	require.Contains(t, p1f.Got, "1.54x")
	// P2 per group; P3 per tracker: bitmaps 32 KiB/GiB ok, radix not run.
	require.True(t, byName["P2 order 0 stash kho=bitmaps: blackout ns/page max/min over sizes"].OK)
	require.False(t, byName["P2 order 9 stash kho=arrays: blackout ns/page max/min over sizes"].OK)
	p3 := byName["P3 order 0 kho=bitmaps: tracker record per preserved GiB"]
	require.True(t, p3.Measured && p3.OK, p3.Got)
	require.Contains(t, p3.Got, "32.0KiB/GiB at 4GiB")
	require.False(t, byName["P3 order 0 kho=radix: tracker record per preserved GiB"].Measured)
	require.Contains(t, byName["4GiB order 0 stash kho=arrays: handover metadata per preserved GiB (reported)"].Got,
		"6.2MiB/GiB = 25 B per 4KiB page, 25.0 B per folio (1.04x")
	rss := s.Verdicts[len(s.Verdicts)-1]
	require.True(t, rss.Measured && rss.OK)
	require.True(t, s.Missed())
	out := s.String()
	require.Contains(t, out, "scaling, order 0 stash kho=arrays: total ns/page max/min = 1.20; at 4GiB / at 64MiB: activate 1.20, kexec 1.20, restore 1.20 (flat: max/min <= 1.3)")
	require.Contains(t, out, "NOT flat")
	require.Contains(t, out, "MISS P1' 4GiB order 9")

	// Without 4 GiB rows the ratio targets are not measured and the RSS
	// target does not apply.
	s = Summarize(rows[:1], 100*MiB)
	require.Empty(t, s.Scaling)
	require.False(t, s.Verdicts[0].Measured)
	require.False(t, s.Verdicts[len(s.Verdicts)-1].Measured)
	require.False(t, s.Missed())
	require.Contains(t, s.String(), "--   P1 4GiB order 0")
}

func TestParseStatusKB(t *testing.T) {
	st := []byte("Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n")
	n, err := parseStatusKB(st, "VmHWM")
	require.NoError(t, err)
	require.Equal(t, uint64(2*MiB), n)
	_, err = parseStatusKB(st, "VmSwap")
	require.Error(t, err)
	_, err = parseStatusKB([]byte("VmHWM: 12\n"), "VmHWM")
	require.Error(t, err)

	cur, err := CurrentRSS()
	require.NoError(t, err)
	peak, err := PeakRSS()
	require.NoError(t, err)
	require.NotZero(t, cur)
	require.GreaterOrEqual(t, peak, cur)
}

func TestCopyTwice(t *testing.T) {
	buf, err := NewCopyBuffer(16 * KiB)
	require.NoError(t, err)
	defer buf.Close()
	// Two spans of 12 KiB and 4 KiB: exactly the buffer, so copy-in puts
	// back what copy-out took.
	a, b := bytes.Repeat([]byte{1}, 12*KiB), bytes.Repeat([]byte{2}, 4*KiB)
	out, in := CopyTwice([][]byte{a, b}, buf.Bytes())
	require.GreaterOrEqual(t, out, int64(0))
	require.GreaterOrEqual(t, in, int64(0))
	require.Equal(t, append(bytes.Repeat([]byte{1}, 12*KiB), bytes.Repeat([]byte{2}, 4*KiB)...), buf.Bytes())
	require.Equal(t, bytes.Repeat([]byte{1}, 12*KiB), a)

	// A span longer than the buffer wraps: the buffer ends with its tail.
	c := make([]byte, 20*KiB)
	for i := range c {
		c[i] = byte(i / KiB)
	}
	CopyTwice([][]byte{c}, buf.Bytes())
	require.Equal(t, byte(16), buf.Bytes()[0])
	require.Equal(t, byte(15), buf.Bytes()[15*KiB])
	require.NoError(t, buf.Close())
	require.NoError(t, buf.Close())

	_, err = NewCopyBuffer(100)
	require.Error(t, err)
	require.Equal(t, uint64(64*MiB), CopyBufferSize(64*MiB))
	require.Equal(t, uint64(MaxCopyBuffer), CopyBufferSize(4*GiB))
	require.Less(t, CopyBufferSize(4*GiB), uint64(4*GiB))
}

// TestRestamp: a copy through a smaller buffer scrambles the stamps of a
// stamped file, and restamp puts the file back as it was.
func TestRestamp(t *testing.T) {
	file := make([]byte, 40*KiB)
	stamp(file[:16*KiB], 0)
	stamp(file[16*KiB:], 16*KiB)
	want := bytes.Clone(file)
	spans := [][]byte{file[:12*KiB], file[12*KiB : 20*KiB], file[20*KiB:]}
	buf, err := NewCopyBuffer(16 * KiB)
	require.NoError(t, err)
	defer buf.Close()
	CopyTwice(spans, buf.Bytes())
	require.NotEqual(t, want, file)
	restamp(spans)
	require.Equal(t, want, file)
}

// TestScalingPhase: P2 judges the total; a phase that grows while another
// shrinks is reported in PhaseRatios but leaves the order flat.
func TestScalingPhase(t *testing.T) {
	small, large := row(64*MiB, 0, 100, 1e7), row(4*GiB, 0, 100, 1e9)
	large.ActivateNS *= 2 // activate per page doubles...
	large.KexecNS = 0     // ...while kexec shrinks: the total stays the same
	large.RestoreNS = 0
	large.finish()
	s := Summarize([]Row{small, large}, 0)
	require.InDelta(t, 1.0, s.Scaling[0].Ratio, 1e-9)
	require.InDelta(t, 2.0, s.Scaling[0].PhaseRatios[0], 1e-9)
	require.True(t, s.Scaling[0].Flat)
	require.True(t, s.Scaling[0].Spans)
	// A middle size that is dearer per page than both ends is the max.
	mid := row(1*GiB, 0, 140, 1e9)
	s = Summarize([]Row{small, mid, large}, 0)
	require.InDelta(t, 1.4, s.Scaling[0].Ratio, 1e-9)
	require.False(t, s.Scaling[0].Flat)
}
