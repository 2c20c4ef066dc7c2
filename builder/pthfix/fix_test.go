package pthfix

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The paths the cases use most.
const (
	pthFile     = "lib/python/myapp.pth"
	sitePthFile = "lib/python3.11/site-packages/myapp.pth"
	eggLinkFile = "lib/python2.7/site-packages/myapp.egg-link"
)

// appTree is the tree of a typical app, for cases that do not give their own.
var appTree = []string{
	"src/myapp", "src/otherlib", "static",
	"lib/python/mylib", "lib/python3.11/site-packages", "lib/python2.7/site-packages",
}

type fixCase struct {
	name     string
	file     string   // pthFile when empty
	dirs     []string // appTree when nil
	in       string
	want     string   // output, when no error is expected
	rewrites []string // Rewrite.String() of each expected rewrite
	wantErr  error    // sentinel the error must match
	errHas   []string // substrings of the error message
}

func (c fixCase) fileOrDefault() string {
	if c.file == "" {
		return pthFile
	}
	return c.file
}

func (c fixCase) dirsOrDefault() []string {
	if c.dirs == nil {
		return appTree
	}
	return c.dirs
}

func (c fixCase) wantsError() bool { return c.wantErr != nil || len(c.errHas) > 0 }

// fixCases are shared with FuzzFix as its seed corpus.
var fixCases = []fixCase{
	// Rewriting, in each kind of file and directory.
	{
		name:     "pth in lib/python",
		in:       "/home/alice/myapp/src/myapp\n",
		want:     "../../src/myapp\n",
		rewrites: []string{"lib/python/myapp.pth:1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},
	{
		name:     "pth in site-packages",
		file:     sitePthFile,
		in:       "/home/alice/myapp/src/myapp\n",
		want:     "../../../src/myapp\n",
		rewrites: []string{sitePthFile + ":1: /home/alice/myapp/src/myapp -> ../../../src/myapp"},
	},
	{
		name:     "egg-link",
		file:     eggLinkFile,
		in:       "/home/alice/myapp/src/myapp\n.\n",
		want:     "../../../src/myapp\n.\n",
		rewrites: []string{eggLinkFile + ":1: /home/alice/myapp/src/myapp -> ../../../src/myapp"},
	},
	{
		name:     "egg-link in lib/python",
		file:     "lib/python/myapp.egg-link",
		in:       "/home/alice/myapp/src/myapp\n.",
		want:     "../../src/myapp\n.",
		rewrites: []string{"lib/python/myapp.egg-link:1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},
	{
		name:     "egg-link keeps every line after the first",
		file:     eggLinkFile,
		in:       "/home/alice/myapp/src/myapp\n/home/alice/myapp/src/otherlib\n# x\n",
		want:     "../../../src/myapp\n/home/alice/myapp/src/otherlib\n# x\n",
		rewrites: []string{eggLinkFile + ":1: /home/alice/myapp/src/myapp -> ../../../src/myapp"},
	},
	{
		name: "egg-link relative first line kept",
		file: eggLinkFile,
		in:   "../../../src/myapp\n.\n",
		want: "../../../src/myapp\n.\n",
	},
	{
		name:     "egg-link whitespace around the path kept",
		file:     eggLinkFile,
		in:       "  /home/alice/myapp/src/myapp \n.",
		want:     "  ../../../src/myapp \n.",
		rewrites: []string{eggLinkFile + ":1: /home/alice/myapp/src/myapp -> ../../../src/myapp"},
	},
	{
		name: "egg-link blank first line kept",
		file: eggLinkFile,
		in:   "\n/home/alice/myapp/src/myapp\n",
		want: "\n/home/alice/myapp/src/myapp\n",
	},

	// Choosing the directory.
	{
		name:     "longest suffix wins",
		dirs:     []string{"myapp", "src/myapp", "lib/python/myapp"},
		in:       "/home/alice/myapp/src/myapp\n",
		want:     "../../src/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},
	{
		name:     "longest suffix can be deep",
		dirs:     []string{"src/myapp", "vendor/x/src/myapp"},
		in:       "/home/alice/proj/vendor/x/src/myapp\n",
		want:     "../../vendor/x/src/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/proj/vendor/x/src/myapp -> ../../vendor/x/src/myapp"},
	},
	{
		name:     "whole components only",
		dirs:     []string{"src/myapp", "b/rc/myapp"},
		in:       "/home/alice/rc/myapp\n",
		want:     "../../b/rc/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/rc/myapp -> ../../b/rc/myapp"},
	},
	{
		name:     "a partial suffix still matches on the last component",
		dirs:     []string{"src/myapp"},
		in:       "/x/notsrc/myapp\n",
		want:     "../../src/myapp\n",
		rewrites: []string{pthFile + ":1: /x/notsrc/myapp -> ../../src/myapp"},
	},
	{
		name:     "target below the file's directory",
		in:       "/home/alice/myapp/lib/python/mylib\n",
		want:     "mylib\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/lib/python/mylib -> mylib"},
	},
	{
		name:     "target is the file's directory",
		in:       "/home/alice/myapp/lib/python\n",
		want:     ".\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/lib/python -> ."},
	},
	{
		name:     "file at the app root",
		file:     "x.pth",
		in:       "/home/alice/myapp/src/myapp\n",
		want:     "src/myapp\n",
		rewrites: []string{"x.pth:1: /home/alice/myapp/src/myapp -> src/myapp"},
	},
	{
		name:     "trailing slashes stripped",
		in:       "/home/alice/myapp/src/myapp//\n",
		want:     "../../src/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/src/myapp// -> ../../src/myapp"},
	},
	{
		name:     "trailing whitespace kept after the new path",
		in:       "/home/alice/myapp/src/myapp \t\n",
		want:     "../../src/myapp \t\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},

	// Lines left alone.
	{
		name: "blank, comment, import and relative lines kept",
		in: "\n   \n# /home/alice/myapp/src/myapp\nimport os; os.environ['X'] = '/home/alice'\n" +
			"import\tsys\nrelative/dir\n./src\n../../src/myapp\n /home/alice/leading-space-is-relative\nimportlib\n",
		want: "\n   \n# /home/alice/myapp/src/myapp\nimport os; os.environ['X'] = '/home/alice'\n" +
			"import\tsys\nrelative/dir\n./src\n../../src/myapp\n /home/alice/leading-space-is-relative\nimportlib\n",
	},
	{name: "empty file", in: "", want: ""},

	// Line endings.
	{
		name: "CRLF and LF kept per line",
		in:   "# c\r\n/home/alice/myapp/src/myapp\r\n/home/alice/myapp/src/otherlib\n",
		want: "# c\r\n../../src/myapp\r\n../../src/otherlib\n",
		rewrites: []string{
			pthFile + ":2: /home/alice/myapp/src/myapp -> ../../src/myapp",
			pthFile + ":3: /home/alice/myapp/src/otherlib -> ../../src/otherlib",
		},
	},
	{
		name:     "lone CR ends a line",
		in:       "# c\r/home/alice/myapp/src/myapp\r",
		want:     "# c\r../../src/myapp\r",
		rewrites: []string{pthFile + ":2: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},
	{
		name:     "no trailing newline",
		in:       "# c\n/home/alice/myapp/src/myapp",
		want:     "# c\n../../src/myapp",
		rewrites: []string{pthFile + ":2: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},
	{
		name:     "byte order mark kept",
		in:       "\ufeff/home/alice/myapp/src/myapp\n",
		want:     "\ufeff../../src/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},

	{
		name:     "the directory that is the whole suffix beats deeper ones",
		dirs:     []string{"src/myapp", "vendor/src/myapp"},
		in:       "/home/alice/myapp/src/myapp\n",
		want:     "../../src/myapp\n",
		rewrites: []string{pthFile + ":1: /home/alice/myapp/src/myapp -> ../../src/myapp"},
	},

	// Errors.
	{
		name:    "ambiguous",
		dirs:    []string{"a/lib", "b/lib"},
		in:      "/x/lib\n",
		wantErr: ErrAmbiguous,
		errHas: []string{
			"lib/python/myapp.pth:1: /x/lib matches a/lib and b/lib equally well (1 trailing component in common)",
			"write the path relative to lib/python yourself, e.g. ../../a/lib",
		},
	},
	{
		name:    "ambiguous among many",
		dirs:    []string{"a/src/lib", "b/src/lib", "c/src/lib", "d/src/lib", "lib"},
		in:      "# x\n/home/alice/src/lib\n",
		wantErr: ErrAmbiguous,
		errHas:  []string{":2: /home/alice/src/lib matches a/src/lib, b/src/lib and 2 more directories equally well (2 trailing components in common)"},
	},
	{
		name:    "ambiguous names the first two by path",
		dirs:    []string{"c/lib", "a/z/lib", "b/lib"},
		in:      "/q/lib\n",
		wantErr: ErrAmbiguous,
		errHas:  []string{":1: /q/lib matches a/z/lib, b/lib and 1 more directory equally well (1 trailing component in common)"},
	},
	{
		name:    "directory name ending in whitespace",
		dirs:    []string{"src/myapp "},
		in:      "/home/alice/myapp/src/myapp /\n",
		wantErr: ErrUnwritable,
		errHas:  []string{":1: /home/alice/myapp/src/myapp / matches src/myapp , which Python would not read back from the line as ../../src/myapp "},
	},
	{
		name:    "directory name Python reads as code",
		dirs:    []string{"lib/python/import os"},
		in:      "/home/alice/myapp/lib/python/import os\n",
		wantErr: ErrUnwritable,
		errHas:  []string{":1: /home/alice/myapp/lib/python/import os matches lib/python/import os, which Python would not read back"},
	},
	{
		name:    "directory name Python reads as a comment",
		dirs:    []string{"lib/python/#x"},
		in:      "/home/alice/myapp/lib/python/#x\n",
		wantErr: ErrUnwritable,
	},
	{
		name:    "no match",
		in:      "# deps\n\n/opt/foo/bar\n",
		wantErr: ErrNoMatch,
		errHas: []string{"lib/python/myapp.pth:3: /opt/foo/bar matches no directory in the pushed tree; " +
			"it would not exist on the servers — add that directory to the repo or remove the line"},
	},
	{
		name:    "the app root itself matches nothing",
		dirs:    []string{"src/lib"},
		in:      "/home/alice/myapp\n",
		wantErr: ErrNoMatch,
		errHas:  []string{pthFile + ":1: /home/alice/myapp matches no directory"},
	},
	{name: "slash alone matches nothing", in: "/\n", wantErr: ErrNoMatch},
	{
		name:    "dotdot in an absolute path",
		in:      "/home/alice/../alice/myapp/src/myapp\n",
		wantErr: ErrDotDot,
		errHas:  []string{pthFile + ":1: /home/alice/../alice/myapp/src/myapp contains a .. component"},
	},
	{
		name:    "relative path leading out of the app",
		in:      "../../src/myapp\n../../../elsewhere\n",
		wantErr: ErrDotDot,
		errHas:  []string{pthFile + ":2: ../../../elsewhere leads out of the app"},
	},
	{
		name:    "egg-link leading out of the app",
		file:    eggLinkFile,
		in:      "../../../../x\n.\n",
		wantErr: ErrDotDot,
		errHas:  []string{eggLinkFile + ":1: ../../../../x leads out of the app"},
	},
	{
		name:    "NUL byte",
		in:      "/home/alice/myapp/src/my\x00app\n",
		wantErr: ErrNUL,
		errHas:  []string{pthFile + ":1: the line contains a NUL byte"},
	},
	{
		name:    "NUL byte in a comment",
		in:      "# ok\n# a\x00b\n",
		wantErr: ErrNUL,
		errHas:  []string{pthFile + ":2:"},
	},
	{
		name:    "line too long",
		in:      "# " + strings.Repeat("a", MaxLineLen-1) + "\n",
		wantErr: ErrLineTooLong,
		errHas:  []string{pthFile + ":1: the line is 4097 bytes, over the 4096-byte limit"},
	},
	{
		name: "longest allowed line",
		in:   "# " + strings.Repeat("a", MaxLineLen-2) + "\r\n",
		want: "# " + strings.Repeat("a", MaxLineLen-2) + "\r\n",
	},
	{
		name:    "rewritten line too long",
		dirs:    []string{strings.Repeat("d", 4050) + "/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9/c"},
		in:      "/c\n",
		wantErr: ErrLineTooLong,
		errHas:  []string{pthFile + ":1: /c would become ../../ddd"},
	},
	{
		name:    "not UTF-8",
		in:      "# ok\n# \xff\xfe\n",
		wantErr: ErrNotUTF8,
		errHas:  []string{pthFile + ":2: the line is not valid UTF-8"},
	},
	{
		name:    "file too large",
		in:      strings.Repeat("# padding\n", MaxFileSize/10+1),
		wantErr: ErrTooLarge,
		errHas:  []string{pthFile + ": the file is 1048580 bytes, over the 1048576-byte limit"},
	},
	{
		name:    "every problem reported",
		in:      "/opt/a\n# fine\n/x/../y\n",
		wantErr: ErrDotDot,
		errHas:  []string{pthFile + ":1: /opt/a matches no directory", pthFile + ":3: /x/../y contains a .. component"},
	},
	{
		name:    "problems past the first few only counted",
		in:      strings.Repeat("/opt/a\n", maxReported+2),
		wantErr: ErrNoMatch,
		errHas:  []string{pthFile + ":10: /opt/a", pthFile + ": 2 more lines have problems"},
	},
	{name: "file path outside the app", file: "../x.pth", in: "x\n", errHas: []string{`file path "../x.pth" is not a clean path`}},
	{name: "absolute file path", file: "/lib/python/x.pth", in: "x\n", errHas: []string{"is not a clean path"}},
}

func TestFix(t *testing.T) {
	for _, tt := range fixCases {
		t.Run(tt.name, func(t *testing.T) {
			file, dirs := tt.fileOrDefault(), NewDirs(tt.dirsOrDefault())
			content := []byte(tt.in)
			got, rewrites, err := Fix(file, content, dirs)
			if tt.wantsError() {
				if err == nil {
					t.Fatalf("Fix succeeded with %q, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q does not match %v", err, tt.wantErr)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q\ndoes not contain %q", err, s)
					}
				}
				if got != nil || rewrites != nil {
					t.Errorf("on error got %q, %v; want nil, nil", got, rewrites)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fix: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("fixed = %q\nwant    %q", got, tt.want)
			}
			var gotRewrites []string
			for _, r := range rewrites {
				gotRewrites = append(gotRewrites, r.String())
			}
			if !slices.Equal(gotRewrites, tt.rewrites) {
				t.Errorf("rewrites = %q\nwant       %q", gotRewrites, tt.rewrites)
			}
			if len(rewrites) == 0 && len(content) > 0 && &got[0] != &content[0] {
				t.Errorf("unchanged content was copied; want the input slice back")
			}
			again, more, err := Fix(file, got, dirs)
			if err != nil || len(more) != 0 || string(again) != string(got) {
				t.Errorf("fixing the output again = %q, %v, %v; want it unchanged", again, more, err)
			}
		})
	}
}

func TestFixNilDirs(t *testing.T) {
	got, rewrites, err := Fix(pthFile, []byte("# nothing absolute\nsrc\n"), nil)
	if err != nil || len(rewrites) != 0 || string(got) != "# nothing absolute\nsrc\n" {
		t.Errorf("Fix with nil dirs = %q, %v, %v", got, rewrites, err)
	}
	if _, _, err := Fix(pthFile, []byte("/home/alice/src\n"), nil); !errors.Is(err, ErrNoMatch) {
		t.Errorf("absolute path with nil dirs: err = %v, want ErrNoMatch", err)
	}
}

func TestLineErrorFields(t *testing.T) {
	_, _, err := Fix(pthFile, []byte("\n/opt/foo\n"), NewDirs(appTree))
	var le *LineError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *LineError", err)
	}
	if le.File != pthFile || le.Line != 2 || le.Err != ErrNoMatch {
		t.Errorf("LineError = %+v, want file %s line 2 ErrNoMatch", le, pthFile)
	}
}
