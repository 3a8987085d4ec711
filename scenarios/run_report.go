package scenarios

import (
	"fmt"
	"time"

	"khosim/blackout"
	"khosim/report"
	"khosim/scenarios/scn"
)

// reportState is what the runner tracks to fill Options.Report: the
// work counts before the statement, and the blackout's marks.
type reportState struct {
	work    blackout.Counts
	mark    int // report.Run.Begin before the statement
	updates int // machine updates (kexecs that carried files) seen
	// lossEvent is the report event of the statement where the workload
	// first lost a file since the last kexec (-1: none), lossLine its line.
	lossEvent, lossLine int
	open                bool // a blackout start is marked, its end is not
}

// reportBefore notes the machine's work counters before a statement.
func (r *runner) reportBefore() {
	if r.opts.Report == nil {
		return
	}
	r.rep.mark = r.opts.Report.Begin()
	if r.m != nil {
		r.rep.work = r.m.Work()
	}
}

// reportStep records a statement that ran, with the live-update work it
// did, and marks the blackout: it starts at the statement where the
// workload lost a file (and did not get it back) since the last kexec, if
// the next kexec carried files, and ends at the one where the last
// carried file came back (blackout.Meter). The meter starts the blackout
// at the first loss among the carried files; the runner sees losses, not
// which file they were, so a file lost earlier and then dropped (not
// carried) moves the mark to its statement.
func (r *runner) reportStep(st scn.Stmt, took time.Duration, err error) {
	rep := r.opts.Report
	if rep == nil {
		return
	}
	var counts []report.Count
	if r.m != nil {
		counts = workCounts(r.m.Work().Sub(r.rep.work))
	}
	rep.StatementAt(r.rep.mark, st.Pos().Line, st.Source(), took, err, counts...)
	if r.m == nil {
		return
	}
	if r.rep.lossEvent < 0 && r.m.LostFiles() > 0 {
		r.rep.lossEvent, r.rep.lossLine = r.rep.mark, st.Pos().Line
	}
	ups := r.m.Updates()
	if len(ups) > r.rep.updates {
		r.rep.updates = len(ups)
		u := ups[len(ups)-1]
		if u.Carried > 0 {
			at, line := r.rep.lossEvent, r.rep.lossLine
			why := fmt.Sprintf("the workload lost a file here; the kexec at line %d carried %d", st.Pos().Line, u.Carried)
			if at < 0 {
				at, line = r.rep.mark, st.Pos().Line
				why = fmt.Sprintf("the kexec carried %d files", u.Carried)
			}
			rep.BlackoutStartAt(at, line, why, workCounts(u.Before)...)
			r.rep.open = true
		}
		r.rep.lossEvent = -1
	}
	if r.rep.open && len(ups) > 0 {
		if u := ups[len(ups)-1]; u.Ended {
			rep.BlackoutEnd(st.Pos().Line, fmt.Sprintf("the last of the %d carried files is back in a process", u.Carried), workCounts(u.Inside)...)
			r.rep.open = false
		}
	}
	if r.m.LostFiles() == 0 {
		r.rep.lossEvent = -1 // regained before any kexec: no blackout
	}
}

// workCounts are the non-zero live-update work counters of c.
func workCounts(c blackout.Counts) []report.Count {
	all := []report.Count{
		{Name: "folios serialized", Value: c.FoliosSerialized},
		{Name: "struct pages written", Value: c.StructPagesWritten},
		{Name: "tracker bytes", Value: c.TrackerBytes},
		{Name: "FDT bytes", Value: c.FDTBytes},
		{Name: "record bytes", Value: c.RecordBytes},
		{Name: "page-cache entries removed", Value: c.PageCacheRemoved},
		{Name: "page-cache entries inserted", Value: c.PageCacheInserted},
		{Name: "frames allocated", Value: c.FramesAllocated},
	}
	var out []report.Count
	for _, x := range all {
		if x.Value != 0 {
			out = append(out, x)
		}
	}
	return out
}

// reportFail records a failure (message and state lines) in the report.
func (r *runner) reportFail(line int, source, msg string, state []string) {
	if r.opts.Report != nil {
		r.opts.Report.Fail(line, source, msg, state)
	}
}

// reportEnd shows the machine to Options.AtEnd and closes the report,
// before the machine is closed.
func (r *runner) reportEnd() {
	defer func() {
		if p := recover(); p != nil && !r.res.Internal {
			r.internal(r.cur, p)
			r.res.Passed = false
		}
	}()
	if r.opts.AtEnd != nil && r.m != nil && r.kernel() != nil {
		r.opts.AtEnd(r.m)
	}
	if r.opts.Report != nil {
		r.opts.Report.Finish(r.res.Passed)
	}
}

// snapshot runs `snapshot NAME`: the running kernel's memory map is
// added to the report (Options.Report) and shown to Options.AtSnapshot.
// It changes nothing in the simulation, and fails only when no kernel
// runs, with or without a report, so that a file passes or fails alike.
func (r *runner) snapshot(st *scn.Snapshot) (string, error) {
	if _, err := r.running(); err != nil {
		return "", err
	}
	if r.opts.Report != nil {
		if err := r.opts.Report.Snapshot(r.m, st.Name); err != nil {
			return "", failf("cannot take the memory map: %v", err)
		}
	}
	if r.opts.AtSnapshot != nil {
		r.opts.AtSnapshot(st.Name, r.m)
	}
	return "", nil
}
