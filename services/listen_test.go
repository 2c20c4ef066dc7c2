package services

import (
	"context"
	"strings"
	"testing"
)

// Every server's configuration names exactly loopback and the addresses
// app nodes use, and never a wildcard, whatever Listen holds.
func TestServerConfigsBindOnlyGivenAddresses(t *testing.T) {
	cases := []struct {
		name   string
		listen []string
		addrs  string // as the configurations list them, comma-separated
	}{
		{"single box", nil, "127.0.0.1"},
		{"services node", []string{"10.0.0.5"}, "127.0.0.1,10.0.0.5"},
		{"IPv6", []string{"fd00::5"}, "127.0.0.1,fd00::5"},
		{"wildcards and junk dropped", []string{"0.0.0.0", "::", "*", "a b", "127.0.0.1", "10.0.0.5"}, "127.0.0.1,10.0.0.5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := Host{Listen: tc.listen}
			confs := map[string]struct{ conf, want string }{
				"postgresql": {pgConf(h), "\nlisten_addresses = '" + tc.addrs + "'\n"},
				"mysql":      {mysqlConf(h), "\nbind-address = " + tc.addrs + "\n"},
				"redis":      {redisFragment(h), "\nbind " + strings.ReplaceAll(tc.addrs, ",", " ") + " -::1\n"},
			}
			for name, c := range confs {
				if !strings.Contains(c.conf, c.want) {
					t.Errorf("%s: lacks %q:\n%s", name, c.want, c.conf)
				}
				for _, wild := range []string{"'*'", "0.0.0.0", " * ", "::*", "= ::\n"} {
					if strings.Contains(c.conf, wild) {
						t.Errorf("%s: wildcard %q:\n%s", name, wild, c.conf)
					}
				}
			}
		})
	}
}

func TestListenFlag(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		rest    []string
		listen  []string
		wantErr string
	}{
		{"none", []string{"provision", "redis", "a", "main"}, []string{"provision", "redis", "a", "main"}, nil, ""},
		{"loopback is this node's", []string{"provision", "--listen=127.0.0.1", "redis"}, []string{"provision", "redis"}, []string{"127.0.0.1"}, ""},
		{"mapped v4", []string{"--listen=::ffff:127.0.0.1"}, nil, []string{"127.0.0.1"}, ""},
		{"twice", []string{"--listen=127.0.0.1", "--listen=127.0.0.1"}, nil, []string{"127.0.0.1"}, ""},
		{"not this node's", []string{"--listen=192.0.2.77"}, nil, nil, "192.0.2.77 is not an address of this node"},
		{"zone", []string{"--listen=fe80::1%eth0"}, nil, nil, "zone"},
		{"shell", []string{"--listen=$(touch /tmp/x)"}, nil, nil, "neither an IP address nor a host name"},
		{"empty", []string{"--listen="}, nil, nil, "neither an IP address nor a host name"},
		{"option-like name", []string{"--listen=-x"}, nil, nil, "neither an IP address nor a host name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rest, listen, err := ListenFlag(context.Background(), tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(rest, " ") != strings.Join(tc.rest, " ") || strings.Join(listen, " ") != strings.Join(tc.listen, " ") {
				t.Fatalf("got %q %q, want %q %q", rest, listen, tc.rest, tc.listen)
			}
		})
	}
}
