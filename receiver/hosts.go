package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// Host names are tied to apps (DESIGN.md decision 9): APP.DOMAIN and every
// host under it belong to APP alone, whether or not APP has deployed yet,
// so no other deployer can take an app's future staging host; any other
// host is first come, first served. A claim is made when a deploy reaches
// its hosts, before anything is provisioned, and kept in DATA/hosts.json:
// the nodes would refuse a second app's route to a host, but only after
// that app's release was built, provisioned and started.

const (
	hostsUsage        = "hosts [--json]"
	hostsReleaseUsage = "hosts:release HOST"
)

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

func (s *Server) hostsPath() string { return filepath.Join(s.cfg.DataDir, "hosts.json") }

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
// holds s.hostClaims.mu.
func (s *Server) loadClaims() (map[string]hostClaim, error) {
	return readValues[hostClaim](s.hostsPath())
}

// claimState is the stored claims and the routed hosts. The caller holds
// s.hostClaims.mu.
func (s *Server) claimState() (stored, routed map[string]hostClaim, err error) {
	if stored, err = s.loadClaims(); err != nil {
		return nil, nil, fmt.Errorf("cannot read the host claims (%v); tell the operator", err)
	}
	if routed, err = s.routedHosts(); err != nil {
		return nil, nil, fmt.Errorf("cannot read the routed hosts (%v); tell the operator", err)
	}
	return stored, routed, nil
}

// saveClaims writes the claims atomically. The caller holds s.hostClaims.mu.
func (s *Server) saveClaims(claims map[string]hostClaim) error {
	data, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.hostsPath(), append(data, '\n'), 0o600)
}

