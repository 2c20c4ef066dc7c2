// Package builder turns a pushed commit into a release: it checks the tree
// (no submodules, no escaping symlinks, no path tricks, a size limit),
// validates app.ini into a typed config, fixes absolute paths in .pth and
// .egg-link files, and computes the manifest that identifies the release.
//
// It reads pushed objects through git plumbing (they are still quarantined
// during pre-receive) and knows nothing of SSH.
package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/builder/pthfix"
	"github.com/gitreceive/gitreceive/hooks"
)

// DefaultSizeLimit is the largest release accepted unless configured.
const DefaultSizeLimit = 1 << 30

// maxSmallFile bounds app.ini and .pth files read whole.
const maxSmallFile = 1 << 20

// Input is what Build needs to know about one branch update.
type Input struct {
	Git       Git
	App       string
	Instance  string
	Branch    string
	Commit    string
	Pusher    string
	Number    int      // the release number to give
	Previous  Manifest // the instance's current release, if any: unchanged files are not hashed again
	SizeLimit int64    // 0 means DefaultSizeLimit
}

// Release is a built, not yet deployed, release.
type Release struct {
	App          string
	Instance     string
	Number       int
	Branch       string
	Commit       string
	Pusher       string
	Time         time.Time
	Config       *appconfig.Config
	Manifest     Manifest
	ManifestHash string
	// Fixed holds the content of files the builder changed (.pth fixes);
	// every other file's content is the git blob named in the manifest.
	Fixed map[string][]byte

	git Git
}

// EachFile streams the content of the release's files that want selects
// (all when want is nil), in manifest order, through one git process: a
// 1 GiB app never needs 1 GiB of memory. Symlinks have no content to
// stream and are passed with an empty reader.
func (r *Release) EachFile(ctx context.Context, want func(ManifestEntry) bool, fn func(ManifestEntry, io.Reader) error) error {
	blobs, err := r.git.openBlobs(ctx)
	if err != nil {
		return err
	}
	defer blobs.close()
	for _, e := range r.Manifest {
		if want != nil && !want(e) {
			continue
		}
		var content io.Reader
		switch {
		case e.Mode == ModeSymlink:
			content = strings.NewReader("")
		case e.Blob == "":
			content = bytes.NewReader(r.Fixed[e.Path])
		default:
			if content, _, err = blobs.open(e.Blob); err != nil {
				return fmt.Errorf("reading %s: %w", e.Path, err)
			}
		}
		if err := fn(e, content); err != nil {
			return err
		}
	}
	return nil
}

// Record is the release's line in the instance history.
func (r *Release) Record() Record {
	return Record{Number: r.Number, Commit: r.Commit, Branch: r.Branch, Pusher: r.Pusher, Time: r.Time,
		ManifestHash: r.ManifestHash, Files: len(r.Manifest), Size: r.Manifest.TotalSize()}
}

// Build checks and builds the release of in.Commit, reporting each step on
// out. Its errors are meant for the pusher: one or more sentences naming the
// file, key or path and what to do.
func Build(ctx context.Context, in Input, out *hooks.Progress) (*Release, error) {
	if in.SizeLimit == 0 {
		in.SizeLimit = DefaultSizeLimit
	}
	entries, err := in.Git.listTree(ctx, in.Commit)
	if err != nil {
		return nil, fmt.Errorf("cannot read the pushed commit %.7s: %w", in.Commit, err)
	}
	blobs, err := in.Git.openBlobs(ctx)
	if err != nil {
		return nil, err
	}
	defer blobs.close()

	t, err := buildTree(entries, blobs, in.SizeLimit)
	if err != nil {
		return nil, err
	}

	out.Step("Validating app.ini")
	cfg, err := readAppConfig(t, blobs, in.App, out)
	if err != nil {
		return nil, err
	}
	out.Detail("%s", describeConfig(cfg))

	fixed, err := fixPthFiles(t, blobs, out)
	if err != nil {
		return nil, err
	}

	m, err := manifest(ctx, t, blobs, fixed, blobHashes(in.Previous))
	if err != nil {
		return nil, err
	}
	r := &Release{
		App: in.App, Instance: in.Instance, Number: in.Number, Branch: in.Branch, Commit: in.Commit,
		Pusher: in.Pusher, Time: time.Now().UTC(), Config: cfg, Manifest: m, ManifestHash: m.Hash(), Fixed: fixed,
		git: in.Git,
	}
	out.Step("Built release v%d: %d files, %s (manifest %.12s)", r.Number, len(m), hooks.Size(m.TotalSize()), r.ManifestHash)
	return r, nil
}

