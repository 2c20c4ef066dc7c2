package services

import (
	"bytes"
	"strings"
	"testing"
)

func TestResource(t *testing.T) {
	seen := map[string]Instance{}
	for _, inst := range []Instance{
		{"myapp", "production"}, {"my-app", "production"}, {"my", "app-production"},
		{"myapp", "branch-feature%2Flogin"}, {"myapp", "branch-feature-login"},
		{strings.Repeat("a", 63), strings.Repeat("b", 200)},
	} {
		r := inst.Resource()
		if !resourceName.MatchString(r) || len(r) > 48 {
			t.Errorf("%v: resource %q is not [a-z0-9_]{1,48}", inst, r)
		}
		if other, dup := seen[r]; dup {
			t.Errorf("%v and %v share resource %q", inst, other, r)
		}
		seen[r] = inst
	}
	if r := (Instance{"myapp", "production"}).Resource(); !strings.HasPrefix(r, "myapp_production_") {
		t.Errorf("resource %q does not start with the readable name", r)
	}
}

func TestCredentials(t *testing.T) {
	c, err := NewCredentials(Instance{"myapp", "production"})
	if err != nil || c.Check() != nil || len(c.Password) != 32 {
		t.Fatalf("NewCredentials = %+v, %v", c, err)
	}
	d, _ := NewCredentials(Instance{"myapp", "production"})
	if c.Password == d.Password || c.User != d.User {
		t.Fatal("passwords repeat, or users differ")
	}
	for _, bad := range []Credentials{
		{User: `x"; DROP ROLE postgres; --`, Password: c.Password},
		{User: "Upper", Password: c.Password},
		{User: "ok", Password: "short"},
		{User: "ok", Password: "not'hex" + strings.Repeat("0", 20)},
		{User: "ok", Password: c.Password, Database: MaxRedisDatabase + 1},
		{User: "ok", Password: c.Password, Database: -1},
	} {
		if bad.Check() == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
}

func TestPostgresEnv(t *testing.T) {
	c := Credentials{User: "app_production_12345678", Password: strings.Repeat("ab", 16)}
	env := postgres{postgis: true}.Env(Instance{"app", "production"}, c, "10.0.0.5", Host{})
	want := "postgresql://app_production_12345678:" + c.Password + "@10.0.0.5:5432/app_production_12345678"
	if env["DATABASE_URL"] != want || env["CONFIG_PG_SQLALCHEMY"] != want || env["CONFIG_PG_HOST"] != "10.0.0.5" ||
		env["CONFIG_PG_PORT"] != "5432" || env["CONFIG_PG_DBNAME"] != c.User || env["CONFIG_PG_USER"] != c.User || env["CONFIG_PG_PASSWORD"] != c.Password {
		t.Fatalf("env = %v", env)
	}
	if v6 := (postgres{}).Env(Instance{}, c, "fd00::5", Host{})["DATABASE_URL"]; !strings.Contains(v6, "@[fd00::5]:5432/") {
		t.Fatalf("IPv6 URL = %s", v6)
	}
}

func TestPostgresCheckBackup(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"custom format 1.14", append([]byte("PGDMP\x01\x0e\x00"), bytes.Repeat([]byte{0}, 100)...), true},
		{"empty", nil, false},
		{"plain SQL", []byte("--\n-- PostgreSQL database dump\n--\n"), false},
		{"truncated magic", []byte("PGDM"), false},
		{"old format", []byte("PGDMP\x01\x05\x00"), false},
	} {
		if err := (postgres{}).CheckBackup(bytes.NewReader(tc.data)); (err == nil) != tc.ok {
			t.Errorf("%s: CheckBackup = %v", tc.name, err)
		}
	}
}

func TestSkipListLine(t *testing.T) {
	skip := map[string]bool{"TABLE DATA public spatial_ref_sys ": true}
	for line, want := range map[string]bool{
		"5765; 0 16730 TABLE DATA public spatial_ref_sys postgres\n": true,
		"5770; 0 16900 TABLE DATA public hits app\n":                 false,
		"; 5765; 0 16730 TABLE DATA public spatial_ref_sys\n":        false,
		"222; 1259 16900 TABLE public spatial_ref_sys postgres\n":    false,
	} {
		if got := skipListLine(line, skip); got != want {
			t.Errorf("skipListLine(%q) = %v", line, got)
		}
	}
}
