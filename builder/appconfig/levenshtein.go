package appconfig

import "strings"

// maxSuggestDistance is how many edits a misspelling may be from what was
// meant for "did you mean" to suggest it.
const maxSuggestDistance = 2

// distance is the Levenshtein edit distance between a and b, in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// closest is the candidate nearest to word, ignoring case, when it is
// within maxSuggestDistance edits; "" otherwise. Ties go to the candidate
// sharing the longer prefix with word (people mistype endings more than
// beginnings: postgres means postgresql, not postgis), then to the earlier.
func closest(word string, candidates []string) string {
	word = strings.ToLower(word)
	best, bestDistance, bestPrefix := "", maxSuggestDistance+1, 0
	for _, c := range candidates {
		lc := strings.ToLower(c)
		if absDiff(len(word), len(lc)) > maxSuggestDistance {
			continue // cannot be close; skips the quadratic work for long words
		}
		d, p := distance(word, lc), commonPrefixLen(word, lc)
		if d < bestDistance || (d == bestDistance && p > bestPrefix) {
			best, bestDistance, bestPrefix = c, d, p
		}
	}
	return best
}

func commonPrefixLen(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func absDiff(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}

// Closest is the candidate nearest to word, as closest picks it, for other
// settings files' "did you mean" (the receiver's gitreceive.ini).
func Closest(word string, candidates []string) string { return closest(word, candidates) }
