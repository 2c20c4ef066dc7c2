package apps

import "testing"

func TestCredentialsAreKeptAndRedisDatabasesDiffer(t *testing.T) {
	srv := &Apps{creds: &credentialStore{dir: t.TempDir()}}
	a, err := srv.credentials("app", "production", []string{"redis", "postgis"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := srv.credentials("app", "production", []string{"redis", "postgis", "mysql"})
	if err != nil || again["redis"] != a["redis"] || again["postgis"] != a["postgis"] || again["mysql"].Password == "" {
		t.Fatalf("credentials changed or missing: %v %v (%v)", a, again, err)
	}
	b, err := srv.credentials("app", "branch-x", []string{"redis"})
	if err != nil || b["redis"].Database == a["redis"].Database || a["redis"].Database != 1 || b["redis"].Database != 2 {
		t.Fatalf("redis databases: %d and %d (%v)", a["redis"].Database, b["redis"].Database, err)
	}
	if b["redis"].User == a["redis"].User || b["redis"].Password == a["redis"].Password {
		t.Fatal("two instances share a user or password")
	}
}
