package main

import (
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readReport returns DIR/index.html.
func readReport(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunReport: `khosim run --report DIR` writes one self-contained page
// with the four phases' maps and the scenario's snapshots in order, the
// statements before the phases they caused, the blackout from the PUT_FD
// to the GET_FD, and the handover decoded.
func TestRunReport(t *testing.T) {
	dir := t.TempDir()
	status, _, stderr := cli(t, nil, "run", "--report", dir, memmapScn)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	html := readReport(t, dir)
	var maps []string
	for _, m := range regexp.MustCompile(`<h3>\d+\. ([^<]*)</h3>`).FindAllStringSubmatch(html, -1) {
		maps = append(maps, m[1])
	}
	want := []string{"written", "before activation (boot 1)", "after activation (boot 1)", "activated", "after early boot (boot 2)", "after restore (boot 2)"}
	if strings.Join(maps, "|") != strings.Join(want, "|") {
		t.Errorf("maps %q, want %q", maps, want)
	}
	for _, bad := range []string{"<script", "src=", "<link", "@import", "https://"} {
		if strings.Contains(html, bad) {
			t.Errorf("the report is not self-contained: %q", bad)
		}
	}
	// The timeline's table, in order.
	order := []string{
		"<td>vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name=&quot;ram&quot;)</td>",
		"<td>kho activate</td>", "<i>phase</i>: before activation", "<i>phase</i>: after activation",
		"<td>kexec</td>", "<i>phase</i>: after early boot", "<i>phase</i>: after restore",
		"<td>vmm2: ram = ioctl(box, FDBOX_GET_FD, name=&quot;ram&quot;)</td>",
		"<i>blackout end</i>: the last of the 1 carried files is back in a process",
	}
	at := 0
	for _, s := range order {
		i := strings.Index(html[at:], s)
		if i < 0 {
			t.Fatalf("the timeline lacks %q after offset %d", s, at)
		}
		at += i + len(s)
	}
	blackout := regexp.MustCompile(`<td class="n">17</td><td><i>blackout start</i>: the workload lost a file here; the kexec at line 21 carried 1`)
	if !blackout.MatchString(html) {
		t.Error("the blackout does not start at the PUT_FD (line 17)")
	}
	for _, s := range []string{
		"folios serialized 1024",      // kho activate's work
		"migrated out of scratch 315", // ... and its migrations
		`class="migration"`,           // drawn
		"/fdbox/vm1/ram/shmem",        // the handover decoded
		"<td>size</td><td>size</td><td>4194304 (4 MiB)</td>",
		`<span class="pass">PASS</span>`,
	} {
		if !strings.Contains(html, s) {
			t.Errorf("the report lacks %q", s)
		}
	}
}

// TestRunReportFailure: a failing statement is in the report with its
// state dump and the memory map at the failure; several files get a page
// each and an index.
func TestRunReportFailure(t *testing.T) {
	dir := t.TempDir()
	f := write(t, t.TempDir(), "refs.scn", `machine memory=128MiB seed=1
boot
process p uid=0
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 8KiB, rand(1))
expect content(p:m, 0, 8KiB) == rand(2)
`)
	status, _, _ := cli(t, nil, "run", "--report", dir, memmapScn, f)
	if status != exitFail {
		t.Fatalf("status %d", status)
	}
	index := readReport(t, dir)
	if !strings.Contains(index, `<a href="1-memmap/index.html">`) || !strings.Contains(index, `<a href="2-refs/index.html">`) {
		t.Fatalf("index:\n%s", index)
	}
	html := readReport(t, filepath.Join(dir, "2-refs"))
	for _, s := range []string{`<span class="fail">FAIL</span>`, "failure at line 6", "expect content(p:m, 0, 8KiB) == rand(2)", "folio"} {
		if !strings.Contains(html, s) {
			t.Errorf("the failure's report lacks %q", s)
		}
	}
}

const chromium = "/usr/bin/chromium"

// TestDemoReportInBrowser renders `khosim demo --report` in headless
// Chromium (Debian package chromium; skipped without it, and in -short
// mode: the demo fills 1 GiB): the screenshot is not blank, and the DOM
// Chromium built holds the timeline, the four maps with their legends,
// and the decoded handover. (The demo's memfd is not in scratch: the
// migrations are drawn in TestRunReport's and TestMemmapSVGGolden's.)
func TestDemoReportInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo fills 1 GiB")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s is not installed (apt-get install chromium): %v", chromium, err)
	}
	dir := t.TempDir()
	if status, _, stderr := cli(t, nil, "demo", "--report", dir); status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	url := "file://" + filepath.Join(dir, "index.html")
	shot := filepath.Join(t.TempDir(), "demo.png")
	browse(t, "--hide-scrollbars", "--screenshot="+shot, "--window-size=1280,4000", url)
	if keep := os.Getenv("KHOSIM_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(keep, b, 0o644)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if n := colours(img); n < 32 {
		t.Errorf("the screenshot has %d colours: blank", n)
	}
	dom := browse(t, "--dump-dom", url)
	for s, n := range map[string]int{
		`class="memmap"`: 4, `class="timeline"`: 1, "<svg": 5,
	} {
		if got := strings.Count(dom, s); got != n {
			t.Errorf("the DOM has %d %s, want %d", got, s, n)
		}
	}
	for _, s := range []string{
		`class="swatch"`, `class="blackout"`, `class="k-preserved"`,
		"before activation (boot 1)", "after activation (boot 1)", "after early boot (boot 2)", "after restore (boot 2)",
		"/fdbox/vm1/ram/shmem", "fdbox,shmem-v3", "262144 ranges, 1 GiB",
	} {
		if !strings.Contains(dom, s) {
			t.Errorf("the DOM lacks %q", s)
		}
	}
}

// browse runs headless Chromium with args and returns its stdout. The
// deadline only stops a browser that hangs.
func browse(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// colours counts the distinct colours of an image.
func colours(img image.Image) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	return len(seen)
}
