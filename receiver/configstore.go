package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// configStore keeps the values operators set with config:set, per
// instance, in DATA/config/APP/INSTANCE.json (0600). They are merged over
// app.ini's config.* into the app's CONFIG_* variables and never shown.
type configStore struct {
	dir string
	mu  sync.Mutex // read-modify-write from concurrent commands
}

var configKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

func (cs *configStore) path(app, instance string) string {
	return filepath.Join(cs.dir, app, instance+".json")
}

// get returns the instance's values (none: an empty map).
func (cs *configStore) get(app, instance string) (map[string]string, error) {
	values := map[string]string{}
	data, err := os.ReadFile(cs.path(app, instance))
	if errors.Is(err, fs.ErrNotExist) {
		return values, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", cs.path(app, instance), err)
	}
	return values, nil
}

// update changes the instance's values and writes them atomically.
func (cs *configStore) update(app, instance string, change func(map[string]string)) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	values, err := cs.get(app, instance)
	if err != nil {
		return err
	}
	change(values)
	path := cs.path(app, instance)
	if len(values) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.Marshal(values)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// remove forgets an instance's values, or an app's with instance "".
func (cs *configStore) remove(app, instance string) error {
	if instance == "" {
		return os.RemoveAll(filepath.Join(cs.dir, app))
	}
	err := os.Remove(cs.path(app, instance))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// parseAssignments reads config:set's KEY=VALUE arguments.
func parseAssignments(args []string) (map[string]string, error) {
	values := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !configKey.MatchString(k) {
			return nil, fmt.Errorf("%q is not KEY=VALUE with KEY made of letters, digits and ._- (starting with a letter)", k)
		}
		if strings.ContainsAny(v, "\x00\n\r") {
			return nil, fmt.Errorf("the value of %s must be one line", k)
		}
		values[k] = v
	}
	return values, nil
}
