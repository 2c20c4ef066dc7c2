package nodes

import "testing"

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in         string
		user, host string
		port       int
		ok         bool
	}{
		{"10.0.0.5", "root", "10.0.0.5", 22, true},
		{"deploy@web1.example.com:2200", "deploy", "web1.example.com", 2200, true},
		{"[fd00::5]:22", "root", "fd00::5", 22, true},
		{"fd00::5", "root", "fd00::5", 22, true},
		{"root@host:0", "", "", 0, false},
		{"root@host:65536", "", "", 0, false},
		{"root@host:ab", "", "", 0, false},
		{"Ro;t@host", "", "", 0, false},
		{"root@-host", "", "", 0, false},
		{"root@ho st", "", "", 0, false},
		{"", "", "", 0, false},
	} {
		user, host, port, err := ParseAddress(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (user != tc.user || host != tc.host || port != tc.port)) {
			t.Errorf("ParseAddress(%q) = %q %q %d %v", tc.in, user, host, port, err)
		}
	}
	if (Node{User: "root", Host: "fd00::5", Port: 2200}).String() != "root@[fd00::5]:2200" {
		t.Error("IPv6 String")
	}
}

func TestParseDfAvail(t *testing.T) {
	got, err := parseDfAvail("Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 50 42 55% /\n")
	if err != nil || got != 42*1024 {
		t.Fatalf("parseDfAvail = %d, %v", got, err)
	}
	if _, err := parseDfAvail("garbage"); err == nil {
		t.Fatal("garbage accepted")
	}
}
