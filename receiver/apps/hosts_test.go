package apps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestReservedFor(t *testing.T) {
	for _, tc := range []struct {
		host, owner string
		reserved    bool
	}{
		{"shop.apps.test", "shop", true},
		{"feature.shop.apps.test", "shop", true},
		{"a.b.shop.apps.test", "shop", true},
		{"apps.test", "", false},
		{"shop.apps.test.evil", "", false},
		{"shopapps.test", "", false},
		{"xshop.example.com", "", false},
		{"9lives.apps.test", "", false}, // not a name an app can have
		{".apps.test", "", false},
	} {
		owner, reserved := reservedFor(tc.host, "apps.test")
		if owner != tc.owner || reserved != tc.reserved {
			t.Errorf("reservedFor(%q) = %q, %v; want %q, %v", tc.host, owner, reserved, tc.owner, tc.reserved)
		}
	}
}

// claimServer is a receiver data dir with apps shop and blog.
func claimServer(t *testing.T) *Apps {
	t.Helper()
	a := &Apps{cfg: Config{Domain: "apps.test", DataDir: t.TempDir()}}
	a.history = builder.History{Dir: a.cfg.releasesDir()}
	for _, app := range []string{"shop", "blog"} {
		if err := os.MkdirAll(filepath.Join(a.cfg.ReposDir(), app+".git"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// claimRelease is a release of app's branch answering at host (host ""
// means where the receiver puts it by default).
func claimRelease(a *Apps, app, branch, host string) (*builder.Release, agent.Spec) {
	cfg := &appconfig.Config{}
	if host != "" {
		if isProductionBranch(branch) {
			cfg.DefaultLocation = &appconfig.Location{Host: host}
		} else {
			cfg.BranchLocations = map[string]appconfig.Location{branch: {Host: host}}
		}
	}
	r := &builder.Release{App: app, Branch: branch, Instance: names.Instance(branch), Number: 1, Config: cfg}
	return r, agent.Spec{Locations: []agent.Location{a.location(r)}}
}

func TestClaimHosts(t *testing.T) {
	type step struct {
		name, app, branch, host string
		wantErr                 string // "" succeeds
		live                    bool   // record the release (it went live)
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"another app's staging host", []step{
			{"blog squats shop's future staging host", "blog", "x", "feature.shop.apps.test", "app.ini: [branch:x] location: feature.shop.apps.test is under shop.apps.test, which only app shop may use", false},
			{"shop gets it", "shop", "feature", "", "", true},
		}},
		{"another app's own host", []step{
			{"blog takes shop.apps.test", "blog", "main", "shop.apps.test", "app.ini: default_location: shop.apps.test is under shop.apps.test, which only app shop may use", false},
			{"upper case and a final dot change nothing", "blog", "main", "SHOP.apps.test.", "only app shop may use", false},
		}},
		{"first come, first served", []step{
			{"shop claims www.example.com", "shop", "main", "www.example.com", "", true},
			{"blog is refused, naming shop", "blog", "main", "www.example.com", "www.example.com is claimed by app shop", false},
			{"shop's staging branch may use it", "shop", "beta", "www.example.com", "", true},
		}},
		{"a claim under way holds", []step{
			{"shop's first deploy claims", "shop", "main", "www.example.com", "", false},
			{"blog is refused meanwhile", "blog", "main", "www.example.com", "claimed by app shop", false},
		}},
		{"own hosts", []step{
			{"shop at shop.apps.test", "shop", "main", "", "", true},
			{"shop's staging at its default", "shop", "feature/login", "", "", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := claimServer(t)
			for _, st := range tc.steps {
				r, spec := claimRelease(a, st.app, st.branch, st.host)
				done, err := a.claimHosts([]*builder.Release{r}, []agent.Spec{spec})
				if st.wantErr == "" && err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if st.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), st.wantErr) {
						t.Fatalf("%s: err %v, want %q", st.name, err, st.wantErr)
					}
					continue
				}
				if st.live {
					if err := a.record(r, spec); err != nil {
						t.Fatal(err)
					}
					done()
				} else {
					t.Cleanup(done) // the deploy is still under way
				}
			}
		})
	}
}

// A claim whose deploy failed, or whose instance is gone, holds nothing;
// one an admin released is free again.
func TestClaimsStaleAndReleased(t *testing.T) {
	a := claimServer(t)
	r, spec := claimRelease(a, "shop", "main", "www.example.com")
	done, err := a.claimHosts([]*builder.Release{r}, []agent.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	done() // the deploy failed: nothing recorded
	b, bspec := claimRelease(a, "blog", "main", "www.example.com")
	done, err = a.claimHosts([]*builder.Release{b}, []agent.Spec{bspec})
	if err != nil {
		t.Fatalf("a failed deploy's claim held: %v", err)
	}
	done()
	// blog's claim stands (its instance has a history) after blog moved.
	if err := a.record(b, bspec); err != nil {
		t.Fatal(err)
	}
	b2, b2spec := claimRelease(a, "blog", "main", "blog.example.com")
	b2.Number = 2
	if done, err = a.claimHosts([]*builder.Release{b2}, []agent.Spec{b2spec}); err != nil {
		t.Fatal(err)
	}
	done()
	if err := a.record(b2, b2spec); err != nil {
		t.Fatal(err)
	}
	if _, err := a.claimHosts([]*builder.Release{r}, []agent.Spec{spec}); err == nil || !strings.Contains(err.Error(), "claimed by app blog") {
		t.Fatalf("shop took blog's claimed host: %v", err)
	}
	a.hostClaims.mu.Lock()
	claims, err := a.loadClaims()
	if err == nil {
		delete(claims, "www.example.com") // what hosts:release does
		err = a.saveClaims(claims)
	}
	a.hostClaims.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if done, err = a.claimHosts([]*builder.Release{r}, []agent.Spec{spec}); err != nil {
		t.Fatalf("a released host: %v", err)
	}
	done()
}
