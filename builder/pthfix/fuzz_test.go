package pthfix

import (
	"bytes"
	"path"
	"slices"
	"strings"
	"testing"
)

// FuzzFix checks Fix's promises on any input: it never panics, every rewrite
// is a relative path to a directory of the tree written on its line, every
// other line and every line ending is kept, and fixing the output again
// changes nothing.
func FuzzFix(f *testing.F) {
	for _, c := range fixCases {
		if len(c.in) > 64<<10 {
			continue // the 1 MiB case would only slow the mutator down
		}
		f.Add(c.fileOrDefault(), strings.Join(c.dirsOrDefault(), "\n"), []byte(c.in))
	}

	f.Fuzz(func(t *testing.T, file, dirList string, content []byte) {
		dirs := NewDirs(strings.Split(dirList, "\n"))
		fixed, rewrites, err := Fix(file, content, dirs)
		if err != nil {
			if fixed != nil || rewrites != nil {
				t.Fatalf("error %v came with output %q, %v", err, fixed, rewrites)
			}
			return
		}
		if len(rewrites) == 0 && !bytes.Equal(fixed, content) {
			t.Fatalf("no rewrites but content changed: %q -> %q", content, fixed)
		}

		body, _ := bytes.CutPrefix(content, utf8BOM)
		fixedBody, _ := bytes.CutPrefix(fixed, utf8BOM)
		before, after := splitLines(body), splitLines(fixedBody)
		if len(before) != len(after) {
			t.Fatalf("line count changed from %d to %d: %q -> %q", len(before), len(after), content, fixed)
		}
		rewritten := make(map[int]Rewrite)
		for _, r := range rewrites {
			rewritten[r.Line] = r
			if r.File != file || r.Line < 1 || r.Line > len(after) {
				t.Fatalf("rewrite %v names a line outside %s", r, file)
			}
			if path.IsAbs(r.To) {
				t.Fatalf("rewrite %v is not relative", r)
			}
			target := path.Join(dirOf(file), r.To)
			if target == "." {
				target = ""
			}
			if !dirs.IsDir(target) {
				t.Fatalf("rewrite %v points at %q, not a directory of the tree", r, target)
			}
			if want := naiveLongestSuffix(dirs, r.From); len(want) != 1 || want[0] != target {
				t.Fatalf("rewrite %v chose %q; a scan of every directory finds %q", r, target, want)
			}
			// The line must read back as r.To the way Python reads it.
			if got, ok := readEntry(string(after[r.Line-1].text), strings.HasSuffix(file, eggLinkExt)); !ok || got.path != r.To {
				t.Fatalf("rewrite %v: line %d reads as %q, %v", r, r.Line, got.path, ok)
			}
		}
		for i := range before {
			if !bytes.Equal(before[i].end, after[i].end) {
				t.Fatalf("line %d ending changed from %q to %q", i+1, before[i].end, after[i].end)
			}
			if _, ok := rewritten[i+1]; !ok && !bytes.Equal(before[i].text, after[i].text) {
				t.Fatalf("line %d changed without a rewrite: %q -> %q", i+1, before[i].text, after[i].text)
			}
		}

		again, more, err := Fix(file, fixed, dirs)
		if err != nil || len(more) != 0 || !bytes.Equal(again, fixed) {
			t.Fatalf("fixing the output again = %q, %v, %v; want it unchanged", again, more, err)
		}
	})
}

// naiveLongestSuffix is LongestSuffix done by comparing p with every
// directory, to check the index against.
func naiveLongestSuffix(d *Dirs, p string) []string {
	comps := splitPath(p)
	var best []string
	bestN := 0
	for dir := range d.set {
		k := 0
		dc := splitPath(dir)
		for k < len(comps) && k < len(dc) && comps[len(comps)-1-k] == dc[len(dc)-1-k] {
			k++
		}
		switch {
		case k > bestN:
			best, bestN = []string{dir}, k
		case k == bestN && k > 0:
			best = append(best, dir)
		}
	}
	// Of a tie, the directory that is exactly the common suffix wins.
	for _, dir := range best {
		if len(splitPath(dir)) == bestN {
			return []string{dir}
		}
	}
	slices.Sort(best)
	return best
}
