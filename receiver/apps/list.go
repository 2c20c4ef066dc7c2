package apps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
)

// AppRow is one instance (or one never-deployed app) in `apps`.
type AppRow struct {
	App      string   `json:"app"`
	Instance string   `json:"instance"`
	Location string   `json:"location"`
	Live     string   `json:"live"`
	Nodes    int      `json:"nodes"`
	Services []string `json:"services"`
	Files    string   `json:"files,omitempty"`
	Branch   string   `json:"branch,omitempty"`
	Deployed string   `json:"last_deploy,omitempty"` // RFC 3339, UTC
	Pusher   string   `json:"pusher,omitempty"`
}

// List is `apps`: the instances of every app that may is true of, in the
// order of the repositories.
func (a *Apps) List(ctx context.Context, may func(app string) bool) ([]AppRow, error) {
	entries, err := os.ReadDir(a.cfg.ReposDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, Internal(err, "cannot list the apps")
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return nil, Internal(err, "cannot read the node inventory")
	}
	rows := []AppRow{}
	for _, e := range entries {
		app, isRepo := strings.CutSuffix(e.Name(), ".git")
		if !isRepo || !may(app) {
			continue
		}
		instances, err := a.appInstances(app)
		if err != nil {
			return nil, Internal(err, "cannot read the releases of %s", app)
		}
		if len(instances) == 0 {
			rows = append(rows, AppRow{App: app, Live: "never deployed", Services: []string{}})
		}
		for _, inst := range instances {
			rows = append(rows, a.appsInstanceRow(ctx, targets, app, inst))
		}
	}
	return rows, nil
}

// appInstances lists the instances of app that have releases.
func (a *Apps) appInstances(app string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(a.cfg.releasesDir(), app))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// appsInstanceRow is what `apps` says of one instance.
func (a *Apps) appsInstanceRow(ctx context.Context, targets []nodes.Node, app, inst string) AppRow {
	row := AppRow{App: app, Instance: inst, Services: []string{}}
	if spec, ok, err := a.lastSpec(app, inst); err == nil && ok {
		row.Location = "http://" + spec.Locations[0].String()
		row.Services = append(row.Services, spec.Services...)
	}
	if last, _, ok, err := a.history.Last(app, inst); err == nil && ok {
		row.Branch, row.Deployed, row.Pusher = last.Branch, last.Time.UTC().Format(time.RFC3339), last.Pusher
	}
	live := map[int]int{}
	for _, r := range a.fleet.Releases(ctx, targets, app, inst) {
		if r.Err == nil && r.Current > 0 {
			live[r.Current]++
			row.Nodes++
		}
	}
	var parts []string
	for n, count := range live {
		parts = append(parts, fmt.Sprintf("v%d on %d", n, count))
	}
	sort.Strings(parts)
	row.Live = strings.Join(parts, ", ")
	if row.Live == "" {
		row.Live = "none"
	}
	if slices.Contains(row.Services, "files") && len(targets) > 1 {
		row.Files = "per node: each node has its own files directory"
	}
	return row
}
