package certs

import (
	"strings"
	"testing"
)

func TestEligible(t *testing.T) {
	tests := []struct {
		host string
		want string // "" = eligible
	}{
		{"app.example.com", ""},
		{"example.com", ""},
		{"Shop.Example.COM.", ""},
		{"xn--bcher-kva.example", ""},
		{"localhost", "under .localhost"},
		{"app.localhost", "under .localhost"},
		{"App.LocalHost", "under .localhost"},
		{"10.0.0.1", "is an IP address"},
		{"::1", "is an IP address"},
		{"[2001:db8::1]", "is an IP address"},
		{"intranet", "has no dot"},
		{"", "no host name"},
		{"bad_name.example.com", "not a valid host name"},
		{"-x.example.com", "not a valid host name"},
	}
	for _, tt := range tests {
		ok, why := Eligible(tt.host)
		if ok != (tt.want == "") || !strings.Contains(why, tt.want) {
			t.Errorf("Eligible(%q) = %v, %q; want %q", tt.host, ok, why, tt.want)
		}
		if !ok && tt.host != "" && !strings.Contains(why, tt.host) {
			t.Errorf("Eligible(%q): the reason %q does not name the host", tt.host, why)
		}
	}
}
