// Package receiver is gitreceive's SSH front door: public-key auth against
// the key store, limits, the command table (each command parses its
// arguments, calls one operation of the back-end, receiver/apps, and prints
// what it returns), C git for the wire protocol, and the unix socket the git
// hooks report to.
package receiver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/guard"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// Limits on what one client can hold. They bound the damage of a scanner or
// a misbehaving client, not of an authenticated admin.
const (
	authTimeout           = 30 * time.Second // from TCP accept to a successful auth
	maxAuthTries          = 6
	maxUnauthenticated    = 64 // connections still in the handshake, server-wide
	maxUnauthPerHost      = 48 // of those, from one address: one client cannot lock everyone out
	maxSessions           = 256
	maxSessionsPerConn    = 10
	idleTimeout           = 5 * time.Minute // no traffic at all, keepalives included
	keepaliveInterval     = 15 * time.Second
	keepaliveMissedLimit  = 4
	serverVersionIdentity = "gitreceive"
)

// Server is the SSH receiver and its hook socket.
type Server struct {
	cfg    apps.Config
	log    zerolog.Logger
	keys   *keystore.Store
	hooks  *hookServer
	ssh    *ssh.Server
	limits *connLimits
	// apps is the back-end: every operation a command or a push runs.
	apps      *apps.Apps
	receiving sessionCounts
	// drain is the sessions in flight, which a stopping receiver waits for.
	drain drain

	// hookBin is the gitreceive binary the repositories' hooks exec.
	hookBin    string
	wrapDeploy func(next apps.DeployFunc) apps.DeployFunc
	// certRenewal, when set, paces the certificate renewal job (tests).
	certRenewal apps.CertRenewal
}

// Option changes a Server built by New.
type Option func(*Server)

// WithPreReceive wraps what decides a push (the deploy pipeline); tests use
// it to hold a push open as a long deploy would.
func WithPreReceive(wrap func(next apps.DeployFunc) apps.DeployFunc) Option {
	return func(s *Server) { s.wrapDeploy = wrap }
}

// WithCertRenewal makes the certificate renewal job pass every interval
// and retry a failed host after backoff(failures) (tests, which cannot
// wait an hour).
func WithCertRenewal(interval time.Duration, backoff func(failures int) time.Duration) Option {
	return func(s *Server) { s.certRenewal = apps.CertRenewal{Interval: interval, Backoff: backoff} }
}

// WithHookBinary sets the gitreceive binary run by the hooks (default: this
// executable). Tests running the server in-process point it at a built binary.
func WithHookBinary(path string) Option { return func(s *Server) { s.hookBin = path } }

// New prepares the data dir, the host key and the key store.
func New(cfg apps.Config, log zerolog.Logger, opts ...Option) (*Server, error) {
	// A Config built in code (tests) may leave what LoadConfig defaults.
	if cfg.Domain == "" {
		cfg.Domain = apps.DefaultDomain
	}
	if cfg.KeepReleases == 0 {
		cfg.KeepReleases = apps.DefaultKeepReleases
	}
	for _, dir := range []string{cfg.DataDir, cfg.ReposDir(), cfg.RunDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	hostKey, err := nodes.LoadOrCreateKey(cfg.HostKeyPath(), "gitreceive host key")
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	s := &Server{
		cfg:    cfg,
		log:    log,
		keys:   keystore.Open(cfg.KeyStorePath()),
		limits: newConnLimits(maxUnauthenticated, maxUnauthPerHost, maxSessions, log),
	}
	for _, o := range opts {
		o(s)
	}
	if s.hookBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the gitreceive binary for hooks: %w", err)
		}
		s.hookBin = exe
	}
	if s.hookBin, err = filepath.Abs(s.hookBin); err != nil {
		return nil, fmt.Errorf("finding the gitreceive binary for hooks: %w", err)
	}
	s.apps = apps.New(cfg, log, s.hookBin)
	if s.wrapDeploy != nil {
		s.apps.WrapDeploy(s.wrapDeploy)
	}
	if err := s.apps.InitHTTPS(s.certRenewal); err != nil {
		return nil, err
	}

	s.ssh = &ssh.Server{
		Version:          serverVersionIdentity,
		HostSigners:      []ssh.Signer{hostKey},
		Handler:          s.handleSession,
		PublicKeyHandler: s.authorizeKey,
		// Only session channels; gliderlabs refuses forwarding when the
		// callbacks are nil, and no global request handlers means no
		// tcpip-forward. Stated explicitly so a later change is deliberate.
		ChannelHandlers:               map[string]ssh.ChannelHandler{"session": s.limits.sessionChannel},
		RequestHandlers:               map[string]ssh.RequestHandler{},
		SubsystemHandlers:             map[string]ssh.SubsystemHandler{},
		LocalPortForwardingCallback:   nil,
		ReversePortForwardingCallback: nil,
		ConnCallback:                  s.limits.accept,
		ServerConfigCallback:          s.limits.serverConfig,
		IdleTimeout:                   idleTimeout,
	}
	return s, nil
}

// Serve starts the hook socket and serves SSH on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	hs, err := listenHookSocket(s.cfg.HookSocket(), s.log, s.apps.PreReceive)
	if err != nil {
		return err
	}
	s.hooks = hs
	guard.Go(s.log, "hook socket", hs.serve)
	s.log.Info().Str("addr", ln.Addr().String()).Str("data", s.cfg.DataDir).Str("version", s.cfg.Version).Msg("listening")
	s.apps.Start()
	err = s.ssh.Serve(ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// authorizeKey only admits keys in the store. It decides nothing else and
// remembers nothing: the identity is looked up again at session time from
// the key the client proved (see CVE-2024-45337).
func (s *Server) authorizeKey(ctx ssh.Context, key ssh.PublicKey) bool {
	_, ok, err := s.keys.Lookup(key)
	if err != nil {
		s.log.Error().Err(err).Msg("reading the key store")
		return false
	}
	if !ok {
		s.log.Info().Str("remote", ctx.RemoteAddr().String()).Str("fingerprint", gossh.FingerprintSHA256(key)).Msg("unknown key refused")
	}
	return ok
}
