package scenarios

import (
	"fmt"
	"strings"

	"khosim/kernel"
	"khosim/scenarios/scn"
)

// Warning is something a statement did that is legal but rarely what its
// author meant: an unsealed box that a kexec will not carry, a write cut
// short at MAX_RW_COUNT, an MADV_PAGEOUT that moved nothing. Warnings do
// not fail a run; -v prints them under their statement and --json lists
// them.
type Warning struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// warnf records a warning of the statement being run.
func (r *runner) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.pendingWarnings = append(r.pendingWarnings, msg)
	line := 0
	if r.cur != nil {
		line = r.cur.Pos().Line
	}
	r.res.Warnings = append(r.res.Warnings, Warning{Line: line, Message: msg})
}

// warnUnsealedBoxes warns of every FDBox box that holds files but is not
// sealed: fdbox_kho_write_boxes skips it, and its files die with the
// kernel at kexec (what = "kho activate" or "kexec").
func (r *runner) warnUnsealedBoxes(what string) {
	d := r.m.FDBox()
	if d == nil {
		return
	}
	for _, b := range d.Boxes() {
		if b.Sealed() || len(b.FDs()) == 0 {
			continue
		}
		var names []string
		var bytes int64
		for _, bfd := range b.FDs() {
			names = append(names, bfd.Name())
			if f := bfd.File(); f != nil {
				bytes += fileSize(f)
			}
		}
		r.warnf("%s: box %q is not sealed: its %d files (%s, %s) are not carried across kexec",
			what, b.Name(), len(names), strings.Join(names, ", "), scn.FormatSize(uint64(bytes)))
	}
}

// warnShortWrite warns of a write that moved fewer bytes than asked
// because one write moves at most MAX_RW_COUNT bytes.
func (r *runner) warnShortWrite(call string, asked uint64, n int64) {
	if n >= 0 && uint64(n) < asked && asked > kernel.MaxRWCount {
		r.warnf("%s wrote %d of %d bytes: one write moves at most MAX_RW_COUNT (%d) bytes; write the rest with another call",
			call, n, asked, kernel.MaxRWCount)
	}
}
