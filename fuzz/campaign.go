package fuzz

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Campaign is one run of the fuzzer: which seeds, for how long, where the
// findings go.
type Campaign struct {
	Seed uint64 // the first seed
	// Runs bounds the number of scenarios (0: unbounded); Time the wall
	// time (0: unbounded). One of them must be set.
	Runs int
	Time time.Duration
	// Steps is the number of generated actions per scenario.
	Steps int
	// Out is the directory findings are written to ("" : none written).
	Out string
	// Shard K of N: this campaign runs the seeds Seed+K, Seed+K+N, ...
	// (K in 0..N-1; N 0 or 1: every seed).
	Shard, Shards uint64
	// ReduceBudget bounds the reduction of each finding (0: 2 minutes).
	ReduceBudget time.Duration
	// Log receives a line per finding and the summary.
	Log io.Writer
}

// Summary is what a campaign did.
type Summary struct {
	Scenarios, Runs, Steps int
	Findings               []Written
	Duplicates             int // findings that failed as an earlier one did
	Wall                   time.Duration
}

// Written is one finding and the file it went to.
type Written struct {
	Seed    uint64
	Finding *Finding
	File    string
	Lines   int
}

// PerMinute returns scenarios and steps per minute of wall time.
func (s *Summary) PerMinute() (scenarios, steps float64) {
	m := s.Wall.Minutes()
	if m == 0 {
		return 0, 0
	}
	return float64(s.Scenarios) / m, float64(s.Steps) / m
}

// Run runs the campaign. Each finding is reduced and written to Out as
// finding-SEED.scn; findings that fail the same way (kind and statement
// kind) as one already written are counted, not written again.
func (c *Campaign) Run() (*Summary, error) {
	start := time.Now()
	sum := &Summary{}
	if c.Out != "" {
		if err := os.MkdirAll(c.Out, 0o755); err != nil {
			return sum, err
		}
	}
	shards := max(c.Shards, 1)
	logf := func(format string, args ...any) {
		if c.Log != nil {
			fmt.Fprintf(c.Log, format+"\n", args...)
		}
	}
	seen := map[string]bool{}
	for i := uint64(0); ; i++ {
		if c.Runs > 0 && sum.Scenarios >= c.Runs {
			break
		}
		if c.Time > 0 && time.Since(start) >= c.Time {
			break
		}
		seed := c.Seed + c.Shard + i*shards
		sc := Generate(seed, Config{Steps: c.steps()})
		text, f := sc.Record()
		sum.Scenarios++
		sum.Runs += sc.Runs
		sum.Steps += sc.Steps
		if f == nil {
			var runs, steps int
			f, runs, steps = Check(sc.name(), text)
			sum.Runs += runs
			sum.Steps += steps
		}
		if f == nil {
			continue
		}
		key := f.Kind + "|" + f.Stmt
		if seen[key] {
			sum.Duplicates++
			continue
		}
		seen[key] = true
		logf("seed %d: %s", seed, f)
		// The reducer's target is how the recorded text fails when
		// replayed (a lost file is an errno of its restore there).
		if cf, _, _ := Check(sc.name(), text); cf != nil {
			f = cf
		}
		red := &Reducer{Budget: c.ReduceBudget}
		reduced, rf := red.Reduce(text, f)
		if rf == nil {
			rf = f
		}
		w := Written{Seed: seed, Finding: rf, Lines: strings.Count(reduced, "\n")}
		if c.Out != "" {
			w.File = filepath.Join(c.Out, fmt.Sprintf("finding-%d.scn", seed))
			body := fmt.Sprintf("# khosim fuzz --seed %d --runs 1 --steps %d: %s\n# reduced from %d to %d statements in %d checks; replay: khosim run %s\n",
				seed, c.steps(), oneLine(rf.String()), strings.Count(text, "\n"), w.Lines, red.Checks, filepath.Base(w.File))
			if v, ok := variantNamed(rf.Variant); ok {
				body += "# it passes as written and fails under the variant " + rf.Variant + ": " + filepath.Base(strings.TrimSuffix(w.File, ".scn")) + "-variant.scn\n"
				vfile := strings.TrimSuffix(w.File, ".scn") + "-variant.scn"
				if err := os.WriteFile(vfile, []byte("# "+rf.Variant+" of "+filepath.Base(w.File)+"\n"+variant(reduced, v)), 0o644); err != nil {
					return sum, err
				}
			}
			if err := os.WriteFile(w.File, []byte(body+reduced), 0o644); err != nil {
				return sum, err
			}
		}
		logf("  reduced to %d statements (%d checks)%s", w.Lines, red.Checks, map[bool]string{true: ": " + w.File, false: ""}[w.File != ""])
		sum.Findings = append(sum.Findings, w)
	}
	sum.Wall = time.Since(start)
	return sum, nil
}

func (c *Campaign) steps() int {
	if c.Steps <= 0 {
		return defaultSteps
	}
	return c.Steps
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
