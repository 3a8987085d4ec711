package scenarios

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"khosim/scenarios/scn"
)

// metamorphicBuilds are the kernel builds every library scenario must pass
// under with the same user-visible results: each KHO tracker (issue 13:
// "one scenario run under each tracker gives the same user-visible
// results"), and CONFIG_DEFERRED_STRUCT_PAGE_INIT, which changes which
// free frame an allocation gets and nothing a user may rely on.
var metamorphicBuilds = []struct {
	name string
	keys []scn.BuildKey
}{
	{"kho=arrays", []scn.BuildKey{{Key: "kho", Value: "arrays"}}},
	{"kho=bitmaps", []scn.BuildKey{{Key: "kho", Value: "bitmaps"}}},
	{"kho=radix", []scn.BuildKey{{Key: "kho", Value: "radix"}}},
	{"deferred_struct_page_init=on", []scn.BuildKey{{Key: "deferred_struct_page_init", Value: "on"}}},
}

// metamorphicExcluded lists the library files that are not run under
// every tracker, each with the reason. A file is excluded only when the
// tracker is part of its story: it pins kho= on a boot or kexec, so the
// override would not change what it runs (TestMetamorphicExclusions
// checks that each excluded file does pin one).
var metamorphicExcluded = map[string]string{
	"library/corrupt_fdt_nodes.scn": "its corrupt fdt offsets are those of the arrays FDT's layout (it pins kho=arrays)",
	"library/luo_kho_finalized.scn": "its story is what a finalizing tracker (bitmaps) refuses that radix allows; it pins both",
	"library/kho_v1_hazard.scn":     "its story is a kexec from one tracker to another (kho=arrays <-> kho=bitmaps, both kho-v1)",
}

// TestMetamorphicTrackers runs every library scenario under kho=arrays,
// kho=bitmaps and kho=radix (Options.Build: the file's default build, so
// `boot` boots that tracker and kexecs inherit it) and requires each run
// to pass with the same user-visible results as under arrays: the result
// of every system call and the value of every expectation and let that
// does not count frames (the trackers' own pages and the FDT's size are
// what differs, by design). With -short the 1 GiB demo is skipped.
func TestMetamorphicTrackers(t *testing.T) {
	for _, file := range LibraryFiles() {
		name := strings.TrimSuffix(strings.TrimPrefix(file, "library/"), ".scn")
		t.Run(name, func(t *testing.T) {
			if why, ok := metamorphicExcluded[file]; ok {
				t.Skip("excluded: " + why)
			}
			if file == DemoFile && testing.Short() {
				t.Skip("the 1 GiB demo is skipped with -short")
			}
			src, err := Library.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			script, err := Parse(file, src)
			if err != nil {
				t.Fatal(err)
			}
			var base []string
			for _, b := range metamorphicBuilds {
				var out bytes.Buffer
				res := Run(script, Options{Verbose: &out, Build: b.keys})
				for _, f := range res.Failures {
					t.Errorf("%s: %s", b.name, f.Format(res.File))
				}
				if !res.Passed {
					continue
				}
				if !regexp.MustCompile(`(?m)^boot .*= kernel 1 \(.*\b` + regexp.QuoteMeta(b.name) + `\b`).MatchString(out.String()) {
					t.Errorf("%s: the file's boot did not boot that build (does it pin the key? then exclude it)", b.name)
				}
				seen := userVisible(out.String())
				if base == nil {
					base = seen
					continue
				}
				if d := firstDifference(base, seen); d != "" {
					t.Errorf("%s differs from %s: %s", b.name, metamorphicBuilds[0].name, d)
				}
			}
			if len(base) == 0 && !t.Failed() {
				t.Errorf("no user-visible results to compare")
			}
			t.Logf("%d user-visible results compared under %d builds", len(base), len(metamorphicBuilds))
		})
	}
}

// frameCount matches what legitimately differs between trackers: frame
// counts and values derived from them.
var frameCount = regexp.MustCompile(`frames\(`)

// userVisible keeps, from a verbose run, the statements a user observes
// the result of: system calls (`PROC: ...`), lets and expectations, but
// not those about frames, nor the kernel log, nor the machine statements
// (boot, kexec and kho activate print the build and the handover's size).
func userVisible(verbose string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(verbose))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == ' ' || l[0] == '\t' || frameCount.MatchString(l) {
			continue
		}
		word, _, _ := strings.Cut(l, " ")
		switch {
		case word == "let" || word == "expect":
		case strings.HasSuffix(word, ":"):
		default:
			continue
		}
		out = append(out, l)
	}
	return out
}

