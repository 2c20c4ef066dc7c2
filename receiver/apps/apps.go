// Package apps is the receiver's back-end: everything gitreceive does to
// an app, its instances and their releases, each operation written in one
// place. It owns the release history, the fleet of nodes, the config and
// credential stores, the host claims, the repositories and the per-app
// locks. The SSH front (package receiver) parses a command, authorizes its
// target, calls one operation here and prints what it returns; the
// pre-receive hook calls Decide.
//
// An operation reports progress on a *hooks.Progress (the pusher's
// `remote:` lines), takes its logger from its context (zerolog.Ctx), and
// returns an error whose kind (UserError, an internal error, ExitStatus)
// the front turns into what the user sees.
package apps

import (
	"context"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// DeployFunc decides a push once the app lock is held and the ref updates
// passed the receiver's own checks. It reports progress on out; a non-nil
// error rejects the whole push and its message, one sentence, is shown to
// the pusher.
type DeployFunc func(ctx context.Context, p *Push, out *hooks.Progress) error

// Apps is the back-end of one receiver (one data dir).
type Apps struct {
	cfg     Config
	log     zerolog.Logger
	repos   Repos
	locks   *appLocks
	history builder.History
	fleet   *nodes.Fleet
	config  *configStore // config:set values
	creds   *credentialStore
	// hostClaims holds the in-memory side of the host claims.
	hostClaims hostClaims
	// https is the certificate store and the ACME renewer (InitHTTPS).
	https *httpsService
	// deployFunc decides a push (Deploy; tests wrap it).
	deployFunc DeployFunc

	// life ends at Close: work the daemon starts on its own (repair,
	// take-backs).
	life    context.Context
	endLife context.CancelFunc
}

// New opens the back-end on cfg's data dir. agentBin is the gitreceive
// binary uploaded to nodes as their agent.
func New(cfg Config, log zerolog.Logger, agentBin string) *Apps {
	a := &Apps{
		cfg:     cfg,
		log:     log,
		repos:   Repos{dir: cfg.ReposDir()},
		locks:   newAppLocks(),
		history: builder.History{Dir: cfg.releasesDir()},
		fleet:   nodes.OpenFleet(cfg.DataDir),
		config:  &configStore{dir: filepath.Join(cfg.DataDir, "config")},
		creds:   &credentialStore{dir: filepath.Join(cfg.DataDir, "services")},
	}
	a.fleet.AgentBin = agentBin
	a.deployFunc = a.Deploy
	a.life, a.endLife = context.WithCancel(context.Background())
	return a
}

// WrapDeploy wraps what decides a push; tests use it to hold a push open
// as a long deploy would.
func (a *Apps) WrapDeploy(wrap func(next DeployFunc) DeployFunc) {
	a.deployFunc = wrap(a.deployFunc)
}

// Config is the receiver's settings, as loaded at start.
func (a *Apps) Config() Config { return a.cfg }

// Repos are the apps' git repositories.
func (a *Apps) Repos() Repos { return a.repos }

// Fleet is the node inventory and the connections to the nodes.
func (a *Apps) Fleet() *nodes.Fleet { return a.fleet }

// Start begins the work the daemon does on its own: switching back nodes
// left on releases that were never recorded, renewing certificates,
// keeping cron jobs and workers of nodes = one on a healthy node.
func (a *Apps) Start() {
	guard.Go(a.log, "repair", func() { a.repairInterrupted(a.life) })
	a.startRenewal()
	guard.Go(a.log, "singletons' nodes", func() { a.watchSingletons(a.life) })
}

// Close ends the daemon's own work and the connections to the nodes.
func (a *Apps) Close() {
	a.endLife()
	a.fleet.Close()
}

// logger is the operation's logger, carried by ctx.
func logger(ctx context.Context) zerolog.Logger { return *zerolog.Ctx(ctx) }
