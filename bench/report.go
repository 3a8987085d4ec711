package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"khosim/blackout"
)

// PageSize is the base page size (4 KiB).
const PageSize = 4096

// Row is the measurement of one (size, folio order): one memfd of
// SizeBytes, boxed and sealed, handed over by KHO across kexec and
// restored in a process of the next kernel, and in the same run the
// copy-out/copy-in of the same bytes that a checkpointing tool needs.
//
// The JSON field names are the interface of `khosim bench --json`.
type Row struct {
	SizeBytes  uint64 `json:"size_bytes"`
	FolioOrder int    `json:"folio_order"`
	// Design is the live-update design (stash, seal, luo) and KHO the
	// tracker (arrays, bitmaps, radix) of the row.
	Design string `json:"design"`
	KHO    string `json:"kho"`
	// Pages is the number of preserved folios, SizeBytes/4096>>FolioOrder:
	// 4 KiB pages at order 0, 2 MiB folios at order 9 — the unit of
	// metadata work (one kho_mem, one index and one flags byte each).
	Pages uint64 `json:"pages"`

	// ActivateNS is KHO activation (/sys/kernel/kho/active <- 1): the
	// fdbox DUMP (swap-in, preserve every folio, write the FDT) and
	// COMMIT (take the folios out of the page cache).
	ActivateNS int64 `json:"activate_ns"`
	// KexecNS is the kexec: the old kernel's end, the scrub of unpreserved
	// memory, and the new kernel's boot up to its last initcall, including
	// kho_populate, the fdbox recovery and the memfd late handler that
	// rebuild the file.
	KexecNS int64 `json:"kexec_ns"`
	// RestoreNS is the new process's part: open /dev/fdbox/<box>,
	// FDBOX_UNSEAL, FDBOX_GET_FD.
	RestoreNS int64 `json:"restore_ns"`

	// BlackoutNS is the blackout: activate + kexec + restore, from the
	// moment the workload lost its memory until its files were back.
	BlackoutNS int64 `json:"blackout_ns"`
	// BeforeNS is the design's work before the blackout (Rig.Prepare:
	// LUO's PRESERVE_FD serializes here; FDBox's PUT_FD, the stash's
	// SEAL).
	BeforeNS int64 `json:"before_ns"`
	// AbortNS is what aborting a committed update costs the design until
	// the workload has its files back (Rig.Abort).
	AbortNS int64 `json:"abort_ns"`
	// Before and Inside are the live-update work of the last measured
	// cycle before and inside its blackout (blackout.Counts:
	// deterministic).
	Before blackout.Counts `json:"before_blackout"`
	Inside blackout.Counts `json:"inside_blackout"`
	// TrackerBytes are the bytes of the KHO tracker's own record.
	TrackerBytes uint64 `json:"tracker_bytes"`

	// MetadataBytes is the size of the handover FDT: everything the next
	// kernel needs beyond the preserved frames themselves (and, for
	// trackers with a record of their own, TrackerBytes).
	MetadataBytes uint64 `json:"metadata_bytes"`
	// MetadataPerGiB is MetadataBytes per GiB preserved.
	MetadataPerGiB float64 `json:"metadata_bytes_per_gib"`

	// CopyNS is the baseline: memcpy of the memfd's bytes out to another
	// buffer and back in (CopyOutNS + CopyInNS), measured in the same run.
	CopyNS    int64 `json:"copy_ns"`
	CopyOutNS int64 `json:"copy_out_ns"`
	CopyInNS  int64 `json:"copy_in_ns"`
	// CopyBufferBytes is the size of the buffer the copy goes through (see
	// CopyTwice).
	CopyBufferBytes uint64 `json:"copy_buffer_bytes"`
	// CopyRatio is CopyNS / (ActivateNS+KexecNS+RestoreNS): how many times
	// faster the handover is than the copy.
	CopyRatio float64 `json:"copy_ratio"`
	// FloorNS is the floor of restoring the file's folios, measured in the
	// same run: writing as many struct pages as the file has 4 KiB pages,
	// initialised as kho_restore_folio initialises a restored folio
	// (physmem.StructPageFloor). FloorRatio is the blackout over it.
	FloorNS    int64   `json:"floor_ns"`
	FloorRatio float64 `json:"floor_ratio"`

	// Runs is the number of handover cycles measured; the times are their
	// medians.
	Runs int `json:"runs"`
	// Warmup is the number of untimed handover cycles run before them.
	Warmup int `json:"warmup"`
	// PeakRSSBytes is the process's peak resident set (VmHWM) while the
	// row was measured, setup included; 0 when unknown.
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
}

