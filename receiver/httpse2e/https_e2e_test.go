//go:build e2e

package httpse2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/certs/certstest"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// validity is the test certificates' lifetime: short, so that the renewal
// job replaces them (a third of it before the end) while the test runs.
const validity = 60

// stack is the receiver, its nodes and the CA of one test.
type stack struct {
	bed   *testbed.Bed
	ca    *certstest.Pebble
	alice *receivertest.Client
	logs  *receivertest.LockedBuffer
	// downOnResolve, when set, is called (once) when the CA resolves that
	// name: the test takes a node down in the middle of an issuance.
	mu            sync.Mutex
	downOnResolve map[string]func()
}

func startStack(t *testing.T) *stack {
	t.Helper()
	testbed.Require(t)
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	receivertest.RequireStack(t)
	st := &stack{logs: &receivertest.LockedBuffer{}, downOnResolve: map[string]func(){}}
	data := t.TempDir()
	st.bed = receivertest.NewBed(t, bin, data, "tls", "10.77.248.0/24", 2)
	st.ca = certstest.Start(t, certstest.Options{Validity: validity, HTTPPort: 80, Resolve: st.resolve})
	caFile := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(caFile, st.ca.Roots, 0o600); err != nil {
		t.Fatal(err)
	}
	key := receivertest.NewKey(t, t.TempDir(), "alice")
	receivertest.AddAdmin(t, data, key)
	cfg := apps.Config{DataDir: data, LockTimeout: 2 * time.Minute, Version: "test", Domain: "example.test",
		HTTPS: "on", ACMEEmail: "ops@example.test", ACMEDirectory: st.ca.Directory, ACMECA: caFile}
	srv, err := receiver.New(cfg, zerolog.New(st.logs), receiver.WithHookBinary(bin),
		receiver.WithCertRenewal(time.Second, func(int) time.Duration { return time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	st.alice = receivertest.NewClient(t, receivertest.ServeInProcess(t, srv, data, st.logs), key)
	return st
}

// resolve is the CA's DNS: every name under example.test is both nodes.
func (st *stack) resolve(name string) []net.IP {
	if !strings.HasSuffix(name, ".example.test.") {
		return nil
	}
	st.mu.Lock()
	down := st.downOnResolve[name]
	delete(st.downOnResolve, name)
	st.mu.Unlock()
	if down != nil {
		down()
	}
	var ips []net.IP
	for _, n := range st.bed.Nodes {
		ips = append(ips, net.ParseIP(n.IP))
	}
	return ips
}

// httpsGet is GET https://host/ on node (pebble's root only): status,
// HSTS header, body and the serial of the certificate served.
func (st *stack) httpsGet(node *testbed.Node, host string) (code int, hsts, body, serial string, err error) {
	code, header, body, serial, err := certstest.Get(node.IP, host, st.ca.Issuing)
	return code, header.Get("Strict-Transport-Security"), body, serial, err
}

// waitHTTPS polls until both nodes answer host over HTTPS (bounded).
func (st *stack) waitHTTPS(t *testing.T, host, body string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, n := range st.bed.Nodes {
		for {
			code, _, got, _, err := st.httpsGet(n, host)
			if err == nil && code == 200 && got == body {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("https://%s/ on %s: %d %q %v, want 200 %q", host, n.Name, code, got, err, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func TestHTTPSOnEveryNode(t *testing.T) {
	start := time.Now()
	st := startStack(t)
	n1, n2 := st.bed.Nodes[0], st.bed.Nodes[1]
	work := st.alice.WorkTree(t, receivertest.App("app", nil))
	st.alice.MustGit(t, work, "remote", "add", "silver", st.alice.URL("app"))

	// The first push: live on HTTP, then a certificate from pebble on
	// both nodes for app.example.test (and prev.app.example.test).
	pushed := time.Now()
	r := st.alice.MustGit(t, work, "push", "silver", "main")
	receivertest.MustContain(t, r.Stderr, "app v1 (main) is live on 2 nodes at http://app.example.test")
	receivertest.MustContain(t, r.Stderr, "https for app.example.test: certificate from Pebble Intermediate")
	receivertest.MustContain(t, r.Stderr, "https for prev.app.example.test: certificate from")
	for _, n := range st.bed.Nodes {
		if code, body := receivertest.Get(n, "app.example.test", "/"); code != 200 || body != "app" {
			t.Fatalf("http on %s: %d %q", n.Name, code, body)
		}
	}
	st.waitHTTPS(t, "app.example.test", "app", 10*time.Second)
	t.Logf("first push to HTTPS answering on both nodes: %.1fs (bed and receiver up in %.1fs)",
		time.Since(pushed).Seconds(), pushed.Sub(start).Seconds())

	// An unknown name is refused at the handshake, never given a certificate.
	if _, _, _, _, err := st.httpsGet(n1, "nobody.example.test"); err == nil || !strings.Contains(err.Error(), "handshake") &&
		!strings.Contains(err.Error(), "tls") {
		t.Fatalf("unknown SNI: %v, want a refused handshake", err)
	}
	// The key is root's, 0600, on every node.
	for _, n := range st.bed.Nodes {
		out, err := st.bed.Exec(t.Context(), n, "stat", "-L", "-c", "%a %U", "/etc/gitreceive/certs/app.example.test/live/key.pem")
		if err != nil || strings.TrimSpace(string(out)) != "600 root" {
			t.Fatalf("key on %s: %q %v, want 600 root", n.Name, out, err)
		}
	}

	// Before more hosts make the renewal job busier: the short-lived
	// certificate is replaced on both nodes under HTTPS load.
	st.checkRenewalUnderLoad(t)

	// https = required: HTTP answers 308 to HTTPS, HTTPS sends HSTS.
	st.alice.Commit(t, work, "https required", map[string]string{"app.ini": "[production]\napp_name = app\nrunner = app.py\nhttps = required\n"})
	st.alice.MustGit(t, work, "push", "silver", "main")
	for _, n := range st.bed.Nodes {
		req, _ := http.NewRequest("GET", "http://app.example.test/some/path?q=1", nil)
		res := receivertest.Do(t, n, req)
		if res.Code != 308 || res.Header.Get("Location") != "https://app.example.test/some/path?q=1" {
			t.Fatalf("http on %s with https = required: %d %q", n.Name, res.Code, res.Header.Get("Location"))
		}
		code, hsts, _, _, err := st.httpsGet(n, "app.example.test")
		if err != nil || code != 200 || !strings.HasPrefix(hsts, "max-age=") {
			t.Fatalf("https on %s with https = required: %d %q %v", n.Name, code, hsts, err)
		}
	}

	// A staging branch gets its own certificate; node 2 goes down in the
	// middle of its issuance: nothing switches, the push succeeds, and
	// the receiver retries until both nodes have it.
	const staging = "feature.app.example.test"
	st.mu.Lock()
	st.downOnResolve[staging+"."] = func() {
		if out, err := st.bed.Exec(context.Background(), n2, "pkill", "-9", "-x", "sshd|sshd-session"); err != nil {
			t.Errorf("killing sshd on %s: %v %s", n2.Name, err, out)
		}
	}
	st.mu.Unlock()
	st.alice.MustGit(t, work, "checkout", "-q", "-b", "feature")
	st.alice.Commit(t, work, "feature", map[string]string{"app.py": strings.Replace(receivertest.App("app", nil)["app.py"], "b'app'", "b'feature'", 1)})
	r = st.alice.MustGit(t, work, "push", "silver", "feature")
	receivertest.MustContain(t, r.Stderr, "is live on 2 nodes at http://"+staging)
	receivertest.MustContain(t, r.Stderr, "https for "+staging+": pending (")
	if _, _, _, _, err := st.httpsGet(n1, staging); err == nil {
		t.Fatalf("node 1 serves %s over HTTPS though node 2 never got the certificate", staging)
	}
	if err := st.bed.StartSSHD(t.Context(), n2); err != nil {
		t.Fatal(err)
	}
	st.waitHTTPS(t, staging, "feature", 90*time.Second)
	var rows []struct {
		Host  string   `json:"host"`
		Nodes []string `json:"nodes"`
	}
	cr := st.alice.SSH(t, "", nil, "certs", "--json")
	if err := json.Unmarshal([]byte(cr.Stdout), &rows); err != nil {
		t.Fatalf("certs --json: %v\n%s", err, cr)
	}
	for _, row := range rows {
		if row.Host == staging && len(row.Nodes) != 2 {
			t.Fatalf("certs: %s on %v, want both nodes\n%s", staging, row.Nodes, cr.Stdout)
		}
	}

	st.checkCertsAddRefusals(t)
	st.checkOperatorCommands(t, staging)

	for _, text := range []string{r.Stderr, r.Stdout, cr.Stdout, st.logs.String(), legoLogs.String()} {
		if strings.Contains(text, "PRIVATE KEY") {
			t.Fatalf("a private key reached the output or the log")
		}
	}
	t.Logf("whole test: %.1fs", time.Since(start).Seconds())
}

// checkRenewalUnderLoad: the short-lived certificate of app.example.test
// is renewed on both nodes while clients keep requesting it over HTTPS,
// with no failed request.
func (st *stack) checkRenewalUnderLoad(t *testing.T) {
	t.Helper()
	first := map[string]string{}
	for _, n := range st.bed.Nodes {
		_, _, _, serial, err := st.httpsGet(n, "app.example.test")
		if err != nil {
			t.Fatal(err)
		}
		first[n.Name] = serial
	}
	var total atomic.Int64
	var mu sync.Mutex
	var failures []string
	renewed := map[string]bool{}
	deadline := time.Now().Add(validity * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				n := st.bed.Nodes[(c+i)%len(st.bed.Nodes)]
				code, _, body, serial, err := st.httpsGet(n, "app.example.test")
				total.Add(1)
				mu.Lock()
				if err != nil || code != 200 || body != "app" {
					failures = append(failures, fmt.Sprintf("%s: %d %q %v", n.Name, code, body, err))
				}
				if err == nil && serial != first[n.Name] {
					renewed[n.Name] = true
				}
				done := len(renewed) == len(st.bed.Nodes)
				mu.Unlock()
				if done {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(renewed) != len(st.bed.Nodes) {
		t.Fatalf("the certificate was renewed on %v only within %ds", renewed, validity)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d HTTPS requests failed during the renewal: %v", len(failures), total.Load(), failures[:min(len(failures), 5)])
	}
	t.Logf("renewal under load: %d HTTPS requests, 0 failed", total.Load())
}

// checkOperatorCommands: certs:renew replaces a certificate on both
// nodes, certs:remove takes the operator's off them, and `nodes setup`
// gives a node every certificate the receiver holds.
func (st *stack) checkOperatorCommands(t *testing.T, host string) {
	t.Helper()
	_, _, _, before, err := st.httpsGet(st.bed.Nodes[0], host)
	if err != nil {
		t.Fatal(err)
	}
	r := st.alice.SSH(t, "", nil, "certs:renew", host)
	if r.Code != 0 || !strings.Contains(r.Stdout, host+": certificate from Pebble Intermediate") {
		t.Fatalf("certs:renew: %s", r)
	}
	for _, n := range st.bed.Nodes {
		if _, _, _, serial, err := st.httpsGet(n, host); err != nil || serial == before {
			t.Fatalf("after certs:renew %s serves serial %s (before %s): %v", n.Name, serial, before, err)
		}
	}
	r = st.alice.SSH(t, "", nil, "certs:remove", "ops.example.test")
	if r.Code != 0 {
		t.Fatalf("certs:remove: %s", r)
	}
	for _, n := range st.bed.Nodes {
		if out, err := st.bed.Exec(t.Context(), n, "test", "-e", "/etc/gitreceive/certs/ops.example.test"); err == nil {
			t.Fatalf("%s still has the removed certificate: %s", n.Name, out)
		}
	}
	out, err := exec.Command(bin, "nodes", "--data", st.alice.Server.DataDir, "setup", st.bed.Nodes[1].Name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "certificates installed") || strings.Contains(string(out), "https: host") {
		t.Fatalf("nodes setup: %v\n%s", err, out)
	}
}

// checkCertsAddRefusals: a bundle with the wrong key, an expired chain, a
// host it does not cover, or garbage is refused with a clear message and
// changes nothing.
func (st *stack) checkCertsAddRefusals(t *testing.T) {
	t.Helper()
	const host = "ops.example.test"
	root, rootKey := newCA(t)
	good, goodKey := issue(t, root, rootKey, host, time.Now().Add(time.Hour))
	_, otherKey := issue(t, root, rootKey, host, time.Now().Add(time.Hour))
	expired, expiredKey := issue(t, root, rootKey, host, time.Now().Add(-time.Minute))
	elsewhere, elsewhereKey := issue(t, root, rootKey, "other.example.test", time.Now().Add(time.Hour))
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	before := st.alice.SSH(t, "", nil, "certs", "--json").Stdout
	for _, tc := range []struct{ name, bundle, want string }{
		{"wrong key", good + string(rootPEM) + otherKey, "the private key does not belong to the certificate"},
		{"expired", expired + string(rootPEM) + expiredKey, "expired"},
		{"host not covered", elsewhere + string(rootPEM) + elsewhereKey, "does not cover host"},
		{"garbage", "hello\n", "holds no certificate"},
	} {
		r := st.alice.SSH(t, tc.bundle, nil, "certs:add", host)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) || !strings.Contains(r.Stderr, "nothing was changed") {
			t.Fatalf("certs:add with %s: %s", tc.name, r)
		}
		if strings.Contains(r.Stderr, "PRIVATE KEY") {
			t.Fatalf("certs:add with %s quotes the key: %s", tc.name, r)
		}
	}
	if after := st.alice.SSH(t, "", nil, "certs", "--json").Stdout; !strings.Contains(after, `"host": "app.example.test"`) || strings.Contains(after, host) ||
		strings.Count(before, `"host"`) != strings.Count(after, `"host"`) {
		t.Fatalf("refused bundles changed the certificates:\nbefore %s\nafter %s", before, after)
	}
	// The good one is installed on both nodes.
	r := st.alice.SSH(t, good+string(rootPEM)+goodKey, nil, "certs:add", host)
	if r.Code != 0 || !strings.Contains(r.Stdout, host+": certificate from test root") {
		t.Fatalf("certs:add: %s", r)
	}
	for _, n := range st.bed.Nodes {
		if out, err := st.bed.Exec(t.Context(), n, "test", "-f", "/etc/gitreceive/certs/"+host+"/live/fullchain.pem"); err != nil {
			t.Fatalf("%s lacks the operator's certificate: %v %s", n.Name, err, out)
		}
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// issue is a leaf for host signed by the CA, valid until notAfter, and its key, PEM.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, host string, notAfter time.Time) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: notAfter.Add(-2 * time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}
