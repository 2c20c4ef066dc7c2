// Package backuparchive is the format of `backup` and `restore`: a tar
// stream of a manifest, then one SERVICE.dump per service, each in that
// service's own format (pg_dump's custom format, mysqldump's SQL, ...).
// Read takes it from whoever may manage the app and checks all of it
// before anything is restored. A package of its own, small, so that its
// fuzz target runs fast.
package backuparchive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/services"
)

const (
	// ManifestName is the first entry of every backup.
	ManifestName = "gitreceive-backup.json"
	// Format is the manifest's format number.
	Format          = 1
	maxManifestSize = 1 << 16
	dumpSuffix      = ".dump"
)

// Manifest says what a backup holds and where it came from.
type Manifest struct {
	Format   int       `json:"format"`
	App      string    `json:"app"`
	Instance string    `json:"instance"`
	Created  time.Time `json:"created"`
	Services []string  `json:"services"`
}

// DumpPath is where a service's dump lies in dir, for Write and after Read.
func DumpPath(dir, service string) string { return filepath.Join(dir, service+dumpSuffix) }

// Write writes the backup of m (its Format set here) to w: the manifest,
// then each of m.Services' dumps from DumpPath(dir, service).
func Write(w io.Writer, m Manifest, dir string) error {
	m.Format = Format
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := writeEntry(tw, ManifestName, strings.NewReader(string(data)), int64(len(data))); err != nil {
		return err
	}
	for _, name := range m.Services {
		if err := writeDump(tw, name, DumpPath(dir, name)); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeDump(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return writeEntry(tw, name+dumpSuffix, f, st.Size())
}

func writeEntry(tw *tar.Writer, name string, r io.Reader, size int64) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

// Read reads a backup from r into dir (each dump at DumpPath), checking
// all of it: the manifest, that every dump is of a service the instance
// has (has says which), and each dump by its service. It returns the
// manifest and the services in the backup.
func Read(r io.Reader, dir string, has func(service string) bool) (Manifest, []string, error) {
	var m Manifest
	tr := tar.NewReader(r)
	var names []string
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, nil, fmt.Errorf("not a backup made by gitreceive backup (a tar stream): %w", err)
		}
		if i == 0 {
			if h.Name != ManifestName {
				return m, nil, fmt.Errorf("not a backup made by gitreceive backup: it starts with %q, not %s", h.Name, ManifestName)
			}
			// Read whole or refused: tar would discard the rest of a
			// longer entry by reading it, and a sparse one can promise
			// terabytes of zeros.
			if h.Size > maxManifestSize {
				return m, nil, fmt.Errorf("%s is %d bytes, more than a manifest is", ManifestName, h.Size)
			}
			data, err := io.ReadAll(tr)
			if err != nil || json.Unmarshal(data, &m) != nil || m.Format != Format {
				return m, nil, fmt.Errorf("%s is not a backup manifest of format %d", ManifestName, Format)
			}
			continue
		}
		name, isDump := strings.CutSuffix(h.Name, dumpSuffix)
		svc, known := services.Lookup(name)
		if h.Typeflag != tar.TypeReg || !isDump || !known {
			return m, nil, fmt.Errorf("backup entry %q is not SERVICE%s of a known service", h.Name, dumpSuffix)
		}
		if !has(name) {
			return m, nil, fmt.Errorf("the backup holds %s, which this instance does not have; add service.%s to app.ini and push first", name, name)
		}
		if slices.Contains(names, name) {
			return m, nil, fmt.Errorf("backup entry %q is there twice", h.Name)
		}
		if !slices.Contains(m.Services, name) {
			return m, nil, fmt.Errorf("backup entry %q is not listed in its manifest", h.Name)
		}
		if err := checkRoom(dir, h.Size); err != nil {
			return m, nil, fmt.Errorf("backup entry %s: %w", h.Name, err)
		}
		path := DumpPath(dir, name)
		if err := services.CopyToFile(path, io.LimitReader(tr, h.Size)); err != nil {
			return m, nil, err
		}
		if err := checkDump(svc, path); err != nil {
			return m, nil, fmt.Errorf("backup entry %s: %w", h.Name, err)
		}
		names = append(names, name)
	}
	if len(names) == 0 || len(names) != len(m.Services) {
		return m, nil, fmt.Errorf("the backup is incomplete: its manifest lists %s, it holds %s", strings.Join(m.Services, ", "), strings.Join(names, ", "))
	}
	return m, names, nil
}

// maxDumpSize caps one dump of a backup (tests lower it).
var maxDumpSize int64 = 1 << 40

// checkRoom refuses a dump of size bytes that would not fit in dir with
// 1 GiB to spare (a tar header may promise terabytes of sparse zeros).
func checkRoom(dir string, size int64) error {
	if size > maxDumpSize {
		return fmt.Errorf("is %s, over the %s a dump may be", hooks.Size(size), hooks.Size(maxDumpSize))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; size > free-(1<<30) {
		return fmt.Errorf("is %s and the receiver has %s free for it; free some room and restore again", hooks.Size(size), hooks.Size(free))
	}
	return nil
}

func checkDump(svc services.Service, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return svc.CheckBackup(f)
}
