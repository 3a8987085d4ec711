// Package blackout measures what each live update costs the workload: the
// work done before the workload lost access to its memory, and the work
// done inside the blackout — from that moment until its files are back in
// a process of the next kernel — as deterministic counts first and wall
// time second (../shared/spec/live-update-designs.md, "Blackout
// accounting").
//
// The blackout starts, per design, when the workload loses access to a
// file it will carry: for FDBox's stash at the PUT_FD that takes the
// file's last fd (a box file cannot be mapped at SEAL), for FDBox's seal
// at the SEAL that finds the file idle (the workload closed its last fd
// and mapping before it; the close itself is not observed), for LUO at the
// reboot path's freeze. It ends at the GET_FD or RETRIEVE_FD that gives
// the file back in the next kernel. One Update covers one kexec: from the
// earliest loss among the files it carries to the last of them back.
//
// A Meter belongs to the machine, like the fault injector, and outlives
// every kernel: the live-update code of each kernel adds to its Counts,
// and the front-ends report Lost, Regained and Back. The wall clock is
// read only to report times; nothing in the simulation depends on it.
package blackout

import (
	"slices"
	"time"
)

// Counts is the live-update work, as counts of the same things in every
// design.
type Counts struct {
	// FoliosSerialized are folios preserved (kho_preserve_folio).
	FoliosSerialized uint64 `json:"folios_serialized"`
	// StructPagesWritten are struct pages KHO initialised for restored
	// or returned preserved memory (kho_restore_folio, the return of
	// what nobody claimed).
	StructPagesWritten uint64 `json:"struct_pages_written"`
	// TrackerBytes are bytes of the KHO tracker's record written into
	// pages of its own; FDTBytes bytes of handover FDT written.
	TrackerBytes uint64 `json:"tracker_bytes"`
	FDTBytes     uint64 `json:"fdt_bytes"`
	// RecordBytes are bytes of front-end and file records written into
	// preserved memory (LUO's arrays, memfd_luo_ser and its folio array).
	RecordBytes uint64 `json:"record_bytes"`
	// PageCacheRemoved and PageCacheInserted are page-cache entries the
	// preservation layer removed (detach) and inserted (reattach,
	// rebuild, restore).
	PageCacheRemoved  uint64 `json:"page_cache_removed"`
	PageCacheInserted uint64 `json:"page_cache_inserted"`
	// FramesAllocated are frames the live-update machinery allocated:
	// the FDT buffer, tracker pages, records in preserved memory, folios
	// migrated out of scratch, holes filled by pinning.
	FramesAllocated uint64 `json:"frames_allocated"`
}

// Sub returns c - o, field by field.
func (c Counts) Sub(o Counts) Counts {
	return Counts{
		FoliosSerialized:   c.FoliosSerialized - o.FoliosSerialized,
		StructPagesWritten: c.StructPagesWritten - o.StructPagesWritten,
		TrackerBytes:       c.TrackerBytes - o.TrackerBytes,
		FDTBytes:           c.FDTBytes - o.FDTBytes,
		RecordBytes:        c.RecordBytes - o.RecordBytes,
		PageCacheRemoved:   c.PageCacheRemoved - o.PageCacheRemoved,
		PageCacheInserted:  c.PageCacheInserted - o.PageCacheInserted,
		FramesAllocated:    c.FramesAllocated - o.FramesAllocated,
	}
}

// mark is a moment of the run: its order, the counts then and the wall
// clock.
type mark struct {
	seq uint64
	c   Counts
	at  time.Time
}

// Update is the accounting of one kexec.
type Update struct {
	// Carried is how many files the kexec carried; Back how many of
	// them came back in the next kernel (so far).
	Carried, Back int
	// Ended reports that every carried file came back.
	Ended bool
	// Before is the work since the previous update ended (or since the
	// machine started) until the blackout began; Inside the work from
	// then until the last carried file came back (or until now, or the
	// next kexec, if they did not all come back).
	Before, Inside         Counts
	BeforeWall, InsideWall time.Duration
	// KexecWall is the time from the blackout's start to the kexec
	// itself (the reboot path ran then).
	KexecWall time.Duration
}

