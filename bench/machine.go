package bench

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"
)

// MachineRow is one measurement of MeasureMachine (issue 13's P5): a
// machine of MachineBytes boots, fallocates a memfd of PreservedBytes in
// folios of Order, preserves it, kexecs and restores it.
type MachineRow struct {
	MachineBytes   uint64 `json:"machine_bytes"`
	PreservedBytes uint64 `json:"preserved_bytes"`
	Order          int    `json:"order"`
	// BootNS is the first boot plus the fallocate and the box's
	// preparation; ActivateNS, KexecNS, RestoreNS the handover cycle's
	// phases; TotalNS all of it, wall clock.
	BootNS     int64 `json:"boot_ns"`
	ActivateNS int64 `json:"activate_ns"`
	KexecNS    int64 `json:"kexec_ns"`
	RestoreNS  int64 `json:"restore_ns"`
	TotalNS    int64 `json:"total_ns"`
	// PeakRSSBytes is the process's VmHWM at the end (reset at the start
	// when the kernel allows it).
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
}

// P5 targets (issue 13): 16 TiB machine, 256 GiB of 2 MiB folios
// preserved, in at most P5MaxRSS peak RSS and P5MaxTime.
const (
	P5MaxRSS  = 8 * GiB
	P5MaxTime = 60 * time.Second
)

// MeasureMachine boots a machine of machine bytes of RAM, fallocates one
// memfd of size bytes with folios of order (untouched zeros but for its
// first and last page), puts it in the box and seals it, then runs one
// handover cycle (activate, kexec, restore) and checks the restored file
// (CheckUsable). Its kernels defer struct page initialisation
// (deferred_struct_page_init=on): the memmap of memory nobody touches
// costs the host nothing. Nothing is copied: the baseline of Measure would touch
// every byte. log, if set, gets a line per step.
func MeasureMachine(machine, size uint64, order int, opts Options, log io.Writer) (MachineRow, error) {
	row := MachineRow{MachineBytes: machine, PreservedBytes: size, Order: order}
	logf := func(format string, args ...any) {
		if log != nil {
			fmt.Fprintf(log, "bench: machine %s, %s order %d: %s\n", FormatSize(machine), FormatSize(size), order, fmt.Sprintf(format, args...))
		}
	}
	debug.FreeOSMemory()
	_ = ResetPeakRSS()
	start := time.Now()
	r, err := NewRig(RigConfig{Files: 1, Size: size, Order: order, Seed: opts.Seed, Design: opts.Design, KHO: opts.KHO,
		Memory: machine, Fallocate: true, DeferredInit: true})
	if err != nil {
		return row, err
	}
	defer func() {
		r.Close()
		debug.FreeOSMemory()
	}()
	row.BootNS = time.Since(start).Nanoseconds()
	logf("booted and fallocated in %s", fmtDur(row.BootNS))
	a, k, re, _, err := r.Cycle()
	if err != nil {
		return row, err
	}
	row.ActivateNS, row.KexecNS, row.RestoreNS = a.Nanoseconds(), k.Nanoseconds(), re.Nanoseconds()
	logf("activate %s, kexec %s, restore %s", fmtDur(row.ActivateNS), fmtDur(row.KexecNS), fmtDur(row.RestoreNS))
	if err := r.CheckUsable(); err != nil {
		return row, err
	}
	row.TotalNS = time.Since(start).Nanoseconds()
	if p, err := PeakRSS(); err == nil {
		row.PeakRSSBytes = p
	}
	return row, nil
}

// WriteMachine prints a MachineRow and its verdict against P5.
func WriteMachine(w io.Writer, row MachineRow) {
	fmt.Fprintf(w, "machine %s, preserved %s order %d: boot+fallocate %s, activate %s, kexec+boot %s, restore %s; total %s, peak RSS %s\n",
		FormatSize(row.MachineBytes), FormatSize(row.PreservedBytes), row.Order, fmtDur(row.BootNS), fmtDur(row.ActivateNS),
		fmtDur(row.KexecNS), fmtDur(row.RestoreNS), fmtDur(row.TotalNS), FormatSize(row.PeakRSSBytes))
	verdict := "ok  "
	if row.PeakRSSBytes > P5MaxRSS || time.Duration(row.TotalNS) > P5MaxTime {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "%s P5 limits (a 16TiB machine, 256GiB of order 9, is the target; this was %s, %s of order %d): peak RSS %s (target <= %s), time %s (target <= %s)\n",
		verdict, FormatSize(row.MachineBytes), FormatSize(row.PreservedBytes), row.Order, FormatSize(row.PeakRSSBytes), FormatSize(P5MaxRSS), fmtDur(row.TotalNS), fmtDur(P5MaxTime.Nanoseconds()))
}
