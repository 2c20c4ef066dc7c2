package keystore

import (
	"bytes"
	"crypto/rsa"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// MaxPublicKeyInput is the largest input ParsePublicKey accepts. An RSA-16384
// .pub line is under 3 KiB; anything much bigger is not a public key.
const MaxPublicKeyInput = 16 << 10

// MinRSABits is the shortest RSA key accepted.
const MinRSABits = 2048

// dsaKeyType is spelled out because x/crypto deprecated its constant when it
// dropped DSA, yet we still need to recognise DSA keys to explain why they
// are refused.
const dsaKeyType = "ssh-dss"

// acceptedKeyTypes are the key algorithms a user may register. Anything
// else (certificates, algorithms OpenSSH does not widely support) is refused
// with a reason. DSA never gets this far: see isDSALine.
var acceptedKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKECDSA256: true,
	ssh.KeyAlgoRSA:        true,
}

// privateKeyLabel matches the PEM label of a private key, for example
// "OPENSSH PRIVATE KEY" or "ENCRYPTED PRIVATE KEY". Only a label matching
// this is echoed back; nothing else from a private key ever is.
var privateKeyLabel = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]{0,40}PRIVATE KEY)-----`)

// ParsePublicKey parses the public key a user hands in, from stdin or a
// .pub file. The input must hold exactly one key in authorized_keys format
// without options; blank lines, '#' lines and the key's own comment are
// ignored.
func ParsePublicKey(data []byte) (ssh.PublicKey, error) {
	if len(data) > MaxPublicKeyInput {
		return nil, errorf(ErrRejectedKey, "the input is %d bytes, more than a public key can be (limit %d); give the .pub file", len(data), MaxPublicKeyInput)
	}
	if err := checkNotPrivateKey(data); err != nil {
		return nil, err
	}

	if bytes.Contains(data, []byte("BEGIN SSH2 PUBLIC KEY")) {
		return nil, errorf(ErrRejectedKey, "this is an SSH2 (RFC 4716, PuTTY) public key; convert it with ssh-keygen -i -f FILE and give the result")
	}

	var keys []ssh.PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		if isBlankOrComment(line) {
			continue
		}
		pub, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil && isDSALine(line) {
			// x/crypto no longer parses DSA keys at all; say why instead
			// of reporting an unknown algorithm.
			return nil, errorf(ErrRejectedKey, "DSA keys (ssh-dss) are insecure and not accepted; create an ed25519 key with ssh-keygen -t ed25519")
		}
		if err != nil {
			return nil, errorf(ErrRejectedKey, "line %d is not an OpenSSH public key (%w); give the contents of the .pub file", i+1, err)
		}
		if len(options) > 0 {
			return nil, errorf(ErrRejectedKey, "key options such as `command=` are not accepted; give the bare public key")
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(comment)); err == nil {
			// Two keys pasted without a newline between them: the second
			// would silently become the first one's comment.
			return nil, errorf(ErrRejectedKey, "line %d holds more than one key; add one key at a time", i+1)
		}
		keys = append(keys, pub)
	}
	switch {
	case len(keys) == 0:
		return nil, errorf(ErrRejectedKey, "no public key found; pass the .pub file")
	case len(keys) > 1:
		return nil, errorf(ErrRejectedKey, "found %d keys; add one key at a time", len(keys))
	}
	if err := checkKeyAlgorithm(keys[0]); err != nil {
		return nil, err
	}
	return keys[0], nil
}

// checkNotPrivateKey refuses private keys up front: users often hand in
// id_ed25519 instead of id_ed25519.pub, and the error must not repeat the
// key material.
func checkNotPrivateKey(data []byte) error {
	if m := privateKeyLabel.FindSubmatch(data); m != nil {
		return errorf(ErrRejectedKey, "this is a private key (BEGIN %s); give the public key, usually the .pub file", m[1])
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.HasPrefix(data, []byte("PuTTY-User-Key-File")) {
		return errorf(ErrRejectedKey, "this is a private key; give the public key, usually the .pub file")
	}
	return nil
}

// checkKeyAlgorithm enforces which kinds of key may be registered, both for
// keys users hand in and for keys found in the store file.
func checkKeyAlgorithm(pub ssh.PublicKey) error {
	keyType := pub.Type()
	switch {
	case strings.HasSuffix(keyType, "-cert-v01@openssh.com"):
		return errorf(ErrRejectedKey, "SSH certificates (%s) are not accepted; give the plain public key", keyType)
	case !acceptedKeyTypes[keyType]:
		return errorf(ErrRejectedKey, "key type %q is not supported; use an ed25519, ECDSA or RSA key", keyType)
	case keyType == ssh.KeyAlgoRSA:
		if bits := rsaBits(pub); bits < MinRSABits {
			return errorf(ErrRejectedKey, "this RSA key has %d bits, fewer than the %d required; create an ed25519 key with ssh-keygen -t ed25519", bits, MinRSABits)
		}
	}
	return nil
}

func rsaBits(pub ssh.PublicKey) int {
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return 0
	}
	rsaKey, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
	if !ok {
		return 0
	}
	return rsaKey.N.BitLen()
}

// isBlankOrComment reports whether an authorized_keys line carries no key.
func isBlankOrComment(line string) bool {
	line = strings.TrimSpace(line)
	return line == "" || line[0] == '#'
}

// isDSALine reports whether line declares an ssh-dss key or certificate, as
// its first field or after an options field.
func isDSALine(line string) bool {
	fields := strings.Fields(line)
	for _, f := range fields[:min(2, len(fields))] {
		if strings.HasPrefix(f, dsaKeyType) {
			return true
		}
	}
	return false
}
