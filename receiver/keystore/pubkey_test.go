package keystore

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParsePublicKeyAccepts(t *testing.T) {
	kinds := []string{kindED25519, kindECDSA256, kindECDSA384, kindECDSA521, kindRSA2048, kindSKED25519, kindSKECDSA}
	for _, kind := range kinds {
		pub := newTestKey(t, kind)
		line := authorizedLine(pub, "alice@laptop")
		inputs := map[string]string{
			"bare":                       line,
			"with newline":               line + "\n",
			"crlf":                       line + "\r\n",
			"no comment":                 authorizedLine(pub, ""),
			"comments and blank lines":   "# my key\n\n  \n" + line + "\n# end\n",
			"comment with spaces in it":  authorizedLine(pub, "Alice Smith's laptop"),
			"leading and trailing space": "  " + line + "  \n",
			"comment naming a key type":  authorizedLine(pub, "ssh-ed25519 key of alice"),
		}
		for name, in := range inputs {
			t.Run(kind+"/"+name, func(t *testing.T) {
				got, err := ParsePublicKey([]byte(in))
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if !bytes.Equal(got.Marshal(), pub.Marshal()) {
					t.Errorf("ParsePublicKey returned a different key")
				}
			})
		}
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	ed := authorizedLine(newTestKey(t, kindED25519), "a")
	other := authorizedLine(newTestKey(t, kindECDSA256), "b")

	tests := []struct {
		name string
		in   string
		want string // part of the error message
	}{
		{name: "empty", in: "", want: "no public key found; pass the .pub file"},
		{name: "blank lines only", in: "\n \n\t\n", want: "no public key found"},
		{name: "comments only", in: "# nothing here\n", want: "no public key found"},
		{name: "two keys", in: ed + "\n" + other + "\n", want: "found 2 keys; add one key at a time"},
		{name: "three keys", in: ed + "\n" + other + "\n" + ed, want: "found 3 keys"},
		{name: "two keys on one line", in: ed + " " + other, want: "line 1 holds more than one key"},
		{name: "two keys on one line after a comment", in: "# k\n" + ed + "\t" + other + "\n", want: "line 2 holds more than one key"},
		{name: "command option", in: `command="/bin/sh" ` + ed, want: "key options such as `command=` are not accepted"},
		{name: "restrict option", in: "restrict " + ed, want: "key options"},
		{name: "our own role option", in: `role="admin" ` + ed, want: "key options"},
		{name: "certificate", in: authorizedLine(newTestKey(t, kindCert), "c"), want: "ssh-ed25519-cert-v01@openssh.com) are not accepted"},
		{name: "dsa", in: dsaLine("d"), want: "DSA keys (ssh-dss) are insecure"},
		{name: "dsa with options", in: `from="*" ` + dsaLine("d"), want: "DSA keys (ssh-dss) are insecure"},
		{name: "rsa 1024", in: authorizedLine(newTestKey(t, kindRSA1024), "r"), want: "this RSA key has 1024 bits"},
		{name: "garbage", in: "hello world\n", want: "line 1 is not an OpenSSH public key"},
		{name: "garbage after comment", in: "# key\nhello world\n", want: "line 2 is not an OpenSSH public key"},
		{name: "bad base64", in: "ssh-ed25519 !!!! a", want: "not an OpenSSH public key"},
		{name: "type mismatch", in: strings.Replace(ed, "ssh-ed25519", "ssh-rsa", 1), want: "not an OpenSSH public key"},
		{name: "truncated key", in: ed[:40], want: "not an OpenSSH public key"},
		{name: "ssh2 format", in: "---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n", want: "ssh-keygen -i"},
		{name: "too large", in: ed + "\n" + strings.Repeat("#", MaxPublicKeyInput), want: "more than a public key can be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePublicKey([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParsePublicKey accepted %q", tc.in)
			}
			if !errors.Is(err, ErrRejectedKey) {
				t.Errorf("error %v does not match ErrRejectedKey", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParsePublicKeyRejectsPrivateKeysWithoutEchoingThem(t *testing.T) {
	openssh, err := ssh.MarshalPrivateKey(newED25519(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(newED25519(t))
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(cachedRSA(t, 2048))}

	tests := []struct {
		name  string
		block *pem.Block
		label string
	}{
		{name: "openssh", block: openssh, label: "BEGIN OPENSSH PRIVATE KEY"},
		{name: "pkcs8", block: &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}, label: "BEGIN PRIVATE KEY"},
		{name: "rsa pkcs1", block: rsaPEM, label: "BEGIN RSA PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := pem.EncodeToMemory(tc.block)
			_, err := ParsePublicKey(in)
			if !errors.Is(err, ErrRejectedKey) {
				t.Fatalf("ParsePublicKey(private key) error = %v, want ErrRejectedKey", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "this is a private key ("+tc.label+")") || !strings.Contains(msg, ".pub file") {
				t.Errorf("error %q does not explain the mistake", msg)
			}
			body := strings.Split(string(in), "\n")[1] // first line of key material
			if strings.Contains(msg, body[:16]) {
				t.Errorf("error %q echoes private key material", msg)
			}
		})
	}

	t.Run("putty", func(t *testing.T) {
		_, err := ParsePublicKey([]byte("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"))
		if err == nil || !strings.Contains(err.Error(), "this is a private key") {
			t.Errorf("ParsePublicKey(PuTTY private key) error = %v, want a private key error", err)
		}
	})
}
