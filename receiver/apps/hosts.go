package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/keystore"
	"github.com/rs/zerolog"
)

// Host names are tied to apps (DESIGN.md decision 9): APP.DOMAIN and every
// host under it belong to APP alone, whether or not APP has deployed yet,
// so no other deployer can take an app's future staging host; any other
// host is first come, first served. A claim is made when a deploy reaches
// its hosts, before anything is provisioned, and kept in DATA/hosts.json:
// the nodes would refuse a second app's route to a host, but only after
// that app's release was built, provisioned and started.

// hostClaim is who holds a host.
type hostClaim struct {
	App      string    `json:"app"`
	Instance string    `json:"instance"`
	Claimed  time.Time `json:"claimed"`
}

// hostClaims is the receiver's in-memory side of the claims (the stored
// side is DATA/hosts.json). Its zero value is ready to use.
type hostClaims struct {
	// mu serializes reading and writing the claims: deploys of different
	// apps run at once, each under its own app lock only.
	mu sync.Mutex
	// pending are the hosts of deploys under way (host -> app): their
	// instances have no history yet, and a claim whose instance has none
	// is otherwise stale (a failed first deploy holds nothing).
	pending map[string]string
}

func (a *Apps) hostsPath() string { return filepath.Join(a.cfg.DataDir, "hosts.json") }

// canonicalHost is how hosts are compared: lowercase, no final dot.
func canonicalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// reservedFor is the app a host is reserved for by its name: APP for
// APP.DOMAIN and anything under it, when APP is a name an app can have.
func reservedFor(host, domain string) (string, bool) {
	rest, ok := strings.CutSuffix(host, "."+domain)
	if !ok || rest == "" {
		return "", false
	}
	label := rest[strings.LastIndexByte(rest, '.')+1:]
	if keystore.ValidAppName(label) != nil {
		return "", false
	}
	return label, true
}

// loadClaims reads DATA/hosts.json (none yet: no claims). The caller
// holds a.hostClaims.mu.
func (a *Apps) loadClaims() (map[string]hostClaim, error) {
	return readValues[hostClaim](a.hostsPath())
}

// claimState is the stored claims and the routed hosts. The caller holds
// a.hostClaims.mu.
func (a *Apps) claimState() (stored, routed map[string]hostClaim, err error) {
	if stored, err = a.loadClaims(); err != nil {
		return nil, nil, fmt.Errorf("reading the host claims: %w", err)
	}
	if routed, err = a.routedHosts(); err != nil {
		return nil, nil, fmt.Errorf("reading the routed hosts: %w", err)
	}
	return stored, routed, nil
}

// saveClaims writes the claims atomically. The caller holds a.hostClaims.mu.
func (a *Apps) saveClaims(claims map[string]hostClaim) error {
	data, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(a.hostsPath(), append(data, '\n'), 0o600)
}

