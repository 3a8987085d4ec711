package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"khosim/kbuild"
	"khosim/physmem"
)

// Options tune Measure.
type Options struct {
	// Runs is the number of handover cycles (and of copy baselines)
	// measured; the row reports their medians. 0 means DefaultRuns.
	Runs int
	// Warmup is the number of handover cycles run, untimed, before the
	// measured ones (0: none; `khosim bench` runs DefaultWarmup). The
	// machine's frames are host memory committed on first touch: in the
	// first two cycles after boot the handover FDT lands on frames no
	// kernel has written yet (it alternates between two areas, as each
	// kernel keeps the FDT it was handed), and every 4 KiB of it costs a
	// host page fault (3-13 µs here) that real RAM does not have.
	Warmup int
	// Seed is the machine's seed.
	Seed uint64
	// Log, if set, receives a line per step (progress for a terminal).
	Log io.Writer
	// Design is the design the files are handed over with ("": the
	// stash); KHO the tracker ("": arrays).
	Design Design
	KHO    kbuild.Tracker
}

// DefaultRuns is the number of cycles `khosim bench` measures per row.
const DefaultRuns = 3

// DefaultWarmup is the number of untimed cycles `khosim bench` runs per
// row before the measured ones (see Options.Warmup).
const DefaultWarmup = 2

// Measure measures one row: a machine with one memfd of size bytes and
// folios of order, filled (untimed), boxed and sealed; then opts.Runs
// runs of: a handover cycle, timed phase by phase (activate, kexec,
// restore), each on the kernel the previous one kexec'd into; a check of
// every page of the restored file (untimed); and the copy baseline
// (CopyTwice) over the restored file's frames; before them, opts.Warmup
// untimed cycles. Times are medians. PeakRSSBytes is the peak resident set during the row (VmHWM,
// reset at the start when the kernel allows it).
func Measure(size uint64, order int, opts Options) (Row, error) {
	runs := opts.Runs
	if runs <= 0 {
		runs = DefaultRuns
	}
	row := NewRow(size, order)
	row.Design, row.KHO = string(opts.Design), string(opts.KHO)
	if row.Design == "" {
		row.Design = string(DesignStash)
	}
	if row.KHO == "" {
		row.KHO = string(kbuild.Default().KHO)
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "bench: %s order %d %s kho=%s: %s\n", FormatSize(size), order, row.Design, row.KHO, fmt.Sprintf(format, args...))
		}
	}
	row.Runs = runs
	row.Warmup = max(opts.Warmup, 0)
	debug.FreeOSMemory()
	_ = ResetPeakRSS()

	logf("fill")
	start := time.Now()
	r, err := NewRig(RigConfig{Files: 1, Size: size, Order: order, Seed: opts.Seed, Design: opts.Design, KHO: opts.KHO})
	if err != nil {
		return row, err
	}
	defer func() {
		r.Close()
		debug.FreeOSMemory()
	}()
	logf("filled in %s", fmtDur(time.Since(start).Nanoseconds()))

	buf, err := NewCopyBuffer(CopyBufferSize(size))
	if err != nil {
		return row, err
	}
	defer buf.Close()
	row.CopyBufferBytes = uint64(len(buf.Bytes()))

	// The floor of restoring the file's folios: writing their struct
	// pages as kho_restore_folio must (physmem.StructPageFloor), over a
	// memmap of the same geometry, once untimed so that its host memory
	// is committed, then once per run beside the copies.
	floor := physmem.NewStructPageFloor(size / PageSize)
	floor.Write(uint(order))

	// Each run is a handover cycle followed by the copy baseline over the
	// restored file's frames, so that both see the same conditions on a
	// shared machine.
	prepared := true // NewRig prepares the handover
	r.CycleLabel = "warmup"
	for i := range row.Warmup {
		a, k, re, _, err := r.Cycle()
		if err != nil {
			return row, fmt.Errorf("warm-up cycle %d: %w", i+1, err)
		}
		logf("warm-up cycle %d (untimed): activate %s, kexec %s, restore %s; host page faults %d, %d, %d", i+1,
			fmtDur(a.Nanoseconds()), fmtDur(k.Nanoseconds()), fmtDur(re.Nanoseconds()), r.Faults[0], r.Faults[1], r.Faults[2])
		if _, err := r.Prepare(); err != nil {
			return row, err
		}
	}
	r.CycleLabel = "measured"
	var act, kx, rest, cout, cin, before, floors []int64
	for i := range runs {
		if !prepared {
			b, err := r.Prepare()
			if err != nil {
				return row, err
			}
			before = append(before, b.Nanoseconds())
		}
		prepared = false
		a, k, re, meta, err := r.Cycle()
		if err != nil {
			return row, fmt.Errorf("cycle %d: %w", i+1, err)
		}
		act, kx, rest = append(act, a.Nanoseconds()), append(kx, k.Nanoseconds()), append(rest, re.Nanoseconds())
		row.MetadataBytes = meta
		if u := r.M.Updates(); len(u) > 0 {
			last := u[len(u)-1]
			row.Before, row.Inside = last.Before, last.Inside
			row.TrackerBytes = last.Before.TrackerBytes + last.Inside.TrackerBytes
		}
		logf("cycle %d: activate %s, kexec %s, restore %s; host page faults %d, %d, %d", i+1,
			fmtDur(a.Nanoseconds()), fmtDur(k.Nanoseconds()), fmtDur(re.Nanoseconds()), r.Faults[0], r.Faults[1], r.Faults[2])

		spans, err := r.Spans() // checks every page of the restored file
		if err != nil {
			return row, fmt.Errorf("cycle %d: %w", i+1, err)
		}
		o, in := CopyTwice(spans, buf.Bytes())
		cout, cin = append(cout, o), append(cin, in)
		logf("copy %d: out %s, in %s", i+1, fmtDur(o), fmtDur(in))
		restamp(spans) // a copy through a smaller buffer moved the stamps
		runtime.GC()
		fstart := time.Now()
		floor.Write(uint(order))
		floors = append(floors, time.Since(fstart).Nanoseconds())
	}

	// The cost of an abort once the update is committed, then the
	// handover is prepared again.
	b, err := r.Prepare()
	if err != nil {
		return row, err
	}
	before = append(before, b.Nanoseconds())
	ab, err := r.Abort()
	if err != nil {
		return row, fmt.Errorf("abort: %w", err)
	}
	row.AbortNS = ab.Nanoseconds()
	logf("abort: %s", fmtDur(row.AbortNS))

	row.ActivateNS, row.KexecNS, row.RestoreNS = median(act), median(kx), median(rest)
	row.BeforeNS = median(before)
	row.CopyOutNS, row.CopyInNS = median(cout), median(cin)
	row.FloorNS = median(floors)
	row.finish()
	if peak, err := PeakRSS(); err == nil {
		row.PeakRSSBytes = peak
	}
	return row, nil
}

