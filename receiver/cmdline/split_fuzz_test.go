package cmdline

import (
	"slices"
	"strings"
	"testing"
)

func FuzzSplit(f *testing.F) {
	for _, tc := range splitCases {
		// The MaxLen cases are covered by TestSplit; as seeds they would
		// make the fuzzer spend its time minimising 64 KiB inputs.
		if len(tc.in) <= 1024 {
			f.Add(tc.in)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		words, err := Split(in)
		if err != nil {
			return
		}
		for _, w := range words {
			if strings.IndexByte(w, 0) >= 0 {
				t.Fatalf("Split(%q) produced a word containing NUL: %q", in, w)
			}
		}

		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = Quote(w)
		}
		joined := strings.Join(quoted, " ")
		if len(joined) > MaxLen {
			return // quoting can grow a valid input past the limit
		}
		again, err := Split(joined)
		if err != nil {
			t.Fatalf("Split(%q) of quoted words %q failed: %v", joined, words, err)
		}
		if !slices.Equal(again, words) {
			t.Fatalf("round trip of %q via %q = %q, want %q", in, joined, again, words)
		}
	})
}
