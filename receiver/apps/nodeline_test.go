package apps

import "testing"

func TestNodeLine(t *testing.T) {
	tests := []struct {
		node, format string
		args         []any
		want         string
	}{
		{"web1", "ready  %.2fs", []any{1.5}, "web1     ready  1.50s"},
		{"a-long-node-name", "%s", []any{"up"}, "a-long-node-name up"},
		{"db", "line with %%", nil, "db       line with %"},
	}
	for _, tt := range tests {
		if got := nodeLine(tt.node, tt.format, tt.args...); got != tt.want {
			t.Errorf("nodeLine(%q, %q) = %q, want %q", tt.node, tt.format, got, tt.want)
		}
	}
}
