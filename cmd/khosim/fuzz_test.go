package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFuzzAndReduceCommands(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	dir := t.TempDir()
	if rc := fuzzCmd(e, []string{"--runs", "2", "--steps", "6", "--out", dir, "--shard", "1/3"}); rc != exitOK {
		t.Fatalf("fuzz = %d\n%s%s", rc, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "fuzz: 2 scenarios") {
		t.Fatalf("summary: %q", out.String())
	}
	if rc := fuzzCmd(e, []string{"--shard", "3/3"}); rc != exitUsage {
		t.Fatalf("--shard 3/3 = %d, want usage", rc)
	}
	bad := filepath.Join(dir, "bad.scn")
	src := "machine memory=256MiB\nboot\nprocess p uid=0\np: m = memfd_create(\"m\", 0)\nlet x = 1\np: pwrite(m, 0, 4KiB, zeros)\nexpect size(p:m) == 8KiB\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if rc := reduceCmd(e, []string{"--time", "30s", bad}); rc != exitOK {
		t.Fatalf("reduce = %d\n%s", rc, errb.String())
	}
	if strings.Contains(out.String(), "let x") || !strings.Contains(out.String(), "expect size") {
		t.Fatalf("reduced:\n%s", out.String())
	}
}
