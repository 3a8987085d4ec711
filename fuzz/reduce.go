package fuzz

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Reducer shrinks a failing scenario to a small one that fails the same
// way (Finding.Same: the same kind of failure at the same kind of
// statement), in the manner of syzkaller's Minimize and delta debugging:
// it deletes blocks of statements, halving their size down to single
// statements, then simplifies what is left (drops build keys and
// options, `-> ERRNO` suffixes, shrinks numbers), and repeats until
// nothing more goes or the budget is spent.
type Reducer struct {
	// Budget bounds the wall time (0: 2 minutes).
	Budget time.Duration
	// Progress, if set, receives a line per accepted step.
	Progress io.Writer
	// Checks counts the candidate scenarios run.
	Checks int
}

// Reduce returns the reduced scenario and the finding it fails with.
// target is how text fails (from Check); if text does not fail so,
// Reduce returns it unchanged.
func (r *Reducer) Reduce(text string, target *Finding) (string, *Finding) {
	budget := r.Budget
	if budget == 0 {
		budget = 2 * time.Minute
	}
	deadline := time.Now().Add(budget)
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(stripComment(l)); t != "" {
			lines = append(lines, t)
		}
	}
	last := target
	var accepted []string
	test := func(cand []string) bool {
		if time.Now().After(deadline) {
			return false
		}
		// A deletion often changes what a later statement returns (a
		// fault that no longer fires, a file that is now absent): its
		// `-> ERRNO` is brought up to date and the candidate run again,
		// as the recording would have written it.
		cand = append([]string{}, cand...)
		for range 12 {
			r.Checks++
			f, _, _ := Check("reduce.scn", strings.Join(cand, "\n")+"\n")
			if target.Same(f) {
				last, accepted = f, cand
				return true
			}
			if f == nil || f.Kind != "errno" || f.Line < 1 || f.Line > len(cand) || f.Source == target.Source {
				return false
			}
			l := errSuf.ReplaceAllString(cand[f.Line-1], "")
			if m := failedWith.FindStringSubmatch(strings.TrimPrefix(firstLine(f.Message), f.Source+": ")); m != nil {
				l += " -> " + m[1]
			} else if !strings.Contains(f.Message, "succeeded") {
				return false
			}
			if l == cand[f.Line-1] {
				return false
			}
			cand[f.Line-1] = l
		}
		return false
	}
	if !test(lines) {
		return text, nil
	}
	r.say("start: %d statements, %s", len(lines), target)
	for changed := true; changed && time.Now().Before(deadline); {
		changed = false
		// Delete blocks, from halves down to single statements.
		for n := len(lines) / 2; n >= 1; n /= 2 {
			for i := 0; i+n <= len(lines); {
				cand := append(append([]string{}, lines[:i]...), lines[i+n:]...)
				if test(cand) {
					lines, changed = accepted, true
					r.say("deleted %d statements at %d: %d left", n, i+1, len(lines))
					continue
				}
				i += n
			}
		}
		// Simplify each statement.
		for i := 0; i < len(lines); i++ {
			for _, s := range simpler(lines[i]) {
				cand := append([]string{}, lines...)
				cand[i] = s
				if test(cand) {
					r.say("simplified line %d: %s", i+1, s)
					lines, changed = accepted, true
				}
			}
		}
	}
	r.say("done: %d statements after %d checks", len(lines), r.Checks)
	return strings.Join(lines, "\n") + "\n", last
}

func (r *Reducer) say(format string, args ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "reduce: "+format+"\n", args...)
	}
}

// stripComment drops a # comment outside strings.
func stripComment(l string) string {
	in := false
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\' && in:
			i++
		case l[i] == '"':
			in = !in
		case l[i] == '#' && !in:
			return l[:i]
		}
	}
	return l
}

var (
	keyOpt   = regexp.MustCompile(` (?:kho|fdbox|luo|memfd|shmem_huge|seed|swap|scratch|nth|times|uid|caps)=\S+`)
	errSuf   = regexp.MustCompile(` -> E[A-Z0-9]+$`)
	number   = regexp.MustCompile(`\b(0x[0-9a-fA-F]+|[0-9]+)(KiB|MiB|GiB|TiB|K|M|G|T)?\b`)
	strings_ = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// simpler returns simpler forms of a statement, simplest first.
func simpler(l string) []string {
	var out []string
	if !strings.HasPrefix(l, "machine") {
		for _, m := range keyOpt.FindAllStringIndex(l, -1) {
			out = append(out, l[:m[0]]+l[m[1]:])
		}
	}
	if loc := errSuf.FindStringIndex(l); loc != nil {
		out = append(out, l[:loc[0]])
	}
	if strings.HasPrefix(l, "machine") {
		for _, m := range keyOpt.FindAllStringIndex(l, -1) {
			out = append(out, l[:m[0]]+l[m[1]:])
		}
		return out
	}
	// Observations and expectations are the oracle: left as they are
	// (shrinking one side of a comparison makes a failure of its own).
	if strings.HasPrefix(l, "let ") || strings.HasPrefix(l, "expect ") {
		return out
	}
	// Numbers outside strings: to 0, 1, a page, half.
	quoted := strings_.FindAllStringIndex(l, -1)
	inString := func(i int) bool {
		for _, q := range quoted {
			if i >= q[0] && i < q[1] {
				return true
			}
		}
		return false
	}
	for _, m := range number.FindAllStringSubmatchIndex(l, -1) {
		if inString(m[0]) || (m[0] > 0 && isIdent(l[m[0]-1])) {
			continue
		}
		v, err := strconv.ParseUint(l[m[2]:m[3]], 0, 64)
		if err != nil {
			continue
		}
		mult := uint64(1)
		if m[4] >= 0 {
			mult = map[byte]uint64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[l[m[4]]]
		}
		total := v * mult
		for _, c := range []uint64{0, 1, 4096, total / 2 &^ 4095, total / 2} {
			if c < total {
				out = append(out, l[:m[0]]+strconv.FormatUint(c, 10)+l[m[1]:])
			}
		}
	}
	return out
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
