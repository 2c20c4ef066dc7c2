package builder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// Record is one line of an instance's release history.
type Record struct {
	Number       int       `json:"number"`
	Commit       string    `json:"commit"`
	Branch       string    `json:"branch"`
	Pusher       string    `json:"pusher"`
	Time         time.Time `json:"time"`
	ManifestHash string    `json:"manifest"`
	Files        int       `json:"files"`
	Size         int64     `json:"size"`
}

// History keeps each instance's releases under DIR/APP/INSTANCE/: a JSON
// lines file of records (human-readable, append-only) and one manifest file
// per release.
type History struct{ Dir string }

func (h History) dir(app, instance string) string { return filepath.Join(h.Dir, app, instance) }

// List returns every record of app's instance, oldest first (none when
// the instance has no release yet).
func (h History) List(app, instance string) ([]Record, error) {
	f, err := os.Open(filepath.Join(h.dir(app, instance), "history.jsonl"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// Last returns the newest record of app's instance and its manifest;
// ok is false when the instance has no release yet.
func (h History) Last(app, instance string) (rec Record, m Manifest, ok bool, err error) {
	recs, err := h.List(app, instance)
	if err != nil || len(recs) == 0 {
		return rec, nil, false, err
	}
	rec = recs[len(recs)-1]
	data, err := os.ReadFile(h.manifestPath(app, instance, rec.Number))
	if err != nil {
		return rec, nil, false, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return rec, nil, false, fmt.Errorf("manifest of v%d: %w", rec.Number, err)
	}
	return rec, m, true, nil
}

func (h History) manifestPath(app, instance string, n int) string {
	return filepath.Join(h.dir(app, instance), fmt.Sprintf("v%d.manifest.json", n))
}

// Append records a release: its manifest first (atomically), then the line.
func (h History) Append(app, instance string, rec Record, m Manifest) error {
	dir := h.dir(app, instance)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := h.manifestPath(app, instance, rec.Number)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return err
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "history.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// DropLast removes release number, which must be the instance's newest: a
// release that went live and was taken back because git did not move its
// branch. The line is cut off in place (nothing to write on a full disk),
// then the manifest is removed; an instance left without releases loses
// its history file.
func (h History) DropLast(app, instance string, number int) error {
	path := filepath.Join(h.dir(app, instance), "history.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	kept := bytes.TrimRight(data, "\n")
	cut := bytes.LastIndexByte(kept, '\n') + 1
	var rec Record
	if err := json.Unmarshal(kept[cut:], &rec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if rec.Number != number {
		return fmt.Errorf("%s: the newest release is v%d, not v%d", path, rec.Number, number)
	}
	if cut == 0 {
		err = os.Remove(path)
	} else {
		err = os.Truncate(path, int64(cut))
	}
	if err != nil {
		return err
	}
	if err := os.Remove(h.manifestPath(app, instance, number)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