// firstDifference describes the first line where a and b differ, or "".
func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("statement result %d:\n\twant %s\n\tgot  %s", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d user-visible results, want %d", len(b), len(a))
	}
	return ""
}

// TestMetamorphicExclusions checks that every excluded file exists and
// pins a tracker on one of its boot or kexec statements.
func TestMetamorphicExclusions(t *testing.T) {
	for file, why := range metamorphicExcluded {
		src, err := Library.ReadFile(file)
		if err != nil {
			t.Errorf("%s (excluded: %s): %v", file, why, err)
			continue
		}
		script, err := Parse(file, src)
		if err != nil {
			t.Fatal(err)
		}
		pins := false
		for _, st := range script.Stmts {
			var keys []scn.BuildKey
			switch s := st.(type) {
			case *scn.Boot:
				keys = s.Build
			case *scn.Kexec:
				keys = s.Build
			}
			for _, k := range keys {
				pins = pins || k.Key == "kho"
			}
		}
		if !pins {
			t.Errorf("%s is excluded (%s) but pins no kho= key", file, why)
		}
	}
}

// TestOptionsBuild checks the option itself: the file's default build is
// changed, a boot's own key still wins, and kexec inherits.
func TestOptionsBuild(t *testing.T) {
	src := `machine memory=128MiB
boot
kexec
`
	for _, tr := range []string{"arrays", "bitmaps", "radix"} {
		s, err := Parse("b.scn", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res := Run(s, Options{Verbose: &out, Build: []scn.BuildKey{{Key: "kho", Value: tr}}})
		if !res.Passed {
			t.Fatalf("kho=%s: %v", tr, res.Failures)
		}
		if !strings.Contains(out.String(), "boot = kernel 1 (kho="+tr+" ") {
			t.Errorf("kho=%s: boot did not boot that build:\n%s", tr, out.String())
		}
	}
	s, _ := Parse("b.scn", []byte("machine memory=128MiB\nboot kho=arrays\n"))
	var out bytes.Buffer
	if res := Run(s, Options{Verbose: &out, Build: []scn.BuildKey{{Key: "kho", Value: "radix"}}}); !res.Passed {
		t.Fatal(res.Failures)
	}
	if !strings.Contains(out.String(), "(kho=arrays ") {
		t.Errorf("a boot's own kho= did not win:\n%s", out.String())
	}
}

// TestUserVisible checks what the metamorphic comparison keeps (system
// calls, lets, expectations) and drops (the kernel log, frame counts, the
// machine statements), and that a changed result is reported.
func TestUserVisible(t *testing.T) {
	run := func(fdt, errno, pages string) []string {
		return userVisible(`=== x.scn
machine memory=128MiB seed=1 (seed 1)
boot = kernel 1 (kho=radix fdbox=stash luo=off memfd=v2 shmem_huge=never)
    [kernel 1] info: Linux version khosim (boot 1)
vmm: m = memfd_create("m", 0) = 3
let f = frames(free) = ` + pages + `
kho activate = ok (1 sealed box, 1 file, 2 pages, FDT ` + fdt + ` bytes)
vmm: ioctl(box, FDBOX_GET_FD, name="m") -> ` + errno + `
expect frames(used) == 0 = ok (0)
expect size(vmm:m) == 8192 = ok (8192)
PASS x.scn (9 statements, 0 kexecs, 1ms)
`)
	}
	base := run("100", "EBUSY", "17")
	want := []string{
		`vmm: m = memfd_create("m", 0) = 3`,
		`vmm: ioctl(box, FDBOX_GET_FD, name="m") -> EBUSY`,
		`expect size(vmm:m) == 8192 = ok (8192)`,
	}
	if fmt.Sprint(base) != fmt.Sprint(want) {
		t.Errorf("kept %q, want %q", base, want)
	}
	if d := firstDifference(base, run("2000", "EBUSY", "4242")); d != "" {
		t.Errorf("the FDT's size and frame counts are not user-visible results: %s", d)
	}
	if d := firstDifference(base, run("100", "ENOENT", "17")); !strings.Contains(d, "ENOENT") {
		t.Errorf("a changed errno was not reported: %q", d)
	}
	if d := firstDifference(base, base[:2]); d == "" {
		t.Error("a missing result was not reported")
	}
}
