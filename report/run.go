// Package report shows where the memory went in a live update: a
// self-contained HTML report (Write) of a run — the physical memory map
// at each phase as SVG, a timeline of the statements, phases and blackout
// with their work counts and times, the handover FDT decoded, and each
// failure with its state — and the memory map's text and SVG forms on
// their own (WriteMemMapText, WriteMemMapSVG) for `khosim memmap`.
//
// A runner builds a Run as it goes:
//
//	r := report.NewRun("demo.scn")
//	r.Watch(m)                       // a snapshot at every machine.Phase
//	r.Statement(line, text, took, err, counts...)
//	r.Snapshot(m, "NAME")            // the `snapshot NAME` statement
//	r.BlackoutStart(line, why) ... r.BlackoutEnd(line, why)
//	r.Fail(line, statement, message, dump)
//	r.Finish(passed)
//	report.Write(dir, r)             // dir/index.html
//
// Nothing here changes the simulation. Wall-clock times are for reading
// only; everything else in a report is deterministic for a scenario.
package report

import (
	"fmt"
	"slices"
	"time"

	"khosim/fdt"
	"khosim/machine"
)

// Snap is the machine's state at one moment of a run.
type Snap struct {
	Label string        // the phase's name, or the snapshot's NAME
	Phase machine.Phase // "" for a snapshot taken by name or at a failure
	Boot  int
	Build string
	Map   *machine.MemMap
	// Counts are machine.FrameCounts, by name in sorted order.
	Counts []Count
	// Handover is the FDT at that moment (the active one, or the one the
	// running kernel was handed), decoded; nil for none.
	Handover *Handover
	Stats    machine.Stats
	Migrated uint64 // machine.MigratedFolios
	Event    int    // index of the timeline event it belongs to
}

// Count is one named, deterministic counter.
type Count struct {
	Name  string
	Value uint64
}

// Handover is a handover FDT decoded for the report.
type Handover struct {
	Outgoing bool // KHO is active: the running kernel hands it over
	Addr     uint64
	Size     uint64
	// Root is the decoded tree (arrays cut to MaxEntries; values copied
	// out of physical memory), nil when the blob does not parse (Err).
	Root *fdt.Node
	Err  string
	// The tracker that wrote it: its name and compatible, what it says
	// of itself, and the preserved ranges the FDT's kho_mem arrays
	// describe (KHO v4: the record itself).
	Tracker        string
	Compatible     string
	TrackerDump    string
	TrackerFrames  uint64
	MemProps       int // "mem" properties
	Ranges         int
	RangeBytes     uint64
	RangesByOrder  map[int]int
	PreservedPages uint64 // the running KHO's own count (outgoing)
}

// MaxEntries is how many entries of each array a report keeps.
const MaxEntries = 64

// EventKind says what a timeline event is.
type EventKind string

// Event kinds.
const (
	EventStatement     EventKind = "statement"
	EventPhase         EventKind = "phase"
	EventSnapshot      EventKind = "snapshot"
	EventBlackoutStart EventKind = "blackout start"
	EventBlackoutEnd   EventKind = "blackout end"
	EventFailure       EventKind = "failure"
)

// Event is one entry of the timeline.
type Event struct {
	Kind EventKind
	Line int    // the scenario line, 0 if none
	Text string // the statement as written, the phase, the reason
	// At is when it happened since the run began (wall clock), Took how
	// long it took.
	At, Took time.Duration
	Counts   []Count // the work it did, deterministic
	Err      string
	Snap     int // index into Run.Snaps, -1 for none
}

// Failure is a failed statement with the state that explains it.
type Failure struct {
	Line      int
	Statement string
	Message   string
	Dump      []string // the runner's state dump (an FDT node, refcounts, ...)
	Snap      int      // the memory map at the failure, -1 if none
}

// Run is everything a report shows of one run (one scenario file).
type Run struct {
	Title   string
	Machine machine.Config
	Passed  bool
	Done    bool // Finish was called
	Events  []Event
	Snaps   []*Snap
	Fails   []Failure

	m     *machine.Machine
	start time.Time // the first reading of Now
	// Now is the clock for events' At (time.Now; tests set a fake). The
	// run's time starts at its first event.
	Now func() time.Time
}

