package keystore

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyCanAccessApp(t *testing.T) {
	admin := Key{Role: RoleAdmin}
	deployer := Key{Role: RoleDeployer, Apps: []string{"myapp", "blog"}}
	tests := []struct {
		name string
		key  Key
		app  string
		want bool
	}{
		{name: "admin any app", key: admin, app: "anything", want: true},
		{name: "deployer listed app", key: deployer, app: "myapp", want: true},
		{name: "deployer second app", key: deployer, app: "blog", want: true},
		{name: "deployer other app", key: deployer, app: "shop"},
		{name: "deployer prefix of listed app", key: deployer, app: "my"},
		{name: "deployer listed app is prefix", key: deployer, app: "blog-old"},
		{name: "deployer substring", key: deployer, app: "yap"},
		{name: "deployer case differs", key: deployer, app: "MyApp"},
		{name: "deployer empty app", key: deployer, app: ""},
		{name: "deployer without apps", key: Key{Role: RoleDeployer}, app: "myapp"},
		{name: "unknown role", key: Key{Role: "root", Apps: []string{"myapp"}}, app: "myapp"},
		{name: "zero key", key: Key{}, app: "myapp"},
	}
	for _, tc := range tests {
		if got := tc.key.CanAccessApp(tc.app); got != tc.want {
			t.Errorf("%s: CanAccessApp(%q) = %v, want %v", tc.name, tc.app, got, tc.want)
		}
	}
}

func TestKeyIsAdmin(t *testing.T) {
	tests := []struct {
		role Role
		want bool
	}{
		{role: RoleAdmin, want: true},
		{role: RoleDeployer},
		{role: ""},
		{role: "Admin"},
	}
	for _, tc := range tests {
		if got := (Key{Role: tc.role}).IsAdmin(); got != tc.want {
			t.Errorf("Key{Role: %q}.IsAdmin() = %v, want %v", tc.role, got, tc.want)
		}
	}
}

func TestKeyFingerprint(t *testing.T) {
	k := Key{PublicKey: newTestKey(t, kindED25519)}
	if fp := k.Fingerprint(); !strings.HasPrefix(fp, "SHA256:") || len(fp) != len("SHA256:")+43 {
		t.Errorf("Fingerprint() = %q, want SHA256: and 43 base64 characters", fp)
	}
	if fp := (Key{}).Fingerprint(); fp != "" {
		t.Errorf("Fingerprint() of a key without PublicKey = %q, want empty", fp)
	}
}

func TestKeyValidate(t *testing.T) {
	pub := newTestKey(t, kindED25519)
	tests := []struct {
		name    string
		key     Key
		wantErr error
	}{
		{name: "admin", key: Key{Name: "alice", Role: RoleAdmin, PublicKey: pub}},
		{name: "deployer", key: Key{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp", "blog"}, PublicKey: pub}},
		{name: "rsa 2048", key: Key{Name: "r", Role: RoleAdmin, PublicKey: newTestKey(t, kindRSA2048)}},
		{name: "sk ed25519", key: Key{Name: "s", Role: RoleAdmin, PublicKey: newTestKey(t, kindSKED25519)}},
		{name: "bad name", key: Key{Name: "bob smith", Role: RoleAdmin, PublicKey: pub}, wantErr: ErrInvalidName},
		{name: "no name", key: Key{Role: RoleAdmin, PublicKey: pub}, wantErr: ErrInvalidName},
		{name: "no public key", key: Key{Name: "a", Role: RoleAdmin}, wantErr: ErrRejectedKey},
		{name: "certificate", key: Key{Name: "a", Role: RoleAdmin, PublicKey: newTestKey(t, kindCert)}, wantErr: ErrRejectedKey},
		{name: "rsa 1024", key: Key{Name: "a", Role: RoleAdmin, PublicKey: newTestKey(t, kindRSA1024)}, wantErr: ErrRejectedKey},
		{name: "admin with apps", key: Key{Name: "a", Role: RoleAdmin, Apps: []string{"myapp"}, PublicKey: pub}, wantErr: ErrInvalidRole},
		{name: "deployer without apps", key: Key{Name: "a", Role: RoleDeployer, PublicKey: pub}, wantErr: ErrInvalidRole},
		{name: "deployer bad app", key: Key{Name: "a", Role: RoleDeployer, Apps: []string{"My_App"}, PublicKey: pub}, wantErr: ErrInvalidApp},
		{name: "deployer empty app", key: Key{Name: "a", Role: RoleDeployer, Apps: []string{""}, PublicKey: pub}, wantErr: ErrInvalidApp},
		{name: "deployer app twice", key: Key{Name: "a", Role: RoleDeployer, Apps: []string{"x", "x"}, PublicKey: pub}, wantErr: ErrInvalidRole},
		{name: "empty role", key: Key{Name: "a", Apps: []string{"x"}, PublicKey: pub}, wantErr: ErrInvalidRole},
		{name: "unknown role", key: Key{Name: "a", Role: "root", PublicKey: pub}, wantErr: ErrInvalidRole},
	}
	for _, tc := range tests {
		err := tc.key.validate()
		if tc.wantErr == nil && err != nil {
			t.Errorf("%s: validate() = %v, want nil", tc.name, err)
		}
		if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: validate() = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}
