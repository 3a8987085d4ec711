package scenarios

import (
	"strings"
	"testing"

	"khosim/machine"
	"khosim/report"
)

// reportScn boxes a memfd, takes a snapshot, and fails after the
// restore.
const reportScn = `machine memory=128MiB seed=2
boot
process vmm uid=0
vmm: ram = memfd_create("guest-ram", 0)
vmm: pwrite(ram, 0, 64KiB, rand(7))
vmm: ctl = open("/dev/fdbox/fdbox", O_RDWR)
vmm: ioctl(ctl, FDBOX_CREATE_BOX, name="vm1")
vmm: box = open("/dev/fdbox/vm1", O_RDWR)
vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name="ram")
vmm: ioctl(box, FDBOX_SEAL)
snapshot sealed
kho activate
kexec
process vmm2 uid=0
vmm2: box = open("/dev/fdbox/vm1", O_RDWR)
vmm2: ioctl(box, FDBOX_UNSEAL)
vmm2: ram = ioctl(box, FDBOX_GET_FD, name="ram")
expect content(vmm2:ram, 0, 64KiB) == rand(8)
`

// TestRunWithReport: the runner fills Options.Report as the run goes —
// each statement before the phases it caused, the snapshot by name, the
// blackout from the PUT_FD (which took the workload's file) to the
// GET_FD, the failure with its state and a map — and calls Finish.
func TestRunWithReport(t *testing.T) {
	r := report.NewRun("report.scn")
	var atSnap []string
	var atEnd int
	res := runSource(t, "report.scn", reportScn, Options{
		Report:     r,
		AtSnapshot: func(name string, m *machine.Machine) { atSnap = append(atSnap, name) },
		AtEnd:      func(m *machine.Machine) { atEnd = m.Kernel().BootID },
	})
	if res.Passed || len(res.Failures) != 1 {
		t.Fatalf("passed %v, failures %v", res.Passed, res.Failures)
	}
	if !r.Done || r.Passed {
		t.Errorf("Finish: done %v passed %v", r.Done, r.Passed)
	}
	if strings.Join(atSnap, ",") != "sealed" || atEnd != 2 {
		t.Errorf("AtSnapshot saw %q, AtEnd kernel %d", atSnap, atEnd)
	}
	var labels []string
	for _, s := range r.Snaps {
		labels = append(labels, s.Label)
	}
	want := "sealed|before activation (boot 1)|after activation (boot 1)|after early boot (boot 2)|after restore (boot 2)|failure at line 18"
	if got := strings.Join(labels, "|"); got != want {
		t.Errorf("snapshots\n got %s\nwant %s", got, want)
	}
	var events []string
	for _, e := range r.Events {
		if e.Kind == report.EventStatement {
			events = append(events, e.Text)
		} else {
			events = append(events, string(e.Kind)+": "+e.Text)
		}
		if e.Snap >= 0 && r.Snaps[e.Snap].Event < 0 {
			t.Errorf("event %q: snapshot %d lost its event", e.Text, e.Snap)
		}
	}
	for i, s := range r.Snaps {
		if s.Event < 0 || r.Events[s.Event].Snap != i {
			t.Errorf("snapshot %d (%s) and its event %d disagree", i, s.Label, s.Event)
		}
	}
	joined := strings.Join(events, "\n")
	for _, seq := range [][]string{
		{"snapshot sealed", "snapshot: sealed"},
		{"blackout start: the workload lost a file here; the kexec at line 13 carried 1", `vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name="ram")`, "vmm: ioctl(box, FDBOX_SEAL)"},
		{"kho activate", "phase: before activation", "phase: after activation"},
		{"kexec", "phase: after early boot", "phase: after restore"},
		{`vmm2: ram = ioctl(box, FDBOX_GET_FD, name="ram")`, "blackout end: the last of the 1 carried files is back in a process"},
		{"expect content(vmm2:ram, 0, 64KiB) == rand(8)", "failure: expect content(vmm2:ram, 0, 64KiB) == rand(8)"},
	} {
		if !strings.Contains(joined, strings.Join(seq, "\n")) {
			t.Errorf("the timeline lacks, in a row:\n  %s\ntimeline:\n%s", strings.Join(seq, "\n  "), joined)
		}
	}
	if len(r.Fails) != 1 || len(r.Fails[0].Dump) == 0 || r.Fails[0].Snap < 0 {
		t.Fatalf("failures %+v", r.Fails)
	}
	for _, e := range r.Events {
		if e.Text == "kho activate" && e.Kind == report.EventStatement {
			if !strings.Contains(countsOf(e.Counts), "folios serialized 16") {
				t.Errorf("kho activate's work: %s", countsOf(e.Counts))
			}
		}
	}
}

func countsOf(cs []report.Count) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Name+" "+itoa(c.Value))
	}
	return strings.Join(parts, ", ")
}

func itoa(v uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + v%10)}, b...)
		if v /= 10; v == 0 {
			return string(b)
		}
	}
}

// TestSnapshotNeedsAKernel: `snapshot` before boot fails, with or without
// a report, and changes nothing else.
func TestSnapshotNeedsAKernel(t *testing.T) {
	for _, opts := range []Options{{}, {Report: report.NewRun("x")}} {
		res := runSource(t, "s.scn", "machine memory=128MiB\nsnapshot early\n", opts)
		if res.Passed || len(res.Failures) != 1 || !strings.Contains(res.Failures[0].Message, "snapshot early: no kernel is running (boot first)") {
			t.Errorf("report %v: %+v", opts.Report != nil, res.Failures)
		}
	}
	res := runSource(t, "s.scn", "machine memory=128MiB\nboot\nsnapshot a\nexpect frames(preserved) == 0\n", Options{})
	if !res.Passed {
		t.Errorf("%+v", res.Failures)
	}
}
