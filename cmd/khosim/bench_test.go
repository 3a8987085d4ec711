package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"khosim/bench"
)

func TestBenchFlags(t *testing.T) {
	f, err := parseBenchFlags(nil, io.Discard)
	if err != nil || len(f.sizes) != 4 || len(f.orders) != 2 || f.runs != bench.DefaultRuns || f.warmup != bench.DefaultWarmup || f.json {
		t.Fatalf("defaults: %+v, %v", f, err)
	}
	f, err = parseBenchFlags([]string{"--sizes", "2MiB,1GiB", "--orders", "9", "--runs", "1", "--warmup", "0", "--json"}, io.Discard)
	if err != nil || len(f.sizes) != 2 || f.sizes[1] != bench.GiB || len(f.orders) != 1 || f.orders[0] != 9 || f.runs != 1 || f.warmup != 0 || !f.json {
		t.Fatalf("parsed: %+v, %v", f, err)
	}
	for _, bad := range [][]string{
		{"--sizes", "1MiB"}, {"--sizes", "lots"}, {"--orders", "3"}, {"--designs", "box"}, {"--kho", "lists"}, {"--runs", "0"}, {"--warmup", "-1"}, {"extra"}, {"--nope"},
	} {
		var errb bytes.Buffer
		if status := benchMain(bad, io.Discard, &errb); status != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", bad, status, exitUsage, errb.String())
		}
	}
	if status := benchMain([]string{"-h"}, io.Discard, io.Discard); status != exitOK {
		t.Errorf("-h: exit %d", status)
	}
}

// TestBenchTiny runs `khosim bench` on a 2 MiB memfd at both orders, as a
// table and as JSON.
func TestBenchTiny(t *testing.T) {
	var out, errb bytes.Buffer
	status := khosim(&env{stdout: &out, stderr: &errb}, []string{"bench", "--sizes", "2MiB", "--runs", "1"})
	if status != exitOK {
		t.Fatalf("exit %d: %s", status, errb.String())
	}
	lines := strings.Split(out.String(), "\n")
	cols := func(l string) string { return strings.Join(strings.Fields(l)[:5], " ") }
	if !strings.HasPrefix(strings.TrimSpace(lines[0]), "SIZE") || cols(lines[1]) != "2MiB 0 stash arrays 512" ||
		cols(lines[2]) != "2MiB 9 stash arrays 1" {
		t.Fatalf("table:\n%s", out.String())
	}
	for _, want := range []string{"not measured", "peak RSS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	errb.Reset()
	status = benchMain([]string{"--sizes", "2MiB", "--orders", "0", "--runs", "1", "--json"}, &out, &errb)
	if status != exitOK {
		t.Fatalf("--json: exit %d: %s", status, errb.String())
	}
	var row map[string]any
	if err := json.Unmarshal(out.Bytes(), &row); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	for _, k := range []string{"size_bytes", "folio_order", "pages", "activate_ns", "kexec_ns", "restore_ns", "metadata_bytes", "copy_ns"} {
		if _, ok := row[k]; !ok {
			t.Errorf("JSON row lacks %q: %s", k, out.String())
		}
	}
	if row["pages"] != float64(512) || row["size_bytes"] != float64(2<<20) {
		t.Errorf("JSON row: %s", out.String())
	}
	if !strings.Contains(errb.String(), "peak RSS") {
		t.Errorf("--json: the summary goes to stderr: %q", errb.String())
	}
}

// TestBenchProfileAndFaults runs a tiny bench with --cpuprofile and -v:
// the profile is written (a gzipped protobuf), -v reports host page
// faults per timed phase, and an unwritable profile path fails cleanly.
func TestBenchProfileAndFaults(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	var out, errb bytes.Buffer
	status := benchMain([]string{"--sizes", "2MiB", "--orders", "0", "--runs", "1", "--warmup", "1", "-v", "--cpuprofile", prof}, &out, &errb)
	if status == exitFail && strings.Contains(errb.String(), "profiling already in use") {
		t.Skip("the test binary is being profiled (go test -cpuprofile)")
	}
	if status != exitOK {
		t.Fatalf("exit %d: %s", status, errb.String())
	}
	b, err := os.ReadFile(prof)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile %s: %d bytes, %v", prof, len(b), err)
	}
	for _, want := range []string{"warm-up cycle 1 (untimed)", "cycle 1: activate", "host page faults"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("-v output lacks %q:\n%s", want, errb.String())
		}
	}
	errb.Reset()
	bad := filepath.Join(t.TempDir(), "no", "such", "dir", "cpu.prof")
	if status := benchMain([]string{"--sizes", "2MiB", "--runs", "1", "--cpuprofile", bad}, io.Discard, &errb); status != exitFail {
		t.Errorf("unwritable profile: exit %d, want %d (%s)", status, exitFail, errb.String())
	}
}
