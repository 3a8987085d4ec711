package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/kernel"
	"khosim/machine"
	"khosim/uapi"
)

// fakeClock advances a millisecond per reading: deterministic times.
func fakeClock() func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
}

// recordedRun drives a live update with a Run recording it as a runner
// would: every statement, a snapshot at every phase (Watch), a named
// snapshot, the blackout from the PUT_FD to the GET_FD, and a failure.
func recordedRun(t *testing.T) *Run {
	t.Helper()
	m := newMachine(t)
	r := NewRun("live-update.scn")
	r.Now = fakeClock()
	r.Watch(m)
	liveUpdate(t, m, func(line int, text string, err error) {
		r.Statement(line, text, 2*time.Millisecond, err, Count{"frames used", m.FrameCounts()["used"]})
		switch line {
		case 5:
			require.NoError(t, r.Snapshot(m, "filler closed"))
		case 9:
			r.BlackoutStart(line, "PUT_FD took the memfd's last fd")
		case 16:
			r.BlackoutEnd(line, "GET_FD returned the memfd", Count{"folios restored", 512})
		}
	})
	r.Statement(17, "expect frames(used) == 0", 0, errors.New("frames(used) is 512, want 0"))
	r.Fail(17, "expect frames(used) == 0", "frames(used) is 512, want 0", []string{"handover FDT node:", "/fdbox/vm1/ram {", "\tpos = /* u64 0 */ [00 00 00 00 00 00 00 00];", "};"})
	r.Finish(false)
	return r
}

func render(t *testing.T, r *Run) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Render(&b, r))
	return b.String()
}

// svgsOf returns every inline <svg>...</svg> of an HTML page.
func svgsOf(html string) []string {
	return regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(html, -1)
}

func TestReportContents(t *testing.T) {
	r := recordedRun(t)
	require.Len(t, r.Snaps, 6, "4 phases, the named snapshot and the failure's")
	var phases []machine.Phase
	for _, s := range r.Snaps {
		if s.Phase != "" {
			phases = append(phases, s.Phase)
		}
	}
	require.Equal(t, []machine.Phase{machine.PhaseBeforeActivation, machine.PhaseActivated, machine.PhaseEarlyBoot, machine.PhaseRestored}, phases)
	html := render(t, r)

	require.NotContains(t, html, `<td class="n">-`, "no event before the run began")
	// Self-contained: nothing to fetch, no script.
	for _, bad := range []string{"<script", "src=", "<link", "@import", "https://"} {
		require.NotContains(t, html, bad)
	}
	require.Equal(t, strings.Count(html, "http://"), strings.Count(html, `xmlns="http://www.w3.org/2000/svg"`), "the only URLs are SVG namespaces")
	for _, m := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		require.True(t, strings.HasPrefix(m[1], "#"), "link %q leaves the page", m[1])
	}
	for _, m := range regexp.MustCompile(`url\(([^)]*)\)`).FindAllStringSubmatch(html, -1) {
		require.True(t, strings.HasPrefix(m[1], "#"), "url(%s) leaves the page", m[1])
	}

	svgs := svgsOf(html)
	require.Len(t, svgs, 1+6, "the timeline and a map per snapshot")
	for i, s := range svgs {
		d := xml.NewDecoder(strings.NewReader(s))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			require.NoError(t, err, "svg %d is well-formed", i)
		}
	}
	for _, want := range []string{
		"<span class=\"fail\">FAIL</span>",
		"128 MiB of RAM, swap 0 B, KHO scratch 16 MiB, seed 1",
		"before activation (boot 1)", "after activation (boot 1)", "after early boot (boot 2)", "after restore (boot 2)",
		"filler closed", "failure at line 17",
		`class="blackout"`, "blackout: ", // the runner's marks, with the duration
		"folios preserved 512", "folios migrated out of scratch 512", // the activation's counts
		"ranges claimed 512",
		"GET_FD returned the memfd", "folios restored 512",
		// The handover decoded.
		"Outgoing FDT at 0x", `kho=arrays, root compatible "kho-v1"`,
		`512 ranges, 2 MiB, in 1 "mem" properties`, "512 of order 0 (4 KiB)",
		"<b>shmem</b> <span class=\"muted\">/fdbox/vm1/ram/shmem</span>", "fdbox,shmem-v3", "memfd:guest-ram", "<td>mode</td><td>mode</td><td>0666</td>",
		"<td>size</td><td>size</td><td>2097152 (2 MiB)</td>", "... 448 more", "uptodate|dirty",
		"The next kernel received this FDT at 0x",
		// The failure.
		"frames(used) is 512, want 0", "\tpos = /* u64 0 */",
	} {
		require.Contains(t, html, want)
	}
}

