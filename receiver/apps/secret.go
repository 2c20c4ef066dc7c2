package apps

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// instanceSecretKeyName is the file in the data dir (0600) the instances'
// secrets are derived from.
const instanceSecretKeyName = "instance_secret_key"

var secretKeyText = regexp.MustCompile(`^[0-9a-f]{64}$`)

// instanceSecret is APP/INSTANCE's secret (SILVER_SECRET_FILE on the
// nodes, silversupport's get_secret): HMAC-SHA256 of the instance's name
// under a random key made once in the data dir, so every node of the
// instance gets the same one, and no other instance can work it out.
func (a *Apps) instanceSecret(app, instance string) (string, error) {
	key, err := loadSecretKey(filepath.Join(a.cfg.DataDir, instanceSecretKeyName))
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(app + "\x00" + instance))
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// loadSecretKey reads the key, making it first if there is none.
func loadSecretKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSecretKey(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("making %s: %w", path, err)
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if !secretKeyText.Match(data) {
		return nil, fmt.Errorf("%s is not 64 hex digits; restore it from a backup (the apps' secrets derive from it)", path)
	}
	return hex.DecodeString(string(data))
}

// createSecretKey writes a new random key to path unless one is there
// (atomicfile.Create), so two first deploys at once end up with the same key
// (the loser gets fs.ErrExist and reads it).
func createSecretKey(path string) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Create(path, []byte(hex.EncodeToString(b[:])), 0o600)
}