// median returns the median of xs (the lower middle for an even count).
func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// MeasureAll measures every (size, order), sizes outermost, in the order
// given.
func MeasureAll(sizes []uint64, orders []int, opts Options) ([]Row, error) {
	return MeasureMatrix(sizes, orders, []Design{opts.Design}, []kbuild.Tracker{opts.KHO}, opts)
}

// MeasureMatrix measures every (size, order, design, tracker), sizes
// outermost, in the order given.
func MeasureMatrix(sizes []uint64, orders []int, designs []Design, trackers []kbuild.Tracker, opts Options) ([]Row, error) {
	var rows []Row
	for _, s := range sizes {
		for _, o := range orders {
			for _, d := range designs {
				for _, t := range trackers {
					opts.Design, opts.KHO = d, t
					r, err := Measure(s, o, opts)
					if err != nil {
						return rows, fmt.Errorf("%s order %d %s kho=%s: %w", FormatSize(s), o, d, t, err)
					}
					rows = append(rows, r)
				}
			}
		}
	}
	return rows, nil
}

// restamp rewrites the stamp of every page of spans (a file's frames in
// file order, from page 0). A file of stamped pages is zero elsewhere, so
// after CopyTwice through a buffer smaller than the file, which leaves
// other pages' bytes in all but the last buffer-full, the stamps are all
// that is wrong.
func restamp(spans [][]byte) {
	var page uint64
	for _, s := range spans {
		for i := 0; i+PageSize <= len(s); i += PageSize {
			binary.LittleEndian.PutUint64(s[i:], page^stampMagic)
			page++
		}
	}
}
