package nodes

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	gossh "golang.org/x/crypto/ssh"
)

// LoadOrCreateKey returns the ed25519 key kept at path (the receiver's host
// key, its client key for nodes), generating it (0600) the first time. An
// existing key that cannot be read is an error, never silently replaced: a
// new host key would teach every client to ignore "host key changed", and a
// new client key would lock the receiver out of its nodes.
func LoadOrCreateKey(path, comment string) (gossh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		signer, err := gossh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("key %s is unreadable (%w); restore it from backup, or remove it to generate a new one (its public half must then be given out again)", path, err)
		}
		return signer, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key %s: %w", path, err)
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encoding key %s: %w", path, err)
	}
	// O_EXCL: two servers starting on one data dir must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating key %s: %w", path, err)
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("writing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing key %s: %w", path, err)
	}
	return gossh.NewSignerFromKey(priv)
}
