package keystore

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseStoreFile(t *testing.T) {
	alice := newTestKey(t, kindED25519)
	bob := newTestKey(t, kindECDSA256)
	aliceLine := authorizedLine(alice, "alice")
	bobLine := authorizedLine(bob, "bob")

	tests := []struct {
		name string
		data string
		want []Key // compared by name, role, apps and key
	}{
		{name: "empty", data: ""},
		{name: "comments and blanks only", data: "# header\n\n   \n\t# indented comment\n"},
		{name: "admin", data: `role="admin" ` + aliceLine + "\n",
			want: []Key{{Name: "alice", Role: RoleAdmin, PublicKey: alice}}},
		{name: "deployer", data: `role="deployer",apps="myapp,blog" ` + bobLine + "\n",
			want: []Key{{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp", "blog"}, PublicKey: bob}}},
		{name: "role defaults to deployer", data: `apps="myapp" ` + bobLine,
			want: []Key{{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp"}, PublicKey: bob}}},
		{name: "options in either order", data: `apps="myapp",role="deployer" ` + bobLine,
			want: []Key{{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp"}, PublicKey: bob}}},
		{name: "spaces in apps list", data: `apps="myapp, blog" ` + bobLine,
			want: []Key{{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp", "blog"}, PublicKey: bob}}},
		{name: "crlf and no final newline", data: "# keys\r\n" + `role="admin" ` + aliceLine + "\r\n" + `apps="x" ` + bobLine,
			want: []Key{
				{Name: "alice", Role: RoleAdmin, PublicKey: alice},
				{Name: "bob", Role: RoleDeployer, Apps: []string{"x"}, PublicKey: bob},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseStoreFile("keys", []byte(tc.data))
			if err != nil {
				t.Fatalf("parseStoreFile: %v", err)
			}
			assertSameKeys(t, f.keys(), tc.want)
		})
	}
}

func TestParseStoreFileErrors(t *testing.T) {
	alice := authorizedLine(newTestKey(t, kindED25519), "alice")
	aliceKeyOnly := authorizedLine(newTestKey(t, kindED25519), "")
	bob := authorizedLine(newTestKey(t, kindED25519), "bob")
	header := "# keys\n\n" // so the bad line is line 3

	tests := []struct {
		name    string
		data    string
		wantErr error
		want    string // part of the message, after the path:line prefix
	}{
		{name: "garbage", data: header + "hello world\n", wantErr: ErrMalformedStore, want: "not an authorized_keys line"},
		{name: "no name", data: header + `role="admin" ` + aliceKeyOnly + "\n", wantErr: ErrInvalidName, want: "no name"},
		{name: "bad name", data: header + `role="admin" ` + alice + " smith\n", wantErr: ErrInvalidName, want: `"alice smith"`},
		{name: "unknown option", data: header + `command="/bin/sh" ` + alice + "\n", wantErr: ErrMalformedStore, want: "unknown option"},
		{name: "flag option", data: header + `restrict,role="admin" ` + alice + "\n", wantErr: ErrMalformedStore, want: `unknown option "restrict"`},
		{name: "unquoted option", data: header + `role=admin ` + alice + "\n", wantErr: ErrMalformedStore, want: `role="value"`},
		{name: "option without value", data: header + `role ` + alice + "\n", wantErr: ErrMalformedStore, want: `role="value"`},
		{name: "option twice", data: header + `apps="a",apps="b" ` + alice + "\n", wantErr: ErrMalformedStore, want: "twice"},
		{name: "unknown role", data: header + `role="root" ` + alice + "\n", wantErr: ErrInvalidRole, want: `"root"`},
		{name: "admin with apps", data: header + `role="admin",apps="x" ` + alice + "\n", wantErr: ErrInvalidRole, want: "admin"},
		{name: "deployer without apps", data: header + alice + "\n", wantErr: ErrInvalidRole, want: "no apps"},
		{name: "empty apps", data: header + `apps="" ` + alice + "\n", wantErr: ErrInvalidRole, want: "no apps"},
		{name: "bad app", data: header + `apps="My_App" ` + alice + "\n", wantErr: ErrInvalidApp, want: `"My_App"`},
		{name: "dsa key", data: header + `role="admin" ` + dsaLine("d") + "\n", wantErr: ErrMalformedStore, want: "ssh-dss"},
		{name: "rsa 1024", data: header + `role="admin" ` + authorizedLine(newTestKey(t, kindRSA1024), "r") + "\n", wantErr: ErrRejectedKey, want: "1024 bits"},
		{name: "certificate", data: header + `role="admin" ` + authorizedLine(newTestKey(t, kindCert), "c") + "\n", wantErr: ErrRejectedKey, want: "certificates"},
		{name: "duplicate name", data: `role="admin" ` + alice + "\n\n" + `role="admin" ` + strings.Replace(bob, " bob", " alice", 1) + "\n",
			wantErr: ErrDuplicate, want: `"alice" is also used on line 1`},
		{name: "duplicate key", data: `role="admin" ` + alice + "\n\n" + `apps="x" ` + strings.Replace(alice, " alice", " bob", 1) + "\n",
			wantErr: ErrDuplicate, want: "is also on line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStoreFile("/data/authorized_keys", []byte(tc.data))
			if err == nil {
				t.Fatal("parseStoreFile accepted a bad file")
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrMalformedStore) {
				t.Errorf("error %v does not match %v and ErrMalformedStore", err, tc.wantErr)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "/data/authorized_keys:3: ") {
				t.Errorf("error %q does not start with path:line", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
		})
	}
}

func TestStoreFileRenderKeepsCommentsAndNormalisesKeys(t *testing.T) {
	alice := newTestKey(t, kindED25519)
	data := "# my keys\n\n  # indented\n" +
		`apps="myapp, blog"   ` + authorizedLine(alice, "alice") + "  \n" +
		"\n# trailing comment\n"
	f, err := parseStoreFile("keys", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := "# my keys\n\n  # indented\n" +
		`role="deployer",apps="myapp,blog" ` + authorizedLine(alice, "alice") + "\n" +
		"\n# trailing comment\n"
	if got := string(f.render()); got != want {
		t.Errorf("render() =\n%s\nwant\n%s", got, want)
	}
}

// assertSameKeys compares keys by name, role, apps and marshaled public key.
func assertSameKeys(t testing.TB, got, want []Key) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Role != w.Role || !slices.Equal(g.Apps, w.Apps) ||
			!bytes.Equal(g.PublicKey.Marshal(), w.PublicKey.Marshal()) {
			t.Errorf("key %d = {%s %s %v %s}, want {%s %s %v %s}", i,
				g.Name, g.Role, g.Apps, g.Fingerprint(), w.Name, w.Role, w.Apps, w.Fingerprint())
		}
	}
}
