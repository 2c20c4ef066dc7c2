package nodes

import (
	"context"
	"errors"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// A pooled connection is checked with an SSH keepalive this often, and
// closed when the node does not answer one within keepaliveTimeout: a cut
// link then fails the node's deploy step instead of hanging it until TCP
// gives up (many minutes).
const (
	keepaliveInterval = 5 * time.Second
	keepaliveTimeout  = 10 * time.Second
)

var errPoolClosed = errors.New("the receiver is shutting down")

// pool keeps one SSH connection per node open between deploys, so a
// deploy pays for no handshake (DESIGN.md decision 4).
type pool struct {
	mu      sync.Mutex
	entries map[string]*poolEntry
	closed  bool
	pins    string // the pinned host keys' file state the connections were verified against
}

// poolEntry serializes dialing one node; other nodes dial in parallel.
type poolEntry struct {
	mu     sync.Mutex
	client *gossh.Client
}

// poolKey changes when the node's name or address does, so an edited
// inventory never reuses a connection to the old address.
func poolKey(n Node) string { return n.Name + " " + n.User + "@" + n.Addr() }

// get returns the pooled connection to n, dialing when there is none.
func (p *pool) get(ctx context.Context, n Node, dial func(context.Context, Node) (*gossh.Client, error)) (*gossh.Client, error) {
	p.mu.Lock()
	if p.entries == nil {
		p.entries = map[string]*poolEntry{}
	}
	e := p.entries[poolKey(n)]
	if e == nil {
		e = &poolEntry{}
		p.entries[poolKey(n)] = e
	}
	p.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	c, err := dial(ctx, n)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return nil, errPoolClosed
	}
	p.mu.Unlock()
	e.client = c
	go p.watch(e, c)
	return c, nil
}

// drop closes c and forgets it if it is still the pooled connection: the
// next get dials again.
func (p *pool) drop(n Node, c *gossh.Client) {
	p.mu.Lock()
	e := p.entries[poolKey(n)]
	p.mu.Unlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.client == c {
		e.client = nil
	}
	e.mu.Unlock()
	c.Close()
}

// watch sends keepalives until c fails or closes, then forgets it.
func (p *pool) watch(e *poolEntry, c *gossh.Client) {
	closed := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(closed)
	}()
	tick := time.NewTicker(keepaliveInterval)
	defer tick.Stop()
	for alive := true; alive; {
		select {
		case <-closed:
			alive = false
		case <-tick.C:
			answered := make(chan error, 1)
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				answered <- err
			}()
			select {
			case err := <-answered:
				alive = err == nil
			case <-time.After(keepaliveTimeout):
				alive = false
			case <-closed:
				alive = false
			}
		}
	}
	c.Close()
	e.mu.Lock()
	if e.client == c {
		e.client = nil
	}
	e.mu.Unlock()
}

// checkPins closes every pooled connection when the pinned host keys
// changed since they were dialed (a node removed and added again, say):
// each connection is then verified again against the new pins.
func (p *pool) checkPins(state string) {
	p.mu.Lock()
	if state == p.pins {
		p.mu.Unlock()
		return
	}
	p.pins = state
	entries := p.entries
	p.entries = nil
	p.mu.Unlock()
	closeAll(entries)
}

// close closes every pooled connection; get fails afterwards.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	entries := p.entries
	p.entries = nil
	p.mu.Unlock()
	closeAll(entries)
}

func closeAll(entries map[string]*poolEntry) {
	for _, e := range entries {
		e.mu.Lock()
		if e.client != nil {
			e.client.Close()
			e.client = nil
		}
		e.mu.Unlock()
	}
}
