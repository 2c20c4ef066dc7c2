package nodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// dialTimeout bounds reaching a node and finishing the SSH handshake.
const dialTimeout = 10 * time.Second

// Fleet is the inventory together with what it takes to reach the nodes
// safely: the receiver's own client key (DATA/node_key) and the pinned host
// keys (DATA/known_hosts, OpenSSH format).
type Fleet struct {
	Inventory *Inventory
	// AgentBin is this binary: uploaded to nodes as their agent, and run
	// as the local node's agent. OpenFleet sets it to os.Executable().
	AgentBin string
	dataDir  string
	pool     pool
	// newTransport, when set, replaces transportTo's choice (the unit
	// tests' scripted nodes).
	newTransport func(Node) transport

	// SetupPackages are installed by `nodes setup` besides the stack: what
	// the live instances' packages = ask for (the receiver knows them).
	SetupPackages []string
	// SetupCerts, when set, lists the certificates the receiver holds:
	// `nodes setup` installs them on each node it sets up.
	SetupCerts func() ([]CertFile, error)
}

// OpenFleet returns the fleet of a data dir; no I/O.
func OpenFleet(dataDir string) *Fleet {
	exe, _ := os.Executable()
	return &Fleet{Inventory: OpenInventory(dataDir), AgentBin: exe, dataDir: dataDir}
}

// Close closes the pooled connections to nodes.
func (f *Fleet) Close() { f.pool.close() }

func (f *Fleet) knownHostsPath() string { return filepath.Join(f.dataDir, "known_hosts") }

// ClientKey is the key the receiver logs in to nodes with, created once.
func (f *Fleet) ClientKey() (gossh.Signer, error) {
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, err
	}
	return LoadOrCreateKey(filepath.Join(f.dataDir, "node_key"), "gitreceive receiver")
}

// AuthorizedKeyLine is the line an operator puts in a node's
// ~/.ssh/authorized_keys so the receiver may log in.
func (f *Fleet) AuthorizedKeyLine() (string, error) {
	k, err := f.ClientKey()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.PublicKey()))) + " gitreceive-receiver", nil
}

// scanHostKey completes enough of an SSH handshake with addr to learn its
// host key, without authenticating.
func scanHostKey(ctx context.Context, addr string) (gossh.PublicKey, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	var key gossh.PublicKey
	errGotKey := errors.New("host key received")
	_, _, _, err = gossh.NewClientConn(conn, addr, &gossh.ClientConfig{
		User: "gitreceive-scan",
		HostKeyCallback: func(_ string, _ net.Addr, k gossh.PublicKey) error {
			key = k
			return errGotKey
		},
	})
	if key == nil {
		return nil, fmt.Errorf("no SSH server answered: %w", err)
	}
	return key, nil
}

// Add pins n's host key and records n. With fingerprint ("SHA256:...")
// the key must match it; without, the key offered now is trusted (and its
// fingerprint returned to be shown). Nothing is recorded on any error.
func (f *Fleet) Add(ctx context.Context, n Node, fingerprint string) (gossh.PublicKey, error) {
	if err := ValidName(n.Name); err != nil {
		return nil, err
	}
	existing, err := f.Inventory.List()
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		if e.Name == n.Name {
			return nil, fmt.Errorf("a node named %q already exists; remove it first or choose another name", n.Name)
		}
		if e.Addr() == n.Addr() {
			return nil, fmt.Errorf("%s is already node %q", n.Addr(), e.Name)
		}
	}
	key, err := scanHostKey(ctx, n.Addr())
	if err != nil {
		return nil, fmt.Errorf("cannot reach node %s at %s: %w; check the address and that sshd runs there", n.Name, n.Addr(), err)
	}
	if got := gossh.FingerprintSHA256(key); fingerprint != "" && got != fingerprint {
		return nil, fmt.Errorf("node %s offered host key %s, not the %s you gave; nothing was added", n.Name, got, fingerprint)
	}
	if err := f.pin(n, key); err != nil {
		return nil, err
	}
	if err := f.Inventory.add(n); err != nil {
		_ = f.unpin(n)
		return nil, err
	}
	return key, nil
}

// Remove forgets node name and its pinned host key.
func (f *Fleet) Remove(name string) error {
	n, err := f.Inventory.Get(name)
	if err != nil {
		return err
	}
	if n.Local {
		return fmt.Errorf("%q is the receiver host itself; there is nothing to remove", name)
	}
	if err := f.Inventory.remove(name); err != nil {
		return err
	}
	return f.unpin(n)
}

func (f *Fleet) pin(n Node, key gossh.PublicKey) error {
	if err := f.unpin(n); err != nil {
		return err
	}
	fh, err := os.OpenFile(f.knownHostsPath(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(fh, knownhosts.Line([]string{knownhosts.Normalize(n.Addr())}, key)); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// unpin drops the known_hosts lines of n's address.
func (f *Fleet) unpin(n Node) error {
	data, err := os.ReadFile(f.knownHostsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	addr := knownhosts.Normalize(n.Addr())
	var kept strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 && fields[0] == addr {
			continue
		}
		kept.WriteString(sc.Text() + "\n")
	}
	return atomicfile.Write(f.knownHostsPath(), []byte(kept.String()), 0o600)
}

// Dial logs in to n with the receiver's key, accepting only n's pinned
// host key: a changed key is a hard error naming the node.
func (f *Fleet) Dial(ctx context.Context, n Node) (*gossh.Client, error) {
	signer, err := f.ClientKey()
	if err != nil {
		return nil, err
	}
	pinned, err := knownhosts.New(f.knownHostsPath())
	if err != nil {
		return nil, fmt.Errorf("reading pinned host keys: %w", err)
	}
	cfg := &gossh.ClientConfig{
		User: n.User,
		Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: func(host string, remote net.Addr, key gossh.PublicKey) error {
			err := pinned(host, remote, key)
			var ke *knownhosts.KeyError
			switch {
			case errors.As(err, &ke) && len(ke.Want) > 0:
				return fmt.Errorf("the host key of node %s (%s) changed: pinned %s, offered %s; if the node was reinstalled, run `gitreceive nodes remove %s` and add it again",
					n.Name, n.Addr(), gossh.FingerprintSHA256(ke.Want[0].Key), gossh.FingerprintSHA256(key), n.Name)
			case errors.As(err, &ke):
				return fmt.Errorf("node %s (%s) has no pinned host key; remove it and add it again", n.Name, n.Addr())
			}
			return err
		},
		Timeout: dialTimeout,
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", n.Addr())
	if err != nil {
		return nil, fmt.Errorf("cannot reach node %s at %s: %w", n.Name, n.Addr(), err)
	}
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	c, chans, reqs, err := gossh.NewClientConn(conn, n.Addr(), cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return gossh.NewClient(c, chans, reqs), nil
}
