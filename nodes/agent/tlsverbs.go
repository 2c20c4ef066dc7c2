package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// The `challenge` and `cert` verbs (issue 19): the receiver, the only ACME
// client, places HTTP-01 answers and spreads certificates through them.
//
// A host's certificates live in CertsDir/HOST/ID/ (fullchain.pem 0644,
// key.pem 0600, the directories 0700 root), ID being the chain's
// agentapi.CertID; CertsDir/HOST/live is a symlink to the one nginx
// serves, swapped by a rename, so nginx never reads a chain beside
// another certificate's key.

// maxCertUpload bounds what `cert stage` reads: a chain and its key.
const maxCertUpload = 1 << 20

// keyAuthorization is an HTTP-01 answer: TOKEN.THUMBPRINT, base64url.
var keyAuthorization = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{43}$`)

// tlsRuntime is the runtime the HTTPS verbs work in: the system's only
// (a moved root is not served, so it gets no certificates either).
func (c *call) tlsRuntime() (Runtime, error) {
	if c.root != defaultRoot {
		return Runtime{}, fmt.Errorf("nothing is served here: %s moves the releases away from nginx", RootEnv)
	}
	return SystemRuntime(), nil
}

func challengeVerb(_ context.Context, c *call, r agentapi.Challenge) error {
	rt, err := c.tlsRuntime()
	if err != nil {
		return err
	}
	if r.Op == agentapi.ChallengeRemove {
		return removeChallenge(rt, r.Token)
	}
	return putChallenge(rt, r.Token, c.stdin)
}

// putChallenge writes token's key authorization (stdin's first line) to
// the challenge webroot, readable by nginx's workers.
func putChallenge(rt Runtime, token string, stdin io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(stdin, 512))
	if err != nil {
		return fmt.Errorf("reading the key authorization: %w", err)
	}
	keyAuth := strings.TrimSpace(string(data))
	if !keyAuthorization.MatchString(keyAuth) || !strings.HasPrefix(keyAuth, token+".") {
		return fmt.Errorf("the key authorization for token %s is not TOKEN.THUMBPRINT", token)
	}
	if err := os.MkdirAll(rt.ChallengeDir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(rt.ChallengeDir, token), []byte(keyAuth), 0o644)
}

func removeChallenge(rt Runtime, token string) error {
	if err := os.Remove(filepath.Join(rt.ChallengeDir, token)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func certVerb(ctx context.Context, c *call, r agentapi.Cert) error {
	rt, err := c.tlsRuntime()
	if err != nil {
		return err
	}
	switch r.Op {
	case agentapi.CertStage:
		return stageCert(rt, r.Host, r.ID, c.stdin)
	case agentapi.CertTest:
		return testCert(ctx, rt, r.Host, r.ID)
	case agentapi.CertCommit:
		return commitCert(ctx, c.root, rt, r.Host, r.ID)
	case agentapi.CertUnstage:
		return unstageCert(rt, r.Host, r.ID)
	case agentapi.CertRemove:
		return removeCert(ctx, c.root, rt, r.Host)
	}
	list, err := listCerts(rt)
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(list)
}

// splitBundle reads a chain (leaf first) and one private key, PEM, and
// checks that they belong together and that the leaf covers host. Errors
// never quote the key.
func splitBundle(data []byte, host string) (chain, key []byte, leaf *x509.Certificate, err error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			chain = append(chain, pem.EncodeToMemory(block)...)
		case strings.HasSuffix(block.Type, "PRIVATE KEY") && key == nil:
			key = pem.EncodeToMemory(block)
		default:
			return nil, nil, nil, fmt.Errorf("host %s: the upload holds a %s block; want the chain and one key", host, names.Show(block.Type))
		}
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("host %s: the certificate and key do not form a pair nginx can serve", host)
	}
	leaf, err = x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("host %s: the certificate is not readable: %w", host, err)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return nil, nil, nil, fmt.Errorf("host %s: the certificate does not cover it", host)
	}
	return chain, key, leaf, nil
}

// stageCert writes the chain and key on stdin to CertsDir/HOST/ID/ (not
// live yet): the key 0600, everything root's.
func stageCert(rt Runtime, host, id string, stdin io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(stdin, maxCertUpload+1))
	if err != nil {
		return fmt.Errorf("host %s: reading the certificate: %w", host, err)
	}
	if len(data) > maxCertUpload {
		return fmt.Errorf("host %s: the certificate upload is over %d bytes", host, maxCertUpload)
	}
	chain, key, _, err := splitBundle(data, host)
	if err != nil {
		return err
	}
	if agentapi.CertID(chain) != id {
		return fmt.Errorf("host %s: the chain received is not certificate %s (cut short?)", host, id)
	}
	hostDir := filepath.Join(rt.CertsDir, host)
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		return err
	}
	if live, _ := os.Readlink(filepath.Join(hostDir, "live")); live == id {
		return nil // already served: nothing to stage
	}
	tmp, err := os.MkdirTemp(hostDir, ".stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := atomicfile.Write(filepath.Join(tmp, "key.pem"), key, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(tmp, "fullchain.pem"), chain, 0o644); err != nil {
		return err
	}
	dst := filepath.Join(hostDir, id)
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// testCert has nginx load the staged certificate and key, in a
// configuration of their own (nginx -t opens no socket).
func testCert(ctx context.Context, rt Runtime, host, id string) error {
	dir := filepath.Join(rt.CertsDir, host, id)
	if _, err := os.Stat(filepath.Join(dir, "fullchain.pem")); err != nil {
		return fmt.Errorf("host %s: certificate %s is not staged on this node", host, id)
	}
	conf := fmt.Sprintf("# nginx -t of a staged certificate; removed with it.\nevents {}\nhttp {\n    server {\n"+
		"        listen 127.0.0.1:443 ssl;\n        server_name %s;\n        ssl_certificate %s;\n        ssl_certificate_key %s;\n"+
		"        ssl_protocols TLSv1.2 TLSv1.3;\n    }\n}\n", host, filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "key.pem"))
	path := filepath.Join(dir, "nginx-test.conf")
	if err := atomicfile.Write(path, []byte(conf), 0o600); err != nil {
		return err
	}
	if out, err := runTool(ctx, nginxCommand, "-t", "-q", "-c", path); err != nil {
		return fmt.Errorf("host %s: nginx -t refuses certificate %s: %s", host, id, quoteOutput(out, err))
	}
	return nil
}

// commitCert makes the staged certificate host's live one and reroutes
// the instance serving host (nginx -t, reload). When that fails, the
// previous certificate (or none) is live again.
func commitCert(ctx context.Context, root string, rt Runtime, host, id string) error {
	hostDir := filepath.Join(rt.CertsDir, host)
	if _, err := os.Stat(filepath.Join(hostDir, id, "key.pem")); err != nil {
		return fmt.Errorf("host %s: certificate %s is not staged on this node", host, id)
	}
	old, _ := os.Readlink(filepath.Join(hostDir, "live"))
	if err := setLiveCert(hostDir, id); err != nil {
		return err
	}
	if err := rerouteHost(ctx, root, rt, host); err != nil {
		if undo := setLiveCert(hostDir, old); undo != nil {
			err = errors.Join(err, undo)
		}
		return err
	}
	pruneCerts(hostDir, id)
	return nil
}

// setLiveCert points hostDir/live at id by a rename ("" removes it).
func setLiveCert(hostDir, id string) error {
	live := filepath.Join(hostDir, "live")
	if id == "" {
		if err := os.Remove(live); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp := live + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, live)
}

// pruneCerts removes every certificate of hostDir but keep.
func pruneCerts(hostDir, keep string) {
	entries, _ := os.ReadDir(hostDir)
	for _, e := range entries {
		if e.IsDir() && e.Name() != keep && agentapi.IsCertID(e.Name()) {
			os.RemoveAll(filepath.Join(hostDir, e.Name()))
		}
	}
}

func unstageCert(rt Runtime, host, id string) error {
	hostDir := filepath.Join(rt.CertsDir, host)
	if live, _ := os.Readlink(filepath.Join(hostDir, "live")); live == id {
		return nil
	}
	return os.RemoveAll(filepath.Join(hostDir, id))
}

// removeCert stops serving host over HTTPS and removes its certificates.
func removeCert(ctx context.Context, root string, rt Runtime, host string) error {
	hostDir := filepath.Join(rt.CertsDir, host)
	old, err := os.Readlink(filepath.Join(hostDir, "live"))
	if errors.Is(err, fs.ErrNotExist) {
		return os.RemoveAll(hostDir)
	}
	if err := setLiveCert(hostDir, ""); err != nil {
		return err
	}
	if err := rerouteHost(ctx, root, rt, host); err != nil {
		if undo := setLiveCert(hostDir, old); undo != nil {
			err = errors.Join(err, undo)
		}
		return err
	}
	return os.RemoveAll(hostDir)
}

// rerouteHost routes again the instance whose nginx file serves host, so
// that its server blocks pick up host's certificate (or its absence). A
// host no instance serves yet needs nothing: its first route will.
func rerouteHost(ctx context.Context, root string, rt Runtime, host string) error {
	files, err := filepath.Glob(filepath.Join(rt.NginxDir, "*.conf"))
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if !slices.Contains(serverNames(string(data)), host) {
			continue
		}
		app, name, ok := confInstance(string(data))
		if !ok {
			return fmt.Errorf("host %s is served by %s, which is not an instance's file", host, f)
		}
		in := openInstance(root, agentapi.At(app, name))
		cur, _, err := current(in.dir)
		if err != nil || cur == 0 {
			return fmt.Errorf("host %s: instance %s/%s has no live release to route (%v)", host, app, name, err)
		}
		spec, err := in.spec(cur)
		if err != nil {
			return err
		}
		reloaded, err := rt.instance(app, name).route(ctx, cur, readLink(in.dir, "previous"), spec, in.disabled())
		if err != nil || reloaded != "" {
			return err
		}
		// The file names the host's live link, which now points at
		// another certificate: the same text, but nginx reads
		// certificates only when it loads its configuration.
		unlock, err := lockNginxDir(ctx, rt.NginxDir)
		if err != nil {
			return err
		}
		defer unlock()
		return nginxReload(ctx)
	}
	return nil
}

// confInstance is APP and INSTANCE from an instance file's header.
func confInstance(conf string) (app, instance string, ok bool) {
	for _, line := range strings.Split(conf, "\n") {
		if rest, found := strings.CutPrefix(line, instanceHeader); found {
			f := strings.Fields(rest)
			if len(f) == 2 && names.IsApp(f[0]) && names.IsInstance(f[1]) {
				return f[0], f[1], true
			}
		}
	}
	return "", "", false
}

// CertInfo is one host's live certificate on a node (`cert list`).
type CertInfo struct {
	Host     string    `json:"host"`
	ID       string    `json:"id"`
	NotAfter time.Time `json:"not_after"`
}

func listCerts(rt Runtime) ([]CertInfo, error) {
	list := []CertInfo{}
	entries, err := os.ReadDir(rt.CertsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return list, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() || !names.IsHost(e.Name()) {
			continue
		}
		id, err := os.Readlink(filepath.Join(rt.CertsDir, e.Name(), "live"))
		if err != nil {
			continue
		}
		info := CertInfo{Host: e.Name(), ID: id}
		chain, err := os.ReadFile(filepath.Join(rt.CertsDir, e.Name(), "live", "fullchain.pem"))
		if err == nil {
			if block, _ := pem.Decode(bytes.TrimSpace(chain)); block != nil {
				if leaf, err := x509.ParseCertificate(block.Bytes); err == nil {
					info.NotAfter = leaf.NotAfter
				}
			}
		}
		list = append(list, info)
	}
	return list, nil
}
