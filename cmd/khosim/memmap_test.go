package main

import (
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

const memmapScn = "testdata/memmap.scn"

// TestMemmapSVGGolden draws the map of testdata/memmap.scn at its
// `snapshot activated` and compares it with the golden file: the same
// scenario draws the same bytes. The structure is checked too, so that a
// rewritten golden file (-update) is still a map worth having.
func TestMemmapSVGGolden(t *testing.T) {
	status, svg, stderr := cli(t, nil, "memmap", "--svg", "-", "--at", "activated", memmapScn)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	golden := filepath.Join("testdata", "memmap-activated.svg")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if svg != string(want) {
		t.Errorf("the SVG differs from %s (go test ./cmd/khosim -run TestMemmapSVGGolden -update rewrites it)", golden)
	}
	_, again, _ := cli(t, nil, "memmap", "--svg", "-", "--at", "activated", memmapScn)
	if again != svg {
		t.Error("two runs of one scenario drew different maps")
	}
	checkMapSVG(t, svg)
	for _, want := range []string{
		"snapshot activated — boot 1", // the title
		"memfd:guest-ram",             // an owner in a range's title
		"outgoing handover FDT",       // the FDT's range
		`class="migration"`,           // folios kho activate moved out of scratch
		"315 pages",                   // ... as many as the trace has
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("the map lacks %q", want)
		}
	}
}

// checkMapSVG checks that svg is well-formed and that every shape has a
// title, and that the legend and the scratch band are drawn.
func checkMapSVG(t *testing.T, svg string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	depth, shapes, titled := 0, 0, 0
	var open []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			depth++
			if x.Name.Local == "title" && len(open) > 0 && (open[len(open)-1] == "rect" || open[len(open)-1] == "path") {
				titled++
			}
			if x.Name.Local == "rect" || x.Name.Local == "path" {
				shapes++
			}
			open = append(open, x.Name.Local)
		case xml.EndElement:
			depth--
			open = open[:len(open)-1]
		}
	}
	if depth != 0 || shapes == 0 {
		t.Fatalf("depth %d, %d shapes", depth, shapes)
	}
	if n := strings.Count(svg, `class="swatch"`); n < 6 {
		t.Errorf("the legend has %d swatches", n)
	}
	if !regexp.MustCompile(`KHO scratch`).MatchString(svg) {
		t.Error("the scratch is not marked")
	}
	if titled*2 < shapes {
		t.Errorf("only %d of %d shapes have a title", titled, shapes)
	}
}

// TestMemmapText prints the map at the end: the next kernel, with the
// memfd back in the page cache and nothing preserved.
func TestMemmapText(t *testing.T) {
	status, out, stderr := cli(t, nil, "memmap", memmapScn)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	for _, want := range []string{"memory map of boot 2 ", "page-cache    memfd:guest-ram", "migrations out of scratch: 0 pages"} {
		if !strings.Contains(out, want) {
			t.Errorf("the map lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " preserved   ") {
		t.Errorf("frames still preserved after the restore:\n%s", out)
	}
	status, out, _ = cli(t, nil, "memmap", "--at", "written", memmapScn)
	if status != 0 || !strings.Contains(out, "memfd:guest-ram (inode 2)  [scratch]") {
		t.Errorf("at written: status %d, no guest-ram folio in scratch:\n%s", status, out)
	}
}

func TestMemmapErrors(t *testing.T) {
	status, _, stderr := cli(t, nil, "memmap", "--at", "nope", memmapScn)
	if status != exitFail || !strings.Contains(stderr, "reached no `snapshot nope`") {
		t.Errorf("unknown snapshot: status %d, %q", status, stderr)
	}
	if status, _, _ := cli(t, nil, "memmap"); status != exitUsage {
		t.Errorf("no file: status %d", status)
	}
	dir := t.TempDir()
	f := write(t, dir, "fail.scn", failing)
	status, out, stderr := cli(t, nil, "memmap", f)
	if status != exitFail || !strings.Contains(out, "memory map of boot 1") || !strings.Contains(stderr, "close(3)") {
		t.Errorf("a failing file: status %d, stderr %q, the map where it stopped:\n%s", status, stderr, out)
	}
}
