package report

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"khosim/machine"
)

// chromiumPath is the Debian package's browser (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on url with the given extra flags and
// returns its standard output. The test skips when Chromium is not
// installed. The deadline only stops a browser that hangs; it says
// nothing about speed.
func chromium(t *testing.T, extra ...string) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (apt-get install chromium): %v", chromiumPath, err)
	}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, append(args, extra...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "chromium %v\n%s", extra, stderr.String())
	return stdout.String()
}

// TestReportInBrowser renders a report in headless Chromium: the
// screenshot is not blank (many distinct colours, among them the colours
// of the kinds the maps show) and the DOM Chromium built holds every SVG
// with its cells, arrows and legend.
func TestReportInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (apt-get install chromium): %v", chromiumPath, err)
	}
	r := recordedRun(t)
	path, err := Write(t.TempDir(), r)
	require.NoError(t, err)
	url := "file://" + path

	shot := filepath.Join(t.TempDir(), "report.png")
	chromium(t, "--hide-scrollbars", "--screenshot="+shot, "--window-size=1280,2400", url)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	colours := distinctColours(img)
	require.Greater(t, len(colours), 32, "the screenshot is not blank: %d colours", len(colours))
	// The first map (before activation) is on screen: its kernel image,
	// memmap, page cache and scratch cells are drawn in their colours.
	for _, k := range []machine.FrameKind{machine.KindKernelImage, machine.KindMemmap, machine.KindScratchFree, machine.KindLowMem} {
		require.Contains(t, colours, hexColour(t, kindColours[k]), "the %v colour %s is on screen", k, kindColours[k])
	}

	dom := chromium(t, "--dump-dom", url)
	require.Equal(t, 1+len(r.Snaps), strings.Count(dom, "<svg"), "every SVG is in the DOM")
	require.Equal(t, len(r.Snaps), strings.Count(dom, `class="memmap"`))
	require.Equal(t, 1, strings.Count(dom, `class="timeline"`))
	require.Greater(t, strings.Count(dom, `class="migration"`), 0, "the migrations out of scratch are drawn")
	require.Greater(t, strings.Count(dom, `class="k-preserved"`), 0)
	require.Greater(t, strings.Count(dom, `class="swatch"`), 6*len(r.Snaps), "each map has a legend")
	require.Contains(t, dom, "/fdbox/vm1/ram/shmem")
}

// distinctColours counts the RGB colours of an image.
func distinctColours(img image.Image) map[color.RGBA]int {
	out := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			out[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), 0xff}]++
		}
	}
	return out
}

func hexColour(t *testing.T, s string) color.RGBA {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	require.NoError(t, err)
	return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 0xff}
}