// Meter accumulates the counts and the updates of one machine.
//
// State machine: running (files may be Lost and Regained) --Kexec-->
// carrying (the carried files come Back one by one) --last Back-->
// running; a further Kexec while carrying closes the update with what came
// back.
type Meter struct {
	Counts
	lost    map[string]mark // the workload lost access to these files, when
	base    mark            // where the next update's Before starts
	start   mark            // the current update's blackout start
	kexecAt time.Time
	pending map[string]bool // carried files not back yet
	cur     *Update
	updates []Update
	seq     uint64
	now     func() time.Time
}

// New returns a Meter that starts now.
func New() *Meter {
	m := &Meter{lost: map[string]mark{}, now: time.Now}
	m.base = m.mark()
	return m
}

func (m *Meter) mark() mark {
	m.seq++
	return mark{seq: m.seq, c: m.Counts, at: m.now()}
}

// Lost records that the workload lost access to the file named key (the
// first loss counts; a file lost twice keeps its first mark).
func (m *Meter) Lost(key string) {
	if m == nil {
		return
	}
	if _, ok := m.lost[key]; !ok {
		m.lost[key] = m.mark()
	}
}

// Regained records that the workload got the file back in the same kernel
// (a GET_FD before kexec, an unpreserve): its loss does not count.
func (m *Meter) Regained(key string) {
	if m != nil {
		delete(m.lost, key)
	}
}

// Kexec opens the update of a kexec that carries the files named in
// carried: the blackout began at the earliest loss among them (or now, if
// the workload lost none of them before). Marks of files not carried are
// dropped: those files do not come back.
func (m *Meter) Kexec(carried []string) {
	if m == nil {
		return
	}
	m.closeCurrent()
	now := m.mark()
	start := now
	for _, k := range carried {
		if mk, ok := m.lost[k]; ok && mk.seq < start.seq {
			start = mk
		}
	}
	m.start = start
	m.kexecAt = now.at
	m.pending = map[string]bool{}
	for _, k := range carried {
		m.pending[k] = true
	}
	m.cur = &Update{
		Carried:    len(m.pending),
		Before:     start.c.Sub(m.base.c),
		BeforeWall: start.at.Sub(m.base.at),
		KexecWall:  now.at.Sub(start.at),
	}
	clear(m.lost)
	if len(m.pending) == 0 {
		m.end()
	}
}

// Back records that a carried file is back in a process of the next
// kernel; the update ends with the last of them. A key not carried (or
// back already) is ignored.
func (m *Meter) Back(key string) {
	if m == nil || !m.pending[key] {
		return
	}
	delete(m.pending, key)
	m.cur.Back++
	if len(m.pending) == 0 {
		m.end()
	}
}

// end closes the current update now.
func (m *Meter) end() {
	now := m.mark()
	m.cur.Ended = len(m.pending) == 0
	m.cur.Inside = now.c.Sub(m.start.c)
	m.cur.InsideWall = now.at.Sub(m.start.at)
	m.updates = append(m.updates, *m.cur)
	m.cur, m.pending = nil, nil
	m.base = now
}

// closeCurrent ends an update whose files did not all come back.
func (m *Meter) closeCurrent() {
	if m.cur != nil {
		m.end()
	}
}

// Updates returns every update so far, the one in progress last (its
// Inside counted until now).
func (m *Meter) Updates() []Update {
	if m == nil {
		return nil
	}
	out := slices.Clone(m.updates)
	if m.cur != nil {
		u := *m.cur
		now := m.mark()
		u.Inside = now.c.Sub(m.start.c)
		u.InsideWall = now.at.Sub(m.start.at)
		out = append(out, u)
	}
	return out
}

// Work returns the counts the live-update code adds to.
func (m *Meter) Work() *Counts { return &m.Counts }

// LostFiles returns how many files the workload has lost access to and
// not regained since the last kexec: non-zero from the first loss of a
// blackout to come until the kexec that carries them.
func (m *Meter) LostFiles() int {
	if m == nil {
		return 0
	}
	return len(m.lost)
}
