package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/nodes"
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
	cfg    Config
	log    zerolog.Logger
	keys   *keystore.Store
	repos  repos
	locks  *appLocks
	hooks  *hookServer
	ssh    *ssh.Server
	limits *connLimits

	history builder.History
	fleet   *nodes.Fleet
	config  *configStore // config:set values
	creds   *credentialStore
	// hostClaims holds the in-memory side of the host claims.
	hostClaims hostClaims
	receiving  sessionCounts
	// drain is the sessions in flight, which a stopping receiver waits for.
	drain drain

	// life ends at Shutdown: work the daemon starts on its own (repair).
	life    context.Context
	endLife context.CancelFunc

	// hookBin is the gitreceive binary the repositories' hooks exec.
	hookBin        string
	preReceiveFunc PreReceiveFunc
}

// Option changes a Server built by New.
type Option func(*Server)

// WithPreReceive wraps what decides a push (the deploy pipeline); tests use
// it to hold a push open as a long deploy would.
func WithPreReceive(wrap func(next PreReceiveFunc) PreReceiveFunc) Option {
	return func(s *Server) { s.preReceiveFunc = wrap(s.preReceiveFunc) }
}

// WithHookBinary sets the gitreceive binary run by the hooks (default: this
// executable). Tests running the server in-process point it at a built binary.
func WithHookBinary(path string) Option { return func(s *Server) { s.hookBin = path } }

// New prepares the data dir, the host key and the key store.
func New(cfg Config, log zerolog.Logger, opts ...Option) (*Server, error) {
	// A Config built in code (tests) may leave what LoadConfig defaults.
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.KeepReleases == 0 {
		cfg.KeepReleases = DefaultKeepReleases
	}
	for _, dir := range []string{cfg.DataDir, cfg.reposDir(), cfg.runDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	hostKey, err := nodes.LoadOrCreateKey(cfg.hostKeyPath(), "gitreceive host key")
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		keys:    keystore.Open(cfg.keyStorePath()),
		repos:   repos{dir: cfg.reposDir()},
		locks:   newAppLocks(),
		limits:  newConnLimits(maxUnauthenticated, maxUnauthPerHost, maxSessions, log),
		history: builder.History{Dir: cfg.releasesDir()},
		fleet:   nodes.OpenFleet(cfg.DataDir),
		config:  &configStore{dir: filepath.Join(cfg.DataDir, "config")},
		creds:   &credentialStore{dir: filepath.Join(cfg.DataDir, "services")},
	}
	s.preReceiveFunc = s.deploy
	s.life, s.endLife = context.WithCancel(context.Background())
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
	s.fleet.AgentBin = s.hookBin

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
	hs, err := listenHookSocket(s.cfg.hookSocket(), s.log, s.preReceive)
	if err != nil {
		return err
	}
	s.hooks = hs
	goSafe(s.log, "hook socket", hs.serve)
	s.log.Info().Str("addr", ln.Addr().String()).Str("data", s.cfg.DataDir).Str("version", s.cfg.Version).Msg("listening")
	goSafe(s.log, "repair", func() { s.repairInterrupted(s.life) })
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