// NewRow returns a Row for size and order with the derived fields (Pages)
// set.
func NewRow(size uint64, order int) Row {
	return Row{SizeBytes: size, FolioOrder: order, Pages: size / PageSize >> order}
}

// TotalNS is the blackout: activate + kexec + restore.
func (r Row) TotalNS() int64 { return r.ActivateNS + r.KexecNS + r.RestoreNS }

// PerPage divides ns by Pages.
func (r Row) PerPage(ns int64) float64 {
	if r.Pages == 0 {
		return 0
	}
	return float64(ns) / float64(r.Pages)
}

// finish fills the fields derived from the measurements.
func (r *Row) finish() {
	r.CopyNS = r.CopyOutNS + r.CopyInNS
	r.BlackoutNS = r.TotalNS()
	if r.SizeBytes > 0 {
		r.MetadataPerGiB = float64(r.MetadataBytes+r.TrackerBytes) * GiB / float64(r.SizeBytes)
	}
	if t := r.TotalNS(); t > 0 {
		r.CopyRatio = float64(r.CopyNS) / float64(t)
	}
	if r.FloorNS > 0 {
		r.FloorRatio = float64(r.TotalNS()) / float64(r.FloorNS)
	}
}

// WriteJSON writes the rows as JSON objects, one per line.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// fmtDur prints nanoseconds with three significant digits in a readable
// unit.
func fmtDur(ns int64) string {
	d := float64(ns)
	switch {
	case ns >= int64(time.Second):
		return fmt.Sprintf("%.2fs", d/1e9)
	case ns >= int64(100*time.Millisecond):
		return fmt.Sprintf("%.0fms", d/1e6)
	case ns >= int64(time.Millisecond):
		return fmt.Sprintf("%.1fms", d/1e6)
	case ns >= int64(time.Microsecond):
		return fmt.Sprintf("%.0fµs", d/1e3)
	}
	return fmt.Sprintf("%dns", ns)
}

// fmtPerPage prints a per-page figure in ns.
func fmtPerPage(ns float64) string {
	if ns >= 100 {
		return fmt.Sprintf("%.0f", ns)
	}
	return fmt.Sprintf("%.1f", ns)
}

// fmtFloor prints a blackout/floor ratio as "1.25x".
func fmtFloor(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}

// fmtRatio prints "1/N" for a copy ratio N.
func fmtRatio(x float64) string {
	switch {
	case x <= 0:
		return "-"
	case x >= 100:
		return fmt.Sprintf("1/%.0f", x)
	}
	return fmt.Sprintf("1/%.1f", x)
}

// TableHeader is the table's column line (tab separated). The phases are
// named for what they time: ENTER is the design's step into the blackout
// (kho activate; SEAL and kho activate for the seal lifecycle; nothing
// for LUO), KEXEC+BOOT the kexec with the reboot path and the next
// kernel's boot, whose initcalls revive the files, REOPEN the new
// process's open and ioctls that take them back. BEFORE is the work
// before the blackout, ABORT an aborted update's cost.
// FLOOR is the struct-page floor of restoring the folios (Row.FloorNS).
const TableHeader = "SIZE\tORDER\tDESIGN\tKHO\tPAGES\tBEFORE\tENTER\tKEXEC+BOOT\tREOPEN\tBLACKOUT\tns/pg BLACKOUT\tABORT\tMETADATA\tMETA/GiB\tTRACKER\tCOPY x2\tns/pg COPY\tBLACKOUT/COPY\tFLOOR\tBLACKOUT/FLOOR\t"

// WriteTable writes the rows as an aligned table, one row per (size,
// order): times, cost per page of each phase, the handover metadata, the
// copy baseline and the ratio. KHO/COPY "1/N" means the handover took 1/N
// of the time of the two copies.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, TableHeader)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			FormatSize(r.SizeBytes), r.FolioOrder, r.Design, r.KHO, r.Pages,
			fmtDur(r.BeforeNS), fmtDur(r.ActivateNS), fmtDur(r.KexecNS), fmtDur(r.RestoreNS),
			fmtDur(r.TotalNS()), fmtPerPage(r.PerPage(r.TotalNS())), fmtDur(r.AbortNS),
			humanBytes(float64(r.MetadataBytes+r.TrackerBytes)), humanBytes(r.MetadataPerGiB), humanBytes(float64(r.TrackerBytes)),
			fmtDur(r.CopyNS), fmtPerPage(r.PerPage(r.CopyNS)), fmtRatio(r.CopyRatio),
			fmtDur(r.FloorNS), fmtFloor(r.FloorRatio))
	}
	return tw.Flush()
}

