package pthfix

import (
	"bytes"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Fix returns content with every absolute entry rewritten to a path relative
// to the file's directory, pointing at the directory of dirs that matches
// the most trailing components of the old path.
//
// file is the file's clean, slash-separated path relative to the app root;
// it names the file in messages, gives the directory relative paths start
// from, and its extension picks the rules: a name ending in .egg-link has
// only its first line read as a path, anything else is read as a .pth file.
// A nil dirs is an empty tree.
//
// When nothing needs rewriting, fixed is content itself (not a copy) and
// rewrites is empty. On error fixed and rewrites are nil, and err lists the
// problems of the file (the first 10, each a *LineError naming file:line).
func Fix(file string, content []byte, dirs *Dirs) (fixed []byte, rewrites []Rewrite, err error) {
	if !isCleanRelative(file) {
		return nil, nil, fmt.Errorf("pthfix: file path %q is not a clean path relative to the app root", file)
	}
	if len(content) > MaxFileSize {
		return nil, nil, lineErrorf(file, 0, ErrTooLarge,
			"the file is %d bytes, over the %d-byte limit for a .pth or .egg-link file; commit the right file or remove it",
			len(content), MaxFileSize)
	}
	f := &fixer{file: file, dir: dirOf(file), dirs: dirs, eggLink: strings.HasSuffix(file, eggLinkExt)}
	body, hasBOM := bytes.CutPrefix(content, utf8BOM)
	lines := splitLines(body)

	var newTexts []string // newTexts[i] replaces the text of line rewrites[i].Line
	var problems []error
	for i, l := range lines {
		text, rw, err := f.fixLine(i+1, l.text)
		switch {
		case err != nil:
			problems = append(problems, err)
		case rw != nil:
			rewrites = append(rewrites, *rw)
			newTexts = append(newTexts, text)
		}
	}
	if len(problems) > 0 {
		return nil, nil, joinProblems(file, problems)
	}
	if len(rewrites) == 0 {
		return content, nil, nil
	}

	var out bytes.Buffer
	out.Grow(len(content) + 64*len(rewrites))
	if hasBOM {
		out.Write(utf8BOM)
	}
	next := 0
	for i, l := range lines {
		if next < len(rewrites) && rewrites[next].Line == i+1 {
			out.WriteString(newTexts[next])
			next++
		} else {
			out.Write(l.text)
		}
		out.Write(l.end)
	}
	// Relative paths can be longer than the absolute ones they replace;
	// refusing here keeps Fix's output acceptable to Fix.
	if out.Len() > MaxFileSize {
		return nil, nil, lineErrorf(file, 0, ErrTooLarge,
			"rewriting its absolute paths would make the file %d bytes, over the %d-byte limit; write shorter relative paths yourself or split the file",
			out.Len(), MaxFileSize)
	}
	return out.Bytes(), rewrites, nil
}

// fixer holds what every line of one file needs.
type fixer struct {
	file    string
	dir     string // the file's directory, "" for the app root
	dirs    *Dirs
	eggLink bool
}

// fixLine checks one line and returns its new text and the Rewrite when it
// changes, or a nil Rewrite when it stays as it is.
func (f *fixer) fixLine(n int, text []byte) (string, *Rewrite, error) {
	switch {
	case len(text) > MaxLineLen:
		return "", nil, lineErrorf(f.file, n, ErrLineTooLong,
			"the line is %d bytes, over the %d-byte limit; shorten it or remove it", len(text), MaxLineLen)
	case bytes.IndexByte(text, 0) >= 0:
		return "", nil, lineErrorf(f.file, n, ErrNUL,
			"the line contains a NUL byte; remove it (these files are plain text)")
	case !utf8.Valid(text):
		return "", nil, lineErrorf(f.file, n, ErrNotUTF8,
			"the line is not valid UTF-8; save the file as UTF-8")
	}
	if f.eggLink && n != 1 {
		// pip reads only the first line as the project's path; the second
		// (usually ".") is relative to that path, not to this directory.
		return "", nil, nil
	}
	e, ok := readEntry(string(text), f.eggLink)
	if !ok {
		return "", nil, nil
	}
	return f.fixEntry(n, e)
}

// fixEntry rewrites an absolute path and checks that a relative one stays
// inside the app.
func (f *fixer) fixEntry(n int, e entry) (string, *Rewrite, error) {
	if !strings.HasPrefix(e.path, "/") {
		if escapesRoot(f.dir, e.path) {
			return "", nil, lineErrorf(f.file, n, ErrDotDot,
				"%s leads out of the app through its .. components, so it would not exist on the servers; point it at a directory inside the repo or remove the line",
				e.path)
		}
		return "", nil, nil
	}
	target, err := f.resolve(n, e.path)
	if err != nil {
		return "", nil, err
	}
	rel := relPath(f.dir, target)
	// The new line must read back as rel, which a directory named like
	// "#x" or "import x", or with whitespace Python strips, would not.
	if back, ok := readEntry(rel, f.eggLink); !ok || back.path != rel {
		return "", nil, lineErrorf(f.file, n, ErrUnwritable,
			"%s matches %s, which Python would not read back from the line as %s (a comment, an import or stripped whitespace); rename that directory or remove the line",
			e.path, target, rel)
	}
	text := e.lead + rel + e.trail
	if len(text) > MaxLineLen {
		return "", nil, lineErrorf(f.file, n, ErrLineTooLong,
			"%s would become %s, a line of %d bytes, over the %d-byte limit; write a shorter relative path yourself or remove the line",
			e.path, rel, len(text), MaxLineLen)
	}
	return text, &Rewrite{File: f.file, Line: n, From: e.path, To: rel}, nil
}

// resolve finds the directory of the tree an absolute path stands for.
func (f *fixer) resolve(n int, abs string) (string, error) {
	comps := splitPath(abs)
	// A .. would make the suffix match meaningless (/a/src/../lib ends in
	// "lib" but the components before it say otherwise).
	if hasDotDot(comps) {
		return "", lineErrorf(f.file, n, ErrDotDot,
			"%s contains a .. component; write the path without .. or remove the line", abs)
	}
	run, k := f.dirs.suffixRun(comps)
	switch len(run) {
	case 0:
		return "", lineErrorf(f.file, n, ErrNoMatch,
			"%s matches no directory in the pushed tree; it would not exist on the servers — add that directory to the repo or remove the line",
			abs)
	case 1:
		return run[0].path, nil
	}
	first, second := firstTwoPaths(run)
	return "", lineErrorf(f.file, n, ErrAmbiguous,
		"%s matches %s equally well (%s in common), so it is ambiguous; write the path relative to %s yourself, e.g. %s, or remove the line",
		abs, describeCandidates(first, second, len(run)), plural(k, "trailing component"), f.dirName(), relPath(f.dir, first))
}

// dirName names the file's directory for messages.
func (f *fixer) dirName() string {
	if f.dir == "" {
		return "the app root"
	}
	return f.dir
}

// firstTwoPaths returns the two smallest paths of run (at least two long)
// without sorting it: a common name like "tests" can tie thousands of
// directories, and only two are named in the message.
func firstTwoPaths(run []dirEntry) (first, second string) {
	first, second = run[0].path, run[1].path
	if second < first {
		first, second = second, first
	}
	for _, e := range run[2:] {
		switch {
		case e.path < first:
			first, second = e.path, first
		case e.path < second:
			second = e.path
		}
	}
	return first, second
}

// describeCandidates names the first two of count ambiguous matches and
// counts the rest.
func describeCandidates(first, second string, count int) string {
	if count == 2 {
		return first + " and " + second
	}
	return fmt.Sprintf("%s, %s and %s", first, second, plural(count-2, "more directory"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// isCleanRelative reports whether p is a clean slash path inside the app.
func isCleanRelative(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) &&
		p != ".." && !strings.HasPrefix(p, "../")
}

// dirOf is path.Dir with "" rather than "." for the app root.
func dirOf(file string) string {
	if d := path.Dir(file); d != "." {
		return d
	}
	return ""
}