// routedHosts are the hosts every instance's live release answers at,
// with whose they are: claims as good as a stored one (instances deployed
// before claims were kept have only these).
func (s *Server) routedHosts() (map[string]hostClaim, error) {
	entries, err := os.ReadDir(s.cfg.reposDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	routed := map[string]hostClaim{}
	for _, e := range entries {
		app, isRepo := strings.CutSuffix(e.Name(), ".git")
		if !isRepo {
			continue
		}
		instances, err := s.appInstances(app)
		if err != nil {
			return nil, err
		}
		for _, inst := range instances {
			spec, ok, err := s.lastSpec(app, inst)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			last, _, _, _ := s.history.Last(app, inst)
			for _, l := range spec.Locations {
				routed[canonicalHost(l.Host)] = hostClaim{App: app, Instance: inst, Claimed: last.Time.UTC()}
			}
		}
	}
	return routed, nil
}

// liveClaims drops stored claims whose instance is gone (destroyed, or a
// first deploy that failed) unless a deploy of theirs is under way.
func (s *Server) liveClaims(claims map[string]hostClaim) map[string]hostClaim {
	out := map[string]hostClaim{}
	for h, c := range claims {
		if _, _, ok, err := s.history.Last(c.App, c.Instance); (err == nil && ok) || s.hostClaims.pending[h] == c.App {
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
func (s *Server) claimHosts(built []*builder.Release, specs []agent.Spec) (func(), error) {
	s.hostClaims.mu.Lock()
	defer s.hostClaims.mu.Unlock()
	stored, routed, err := s.claimState()
	if err != nil {
		return nil, err
	}
	claims := s.liveClaims(stored)
	for i, r := range built {
		for _, l := range specs[i].Locations {
			h := canonicalHost(l.Host)
			if owner, ok := reservedFor(h, s.cfg.Domain); ok && owner != r.App {
				return nil, fmt.Errorf("app.ini: %s: %s is under %s.%s, which only app %s may use; choose a host outside it",
					locationKey(r), h, owner, s.cfg.Domain, owner)
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
			if _, taken := s.hostClaims.pending[h]; !taken {
				if s.hostClaims.pending == nil {
					s.hostClaims.pending = map[string]string{}
				}
				s.hostClaims.pending[h] = r.App
				mine = append(mine, h)
			}
		}
	}
	if err := s.saveClaims(claims); err != nil {
		return nil, fmt.Errorf("cannot record the host claims (%v); tell the operator", err)
	}
	return func() {
		s.hostClaims.mu.Lock()
		defer s.hostClaims.mu.Unlock()
		for _, h := range mine {
			delete(s.hostClaims.pending, h)
		}
	}, nil
}

// hostRow is one line of `hosts`.
type hostRow struct {
	Host     string `json:"host"`
	App      string `json:"app"`
	Instance string `json:"instance"`
	Claimed  string `json:"claimed"` // RFC 3339, UTC
	Routed   bool   `json:"routed"`  // a live release answers there
}

func (s *Server) hostsCommand(c *call) error {
	asJSON := false
	switch {
	case len(c.args) == 2 && c.args[1] == "--json":
		asJSON = true
	case len(c.args) != 1:
		return c.fail("usage: %s", hostsUsage)
	}
	s.hostClaims.mu.Lock()
	stored, routed, err := s.claimState()
	claims := s.liveClaims(stored)
	s.hostClaims.mu.Unlock()
	if err != nil {
		c.log.Error().Err(err).Msg("reading host claims")
		return c.fail("cannot read the host claims; tell the operator")
	}
	var rows []hostRow
	for h := range claims {
		if _, ok := routed[h]; !ok {
			cl := claims[h]
			rows = append(rows, hostRow{Host: h, App: cl.App, Instance: cl.Instance, Claimed: cl.Claimed.Format(time.RFC3339)})
		}
	}
	for h, r := range routed {
		claimed := r.Claimed
		if cl, ok := claims[h]; ok && cl.App == r.App {
			claimed = cl.Claimed
		}
		rows = append(rows, hostRow{Host: h, App: r.App, Instance: r.Instance, Claimed: claimed.Format(time.RFC3339), Routed: true})
	}
	slices.SortFunc(rows, func(a, b hostRow) int { return strings.Compare(a.Host, b.Host) })
	if asJSON {
		if rows == nil {
			rows = []hostRow{}
		}
		enc := json.NewEncoder(c.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return exitStatus(1)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAPP\tINSTANCE\tCLAIMED\tROUTED")
	for _, r := range rows {
		routed := "no"
		if r.Routed {
			routed = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Host, r.App, r.Instance, r.Claimed, routed)
	}
	tw.Flush()
	return nil
}

func (s *Server) hostsReleaseCommand(c *call) error {
	if len(c.args) != 2 {
		return c.fail("usage: %s", hostsReleaseUsage)
	}
	h := canonicalHost(c.args[1])
	if !names.IsHost(h) {
		return c.fail("%s is not a host name", names.Show(c.args[1]))
	}
	s.hostClaims.mu.Lock()
	defer s.hostClaims.mu.Unlock()
	stored, routed, err := s.claimState()
	if err != nil {
		c.log.Error().Err(err).Msg("reading host claims")
		return c.fail("cannot read the host claims; tell the operator")
	}
	if r, ok := routed[h]; ok {
		return c.fail("%s is served by %s/%s; give that instance another location (app.ini) or destroy it, then release the host", h, r.App, r.Instance)
	}
	cl, ok := stored[h]
	if !ok {
		return c.fail("nobody claims %s", h)
	}
	if owner, reserved := reservedFor(h, s.cfg.Domain); reserved && owner == cl.App {
		fmt.Fprintf(c.stderr(), "note: %s stays reserved for app %s by its name (under %s.%s)\n", h, owner, owner, s.cfg.Domain)
	}
	delete(stored, h)
	if err := s.saveClaims(stored); err != nil {
		c.log.Error().Err(err).Msg("writing host claims")
		return c.fail("cannot write the host claims; tell the operator")
	}
	c.log.Info().Str("host", h).Str("app", cl.App).Str("instance", cl.Instance).Msg("host claim released")
	fmt.Fprintf(c.stdout(), "released %s (claimed by %s/%s)\n", h, cl.App, cl.Instance)
	return nil
}
