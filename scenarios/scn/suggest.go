package scn

// Suggest returns the candidate nearest to name — the fewest single-byte
// insertions, deletions and substitutions, at most a third of name's
// length (rounded down) and at most 3 — or "" when none is that near. Ties go to the
// first candidate. It turns a typo ("F_SEAL_WRIT") into a "did you mean
// F_SEAL_WRITE?".
func Suggest(name string, candidates []string) string {
	limit := min(3, len(name)/3) // names under 3 bytes get no suggestion: every letter is near
	if limit == 0 {
		return ""
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == name || abs(len(c)-len(name)) >= bestD {
			continue
		}
		if d := editDistance(name, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// editDistance is the Levenshtein distance of a and b, or a value >= bound
// once it is certain to reach bound.
func editDistance(a, b string, bound int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= bound {
			return bound
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
