package keystore

import (
	"slices"

	"golang.org/x/crypto/ssh"
)

// Role is what a key may do.
type Role string

const (
	// RoleAdmin may manage keys and apps and push to every app.
	RoleAdmin Role = "admin"
	// RoleDeployer may push to and run commands for the apps listed in
	// its Key.Apps only.
	RoleDeployer Role = "deployer"
)

// Key is one entry of the store: a public key, its name and its permissions.
type Key struct {
	Name      string
	Role      Role
	Apps      []string // deployer only; exact app names
	PublicKey ssh.PublicKey
}

// Fingerprint returns the key's OpenSSH SHA256 fingerprint, "SHA256:...".
func (k Key) Fingerprint() string {
	if k.PublicKey == nil {
		return ""
	}
	return ssh.FingerprintSHA256(k.PublicKey)
}

// IsAdmin reports whether the key has the admin role.
func (k Key) IsAdmin() bool {
	return k.Role == RoleAdmin
}

// CanAccessApp reports whether the key may push to or run commands for app.
// Deployers match only exact names in Apps: "blog" never grants "blog-old".
func (k Key) CanAccessApp(app string) bool {
	switch k.Role {
	case RoleAdmin:
		return true
	case RoleDeployer:
		return app != "" && slices.Contains(k.Apps, app)
	default:
		return false
	}
}

// validate checks everything about k except whether it clashes with other
// keys in the store.
func (k Key) validate() error {
	if err := ValidName(k.Name); err != nil {
		return err
	}
	if k.PublicKey == nil {
		return errorf(ErrRejectedKey, "key %q has no public key; give the contents of the .pub file", k.Name)
	}
	if err := checkKeyAlgorithm(k.PublicKey); err != nil {
		return err
	}
	switch k.Role {
	case RoleAdmin:
		if len(k.Apps) > 0 {
			return errorf(ErrInvalidRole, "key %q is an admin and so may access every app; drop the app list or make it a deployer", k.Name)
		}
	case RoleDeployer:
		if len(k.Apps) == 0 {
			return errorf(ErrInvalidRole, "deployer key %q has no apps; list the apps it may deploy", k.Name)
		}
		for i, app := range k.Apps {
			if err := ValidAppName(app); err != nil {
				return err
			}
			if slices.Contains(k.Apps[:i], app) {
				return errorf(ErrInvalidRole, "key %q lists app %q twice; list each app once", k.Name, app)
			}
		}
	default:
		return errorf(ErrInvalidRole, "role %q of key %q is not valid; use %q or %q", k.Role, k.Name, RoleAdmin, RoleDeployer)
	}
	return nil
}