// NewRun starts the record of a run.
func NewRun(title string) *Run {
	return &Run{Title: title, Now: time.Now}
}

func (r *Run) since() time.Duration {
	if r.start.IsZero() {
		r.start = r.Now()
	}
	return r.Now().Sub(r.start)
}

// Watch attaches the run to m: its configuration is recorded and, at
// every machine.Phase, a phase event is added with the machine's
// counters for it and a snapshot is taken (not at the boot phases of a
// cold boot or a reboot, which hand nothing over) (machine.SetPhaseHook: it replaces any
// hook m had). Failures recorded afterwards take a snapshot of m too.
func (r *Run) Watch(m *machine.Machine) {
	r.m = m
	r.Machine = m.Config()
	m.SetPhaseHook(func(e machine.PhaseEvent) {
		ev := Event{Kind: EventPhase, Text: string(e.Phase), At: r.since(), Took: e.Took, Snap: -1}
		if e.Err != nil {
			ev.Err = e.Err.Error()
		}
		ev.Counts = phaseCounts(m, e)
		r.Events = append(r.Events, ev)
		if !e.Kexec && (e.Phase == machine.PhaseEarlyBoot || e.Phase == machine.PhaseRestored) {
			return // a cold boot or a reboot: nothing was handed over, no map
		}
		if s, err := Snapshot(m, fmt.Sprintf("%s (boot %d)", e.Phase, e.Boot)); err == nil {
			s.Phase = e.Phase
			r.add(s)
		}
	})
}

// phaseCounts are the deterministic counters the machine has for a phase.
func phaseCounts(m *machine.Machine, e machine.PhaseEvent) []Count {
	st := m.Stats()
	switch e.Phase {
	case machine.PhaseActivated:
		return []Count{{"folios preserved", uint64(st.PreservedFolios)}, {"pages preserved", st.PreservedPages},
			{"FDT bytes", st.FDTBytes}, {"folios migrated out of scratch", m.MigratedFolios()}}
	case machine.PhaseEarlyBoot:
		if !e.Kexec {
			return nil
		}
		in := m.KHO().Incoming()
		return []Count{{"frames scrubbed", st.ScrubbedFrames}, {"ranges handed over", uint64(in.Ranges)},
			{"ranges rejected", uint64(in.Rejected)}, {"pages reserved", in.ReservedPages}, {"FDT bytes", in.FDTBytes}}
	case machine.PhaseRestored:
		if !e.Kexec {
			return nil
		}
		in := st.Incoming
		return []Count{{"ranges claimed", uint64(in.Claimed)}, {"ranges returned", uint64(in.Returned)},
			{"boxes recovered", uint64(st.Recovered.Boxes)}, {"fds recovered", uint64(st.Recovered.FDs)},
			{"fds failed", uint64(st.Recovered.FailedFDs)}}
	}
	return nil
}

// Snapshot takes the machine's state now, labelled label: its memory map
// (machine.MemoryMap), frame counts, the handover FDT decoded, and its
// counters. EINVAL without a running kernel.
func Snapshot(m *machine.Machine, label string) (*Snap, error) {
	mm, err := m.MemoryMap()
	if err != nil {
		return nil, err
	}
	s := &Snap{Label: label, Boot: mm.Boot, Build: mm.Build, Map: mm, Stats: m.Stats(), Migrated: m.MigratedFolios(), Event: -1}
	fc := m.FrameCounts()
	for _, k := range sortedKeys(fc) {
		s.Counts = append(s.Counts, Count{k, fc[k]})
	}
	s.Handover = handoverOf(m)
	return s, nil
}

// Snapshot takes a snapshot of m named label (the `snapshot NAME`
// statement) and adds it to the timeline.
func (r *Run) Snapshot(m *machine.Machine, label string) error {
	s, err := Snapshot(m, label)
	if err != nil {
		return err
	}
	r.Events = append(r.Events, Event{Kind: EventSnapshot, Text: label, At: r.since(), Snap: -1})
	r.add(s)
	return nil
}

