package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// A prepare session makes the release, says it started, and switches on
// the receiver's word, in the same session; without the word (the
// receiver undoes the deploy) the release is started, not live.
func TestPrepareSwitchesOnTheWord(t *testing.T) {
	spec, _ := json.Marshal(Spec{Platform: "python", Runner: "app.py", Callable: "application",
		Locations: []Location{{Host: "app.example.com"}}, HealthCheck: "/"})
	plan, _ := json.Marshal(agentapi.PreparePlan{Go: true, Spec: spec})
	input := func(word string) []byte {
		in := append(plan, '\n')
		in = append(in, receiveInput(t, map[string]string{"app.py": "v = 1\n"}, nil)...)
		return append(in, word...)
	}
	for _, tc := range []struct {
		name     string
		word     string
		wantLive int
		wantLast string
	}{
		{"the word", agentapi.PrepareSwitch + "\n", 1, agentapi.PrepareSwitched},
		{"no word", "", 0, agentapi.PrepareStarted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			var out, errOut bytes.Buffer
			code := Run(context.Background(), root, "v", []string{"prepare", "app", "production", "1"}, bytes.NewReader(input(tc.word)), &out, &errOut)
			if code != 0 {
				t.Fatalf("prepare: exit %d: %s", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) < 4 {
				t.Fatalf("prepare printed %q", out.String())
			}
			// The manifest's and the receive's answers, then framed output.
			for _, line := range lines[2 : len(lines)-1] {
				if !strings.HasPrefix(line, agentapi.PrepareOutput) && line != agentapi.PrepareStarted {
					t.Errorf("an unframed line %q", line)
				}
			}
			if last := lines[len(lines)-1]; last != tc.wantLast {
				t.Errorf("last line %q, want %q", last, tc.wantLast)
			}
			if r := releasesOf(t, root); r.Current != tc.wantLive {
				t.Errorf("live release v%d, want v%d", r.Current, tc.wantLive)
			}
		})
	}
}

func TestFramedWriter(t *testing.T) {
	long := strings.Repeat("x", maxFramedContent+10)
	wide := strings.Repeat("é", maxFramedContent/2+1) // two bytes each: the cut falls inside one
	for _, tc := range []struct {
		name   string
		writes []string
		said   string // then said
		want   []string
	}{
		{"lines", []string{"a\nb\n"}, "", []string{"a", "b"}},
		{"a line over writes", []string{"a", "b\nc", "d\n"}, "", []string{"ab", "cd"}},
		{"a line left open before a word", []string{"half"}, "=started", []string{"half", "=started"}},
		{"a word after a whole line", []string{"a\n"}, "=started", []string{"a", "=started"}},
		{"a long line", []string{long + "\n"}, "", []string{long[:maxFramedContent], long[maxFramedContent:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			f := &framedWriter{w: &b}
			for _, w := range tc.writes {
				if n, err := f.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write %q: %d, %v", w, n, err)
				}
			}
			if tc.said != "" {
				_ = f.say(tc.said)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				if len(line)+1 > agentapi.MaxPrepareLine {
					t.Errorf("a line of %d bytes", len(line)+1)
				}
				got = append(got, strings.TrimPrefix(line, agentapi.PrepareOutput))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("a cut inside a character", func(t *testing.T) {
		var b bytes.Buffer
		f := &framedWriter{w: &b}
		_, _ = f.Write([]byte(wide + "\n"))
		joined := ""
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			text := strings.TrimPrefix(line, agentapi.PrepareOutput)
			if !strings.HasPrefix(text, "é") {
				t.Errorf("a line starts inside a character: %q", text[:4])
			}
			joined += text
		}
		if joined != wide {
			t.Error("the pieces do not make the line")
		}
	})
}
