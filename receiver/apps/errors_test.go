package apps

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// The user is told what failed; the cause, which may name a path or quote
// a node, goes only to the log, with the request's fields.
func TestTellOperator(t *testing.T) {
	tests := []struct {
		format string
		args   []any
		cause  error
		want   string
	}{
		{"cannot read the node inventory", nil, errors.New("open /var/lib/gitreceive/nodes.ini: permission denied"), "cannot read the node inventory; tell the operator"},
		{"cannot read the config of %s", []any{"blog@main"}, errors.New("unexpected end of JSON input"), "cannot read the config of blog@main; tell the operator"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		err := tellOperator(zerolog.New(&buf).With().Str("push", "p1").Logger(), tt.cause, tt.format, tt.args...)
		if err.Error() != tt.want {
			t.Errorf("told %q, want %q", err, tt.want)
		}
		var entry map[string]string
		if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
			t.Fatalf("log %q: %v", buf.String(), err)
		}
		if entry["level"] != "error" || entry["error"] != tt.cause.Error() || entry["push"] != "p1" || entry["message"] != strings.TrimSuffix(tt.want, "; tell the operator") {
			t.Errorf("logged %v", entry)
		}
	}
}
