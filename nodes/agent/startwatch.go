package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startWatch follows a starting vassal: its lines in app.log and what the
// emperor says of it.
type startWatch struct {
	rt       Runtime
	vassalID string
	logFile  string
	offset   int64  // app.log's size before the start: later bytes are this start's
	prefix   string // what uWSGI puts before this release's own lines (vassalLogPrefix)

	mu    sync.Mutex
	lines []string // this start's lines of app.log so far (the last logTailLines*4)
	upTo  int      // when > 0, the tail to show ends here (the failure's line)
}

// failureMarkers are uWSGI's words for an app that cannot load. With
// need-app the vassal exits right after; the emperor would respawn it for
// ever, so the start fails at once.
var failureMarkers = []string{
	"no app loaded. GAME OVER",
	"unable to load app",
	"no python application found",
	"!!! UNABLE to load uWSGI plugin",
}

func (w *startWatch) run(ctx context.Context, fail context.CancelCauseFunc) {
	var partial []byte
	pos := w.offset
	firstPID, respawns := 0, -1
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		data, next := readLogFrom(w.logFile, pos)
		pos = next
		if len(data) > 0 {
			partial = append(partial, data...)
			complete := bytes.LastIndexByte(partial, '\n')
			if complete >= 0 {
				newLines := strings.Split(string(partial[:complete]), "\n")
				partial = slices.Clone(partial[complete+1:])
				if cause, ok := w.addLines(newLines); ok {
					fail(&appFailure{cause: cause})
					return
				}
			}
		}
		// A vassal that dies before logging (a bad option, a missing
		// directory) shows only in the emperor's respawns.
		if vs, err := emperorVassals(ctx, w.rt.EmperorStats); err == nil {
			for _, v := range vs {
				if v.ID != w.vassalID {
					continue
				}
				if respawns < 0 {
					firstPID, respawns = v.PID, v.Respawns
				} else if v.Respawns > respawns || (v.PID != firstPID && v.PID != 0 && firstPID != 0) {
					// It wrote its last words before it exited: read them
					// all before judging, or the traceback is cut where the
					// last read happened to stop, its exception unseen.
					data, _ := readLogFrom(w.logFile, pos)
					if rest := strings.TrimRight(string(append(partial, data...)), "\n"); rest != "" {
						if cause, ok := w.addLines(strings.Split(rest, "\n")); ok {
							fail(&appFailure{cause: cause})
							return
						}
					}
					fail(&appFailure{cause: "it exited; " + w.lastLine("see "+emperorLog(w.rt))})
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// addLines records new log lines and reports a failure marker's cause.
// The instance's other vassals (the live release, prev.HOST's) log to the
// same app.log: only a marker this release's uWSGI wrote counts.
func (w *startWatch) addLines(lines []string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, raw := range lines {
		own := w.prefix == "" || strings.HasPrefix(raw, w.prefix)
		l := vassalLogLinePrefix.ReplaceAllString(strings.TrimRight(raw, "\r"), "")
		w.lines = append(w.lines, l)
		if len(w.lines) > 4*logTailLines {
			w.lines = slices.Delete(w.lines, 0, len(w.lines)-4*logTailLines)
		}
		for _, m := range failureMarkers {
			if own && strings.Contains(l, m) {
				w.upTo = len(w.lines)
				return failureCause(w.lines), true
			}
		}
	}
	return "", false
}

// vassalLogPrefix is what uWSGI puts before each line release n's vassal
// logs itself (log-prefix, then uWSGI's " - "); the app's own stderr
// reaches app.log unprefixed.
func vassalLogPrefix(n int) string { return "[v" + strconv.Itoa(n) + "] - " }

var vassalLogLinePrefix = regexp.MustCompile(`^\[v[0-9]+\] - `)

// failureCause picks the line that says why: the exception of the last
// Python traceback, else the last line before uWSGI's own verdict.
func failureCause(lines []string) string {
	tb := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "Traceback (most recent call last)") {
			tb = i
		}
	}
	if tb >= 0 {
		cause := ""
		for _, l := range lines[tb+1:] {
			if l != "" && !strings.HasPrefix(l, " ") && !isMarker(l) {
				cause = l
			}
			if isMarker(l) {
				break
			}
		}
		if cause != "" {
			return cause
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !isMarker(l) && !isShutdownNoise(l) {
			return l
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	return "no log line"
}

// shutdownNoise starts the lines uWSGI logs on its way out, after the
// line that says why.
var shutdownNoise = []string{"VACUUM", "goodbye to uWSGI", "SIGINT/SIGTERM received", "worker ", "announcing my loyalty", "[pid: "}

func isShutdownNoise(l string) bool {
	for _, p := range shutdownNoise {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func isMarker(l string) bool {
	for _, m := range failureMarkers {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

func (w *startWatch) lastLine(fallback string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return fallback
	}
	return "last log line: " + failureCause(w.lines)
}

// printTail shows this start's last lines of app.log (up to the failure's
// line when there was one), reading what the watcher has not read yet.
func (w *startWatch) printTail(out io.Writer) {
	w.mu.Lock()
	lines := slices.Clone(w.lines)
	upTo := w.upTo
	w.mu.Unlock()
	if upTo == 0 {
		if data, _ := readLogFrom(w.logFile, w.offset); len(data) > 0 {
			lines = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		}
	} else {
		lines = lines[:upTo]
	}
	if len(lines) == 0 {
		fmt.Fprintf(out, "%s has nothing from this start; see %s\n", w.logFile, emperorLog(w.rt))
		return
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	fmt.Fprintf(out, "last lines of %s:\n", w.logFile)
	for _, l := range lines {
		if len(l) > maxLineBytes {
			l = l[:maxLineBytes] + "..."
		}
		fmt.Fprintf(out, "  %s\n", l)
	}
}

// emperorLog is where the emperor and what a vassal prints before its own
// log is open end up (server-files' emperor.ini: next to the apps' logs).
func emperorLog(rt Runtime) string { return filepath.Join(filepath.Dir(rt.LogsDir), "emperor.log") }

// readLogFrom reads the log from offset on (at most 1 MB) and returns the
// next offset. The log lies in a directory the app may write: it is opened
// without following symlinks and must be a regular file, so an app cannot
// make the agent (root) show it some other file. A log that shrank (was
// rotated) is read from its start.
func readLogFrom(path string, offset int64) ([]byte, int64) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, offset
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, offset
	}
	if fi.Size() < offset {
		offset = 0
	}
	const maxRead = 1 << 20
	start := offset
	if fi.Size()-start > maxRead {
		start = fi.Size() - maxRead
	}
	data := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(data, start)
	return data[:n], start + int64(n)
}

func fileSize(path string) int64 {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}
