package appconfig

import (
	"slices"
	"strings"
)

// check reads every [production] key into a Config, recording what is
// wrong on the way. The Config is only meant to be used when nothing is.
func (c *checker) check() *Config {
	c.warnDuplicates()
	platform := c.checkPlatform() // runner and php_root depend on it
	cfg := &Config{
		AppName:         c.checkAppName(),
		Platform:        platform,
		Runner:          c.checkRunner(platform),
		PHPRoot:         c.checkPHPRoot(platform),
		UpdateFetch:     c.checkUpdateFetch(),
		DefaultLocation: c.checkDefaultLocation(),
		Packages:        c.checkPackages(),
		HealthCheck:     c.checkHealthCheck(),
		HTTPS:           c.checkHTTPS(),
		Config:          map[string]string{},
	}
	c.checkWorkerSettings(cfg)
	cfg.MemoryMB = c.checkMemory()
	c.recordPositions(cfg)

	var procs processKeys
	for _, s := range c.settings {
		switch {
		case slices.Contains(knownKeys, s.key):
			// read above
		case strings.HasPrefix(s.key, servicePrefix):
			if service, ok := c.checkService(s); ok {
				cfg.Services = append(cfg.Services, service)
			}
		case strings.HasPrefix(s.key, configPrefix):
			if name, ok := c.checkConfigKey(s); ok {
				cfg.Config[name] = s.value // verbatim: it is the app's business
			}
		case procs.collect(c, s):
			// judged with the rest of its process below
		default:
			c.warnUnknown(s)
		}
	}
	c.checkProcesses(procs, cfg)
	slices.SortFunc(cfg.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	return cfg
}
