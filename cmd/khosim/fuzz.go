package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"khosim/fuzz"
)

func init() {
	register(&command{
		name:    "fuzz",
		args:    "[--seed N] [--runs N | --time D] [--steps N] [--out DIR] [--shard K/N]",
		summary: "random scenarios under the oracle; findings reduced and written to --out (docs/fuzzing.md)",
		run:     fuzzCmd,
	})
}

// fuzzCmd runs a fuzzing campaign: exit 0 when it found nothing, 1 when
// it wrote findings.
func fuzzCmd(e *env, args []string) int {
	c := fuzz.Campaign{Log: e.stderr}
	var shard string
	fs := flag.NewFlagSet("khosim fuzz", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Uint64Var(&c.Seed, "seed", 1, "the first seed")
	fs.IntVar(&c.Runs, "runs", 0, "the number of scenarios")
	fs.DurationVar(&c.Time, "time", 0, "how long to run (e.g. 60s, 10m)")
	fs.IntVar(&c.Steps, "steps", 0, "actions per scenario (default 40)")
	fs.StringVar(&c.Out, "out", "fuzz-findings", "the directory findings are written to")
	fs.StringVar(&shard, "shard", "", "run shard `K/N` of the seed space (K in 0..N-1)")
	fs.DurationVar(&c.ReduceBudget, "reduce-time", 2*time.Minute, "time budget of each finding's reduction")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: khosim fuzz [--seed N] [--runs N | --time D] [--steps N] [--out DIR] [--shard K/N]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if c.Runs == 0 && c.Time == 0 {
		c.Runs = 100
	}
	if shard != "" {
		k, n, ok := strings.Cut(shard, "/")
		var err1, err2 error
		c.Shard, err1 = strconv.ParseUint(k, 10, 64)
		c.Shards, err2 = strconv.ParseUint(n, 10, 64)
		if !ok || err1 != nil || err2 != nil || c.Shards == 0 || c.Shard >= c.Shards {
			fmt.Fprintf(e.stderr, "khosim fuzz: --shard %q: want K/N with 0 <= K < N\n", shard)
			return exitUsage
		}
	}
	sum, err := c.Run()
	if err != nil {
		fmt.Fprintf(e.stderr, "khosim fuzz: %v\n", err)
		return exitFail
	}
	spm, stpm := sum.PerMinute()
	fmt.Fprintf(e.stdout, "fuzz: %d scenarios, %d runs, %d statements in %s (%.0f scenarios/min, %.0f statements/min); %d findings written, %d more failing the same way\n",
		sum.Scenarios, sum.Runs, sum.Steps, sum.Wall.Round(time.Millisecond), spm, stpm, len(sum.Findings), sum.Duplicates)
	for _, w := range sum.Findings {
		fmt.Fprintf(e.stdout, "  %s: seed %d, %d statements: %s\n", w.File, w.Seed, w.Lines, w.Finding)
	}
	if len(sum.Findings) > 0 {
		return exitFail
	}
	return exitOK
}
