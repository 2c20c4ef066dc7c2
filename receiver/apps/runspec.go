package apps

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// runSpec is how release r runs on the nodes: its app.ini turned into what
// the node agent needs (DESIGN.md decision 7), plus the environment the app
// is handed (the Silver Lining names; values set with config:set win over
// app.ini's config.*). What app.ini leaves of memory and max_processes is
// the receiver's default_memory and default_max_processes; goLive has held
// what it sets to the receiver's caps (Config.CheckLimits).
func (a *Apps) runSpec(r *builder.Release) (agent.Spec, error) {
	operator, err := a.config.get(r.App, r.Instance)
	if err != nil {
		return agent.Spec{}, err
	}
	cfg := r.Config
	res := cfg.Resources(a.cfg.Limits)
	loc := a.location(r)
	env := map[string]string{
		"SILVER_VERSION":            "gitreceive/" + a.cfg.Version,
		"SILVER_APP_NAME":           r.App,
		"SILVER_INSTANCE_NAME":      r.App + "@" + r.Branch,
		"SILVER_CANONICAL_HOSTNAME": loc.Host,
		"SILVER_RELEASE":            strconv.Itoa(r.Number),
		"SILVER_COMMIT":             r.Commit,
	}
	for _, values := range []map[string]string{cfg.Config, operator} {
		for k, v := range values {
			env["CONFIG_"+envKey(k)] = v
		}
	}
	spec := agent.Spec{
		Platform:           string(cfg.Platform),
		Runner:             cfg.Runner.Path,
		Callable:           cfg.Runner.Object,
		PHPRoot:            cfg.PHPRoot,
		Locations:          []agent.Location{loc},
		HealthCheck:        cfg.HealthCheck,
		HealthCheckTimeout: cfg.HealthCheckTimeout,
		Workers:            cfg.Workers,
		Harakiri:           cfg.Harakiri,
		MaxRequests:        cfg.MaxRequests,
		ReloadOnRSS:        res.ReloadOnRSS, // a share of the memory unless app.ini says
		Env:                env,
		KeepReleases:       a.cfg.KeepReleases,
		MemoryMB:           res.MemoryMB,
		MaxProcesses:       res.MaxProcesses,
		CPUWeight:          cfg.CPUWeight,
		HTTPS:              cfg.HTTPS,
	}
	if !isProductionBranch(r.Branch) {
		spec.IdleStop = int(a.cfg.StagingIdle / time.Second)
	}
	for _, f := range cfg.UpdateFetch {
		spec.UpdateFetch = append(spec.UpdateFetch, agent.FetchStep{URLPath: f.URLPath, Script: f.Script, Args: f.Args})
	}
	spec.Packages = cfg.Packages
	if spec.Secret, err = a.instanceSecret(r.App, r.Instance); err != nil {
		return agent.Spec{}, err
	}
	for _, svc := range cfg.Services {
		spec.Services = append(spec.Services, svc.Name)
	}
	return spec.WithDefaults(), nil
}

var notEnvChar = regexp.MustCompile(`[^A-Z0-9_]`)

// envKey turns config.NAME's NAME into an environment variable name:
// config.Mail.From-Address is CONFIG_MAIL_FROM_ADDRESS.
func envKey(name string) string {
	return notEnvChar.ReplaceAllString(strings.ToUpper(name), "_")
}
