package keystore

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"
)

func FuzzParsePublicKey(f *testing.F) {
	for _, kind := range []string{kindED25519, kindECDSA256, kindECDSA521, kindRSA2048, kindRSA1024, kindSKED25519, kindSKECDSA, kindCert} {
		line := authorizedLine(newTestKey(f, kind), "alice@laptop")
		f.Add([]byte(line))
		f.Add([]byte("# comment\n\n" + line + "\r\n"))
		f.Add([]byte(`command="x" ` + line))
	}
	f.Add([]byte(""))
	f.Add([]byte(dsaLine("d")))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("ssh-ed25519 AAAA"))

	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		again, err := ParsePublicKey(ssh.MarshalAuthorizedKey(pub))
		if err != nil {
			t.Fatalf("accepted key %s does not re-parse: %v", ssh.MarshalAuthorizedKey(pub), err)
		}
		if !bytes.Equal(again.Marshal(), pub.Marshal()) {
			t.Fatalf("key changed in a marshal round trip: %s", ssh.MarshalAuthorizedKey(pub))
		}
	})
}

func FuzzParseStoreFile(f *testing.F) {
	alice := authorizedLine(newTestKey(f, kindED25519), "alice")
	bob := authorizedLine(newTestKey(f, kindECDSA256), "bob")
	carol := authorizedLine(newTestKey(f, kindRSA2048), "carol@ci")
	f.Add([]byte(newFileHeader + `role="admin" ` + alice + "\n" + `role="deployer",apps="myapp,blog" ` + bob + "\n"))
	f.Add([]byte(`apps="myapp, blog"  ` + carol + "\r\n\n# end"))
	f.Add([]byte(`role="admin",apps="x" ` + alice))
	f.Add([]byte(`role="admin" ` + alice + "\n" + `role="admin" ` + alice + "\n"))
	f.Add([]byte(`command="/bin/sh" ` + alice))
	f.Add([]byte("\n\n  \t\n#"))
	f.Add([]byte(""))

	f.Fuzz(func(t *testing.T, data []byte) {
		parsed, err := parseStoreFile("fuzz", data)
		if err != nil {
			return
		}
		rendered := parsed.render()
		reparsed, err := parseStoreFile("fuzz", rendered)
		if err != nil {
			t.Fatalf("rendered store does not re-parse: %v\n%s", err, rendered)
		}
		assertSameKeys(t, reparsed.keys(), parsed.keys())
		if again := reparsed.render(); !bytes.Equal(again, rendered) {
			t.Fatalf("render is not stable:\n%q\nthen\n%q", rendered, again)
		}
	})
}