func readAppConfig(t *tree, blobs *blobReader, app string, out *hooks.Progress) (*appconfig.Config, error) {
	n, ok := t.blobs["app.ini"]
	if !ok {
		return nil, errors.New("app.ini is missing at the root of the repository; add one with a [production] section holding app_name and runner")
	}
	name := "app.ini"
	if n.isLink() {
		target, err := t.resolve("app.ini")
		if err != nil {
			return nil, err
		}
		tn, ok := t.blobs[target]
		if !ok || tn.isLink() {
			return nil, fmt.Errorf("app.ini is a symlink to %s, which is not a file in the repository; point it at the app's ini file", n.target)
		}
		name, n = "app.ini -> "+target, tn
	}
	data, err := blobs.read(n.oid, maxSmallFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg, warnings, err := appconfig.Parse(name, data, app, t)
	for _, w := range warnings {
		out.Detail("warning: %s", w)
	}
	if err != nil {
		return nil, err
	}
	return cfg, readProcfile(t, blobs, cfg, out)
}

// readProcfile adds a Procfile's processes to cfg (app.ini wins where both
// name one), for Heroku-style apps.
func readProcfile(t *tree, blobs *blobReader, cfg *appconfig.Config, out *hooks.Progress) error {
	if !t.IsFile(appconfig.ProcfileName) {
		return nil
	}
	target, err := t.resolve(appconfig.ProcfileName)
	if err != nil {
		return err
	}
	data, err := blobs.read(t.blobs[target].oid, maxSmallFile)
	if err != nil {
		return fmt.Errorf("%s: %w", appconfig.ProcfileName, err)
	}
	p, warnings, err := appconfig.ParseProcfile(data, t)
	if err == nil {
		warnings = append(warnings, cfg.MergeProcfile(p)...)
	}
	for _, w := range warnings {
		out.Detail("warning: %s", w)
	}
	return err
}

func describeConfig(c *appconfig.Config) string {
	var parts []string
	runner := c.Runner.Path
	if c.Runner.Object != "" && c.Runner.Object != "application" {
		runner += "#" + c.Runner.Object
	}
	parts = append(parts, "runner = "+runner)
	if c.Platform != "python" {
		parts = append(parts, "platform = "+string(c.Platform))
	}
	for _, w := range c.BackgroundWorkers {
		parts = append(parts, "worker "+w.Name)
	}
	for _, j := range c.CronJobs {
		parts = append(parts, "cron "+j.Name+" ("+j.Schedule+")")
	}
	if len(c.Services) > 0 {
		names := make([]string, len(c.Services))
		for i, s := range c.Services {
			names[i] = s.Name
		}
		parts = append(parts, "services: "+strings.Join(names, ", "))
	}
	return strings.Join(parts, ", ")
}

// fixPthFiles rewrites absolute paths in .pth/.egg-link files; the
// repository keeps what was pushed, the release gets the fixed content.
func fixPthFiles(t *tree, blobs *blobReader, out *hooks.Progress) (map[string][]byte, error) {
	fixed := map[string][]byte{}
	var dirs *pthfix.Dirs
	announced := false
	for _, p := range t.paths {
		n := t.blobs[p]
		if n.isLink() || !pthfix.Applies(p) {
			continue
		}
		if dirs == nil {
			dirs = pthfix.NewDirs(t.dirList())
		}
		data, err := blobs.read(n.oid, maxSmallFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		content, rewrites, err := pthfix.Fix(p, data, dirs)
		if err != nil {
			return nil, err
		}
		if len(rewrites) == 0 {
			continue
		}
		if !announced {
			out.Step("Fixing .pth paths")
			announced = true
		}
		for _, r := range rewrites {
			out.Detail("%s: %s -> %s", r.File, r.From, r.To)
		}
		fixed[p] = content
	}
	return fixed, nil
}

func manifest(ctx context.Context, t *tree, blobs *blobReader, fixed map[string][]byte, known map[string]string) (Manifest, error) {
	m := make(Manifest, 0, len(t.paths))
	for _, p := range t.paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := t.blobs[p]
		e := ManifestEntry{Path: p, Mode: ModeFile, Size: n.size, Blob: n.oid}
		switch {
		case n.isLink():
			e.Mode, e.Target, e.SHA256 = ModeSymlink, n.target, sha256String(n.target)
		case fixed[p] != nil:
			e.Blob, e.Size, e.SHA256 = "", int64(len(fixed[p])), sha256String(string(fixed[p]))
		case known[n.oid] != "":
			e.SHA256 = known[n.oid]
		default:
			r, _, err := blobs.open(n.oid)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
			if e.SHA256, _, err = sha256Hex(r); err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
		}
		if n.isExec() {
			e.Mode = ModeExec
		}
		m = append(m, e)
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Path < m[j].Path })
	return m, nil
}
