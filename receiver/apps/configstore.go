package apps

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

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// instanceStore keeps one JSON object of V per instance, in
// DIR/APP/INSTANCE.json (0600), for what must survive restarts and never be
// shown: the values operators set with config:set (merged over app.ini's
// config.* into the app's CONFIG_* variables), and the credentials of the
// instance's services.
type instanceStore[V any] struct {
	dir string
	mu  sync.Mutex // read-modify-write from concurrent commands
}

// configStore holds config:set values.
type configStore = instanceStore[string]

var configKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

// IsConfigKey reports whether k may name a config value.
func IsConfigKey(k string) bool { return configKey.MatchString(k) }

func (st *instanceStore[V]) path(app, instance string) string {
	return filepath.Join(st.dir, app, instance+".json")
}

// get returns the instance's values (none: an empty map).
func (st *instanceStore[V]) get(app, instance string) (map[string]V, error) {
	return readValues[V](st.path(app, instance))
}

func readValues[V any](path string) (map[string]V, error) {
	values := map[string]V{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return values, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return values, nil
}

// update changes the instance's values and writes them atomically; an
// error from change leaves them as they were.
func (st *instanceStore[V]) update(app, instance string, change func(map[string]V) error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	values, err := st.get(app, instance)
	if err != nil {
		return err
	}
	if err := change(values); err != nil {
		return err
	}
	path := st.path(app, instance)
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
	return atomicfile.Write(path, data, 0o600)
}

// all returns every instance's values (of every app), for choices that
// must differ between instances. The caller holds mu.
func (st *instanceStore[V]) all() ([]map[string]V, error) {
	files, err := filepath.Glob(filepath.Join(st.dir, "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []map[string]V
	for _, f := range files {
		values, err := readValues[V](f)
		if err != nil {
			return nil, err
		}
		out = append(out, values)
	}
	return out, nil
}

// remove forgets an instance's values, or an app's with instance "".
func (st *instanceStore[V]) remove(app, instance string) error {
	if instance == "" {
		return os.RemoveAll(filepath.Join(st.dir, app))
	}
	err := os.Remove(st.path(app, instance))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ParseAssignments reads config:set's KEY=VALUE arguments.
func ParseAssignments(args []string) (map[string]string, error) {
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
