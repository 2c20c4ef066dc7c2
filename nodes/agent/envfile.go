package agent

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
)

// formatEnvFile writes KEY=VALUE lines, sorted, one per variable. Values
// are taken verbatim by every reader (the bootstraps, update_fetch): only
// a newline, CR or NUL cannot be held, and Spec.Validate refuses those.
func formatEnvFile(env map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("env: %q is not a variable name", k)
		}
		if strings.ContainsAny(env[k], "\x00\n\r") {
			return nil, fmt.Errorf("env %s: a value must be one line", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(env[k])
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// parseEnvFile is formatEnvFile's inverse: each line split at its first '='.
func parseEnvFile(data []byte) ([]string, error) {
	var env []string
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", i+1)
		}
		env = append(env, line)
	}
	return env, nil
}

func readEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env, err := parseEnvFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}
