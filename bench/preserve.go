package bench

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"khosim/kbuild"
)

// PreserveRow is the measurement behind issue 13's P4: one memfd of
// SizeBytes, fallocated at order 0 (its frames never written, so a
// machine larger than the host holds it), preserved through LUO under one
// tracker:
//
//   - ReserveNS is LIVEUPDATE_SESSION_PRESERVE_FD: memfd_luo_preserve
//     pins every folio (memfd_pin_folios), writes the folio array, and
//     kho_preserve_folio records each folio in the tracker (a mem range
//     for arrays, a bit in an order's bitmap, a bit in a radix leaf);
//   - SerializeNS is KHO's finalize (kho_finalize, `kho activate`): the
//     arrays write their "mem" properties into the FDT, the bitmaps their
//     chunk pages; the radix tree, updated at every preserve, has nothing
//     left to do.
//
// TrackerBytes is the tracker's own record (bitmaps' chunks and bitmaps,
// radix nodes with the interior ones); MetadataBytes the handover FDT.
// The JSON field names are the interface of `khosim bench --preserve`.
type PreserveRow struct {
	SizeBytes     uint64 `json:"size_bytes"`
	Pages         uint64 `json:"pages"`
	KHO           string `json:"kho"`
	ReserveNS     int64  `json:"reserve_ns"`
	SerializeNS   int64  `json:"serialize_ns"`
	TotalNS       int64  `json:"total_ns"`
	TrackerBytes  uint64 `json:"tracker_bytes"`
	MetadataBytes uint64 `json:"metadata_bytes"`
	PeakRSSBytes  uint64 `json:"peak_rss_bytes"`
}

// PublishedListNS and PublishedTableNS are the figures the issue quotes
// for preserving 48 GiB with a list and with a page-table-like tracker;
// PublishedRatio is their ratio, which P4 shows beside khosim's.
const (
	PublishedListNS  = 577 * int64(time.Millisecond)
	PublishedTableNS = 469 * int64(time.Millisecond)
	PublishedRatio   = float64(PublishedListNS) / float64(PublishedTableNS)
)

// MeasurePreserve measures one PreserveRow: a LUO machine of tracker t
// with one fallocated order-0 memfd of size bytes (untimed), then the
// timed PRESERVE_FD and the timed finalize. Nothing is kexec'd.
func MeasurePreserve(size uint64, t kbuild.Tracker, opts Options) (PreserveRow, error) {
	row := PreserveRow{SizeBytes: size, Pages: size / PageSize, KHO: string(t)}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "bench: preserve %s kho=%s: %s\n", FormatSize(size), t, fmt.Sprintf(format, args...))
		}
	}
	debug.FreeOSMemory()
	_ = ResetPeakRSS()
	start := time.Now()
	r, err := NewRig(RigConfig{Files: 1, Size: size, Order: 0, Seed: opts.Seed, Design: DesignLUO, KHO: t, Fallocate: true, NoPrepare: true})
	if err != nil {
		return row, err
	}
	defer func() {
		r.Close()
		debug.FreeOSMemory()
	}()
	logf("fallocated in %s", fmtDur(time.Since(start).Nanoseconds()))
	d, err := r.timed(phaseActivate, func() error { _, err := r.Prepare(); return err })
	if err != nil {
		return row, err
	}
	row.ReserveNS = d.Nanoseconds()
	logf("PRESERVE_FD in %s", fmtDur(row.ReserveNS))
	d, err = r.timed(phaseActivate, func() error { return r.M.KHOActivate() })
	if err != nil {
		return row, fmt.Errorf("bench: kho activate: %w", err)
	}
	row.SerializeNS = d.Nanoseconds()
	row.TotalNS = row.ReserveNS + row.SerializeNS
	logf("finalize in %s", fmtDur(row.SerializeNS))
	row.TrackerBytes = r.M.KHO().Tracker().MetadataFrames() * PageSize

	if row.MetadataBytes, err = r.Metadata(); err != nil {
		return row, err
	}
	if peak, err := PeakRSS(); err == nil {
		row.PeakRSSBytes = peak
	}
	return row, nil
}

// WritePreserveTable writes P4's rows and, when the run has arrays,
// bitmaps and radix rows of one size, the ratio arrays : bitmaps : radix
// beside the published list : page-table ratio.
func WritePreserveTable(w io.Writer, rows []PreserveRow) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIZE\tKHO\tPAGES\tRESERVE\tSERIALIZE\tRESERVE+SERIALIZE\tns/pg\tTRACKER\tFDT\tPEAK RSS\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", FormatSize(r.SizeBytes), r.KHO, r.Pages,
			fmtDur(r.ReserveNS), fmtDur(r.SerializeNS), fmtDur(r.TotalNS), fmtPerPage(float64(r.TotalNS)/float64(max(r.Pages, 1))),
			humanBytes(float64(r.TrackerBytes)), humanBytes(float64(r.MetadataBytes)), humanBytes(float64(r.PeakRSSBytes)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if line := preserveRatios(rows); line != "" {
		fmt.Fprintln(w, line)
	}
	return nil
}

// preserveRatios is P4's line: arrays : bitmaps : radix, normalised to
// radix, for the first size with all three.
func preserveRatios(rows []PreserveRow) string {
	for _, r := range rows {
		by := map[string]int64{}
		for _, o := range rows {
			if o.SizeBytes == r.SizeBytes {
				by[o.KHO] = o.TotalNS
			}
		}
		a, b, x := by["arrays"], by["bitmaps"], by["radix"]
		if a == 0 || b == 0 || x == 0 {
			continue
		}
		var s strings.Builder
		fmt.Fprintf(&s, "P4 %s reserve+serialize arrays : bitmaps : radix = %.2f : %.2f : 1 (arrays/bitmaps %.2f); published for 48GiB: list %s vs page table %s, ratio %.2f",
			FormatSize(r.SizeBytes), float64(a)/float64(x), float64(b)/float64(x), float64(a)/float64(b),
			fmtDur(PublishedListNS), fmtDur(PublishedTableNS), PublishedRatio)
		return s.String()
	}
	return ""
}
