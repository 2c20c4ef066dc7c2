package receiver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// hookServer is the daemon's end of the hook socket. Each push registers a
// random token that the daemon hands to `git receive-pack` in its
// environment; a hook connection is accepted only with a live token, and
// each token runs pre-receive once.
type hookServer struct {
	ln     net.Listener
	log    zerolog.Logger
	handle preReceiveFunc

	mu     sync.Mutex
	pushes map[string]*hookPush
	used   map[string]bool
}

// preReceiveFunc decides a push for its pre-receive hook (apps.PreReceive)
// and returns the hook's exit code.
type preReceiveFunc func(ctx context.Context, p *apps.Push, req hooks.Request, out io.Writer) int

// hookPush is a push the hook socket may serve: the back-end's push, the
// context that ends with its receive-pack session, and the hook handlers
// still running for it.
type hookPush struct {
	*apps.Push
	ctx    context.Context
	active sync.WaitGroup
}

func listenHookSocket(path string, log zerolog.Logger, handle preReceiveFunc) (*hookServer, error) {
	// A socket left by a killed daemon would make Listen fail; nobody else
	// may own this path inside our run dir.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale hook socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on hook socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restricting hook socket %s: %w", path, err)
	}
	return &hookServer{ln: ln, log: log, handle: handle, pushes: map[string]*hookPush{}, used: map[string]bool{}}, nil
}

func (h *hookServer) register(p *hookPush) (token string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating push token: %w", err)
	}
	token = hex.EncodeToString(b)
	h.mu.Lock()
	h.pushes[token] = p
	h.mu.Unlock()
	return token, nil
}

func (h *hookServer) unregister(token string) {
	h.mu.Lock()
	delete(h.pushes, token)
	delete(h.used, token)
	h.mu.Unlock()
}

// claim returns the push for token and marks its pre-receive as run.
func (h *hookServer) claim(token, hook string) (*hookPush, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.pushes[token]
	if !ok {
		return nil, errors.New("gitreceive: this hook's push token is not valid; pushes are accepted only through the gitreceive SSH server")
	}
	if hook != "pre-receive" {
		return nil, fmt.Errorf("gitreceive: unsupported hook %q", hook)
	}
	if h.used[token] {
		return nil, errors.New("gitreceive: this push already ran its pre-receive hook")
	}
	h.used[token] = true
	// Counted under h.mu: once unregister has run, no handler can start, and
	// the push can wait for those that did before releasing its lock.
	p.active.Add(1)
	return p, nil
}

func (h *hookServer) serve() {
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				h.log.Error().Err(err).Msg("hook socket accept failed")
			}
			return
		}
		guard.Go(h.log, "hook socket", func() { h.serveConn(conn) })
	}
}

func (h *hookServer) close() error { return h.ln.Close() }

func (h *hookServer) serveConn(conn net.Conn) {
	defer conn.Close()
	out := &messageWriter{enc: json.NewEncoder(conn)}
	// The push's lock is released by its receive-pack session once this
	// handler is done (p.active), whichever way it ended.
	log := h.log
	defer guard.Recover(&log, "pre-receive", func(sentence string) {
		out.exit(1, "gitreceive: "+sentence+"\n")
	})
	var req hooks.Request
	if err := json.NewDecoder(io.LimitReader(bufio.NewReader(conn), hooks.MaxRequestBytes)).Decode(&req); err != nil {
		h.log.Warn().Err(err).Msg("malformed hook request")
		out.exit(1, "gitreceive: malformed request from hook\n")
		return
	}
	p, err := h.claim(req.Token, req.Hook)
	if err != nil {
		h.log.Warn().Str("hook", req.Hook).Msg("hook request with an unknown or spent token refused")
		out.exit(1, err.Error()+"\n")
		return
	}
	defer p.active.Done()
	log = p.Log
	if err := validateHookRequest(req); err != nil {
		p.Log.Warn().Err(err).Msg("invalid hook request")
		out.exit(1, "gitreceive: "+err.Error()+"\n")
		return
	}
	// The hook process ends with receive-pack; if the pusher goes away first
	// the push context is cancelled, and closing the socket ends the hook.
	stop := context.AfterFunc(p.ctx, func() { conn.Close() })
	defer stop()
	out.exit(h.handle(p.ctx, p.Push, req, out), "")
}

func validateHookRequest(req hooks.Request) error {
	if len(req.Updates) == 0 || len(req.Updates) > hooks.MaxUpdates {
		return fmt.Errorf("a push must update between 1 and %d refs", hooks.MaxUpdates)
	}
	for _, u := range req.Updates {
		if err := u.Validate(); err != nil {
			return err
		}
	}
	for k := range req.Env {
		if !hooks.ForwardedEnv(k) {
			return fmt.Errorf("hook forwarded unexpected variable %q", k)
		}
	}
	return nil
}

// messageWriter streams output to the hook as JSON lines; safe for
// concurrent use (fan-out to nodes reports from several goroutines).
type messageWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *messageWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enc.Encode(hooks.Message{Output: string(b)}); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *messageWriter) exit(code int, output string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(hooks.Message{Output: output, Exit: &code})
}
