package main

import (
	"bytes"
	"encoding/json"
	"khosim/fault"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

// cli runs the command line in-process and returns its exit status and
// output.
func cli(t *testing.T, tune func(*scenarios.Options), args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	status := khosim(&env{stdout: &out, stderr: &errb, tune: tune}, args)
	return status, out.String(), errb.String()
}

// write creates a scenario file in a temporary directory.
func write(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `machine memory=128MiB seed=3
boot
process p uid=0
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 4KiB, rand(1))
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
p: ioctl(ctl, FDBOX_CREATE_BOX, name="b")
p: box = open("/dev/fdbox/b", O_RDWR)
p: ioctl(box, FDBOX_PUT_FD, fd=m, name="m")
p: ioctl(box, FDBOX_SEAL)
kho activate
kexec
process p uid=0
p: box = open("/dev/fdbox/b", O_RDWR)
p: ioctl(box, FDBOX_UNSEAL)
p: m = ioctl(box, FDBOX_GET_FD, name="m")
expect content(p:m, 0, 4KiB) == rand(1)
`

const failing = `machine memory=128MiB
boot
process p
p: close(3)
`

func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	bad := write(t, dir, "bad.scn", failing)
	syntax := write(t, dir, "syntax.scn", "machine memory=128MiB\nboot\nprocess\np: close(\n")

	tests := []struct {
		name   string
		args   []string
		tune   func(*scenarios.Options)
		status int
		stderr string // regexp
	}{
		{"pass", []string{"run", ok}, nil, 0, `^$`},
		{"fail", []string{"run", ok, bad}, nil, 1, `bad\.scn:4: p: close\(3\): close failed with EBADF`},
		{"parse errors, all of them, nothing runs", []string{"run", bad, syntax}, nil, 2,
			`^[^\n]*syntax\.scn:3:8: [^\n]+\n[^\n]*syntax\.scn:4:10: [^\n]+\n$`},
		{"no files", []string{"run"}, nil, 2, `usage: khosim run`},
		{"missing file", []string{"run", filepath.Join(dir, "nope.scn")}, nil, 2, `nope\.scn: no such file`},
		{"bad flag", []string{"run", "--nope", ok}, nil, 2, `flag provided but not defined`},
		{"unknown command", []string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{"internal error", []string{"run", ok}, func(o *scenarios.Options) {
			o.Trace = func(st scn.Stmt) {
				if _, isKexec := st.(*scn.Kexec); isKexec {
					panic("injected")
				}
			}
		}, 3, `ok\.scn:12: internal error: injected\n    while running: kexec\ngoroutine `},
		{"flags after files", []string{"run", ok, "--seed", "5", "-v"}, nil, 0, `^$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, stderr := cli(t, tc.tune, tc.args...)
			if status != tc.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", status, tc.status, stderr)
			}
			if !regexp.MustCompile(tc.stderr).MatchString(stderr) {
				t.Errorf("stderr does not match %q:\n%s", tc.stderr, stderr)
			}
		})
	}
}

func TestParseErrorsStopEverything(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	syntax := write(t, dir, "syntax.scn", "machine memory=128MiB\nboot\nbogus\n")
	status, stdout, _ := cli(t, nil, "run", "-v", ok, syntax)
	if status != 2 || stdout != "" {
		t.Errorf("status %d, stdout %q: want 2 and nothing run", status, stdout)
	}
}

func TestJSON(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	bad := write(t, dir, "bad.scn", failing)
	status, stdout, _ := cli(t, nil, "run", "--json", ok, bad)
	if status != 1 {
		t.Fatalf("status %d", status)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON object per file, got:\n%s", stdout)
	}
	type failure struct {
		Line    *int    `json:"line"`
		Message *string `json:"message"`
	}
	var objs [2]struct {
		File     *string    `json:"file"`
		Passed   *bool      `json:"passed"`
		Failures *[]failure `json:"failures"`
		Stats    struct {
			Kexecs         *int               `json:"kexecs"`
			PreservedPages *uint64            `json:"preserved_pages"`
			FDTBytes       *uint64            `json:"fdt_bytes"`
			WallMS         *float64           `json:"wall_ms"`
			TimingsMS      map[string]float64 `json:"timings_ms"`
		} `json:"stats"`
	}
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &objs[i]); err != nil {
			t.Fatalf("line %d: %v\n%s", i+1, err, l)
		}
		o := objs[i]
		if o.File == nil || o.Passed == nil || o.Failures == nil || o.Stats.Kexecs == nil ||
			o.Stats.PreservedPages == nil || o.Stats.FDTBytes == nil || o.Stats.WallMS == nil || o.Stats.TimingsMS == nil {
			t.Errorf("line %d lacks a field: %s", i+1, l)
		}
	}
	if *objs[0].File != ok || !*objs[0].Passed || len(*objs[0].Failures) != 0 || *objs[0].Stats.Kexecs != 1 ||
		*objs[0].Stats.PreservedPages == 0 || *objs[0].Stats.FDTBytes == 0 {
		t.Errorf("first object: %s", lines[0])
	}
	if _, ok := objs[0].Stats.TimingsMS["kexec"]; !ok {
		t.Errorf("no kexec timing: %s", lines[0])
	}
	fs := *objs[1].Failures
	if *objs[1].Passed || len(fs) != 1 || *fs[0].Line != 4 || *fs[0].Message != "p: close(3): close failed with EBADF" {
		t.Errorf("second object: %s", lines[1])
	}
}

func TestVerboseEcho(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	status, stdout, _ := cli(t, nil, "run", "-v", ok)
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	for _, want := range []string{
		"=== " + ok + "\n",
		"p: m = memfd_create(\"m\", 0) = ",
		"p: pwrite(m, 0, 4KiB, rand(1)) = 4096\n",
		"kexec = kernel 2\n",
		"expect content(p:m, 0, 4KiB) == rand(1) = ok\n",
		"PASS " + ok,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("-v output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestDumpFDTAndFDT(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	dtb := filepath.Join(dir, "h.dtb")
	if status, _, stderr := cli(t, nil, "run", "--dump-fdt", dtb, ok); status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	blob, err := os.ReadFile(dtb)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) < 40 || !bytes.Equal(blob[:4], []byte{0xd0, 0x0d, 0xfe, 0xed}) {
		t.Fatalf("not a DTB: % x", blob[:min(len(blob), 16)])
	}
	status, stdout, stderr := cli(t, nil, "fdt", dtb)
	if status != 0 || !strings.HasPrefix(stdout, "/dts-v1/;") || !strings.Contains(stdout, "fdbox") {
		t.Errorf("khosim fdt: status %d, stderr %q, stdout:\n%s", status, stderr, stdout)
	}
	if status, _, _ := cli(t, nil, "fdt", ok); status != 1 {
		t.Errorf("khosim fdt of a non-DTB: status %d, want 1", status)
	}
}

func TestFaults(t *testing.T) {
	status, stdout, _ := cli(t, nil, "faults")
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	for _, s := range fault.Sites() {
		if !regexp.MustCompile(`(?m)^` + string(s.Site) + ` +` + s.Errno.Name() + ` `).MatchString(stdout) {
			t.Errorf("khosim faults lacks %s %s:\n%s", s.Site, s.Errno.Name(), stdout)
		}
	}
}

func TestDemoScript(t *testing.T) {
	status, stdout, _ := cli(t, nil, "demo", "--script")
	if status != 0 || !strings.Contains(stdout, "machine memory=2GiB") {
		t.Errorf("status %d:\n%s", status, stdout)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1 << 30: "1 GiB", 4325376: "4.1 MiB", 1536: "1.5 KiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestDumpFDTReadableByDtc checks the promise of --dump-fdt: the saved
// blob is one `dtc -I dtb -O dts` reads (when dtc is installed).
func TestDumpFDTReadableByDtc(t *testing.T) {
	dtc, err := exec.LookPath("dtc")
	if err != nil {
		t.Skip("dtc is not installed")
	}
	dir := t.TempDir()
	ok := write(t, dir, "ok.scn", good)
	dtb := filepath.Join(dir, "h.dtb")
	if status, _, stderr := cli(t, nil, "run", "--dump-fdt", dtb, ok); status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	out, err := exec.Command(dtc, "-I", "dtb", "-O", "dts", dtb).CombinedOutput()
	if err != nil {
		t.Fatalf("dtc -I dtb -O dts: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `compatible = "fdbox,box-v1";`) {
		t.Errorf("dtc output lacks the box:\n%s", out)
	}
	// dtc compiles its own output back, and fdtget reaches the storage
	// node by path (shmem-v3 names it).
	dts := filepath.Join(dir, "h.dts")
	again := filepath.Join(dir, "again.dtb")
	if err := os.WriteFile(dts, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(dtc, "-q", "-I", "dts", "-O", "dtb", "-o", again, dts).CombinedOutput(); err != nil {
		t.Fatalf("dtc -I dts -O dtb of dtc's output: %v\n%s", err, out)
	}
	if fdtget, err := exec.LookPath("fdtget"); err == nil {
		out, err := exec.Command(fdtget, "-t", "s", again, "/fdbox/b/m/shmem", "file-name").CombinedOutput()
		if err != nil || string(out) != "memfd:m\n" {
			t.Errorf("fdtget /fdbox/b/m/shmem file-name: %v %q", err, out)
		}
	}
}

// TestDemoReport runs a small KHO round trip and checks the report the
// demo prints for it (the 1 GiB demo itself runs in go test ./scenarios/).
func TestDemoReport(t *testing.T) {
	s, err := scenarios.Parse("small.scn", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	res := scenarios.Run(s, scenarios.Options{})
	var out bytes.Buffer
	report(&env{stdout: &out}, s, res, 0)
	for _, want := range []string{
		"machine     128 MiB of RAM, seed 3\n",
		`preserved   box "b": memfd "m" (4 KiB, 1 pages)`,
		"1 box, 1 file, 1 pages, 4 KiB of file data\n",
		"handover    FDT of ",
		", 1 pages preserved in physical memory\n",
		"wall time   create+fill+hash ",
		"verdict     PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	b := newProgressBar(&out)
	b.update(scenarios.Progress{What: "p: pwrite(m, 0, 1GiB, rand(1))", Done: 0, Total: 1 << 30})
	b.update(scenarios.Progress{What: "p: pwrite(m, 0, 1GiB, rand(1))", Done: 1 << 29, Total: 1 << 30}) // within 100ms: not drawn
	b.update(scenarios.Progress{What: "p: pwrite(m, 0, 1GiB, rand(1))", Done: 1 << 30, Total: 1 << 30, Finished: true})
	want := "\r\x1b[Kp: pwrite(m, 0, 1GiB, rand(1))           [..............................]   0% of 1GiB\r\x1b[K"
	if out.String() != want {
		t.Errorf("drew %q, want %q", out.String(), want)
	}
}

// TestRunBuild: --build KEY=VALUE changes every file's default kernel
// build (a boot's own key still wins); a bad key or value is a usage
// error before anything runs.
func TestRunBuild(t *testing.T) {
	dir := t.TempDir()
	plain := write(t, dir, "plain.scn", "machine memory=128MiB\nboot\n")
	pinned := write(t, dir, "pinned.scn", "machine memory=128MiB\nboot kho=arrays\n")
	status, out, stderr := cli(t, nil, "run", "-v", "--build", "kho=radix", "--build", "luo=on", plain, pinned)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	for _, want := range []string{
		"boot = kernel 1 (kho=radix fdbox=stash luo=on ",
		"boot kho=arrays = kernel 1 (kho=arrays fdbox=stash luo=on ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"kho", "kho=trees", "cpus=4"} {
		if status, out, _ := cli(t, nil, "run", "--build", bad, plain); status != exitUsage || out != "" {
			t.Errorf("--build %s: status %d, stdout %q; want a usage error and nothing run", bad, status, out)
		}
	}
}