// Targets of performance round 3 (issue 13), all ratios within one run.
const (
	// TargetSize is the memfd size the ratio targets are stated for.
	TargetSize = 4 * GiB
	// TargetRatioOrder0 (P1): at order 0, activate+kexec+restore at most
	// 1/10 of the two copies, with at least one of bitmaps and radix.
	TargetRatioOrder0 = 10
	// TargetFloorOrder9 (P1'): at order 9, activate+kexec+restore at most
	// 1.3 times the struct-page floor measured in the same run.
	TargetFloorOrder9 = 1.3
	// FlatLimit (P2): the blackout's ns/page, largest over smallest across
	// the sizes of one (order, design, tracker), from 64 MiB to 4 GiB.
	FlatLimit = 1.3
	// TargetTrackerPerGiB (P3): the tracker's own record per preserved GiB
	// at order 0, for bitmaps and radix, interior nodes counted.
	TargetTrackerPerGiB = 33 * KiB
	// RFCMetadataPerGiB is the RFC's arrays: a 16-byte kho_mem and an
	// 8-byte index per 4 KiB page, 24 bytes per page, 6 MiB per GiB.
	RFCMetadataPerGiB = 24 * GiB / PageSize
	// TargetPeakRSS bounds the peak RSS of `khosim bench --sizes 4GiB`.
	TargetPeakRSS = 6 * GiB
	// FlatFrom is the smallest size of P2's range.
	FlatFrom = 64 * MiB
)

// Scaling is the scaling check (P2) of one (folio order, design,
// tracker): the blackout's cost per page across the sizes measured.
type Scaling struct {
	Order       int
	Design, KHO string
	// Small and Large are the rows of the smallest and largest size.
	Small, Large Row
	// Min and Max are the rows of the cheapest and dearest ns/page.
	Min, Max Row
	// Ratio is Max's total ns/page over Min's.
	Ratio float64
	// PhaseRatios are Large's ns/page over Small's for activate, kexec
	// and restore: where a growth comes from (reported, not judged).
	PhaseRatios [3]float64
	// Flat: Ratio <= FlatLimit.
	Flat bool
	// Spans: the sizes run from FlatFrom to TargetSize, the range the
	// target is stated for.
	Spans bool
}

// Verdict is one target's outcome.
type Verdict struct {
	Name string
	Want string
	Got  string
	// OK is false for a missed target; Measured is false when the run
	// did not include what the target needs.
	OK, Measured bool
}

// Summary is what follows the table: the scaling check per order and the
// targets.
type Summary struct {
	Scaling  []Scaling
	Verdicts []Verdict
}

// groupKey names a row's (order, design, tracker).
type groupKey struct {
	order       int
	design, kho string
}

// Summarize computes the scaling checks and the verdicts of rows.
// peakRSS is the process's peak resident set (0 when unknown); its target
// applies to a run whose largest size is TargetSize.
func Summarize(rows []Row, peakRSS uint64) Summary {
	s := Summary{Scaling: scalings(rows)}
	s.Verdicts = append(s.Verdicts, verdictP1(rows))
	s.Verdicts = append(s.Verdicts, verdictsP1Floor(rows)...)
	s.Verdicts = append(s.Verdicts, verdictsP2(s.Scaling)...)
	s.Verdicts = append(s.Verdicts, verdictsP3(rows)...)
	s.Verdicts = append(s.Verdicts, verdictsMetadata(rows)...)
	s.Verdicts = append(s.Verdicts, verdictRSS(rows, peakRSS))
	return s
}

