package certs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
)

// Source says where a host's certificate came from. An operator's
// certificate is never sent to ACME: not renewed, not replaced.
type Source string

const (
	SourceACME     Source = "acme"
	SourceOperator Source = "operator"
)

// Meta is what the receiver knows about a host's certificate besides the
// certificate itself: what `certs` shows and what the Renewer schedules by.
type Meta struct {
	Host      string    `json:"host"`
	Source    Source    `json:"source"`
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Renewed is when the certificate in the store was obtained or added.
	Renewed time.Time `json:"renewed"`
	// LastAttempt, LastError, Failures and NextAttempt describe the attempts
	// since the last success; a success clears LastError and Failures.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Cert is a host's certificate chain (leaf first) and private key, PEM.
type Cert struct {
	Meta  Meta
	Chain []byte
	Key   SecretPEM
}

// SecretPEM is a PEM private key. It prints, formats and marshals as a
// placeholder, so a key that reaches a log call or an error by mistake
// still does not leave the process.
type SecretPEM []byte

const redacted = "[private key redacted]"

func (SecretPEM) String() string               { return redacted }
func (SecretPEM) GoString() string             { return redacted }
func (SecretPEM) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (SecretPEM) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }
func (SecretPEM) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (k SecretPEM) Bytes() []byte              { return []byte(k) }

// Account is the ACME account the receiver uses with one CA directory.
type Account struct {
	Directory string `json:"directory"`
	Email     string `json:"email"`
	// URI is the account's URL at the CA (the JWS key ID); empty until registered.
	URI string    `json:"uri,omitempty"`
	Key SecretPEM `json:"-"`
}

// Store keeps the ACME account in DATA/acme/ and each host's certificate in
// DATA/certs/HOST/ (fullchain.pem, key.pem, meta.json). Keys and metadata
// are 0600, directories 0700; every file is replaced through
// internal/atomicfile. Within a host, key and chain are written before the
// metadata, and a host exists for Hosts only once its metadata does.
type Store struct {
	dir string
}

// NewStore is the store under the receiver's data dir.
func NewStore(dataDir string) *Store { return &Store{dir: dataDir} }

// ErrNoAccount is returned by Account before the first registration.
var ErrNoAccount = errors.New("no ACME account yet")

func (s *Store) acmeDir() string { return filepath.Join(s.dir, "acme") }

// Account loads the stored ACME account, or ErrNoAccount.
func (s *Store) Account() (Account, error) {
	var a Account
	data, err := os.ReadFile(filepath.Join(s.acmeDir(), "account.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return a, ErrNoAccount
	}
	if err != nil {
		return a, fmt.Errorf("reading the ACME account: %w", err)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("reading %s: %w", filepath.Join(s.acmeDir(), "account.json"), err)
	}
	key, err := os.ReadFile(filepath.Join(s.acmeDir(), "account.key"))
	if err != nil {
		return a, fmt.Errorf("reading the ACME account key: %w", err)
	}
	a.Key = key
	return a, nil
}

// SaveAccount replaces the stored account (key first, then the rest).
func (s *Store) SaveAccount(a Account) error {
	if err := os.MkdirAll(s.acmeDir(), 0o700); err != nil {
		return fmt.Errorf("making %s: %w", s.acmeDir(), err)
	}
	if err := atomicfile.Write(filepath.Join(s.acmeDir(), "account.key"), a.Key, 0o600); err != nil {
		return err
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.acmeDir(), "account.json"), append(data, '\n'), 0o600)
}

func (s *Store) hostDir(host string) (string, error) {
	if !names.IsHost(host) {
		return "", fmt.Errorf("host %s: not a host name (lower-case letters, digits, '-' and '.')", names.Show(host))
	}
	return filepath.Join(s.dir, "certs", host), nil
}

// Put stores host's certificate, key and metadata.
func (s *Store) Put(c Cert) error {
	dir, err := s.hostDir(c.Meta.Host)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, "key.pem"), c.Key, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "fullchain.pem"), c.Chain, 0o644); err != nil {
		return err
	}
	return s.SaveMeta(c.Meta)
}

// SaveMeta replaces host's metadata alone (an attempt's outcome).
func (s *Store) SaveMeta(m Meta) error {
	dir, err := s.hostDir(m.Host)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "meta.json"), append(data, '\n'), 0o600)
}

// Meta loads host's metadata; the error wraps fs.ErrNotExist when the host
// has no certificate.
func (s *Store) Meta(host string) (Meta, error) {
	var m Meta
	dir, err := s.hostDir(host)
	if err != nil {
		return m, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return m, fmt.Errorf("host %s: reading its certificate's metadata: %w", host, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("reading %s: %w", filepath.Join(dir, "meta.json"), err)
	}
	if m.Host != host {
		return m, fmt.Errorf("reading %s: it is for host %s", filepath.Join(dir, "meta.json"), names.Show(m.Host))
	}
	return m, nil
}

// Get loads host's certificate, key and metadata.
func (s *Store) Get(host string) (Cert, error) {
	m, err := s.Meta(host)
	if err != nil {
		return Cert{}, err
	}
	dir := filepath.Join(s.dir, "certs", host)
	chain, err := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
	if err != nil {
		return Cert{}, fmt.Errorf("host %s: reading its certificate: %w", host, err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		return Cert{}, fmt.Errorf("host %s: reading its key: %w", host, err)
	}
	if err := matchStored(chain, key); err != nil {
		return Cert{}, fmt.Errorf("host %s: %w; run certs:renew (or certs:add) for it again", host, err)
	}
	return Cert{Meta: m, Chain: chain, Key: key}, nil
}

// matchStored checks that a stored chain and key belong together: Put
// writes the key before the chain, so a crash between the two leaves a new
// key beside the old certificate, which no node should ever be sent.
func matchStored(chain, key []byte) error {
	certs, signer, err := parseBundle(append(append([]byte{}, chain...), key...))
	if err != nil {
		return fmt.Errorf("the stored certificate and key are not readable (%w)", err)
	}
	if checkKey(certs[0], signer) != nil {
		return errors.New("the stored key is not the stored certificate's (a write cut short)")
	}
	return nil
}

// Hosts lists the hosts with a stored certificate, sorted.
func (s *Store) Hosts() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "certs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	var hosts []string
	for _, e := range entries {
		if !e.IsDir() || !names.IsHost(e.Name()) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.dir, "certs", e.Name(), "meta.json")); err == nil {
			hosts = append(hosts, e.Name())
		}
	}
	sort.Strings(hosts)
	return hosts, nil
}

// Remove deletes host's certificate, key and metadata (metadata first, so
// a removal cut short leaves no host that Hosts lists without its files).
func (s *Store) Remove(host string) error {
	dir, err := s.hostDir(host)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "meta.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("host %s: removing its certificate: %w", host, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("host %s: removing its certificate: %w", host, err)
	}
	return nil
}
