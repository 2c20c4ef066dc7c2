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
	"sync"
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
	// CrashLoops are the workers of the live release in a crash loop (or
	// that cannot start), as ps reports them, on each node.
	CrashLoops []CrashLoop `json:"crash_loops,omitempty"`
	// Unreached are the nodes that did not answer within listTimeout: what
	// runs there is not known.
	Unreached []string `json:"unreached_nodes,omitempty"`
}

// CrashLoop is a worker in a crash loop on a node.
type CrashLoop struct {
	Worker string `json:"worker"`
	Node   string `json:"node"`
}

// listTimeout bounds the wait of `apps` for the nodes: each is asked once
// (its status: every instance's live release and failing workers), and
// one that has not answered by then is listed as not reached.
const listTimeout = 10 * time.Second

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
	// The nodes are asked only if there is an instance to show.
	statuses := sync.OnceValue(func() []nodes.Status {
		ctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		return a.fleet.Check(ctx, targets)
	})
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
			rows = append(rows, a.appsInstanceRow(statuses(), len(targets), app, inst))
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

// appsInstanceRow is what `apps` says of one instance, from the nodes'
// statuses (of nodeCount nodes).
func (a *Apps) appsInstanceRow(statuses []nodes.Status, nodeCount int, app, inst string) AppRow {
	row := AppRow{App: app, Instance: inst, Services: []string{}}
	if spec, ok, err := a.lastSpec(app, inst); err == nil && ok {
		row.Location = "http://" + spec.Locations[0].String()
		row.Services = append(row.Services, spec.Services...)
	}
	if last, _, ok, err := a.history.Last(app, inst); err == nil && ok {
		row.Branch, row.Deployed, row.Pusher = last.Branch, last.Time.UTC().Format(time.RFC3339), last.Pusher
	}
	live := map[int]int{}
	for _, st := range statuses {
		if st.Err != nil {
			row.Unreached = append(row.Unreached, st.Node.Name)
			continue
		}
		for _, in := range st.Instances {
			if in.App != app || in.Instance != inst || in.Release == 0 {
				continue
			}
			live[in.Release]++
			row.Nodes++
			for _, w := range in.CrashLoops {
				row.CrashLoops = append(row.CrashLoops, CrashLoop{Worker: w, Node: st.Node.Name})
			}
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
	if slices.Contains(row.Services, "files") && nodeCount > 1 {
		row.Files = "per node: each node has its own files directory"
	}
	return row
}
