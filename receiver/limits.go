package receiver

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitreceive/gitreceive/receiver/guard"
	"github.com/gliderlabs/ssh"
	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"
)

// connLimits enforces the connection-level limits: the auth timeout, a cap
// on connections still authenticating, caps on sessions, and keepalives that
// find dead clients without cutting a long, silent deploy step short.
type connLimits struct {
	maxUnauth, maxUnauthPerHost int64
	maxSessions                 int64
	log                         zerolog.Logger

	unauth   atomic.Int64
	sessions atomic.Int64

	mu           sync.Mutex
	unauthByHost map[string]int64 // connections authenticating, per remote address
}

func newConnLimits(maxUnauth, maxUnauthPerHost, maxSessions int64, log zerolog.Logger) *connLimits {
	return &connLimits{maxUnauth: maxUnauth, maxUnauthPerHost: maxUnauthPerHost, maxSessions: maxSessions, log: log,
		unauthByHost: map[string]int64{}}
}

type connStateKey struct{}

// connState is per connection; it lives in the gliderlabs context.
type connState struct {
	host          string // remote address, without the port
	authOnce      sync.Once
	authenticated atomic.Bool
	sessions      atomic.Int64
	keepaliveOnce sync.Once
}

func stateOf(ctx ssh.Context) *connState {
	st, _ := ctx.Value(connStateKey{}).(*connState)
	return st
}

// accept runs for every TCP connection before the SSH handshake.
func (l *connLimits) accept(ctx ssh.Context, conn net.Conn) net.Conn {
	host, _, err := net.SplitHostPort(conn.RemoteAddr().String())
	if err != nil {
		host = conn.RemoteAddr().String()
	}
	l.mu.Lock()
	full := l.unauthByHost[host] >= l.maxUnauthPerHost
	if !full {
		l.unauthByHost[host]++
	}
	l.mu.Unlock()
	if full {
		l.log.Warn().Str("remote", conn.RemoteAddr().String()).Msg("too many connections authenticating from this address; connection dropped")
		return nil
	}
	st := &connState{host: host}
	if l.unauth.Add(1) > l.maxUnauth {
		l.unauth.Add(-1)
		l.leaveHost(host)
		l.log.Warn().Str("remote", conn.RemoteAddr().String()).Msg("too many connections authenticating; connection dropped")
		return nil
	}
	ctx.SetValue(connStateKey{}, st)
	timer := time.AfterFunc(authTimeout, func() {
		if !st.authenticated.Load() {
			l.log.Info().Str("remote", conn.RemoteAddr().String()).Msg("authentication timed out")
			conn.Close()
		}
	})
	context.AfterFunc(ctx, func() {
		timer.Stop()
		l.leaveHandshake(st)
	})
	return conn
}

func (l *connLimits) leaveHandshake(st *connState) {
	st.authOnce.Do(func() {
		l.unauth.Add(-1)
		l.leaveHost(st.host)
	})
}

func (l *connLimits) leaveHost(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unauthByHost[host]--; l.unauthByHost[host] <= 0 {
		delete(l.unauthByHost, host)
	}
}

// serverConfig is the per-connection x/crypto config gliderlabs builds on.
func (l *connLimits) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	st := stateOf(ctx)
	return &gossh.ServerConfig{
		MaxAuthTries: maxAuthTries,
		// Called after each real attempt (not for "is this key acceptable"
		// queries); a nil error means the client is authenticated.
		AuthLogCallback: func(conn gossh.ConnMetadata, method string, err error) {
			if err != nil || st == nil {
				return
			}
			st.authenticated.Store(true)
			l.leaveHandshake(st)
		},
	}
}

// sessionChannel admits a session channel within the caps, then hands it
// to gliderlabs' own session handling.
func (l *connLimits) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	st := stateOf(ctx)
	if st == nil {
		newChan.Reject(gossh.Prohibited, "no connection state")
		return
	}
	if st.sessions.Add(1) > maxSessionsPerConn {
		st.sessions.Add(-1)
		newChan.Reject(gossh.ResourceShortage, "too many sessions on this connection")
		return
	}
	defer st.sessions.Add(-1)
	if l.sessions.Add(1) > l.maxSessions {
		l.sessions.Add(-1)
		newChan.Reject(gossh.ResourceShortage, "the server is busy; try again shortly")
		return
	}
	defer l.sessions.Add(-1)
	st.keepaliveOnce.Do(func() { guard.Go(l.log, "keepalive", func() { l.keepalive(ctx, conn) }) })
	ssh.DefaultSessionHandler(srv, conn, newChan, ctx)
}

// keepalive asks the client for a reply every keepaliveInterval. The replies
// keep the idle timeout from firing while a deploy step prints nothing, and
// a client that stops answering is disconnected, which cancels its push.
func (l *connLimits) keepalive(ctx ssh.Context, conn *gossh.ServerConn) {
	var lastReply atomic.Int64
	lastReply.Store(time.Now().UnixNano())
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, lastReply.Load())) > keepaliveInterval*keepaliveMissedLimit {
			l.log.Info().Str("remote", conn.RemoteAddr().String()).Msg("client stopped answering keepalives; disconnecting")
			conn.Close()
			return
		}
		guard.Go(l.log, "keepalive", func() {
			// Any reply, even "unsupported", proves the client is alive.
			if _, _, err := conn.SendRequest("keepalive@openssh.com", true, nil); err == nil {
				lastReply.Store(time.Now().UnixNano())
			}
		})
	}
}
