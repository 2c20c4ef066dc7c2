package appconfig

import (
	"strings"

	"github.com/gitreceive/gitreceive/names"
	"gopkg.in/ini.v1"
)

// Staging is app.ini's [staging] section: how branches other than the
// production one are deployed, each as its own instance.
type Staging struct {
	// Location is a HOST[/PATH] pattern with {branch} (and maybe {app}),
	// e.g. {branch}.staging.example.com; "" leaves it to the receiver
	// (BRANCH.APP.DOMAIN).
	Location string
	// Branches are globs of the branches deployed (branches = staging,
	// feature-*; * matches / too, as in git); nil leaves it to the
	// receiver, empty (branches = none) deploys no staging branch.
	Branches []string
	// SeedFrom is the branch whose service data a new staging instance
	// starts with (seed_from = main); "" starts it empty.
	SeedFrom string
}

const (
	stagingSection      = "staging"
	branchSectionPrefix = "branch:"
)

var (
	stagingKeys = []string{"location", "branches", "seed_from"}
)

// checkStaging reads [staging] and the [branch:NAME] sections into cfg.
func (c *checker) checkStaging(file *ini.File, cfg *Config) {
	for _, sec := range file.Sections() {
		name := sec.Name()
		switch {
		case name == stagingSection:
			c.checkStagingSection(sec, cfg)
		case strings.HasPrefix(name, branchSectionPrefix):
			c.checkBranchSection(sec, strings.TrimPrefix(name, branchSectionPrefix), cfg)
		case name != productionSection && name != ini.DefaultSection:
			c.warnf(c.lines.headerLine(name), "", "section [%s] is ignored; app.ini has [production], [staging] and [branch:NAME]", name)
		}
	}
}

func (c *checker) checkStagingSection(sec *ini.Section, cfg *Config) {
	for _, key := range sec.Keys() {
		line := c.lines.keyLine(stagingSection, key.Name())
		value := strings.TrimSpace(key.Value())
		switch key.Name() {
		case "location":
			if !strings.Contains(value, "{branch}") {
				c.errorf(line, "staging location", "%q has no {branch}; every branch needs its own host, e.g. {branch}.staging.example.com", value)
				continue
			}
			sample := strings.NewReplacer("{branch}", "b", "{app}", "a").Replace(value)
			if _, problem := parseLocation(sample); problem != "" {
				c.errorf(line, "staging location", "%q %s", value, problem)
				continue
			}
			cfg.Staging.Location = value
		case "branches":
			cfg.Staging.Branches = []string{}
			if value == "none" {
				continue
			}
			for _, g := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
				if !names.IsBranchGlob(g) {
					c.errorf(line, "staging branches", "%q is not a branch name or glob (letters, digits, ._/- and * ?); write e.g. branches = staging, feature-*, or none", g)
					continue
				}
				cfg.Staging.Branches = append(cfg.Staging.Branches, g)
			}
		case "seed_from":
			if !names.IsBranchGlob(value) || strings.ContainsAny(value, "*?") {
				c.errorf(line, "staging seed_from", "%q is not a branch name; write e.g. seed_from = main", value)
				continue
			}
			cfg.Staging.SeedFrom = value
		default:
			c.warnf(line, key.Name(), "[staging] has no key %s and ignores it; it has %s", key.Name(), strings.Join(stagingKeys, ", "))
		}
	}
}

func (c *checker) checkBranchSection(sec *ini.Section, branch string, cfg *Config) {
	header := c.lines.headerLine(sec.Name())
	if !names.IsBranchGlob(branch) || strings.ContainsAny(branch, "*?") || strings.Contains(branch, "..") {
		c.errorf(header, "", "[%s] does not name a branch; write [branch:NAME], e.g. [branch:beta]", sec.Name())
		return
	}
	for _, key := range sec.Keys() {
		line := c.lines.keyLine(sec.Name(), key.Name())
		if key.Name() != "location" {
			c.warnf(line, key.Name(), "[%s] has only the key location and ignores %s", sec.Name(), key.Name())
			continue
		}
		value := strings.TrimSpace(key.Value())
		loc, problem := parseLocation(value)
		if problem != "" {
			c.errorf(line, "location", "[%s] location %q %s", sec.Name(), value, problem)
			continue
		}
		if cfg.BranchLocations == nil {
			cfg.BranchLocations = map[string]Location{}
		}
		cfg.BranchLocations[branch] = loc
	}
}
