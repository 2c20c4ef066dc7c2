package agentapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/gitreceive/gitreceive/names"
)

// The HTTPS verbs (issue 19). The receiver is the only ACME client: it
// places HTTP-01 answers on every node (Challenge) and spreads each host's
// certificate all-or-nothing (Cert: stage everywhere, test everywhere,
// then commit everywhere, or unstage everywhere).
type (
	// Challenge puts (keyAuth on stdin) or removes an HTTP-01 answer in
	// the node's challenge webroot.
	Challenge struct {
		Op    string // "put" or "remove"
		Token string
	}
	// Cert acts on a host's certificate on the node: stage (chain then
	// key, PEM, on stdin), test (nginx -t with the staged files), commit
	// (switch to them and reload), unstage, remove; ID names the staged
	// certificate (CertID of its chain). list answers with every host's
	// certificate on the node (Host and ID empty).
	Cert struct {
		Op   string
		Host string
		ID   string
	}
)

// Challenge and Cert operations.
const (
	ChallengePut    = "put"
	ChallengeRemove = "remove"

	CertStage   = "stage"
	CertTest    = "test"
	CertCommit  = "commit"
	CertUnstage = "unstage"
	CertRemove  = "remove"
	CertList    = "list"
)

// certOps are Cert's operations, with whether they name a staged
// certificate (ID follows HOST).
var certOps = map[string]bool{
	CertStage: true, CertTest: true, CertCommit: true, CertUnstage: true,
	CertRemove: false, CertList: false,
}

var certID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// IsCertID reports whether s has the shape of a certificate's ID: the
// first 16 hex digits of its chain's SHA-256.
func IsCertID(s string) bool { return certID.MatchString(s) }

func (r Challenge) Argv() []string { return []string{"challenge", r.Op, r.Token} }

func (r Cert) Argv() []string {
	switch {
	case r.Op == CertList:
		return []string{"cert", r.Op}
	case certOps[r.Op]:
		return []string{"cert", r.Op, r.Host, r.ID}
	}
	return []string{"cert", r.Op, r.Host}
}

func parseChallenge(args []string) (Request, error) {
	if len(args) != 2 || (args[0] != ChallengePut && args[0] != ChallengeRemove) {
		return nil, ErrUsage
	}
	if !names.IsACMEToken(args[1]) {
		return nil, fmt.Errorf("invalid ACME token %s", names.Show(args[1]))
	}
	return Challenge{Op: args[0], Token: args[1]}, nil
}

func parseCert(args []string) (Request, error) {
	if len(args) == 1 && args[0] == CertList {
		return Cert{Op: CertList}, nil
	}
	if len(args) < 2 {
		return nil, ErrUsage
	}
	withID, ok := certOps[args[0]]
	if !ok || args[0] == CertList || (withID && len(args) != 3) || (!withID && len(args) != 2) {
		return nil, ErrUsage
	}
	r := Cert{Op: args[0], Host: args[1]}
	if !names.IsHost(r.Host) {
		return nil, fmt.Errorf("invalid host %s", names.Show(r.Host))
	}
	if withID {
		r.ID = args[2]
		if !IsCertID(r.ID) {
			return nil, fmt.Errorf("invalid certificate ID %s", names.Show(r.ID))
		}
	}
	return r, nil
}

// CertID is the ID of a certificate chain on the nodes: the first 16 hex
// digits of its SHA-256.
func CertID(chain []byte) string {
	sum := sha256.Sum256(chain)
	return hex.EncodeToString(sum[:8])
}
