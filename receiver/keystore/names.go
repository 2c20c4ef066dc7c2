package keystore

import (
	"regexp"

	"github.com/gitreceive/gitreceive/names"
)

var (
	keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
)

// ValidName reports whether name can name a key. Names are the key's
// comment in the store file, so they cannot contain spaces.
func ValidName(name string) error {
	if name == "" {
		return errorf(ErrInvalidName, "the key has no name; give a name such as alice or alice@laptop")
	}
	if !keyNamePattern.MatchString(name) {
		return errorf(ErrInvalidName, "key name %+q is not valid; use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// ValidAppName reports whether app is a valid app name, as used in the
// apps= option and for --apps values.
func ValidAppName(app string) error {
	if !names.IsApp(app) {
		return errorf(ErrInvalidApp, "app name %+q is not valid; use 1 to 63 lowercase letters, digits or '-', starting with a letter", app)
	}
	return nil
}