// TestReportWithoutBlackoutMarks: a runner that marks no blackout gets the
// span from activation to restore, labelled as such.
func TestReportWithoutBlackoutMarks(t *testing.T) {
	m := newMachine(t)
	r := NewRun("plain")
	r.Now = fakeClock()
	r.Watch(m)
	liveUpdate(t, m, nil)
	r.Finish(true)
	html := render(t, r)
	require.Contains(t, html, "activation to restore (the runner marked no blackout)")
	require.Contains(t, html, `<span class="pass">PASS</span>`)
	require.NotContains(t, html, `id="failures"></h2>`+"\n<div")
}

func TestReportEmpty(t *testing.T) {
	r := NewRun("nothing")
	html := render(t, r)
	require.Contains(t, html, "No events.")
	require.Contains(t, html, "No snapshot was taken.")
	require.Contains(t, html, "No handover FDT was written or received.")
	require.Contains(t, html, "not finished")
}

func TestWrite(t *testing.T) {
	dir := t.TempDir() + "/out/report"
	r := NewRun("t")
	path, err := Write(dir, r)
	require.NoError(t, err)
	require.Equal(t, dir+"/"+IndexFile, path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("<!DOCTYPE html>")))
	// An unwritable place fails.
	_, err = Write(path+"/x", r)
	require.Error(t, err)
}

// TestSnapshotNoKernel: without a running kernel there is nothing to map.
func TestSnapshotNoKernel(t *testing.T) {
	m, err := machine.New(machine.Config{Memory: 128 * MiB})
	require.NoError(t, err)
	defer m.Close()
	_, err = Snapshot(m, "x")
	require.Error(t, err)
	r := NewRun("x")
	r.Watch(m)
	require.Error(t, r.Snapshot(m, "x"))
	r.Fail(1, "boot", "no kernel", nil)
	require.Equal(t, -1, r.Fails[0].Snap)
}

// BenchmarkSnapshot1GiB: a snapshot (memory map, counts, decoded FDT) and
// its SVG on a 2 GiB machine whose 1 GiB memfd of 4 KiB folios is
// preserved (262144 folios, a 6 MiB FDT).
//
//	go test ./report -run XXX -bench Snapshot1GiB -benchtime 5x
func BenchmarkSnapshot1GiB(b *testing.B) {
	m, err := machine.New(machine.Config{Memory: 2 << 30})
	require.NoError(b, err)
	defer m.Close()
	require.NoError(b, m.Boot(kbuild.Default()))
	k := m.Kernel()
	p := k.NewTask("vmm", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	fd, err := p.MemfdCreate("guest-ram", uapi.MFD_NOEXEC_SEAL)
	require.NoError(b, err)
	_, err = p.Pwrite(fd, 0, 1<<30, pattern(3))
	require.NoError(b, err)
	ctl, _ := p.Open("/dev/fdbox/fdbox", uapi.O_RDWR)
	var cb uapi.FdboxCreateBox
	uapi.SetName(&cb.Name, "vm1")
	_, err = p.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &cb)
	require.NoError(b, err)
	box, _ := p.Open("/dev/fdbox/vm1", uapi.O_RDWR)
	put := uapi.FdboxPutFD{FD: uint32(fd)}
	uapi.SetName(&put.Name, "ram")
	_, err = p.Ioctl(box, uapi.FDBOX_PUT_FD, &put)
	require.NoError(b, err)
	_, err = p.Ioctl(box, uapi.FDBOX_SEAL, nil)
	require.NoError(b, err)
	require.NoError(b, m.KHOActivate())
	b.ResetTimer()
	for b.Loop() {
		s, err := Snapshot(m, "bench")
		require.NoError(b, err)
		require.NoError(b, WriteMemMapSVG(io.Discard, s.Map, SVGOptions{}))
	}
}