// ratio is a/b, 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// scalings is P2's check of every (order, design, tracker) measured at
// more than one size.
func scalings(rows []Row) []Scaling {
	var out []Scaling
	var keys []groupKey
	for _, r := range rows {
		if k := (groupKey{r.FolioOrder, r.Design, r.KHO}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.SortStableFunc(keys, func(a, b groupKey) int { return a.order - b.order })
	for _, k := range keys {
		var small, large, lo, hi *Row
		for i := range rows {
			r := &rows[i]
			if (groupKey{r.FolioOrder, r.Design, r.KHO}) != k {
				continue
			}
			if small == nil || r.SizeBytes < small.SizeBytes {
				small = r
			}
			if large == nil || r.SizeBytes > large.SizeBytes {
				large = r
			}
			if pp := r.PerPage(r.TotalNS()); lo == nil || pp < lo.PerPage(lo.TotalNS()) {
				lo = r
			}
			if pp := r.PerPage(r.TotalNS()); hi == nil || pp > hi.PerPage(hi.TotalNS()) {
				hi = r
			}
		}
		if small.SizeBytes == large.SizeBytes {
			continue
		}
		sc := Scaling{Order: k.order, Design: k.design, KHO: k.kho, Small: *small, Large: *large, Min: *lo, Max: *hi}
		sc.Ratio = ratio(hi.PerPage(hi.TotalNS()), lo.PerPage(lo.TotalNS()))
		sc.PhaseRatios = [3]float64{
			ratio(large.PerPage(large.ActivateNS), small.PerPage(small.ActivateNS)),
			ratio(large.PerPage(large.KexecNS), small.PerPage(small.KexecNS)),
			ratio(large.PerPage(large.RestoreNS), small.PerPage(small.RestoreNS)),
		}
		sc.Flat = sc.Ratio <= FlatLimit
		sc.Spans = small.SizeBytes <= FlatFrom && large.SizeBytes >= TargetSize
		out = append(out, sc)
	}
	return out
}

// verdictP1 is P1: the best of bitmaps and radix at 4 GiB order 0.
func verdictP1(rows []Row) Verdict {
	v := Verdict{
		Name: "P1 4GiB order 0: blackout vs two memcpys, best of bitmaps/radix",
		Want: fmt.Sprintf("<= 1/%.0f", float64(TargetRatioOrder0)),
		Got:  "not measured (needs --sizes 4GiB --orders 0 --kho bitmaps or radix)",
	}
	var got []string
	for _, r := range rows {
		if r.SizeBytes == TargetSize && r.FolioOrder == 0 {
			got = append(got, fmt.Sprintf("%s kho=%s %s", r.Design, r.KHO, fmtRatio(r.CopyRatio)))
			if r.KHO == "bitmaps" || r.KHO == "radix" {
				v.Measured = true
				v.OK = v.OK || r.CopyRatio >= TargetRatioOrder0
			}
		}
	}
	if v.Measured {
		v.Got = strings.Join(got, ", ")
	}
	return v
}

// verdictsP1Floor is P1': every 4 GiB order-9 row against its floor.
func verdictsP1Floor(rows []Row) []Verdict {
	var out []Verdict
	for _, r := range rows {
		if r.SizeBytes != TargetSize || r.FolioOrder != MaxOrder {
			continue
		}
		out = append(out, Verdict{
			Name: fmt.Sprintf("P1' 4GiB order 9 %s kho=%s: blackout vs the struct-page floor", r.Design, r.KHO),
			Want: fmt.Sprintf("<= %.1fx", TargetFloorOrder9),
			Got:  fmt.Sprintf("%.2fx (%s vs %s)", r.FloorRatio, fmtDur(r.TotalNS()), fmtDur(r.FloorNS)),
			OK:   r.FloorNS > 0 && r.FloorRatio <= TargetFloorOrder9, Measured: true,
		})
	}
	if len(out) == 0 {
		out = append(out, Verdict{
			Name: "P1' 4GiB order 9: blackout vs the struct-page floor",
			Want: fmt.Sprintf("<= %.1fx", TargetFloorOrder9),
			Got:  "not measured (needs --sizes 4GiB --orders 9)",
		})
	}
	return out
}

// verdictsP2 is P2: one verdict per (order, design, tracker) with several
// sizes.
func verdictsP2(scs []Scaling) []Verdict {
	var out []Verdict
	for _, sc := range scs {
		got := fmt.Sprintf("%.2f (%s at %s / %s at %s)", sc.Ratio,
			fmtPerPage(sc.Max.PerPage(sc.Max.TotalNS())), FormatSize(sc.Max.SizeBytes),
			fmtPerPage(sc.Min.PerPage(sc.Min.TotalNS())), FormatSize(sc.Min.SizeBytes))
		if !sc.Spans {
			got += " (sizes do not span 64MiB..4GiB)"
		}
		out = append(out, Verdict{
			Name: fmt.Sprintf("P2 order %d %s kho=%s: blackout ns/page max/min over sizes", sc.Order, sc.Design, sc.KHO),
			Want: fmt.Sprintf("<= %.1f", FlatLimit),
			Got:  got, OK: sc.Flat, Measured: sc.Spans,
		})
	}
	return out
}

// verdictsP3 is P3: the tracker's record per GiB at order 0, at the
// largest size measured per tracker.
func verdictsP3(rows []Row) []Verdict {
	var out []Verdict
	for _, t := range []string{"bitmaps", "radix"} {
		var best *Row
		for i := range rows {
			r := &rows[i]
			if r.FolioOrder == 0 && r.KHO == t && (best == nil || r.SizeBytes > best.SizeBytes) {
				best = r
			}
		}
		v := Verdict{
			Name: fmt.Sprintf("P3 order 0 kho=%s: tracker record per preserved GiB", t),
			Want: "<= " + humanBytes(TargetTrackerPerGiB),
			Got:  "not measured (needs --orders 0 --kho " + t + ")",
		}
		if best != nil {
			per := float64(best.TrackerBytes) * GiB / float64(best.SizeBytes)
			v.Measured, v.OK = true, per <= TargetTrackerPerGiB
			v.Got = fmt.Sprintf("%s/GiB at %s (%s)", humanBytes(per), FormatSize(best.SizeBytes), humanBytes(float64(best.TrackerBytes)))
		}
		out = append(out, v)
	}
	return out
}

// verdictsMetadata reports the handover metadata per GiB of each 4 GiB
// row.
func verdictsMetadata(rows []Row) []Verdict {
	var out []Verdict
	for _, r := range rows {
		if r.SizeBytes != TargetSize {
			continue
		}
		out = append(out, Verdict{
			Name: fmt.Sprintf("4GiB order %d %s kho=%s: handover metadata per preserved GiB (reported)", r.FolioOrder, r.Design, r.KHO),
			Want: fmt.Sprintf("report; RFC arrays %s/GiB", humanBytes(RFCMetadataPerGiB)),
			Got: fmt.Sprintf("%s/GiB = %.3g B per 4KiB page, %.1f B per folio (%.3gx the RFC arrays)", humanBytes(r.MetadataPerGiB),
				float64(r.MetadataBytes+r.TrackerBytes)/float64(r.SizeBytes/PageSize), r.PerPage(int64(r.MetadataBytes+r.TrackerBytes)), r.MetadataPerGiB/RFCMetadataPerGiB),
			OK:       true,
			Measured: true,
		})
	}
	return out
}

// verdictRSS is the peak RSS bound of a 4 GiB run.
func verdictRSS(rows []Row, peakRSS uint64) Verdict {
	var maxSize uint64
	for _, r := range rows {
		maxSize = max(maxSize, r.SizeBytes)
	}
	v := Verdict{Name: "peak RSS (VmHWM) of the run", Want: "< 6GiB for --sizes 4GiB", Got: "unknown"}
	if peakRSS > 0 {
		v.Got = humanBytes(float64(peakRSS))
		v.Measured = maxSize == TargetSize
		v.OK = peakRSS < TargetPeakRSS
		if !v.Measured {
			v.Got += " (largest size " + FormatSize(maxSize) + ", target not applicable)"
		}
	}
	return v
}

// Write prints the summary as text.
func (s Summary) Write(w io.Writer) {
	for _, sc := range s.Scaling {
		state := fmt.Sprintf("flat: max/min <= %.1f", FlatLimit)
		if !sc.Flat {
			state = fmt.Sprintf("NOT flat: max/min above %.1f", FlatLimit)
		}
		fmt.Fprintf(w, "scaling, order %d %s kho=%s: total ns/page max/min = %.2f; at %s / at %s: activate %.2f, kexec %.2f, restore %.2f (%s)\n",
			sc.Order, sc.Design, sc.KHO, sc.Ratio, FormatSize(sc.Large.SizeBytes), FormatSize(sc.Small.SizeBytes),
			sc.PhaseRatios[0], sc.PhaseRatios[1], sc.PhaseRatios[2], state)
	}
	for _, v := range s.Verdicts {
		mark := "ok  "
		switch {
		case !v.Measured:
			mark = "--  "
		case !v.OK:
			mark = "MISS"
		}
		fmt.Fprintf(w, "%s %s: %s (target %s)\n", mark, v.Name, v.Got, v.Want)
	}
}

// Missed reports whether a measured target was missed.
func (s Summary) Missed() bool {
	for _, v := range s.Verdicts {
		if v.Measured && !v.OK {
			return true
		}
	}
	return false
}

// String is Write into a string.
func (s Summary) String() string {
	var b strings.Builder
	s.Write(&b)
	return b.String()
}