// Add adds a snapshot taken with the package's Snapshot, with a timeline
// event, and returns its index.
func (r *Run) Add(s *Snap) int {
	r.Events = append(r.Events, Event{Kind: EventSnapshot, Text: s.Label, At: r.since(), Snap: -1})
	return r.add(s)
}

func (r *Run) add(s *Snap) int {
	s.Event = len(r.Events) - 1
	if s.Event >= 0 {
		r.Events[s.Event].Snap = len(r.Snaps)
	}
	r.Snaps = append(r.Snaps, s)
	return len(r.Snaps) - 1
}

// Statement records a statement of the scenario: its line and text, how
// long it took, its error (nil: it did what the scenario expected) and
// the work it did.
func (r *Run) Statement(line int, text string, took time.Duration, err error, counts ...Count) {
	ev := Event{Kind: EventStatement, Line: line, Text: text, Took: took, Counts: counts, Snap: -1}
	ev.At = r.since() - took
	if ev.At < 0 {
		ev.At = 0
	}
	if err != nil {
		ev.Err = err.Error()
	}
	r.Events = append(r.Events, ev)
}

// Begin returns the mark of a statement about to run, for StatementAt.
func (r *Run) Begin() int {
	r.since() // the run's time starts here at the latest
	return len(r.Events)
}

// StatementAt records a statement as Statement does, before the events
// added since Begin returned mark (the phases and snapshots it caused),
// so that the timeline shows a statement before what it did.
func (r *Run) StatementAt(mark, line int, text string, took time.Duration, err error, counts ...Count) {
	r.Statement(line, text, took, err, counts...)
	if mark < 0 || mark >= len(r.Events)-1 {
		return
	}
	ev := r.Events[len(r.Events)-1]
	r.Events = r.Events[:len(r.Events)-1]
	r.insert(mark, ev)
}

// BlackoutStart marks the start of the blackout (the workload has lost
// its memory) at a statement's line, saying why.
func (r *Run) BlackoutStart(line int, why string, counts ...Count) {
	r.Events = append(r.Events, Event{Kind: EventBlackoutStart, Line: line, Text: why, At: r.since(), Counts: counts, Snap: -1})
}

// BlackoutStartAt marks the start of the blackout before the event at
// index at (a statement the runner learns only later began the blackout:
// the workload lost its file there, and a kexec carried it), with the
// time of that event. Snapshots of later events keep their events.
func (r *Run) BlackoutStartAt(at, line int, why string, counts ...Count) {
	if at < 0 || at >= len(r.Events) {
		r.BlackoutStart(line, why, counts...)
		return
	}
	r.insert(at, Event{Kind: EventBlackoutStart, Line: line, Text: why, At: r.Events[at].At, Counts: counts, Snap: -1})
}

// insert puts ev at index at of the timeline; snapshots of the events
// after it follow their events.
func (r *Run) insert(at int, ev Event) {
	r.Events = slices.Insert(r.Events, at, ev)
	for _, s := range r.Snaps {
		if s.Event >= at {
			s.Event++
		}
	}
}

// BlackoutEnd marks the end of the blackout (the file is back in a
// process), with the work done inside it.
func (r *Run) BlackoutEnd(line int, why string, counts ...Count) {
	r.Events = append(r.Events, Event{Kind: EventBlackoutEnd, Line: line, Text: why, At: r.since(), Counts: counts, Snap: -1})
}

// Fail records a failure with the runner's state dump and, when the run
// watches a machine with a running kernel, a snapshot of its memory.
func (r *Run) Fail(line int, statement, message string, dump []string) {
	f := Failure{Line: line, Statement: statement, Message: message, Dump: slices.Clone(dump), Snap: -1}
	r.Events = append(r.Events, Event{Kind: EventFailure, Line: line, Text: statement, Err: message, At: r.since(), Snap: -1})
	if r.m != nil {
		if s, err := Snapshot(r.m, fmt.Sprintf("failure at line %d", line)); err == nil {
			f.Snap = r.add(s)
		}
	}
	r.Fails = append(r.Fails, f)
}

// Finish records the verdict and detaches the run from the machine it
// watched.
func (r *Run) Finish(passed bool) {
	r.Passed, r.Done = passed, true
	if r.m != nil {
		r.m.SetPhaseHook(nil)
		r.m = nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