// routedHosts are the hosts every instance's live release answers at,
// with whose they are: claims as good as a stored one (instances deployed
// before claims were kept have only these).
func (a *Apps) routedHosts() (map[string]hostClaim, error) {
	entries, err := os.ReadDir(a.cfg.ReposDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	routed := map[string]hostClaim{}
	for _, e := range entries {
		app, isRepo := strings.CutSuffix(e.Name(), ".git")
		if !isRepo {
			continue
		}
		instances, err := a.appInstances(app)
		if err != nil {
			return nil, err
		}
		for _, inst := range instances {
			spec, ok, err := a.lastSpec(app, inst)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			last, _, _, _ := a.history.Last(app, inst)
			for _, l := range spec.Locations {
				routed[canonicalHost(l.Host)] = hostClaim{App: app, Instance: inst, Claimed: last.Time.UTC()}
			}
		}
	}
	return routed, nil
}

// liveClaims drops stored claims whose instance is gone (destroyed, or a
// first deploy that failed) unless a deploy of theirs is under way.
func (a *Apps) liveClaims(claims map[string]hostClaim) map[string]hostClaim {
	out := map[string]hostClaim{}
	for h, c := range claims {
		if _, _, ok, err := a.history.Last(c.App, c.Instance); (err == nil && ok) || a.hostClaims.pending[h] == c.App {
			out[h] = c
		}
	}
	return out
}

// holder is who holds host: its live route, else its stored claim.
func holder(host string, claims, routed map[string]hostClaim) (hostClaim, bool) {
	if c, ok := routed[host]; ok {
		return c, true
	}
	c, ok := claims[host]
	return c, ok
}

// locationKey is the app.ini key that sets r's host, for messages.
func locationKey(r *builder.Release) string {
	switch {
	case isProductionBranch(r.Branch):
		return "default_location"
	}
	if _, ok := r.Config.BranchLocations[r.Branch]; ok {
		return "[branch:" + r.Branch + "] location"
	}
	switch {
	case r.Config.Staging.Location != "":
		return "[staging] location"
	}
	return "the branch's name"
}

// claimHosts checks that every host the built releases answer at may be
// theirs, and claims them; the returned func ends the deploy's hold on
// claims its instances have no history for yet (call it when the deploy
// is over, whatever its outcome).
func (a *Apps) claimHosts(built []*builder.Release, specs []agent.Spec) (func(), error) {
	a.hostClaims.mu.Lock()
	defer a.hostClaims.mu.Unlock()
	stored, routed, err := a.claimState()
	if err != nil {
		return nil, tellOperator(a.log, err, "cannot read the host claims")
	}
	claims := a.liveClaims(stored)
	for i, r := range built {
		for _, l := range specs[i].Locations {
			h := canonicalHost(l.Host)
			if owner, ok := reservedFor(h, a.cfg.Domain); ok && owner != r.App {
				return nil, fmt.Errorf("app.ini: %s: %s is under %s.%s, which only app %s may use; choose a host outside it",
					locationKey(r), h, owner, a.cfg.Domain, owner)
			}
			if c, ok := holder(h, claims, routed); ok && c.App != r.App {
				return nil, fmt.Errorf("app.ini: %s: %s is claimed by app %s (since %s); choose another host, or ask an admin to release it (hosts:release %s)",
					locationKey(r), h, c.App, c.Claimed.Format(time.RFC3339), h)
			}
		}
	}
	var mine []string
	for i, r := range built {
		for _, l := range specs[i].Locations {
			h := canonicalHost(l.Host)
			c := hostClaim{App: r.App, Instance: r.Instance, Claimed: time.Now().UTC()}
			if old, ok := claims[h]; ok && old.App == r.App {
				c.Claimed = old.Claimed
			}
			claims[h] = c
			if _, taken := a.hostClaims.pending[h]; !taken {
				if a.hostClaims.pending == nil {
					a.hostClaims.pending = map[string]string{}
				}
				a.hostClaims.pending[h] = r.App
				mine = append(mine, h)
			}
		}
	}
	if err := a.saveClaims(claims); err != nil {
		return nil, tellOperator(a.log, err, "cannot record the host claims")
	}
	return func() {
		a.hostClaims.mu.Lock()
		defer a.hostClaims.mu.Unlock()
		for _, h := range mine {
			delete(a.hostClaims.pending, h)
		}
	}, nil
}

// HostRow is one line of `hosts`.
type HostRow struct {
	Host     string `json:"host"`
	App      string `json:"app"`
	Instance string `json:"instance"`
	Claimed  string `json:"claimed"` // RFC 3339, UTC
	Routed   bool   `json:"routed"`  // a live release answers there
}

// Hosts lists the claimed and routed hosts and which instance holds each,
// by host.
func (a *Apps) Hosts() ([]HostRow, error) {
	a.hostClaims.mu.Lock()
	stored, routed, err := a.claimState()
	claims := a.liveClaims(stored)
	a.hostClaims.mu.Unlock()
	if err != nil {
		return nil, Internal(err, "cannot read the host claims")
	}
	rows := []HostRow{}
	for h := range claims {
		if _, ok := routed[h]; !ok {
			cl := claims[h]
			rows = append(rows, HostRow{Host: h, App: cl.App, Instance: cl.Instance, Claimed: cl.Claimed.Format(time.RFC3339)})
		}
	}
	for h, r := range routed {
		claimed := r.Claimed
		if cl, ok := claims[h]; ok && cl.App == r.App {
			claimed = cl.Claimed
		}
		rows = append(rows, HostRow{Host: h, App: r.App, Instance: r.Instance, Claimed: claimed.Format(time.RFC3339), Routed: true})
	}
	slices.SortFunc(rows, func(a, b HostRow) int { return strings.Compare(a.Host, b.Host) })
	return rows, nil
}

// ReleaseHost drops an app's claim on a host no instance serves; note, if
// not empty, says that the host stays reserved for the app by its name.
func (a *Apps) ReleaseHost(ctx context.Context, host string) (released HostRow, note string, err error) {
	h := canonicalHost(host)
	if !names.IsHost(h) {
		return released, "", Failf("%s is not a host name", names.Show(host))
	}
	a.hostClaims.mu.Lock()
	defer a.hostClaims.mu.Unlock()
	stored, routed, err := a.claimState()
	if err != nil {
		return released, "", Internal(err, "cannot read the host claims")
	}
	if r, ok := routed[h]; ok {
		return released, "", Failf("%s is served by %s/%s; give that instance another location (app.ini) or destroy it, then release the host", h, r.App, r.Instance)
	}
	cl, ok := stored[h]
	if !ok {
		return released, "", Failf("nobody claims %s", h)
	}
	if owner, reserved := reservedFor(h, a.cfg.Domain); reserved && owner == cl.App {
		note = fmt.Sprintf("%s stays reserved for app %s by its name (under %s.%s)", h, owner, owner, a.cfg.Domain)
	}
	delete(stored, h)
	if err := a.saveClaims(stored); err != nil {
		return released, "", Internal(err, "cannot write the host claims")
	}
	zerolog.Ctx(ctx).Info().Str("host", h).Str("app", cl.App).Str("instance", cl.Instance).Msg("host claim released")
	return HostRow{Host: h, App: cl.App, Instance: cl.Instance, Claimed: cl.Claimed.Format(time.RFC3339)}, note, nil
}
