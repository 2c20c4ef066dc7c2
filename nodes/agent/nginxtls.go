package agent

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// HTTPS in the instance's server blocks (issue 19). A host is served over
// HTTPS when the node holds a certificate for it (CertsDir/HOST/live,
// placed by `cert commit`) and the instance's https is not "off"; with
// "required", its port 80 is a server of its own that answers ACME's
// challenges and redirects everything else with 308. The default 443
// server that rejects unknown names is server-files' catch-all.

// ChallengeDir is where ACME HTTP-01 answers live on a node: root's, and
// no app can write there.
const ChallengeDir = "/var/lib/gitreceive/acme-challenge"

// HTTPS modes of Spec.HTTPS ("" is HTTPSOptional).
const (
	HTTPSOptional = "optional"
	HTTPSRequired = "required"
	HTTPSOff      = "off"
)

// hstsMaxAge is Strict-Transport-Security's max-age with https = required:
// a year, what browsers' preload lists ask for.
const hstsMaxAge = 31536000

func (s Spec) validateHTTPS() error {
	switch s.HTTPS {
	case "", HTTPSOptional, HTTPSRequired, HTTPSOff:
		return nil
	}
	return fmt.Errorf("https %q is not required, optional or off", s.HTTPS)
}

// hostTLS is the certificate a host is served with.
type hostTLS struct {
	chain, key string
	stapling   bool // the leaf names an OCSP responder
}

// liveCertDir is where nginx finds host's current certificate.
func (rt Runtime) liveCertDir(host string) string {
	return filepath.Join(rt.CertsDir, host, "live")
}

// tlsHosts is the certificate of each of hosts that has one on the node,
// unless https is off.
func (ri runtimeInstance) tlsHosts(spec Spec, hosts []string) (map[string]hostTLS, error) {
	if ri.rt.CertsDir == "" || spec.HTTPS == HTTPSOff {
		return nil, nil
	}
	tls := map[string]hostTLS{}
	for _, h := range hosts {
		dir := ri.rt.liveCertDir(h)
		chain, err := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("host %s: reading its certificate: %w", h, err)
		}
		t := hostTLS{chain: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "key.pem")}
		for _, p := range []string{t.chain, t.key} {
			if err := checkNginxPath("certificate path", p); err != nil {
				return nil, err
			}
		}
		if block, _ := pem.Decode(chain); block != nil {
			if leaf, err := x509.ParseCertificate(block.Bytes); err == nil {
				t.stapling = len(leaf.OCSPServer) > 0
			}
		}
		tls[h] = t
	}
	return tls, nil
}

// redirects reports whether host's plain HTTP only redirects to HTTPS.
func (w *confWriter) redirects(host string) bool {
	_, ok := w.tls[host]
	return ok && w.https == HTTPSRequired
}

// listens writes the server's listen directives: port 80 unless it is
// the redirect server's, 443 when the host has a certificate.
func (w *confWriter) listens(host string) {
	if !w.redirects(host) {
		// The same sockets as the catch-all, which is default_server on both.
		w.line(1, "listen 80;")
		w.line(1, "listen [::]:80;")
	}
	if _, ok := w.tls[host]; ok {
		w.line(1, "listen 443 ssl http2;")
		w.line(1, "listen [::]:443 ssl http2;")
	}
}

// tlsDirectives writes the host's certificate and TLS settings: TLS 1.2
// and 1.3 only, no session tickets (their key would outlive a reload
// only as nginx's random one, and it breaks forward secrecy), stapling
// when the CA runs OCSP, HSTS when HTTPS is required.
func (w *confWriter) tlsDirectives(host string) {
	t, ok := w.tls[host]
	if !ok {
		return
	}
	w.line(1, "ssl_certificate %s;", t.chain)
	w.line(1, "ssl_certificate_key %s;", t.key)
	w.line(1, "ssl_protocols TLSv1.2 TLSv1.3;")
	w.line(1, "ssl_session_tickets off;")
	if t.stapling {
		w.line(1, "ssl_stapling on;")
	}
	if w.https == HTTPSRequired {
		w.line(1, `add_header Strict-Transport-Security "max-age=%d" always;`, hstsMaxAge)
	}
}

// acmeLocation serves ACME's HTTP-01 answers, ahead of any app location
// (^~: no regular expression location is tried after it).
func (w *confWriter) acmeLocation() {
	if w.challengeDir == "" {
		return
	}
	w.line(1, "location ^~ /.well-known/acme-challenge/ {")
	w.line(2, "alias %s/;", w.challengeDir)
	w.line(2, "default_type text/plain;")
	w.line(1, "}")
}

// redirectServer is host's port 80 when HTTPS is required: the ACME
// answers, and 308 (method and body kept) to the same URL over HTTPS.
func (w *confWriter) redirectServer(host string) {
	w.line(0, "server {")
	w.line(1, "listen 80;")
	w.line(1, "listen [::]:80;")
	w.line(1, "server_name %s;", host)
	w.line(1, "access_log %s;", filepath.Join(w.logs, "access.log"))
	w.line(1, "error_log %s;", filepath.Join(w.logs, "error.log"))
	w.acmeLocation()
	w.line(1, "location / {")
	w.line(2, "return 308 https://$host$request_uri;")
	w.line(1, "}")
	w.line(0, "}")
	w.line(0, "")
}

// tlsConf is what the server blocks need to know about HTTPS.
type tlsConf struct {
	tls          map[string]hostTLS // hosts with a certificate on the node
	https        string             // Spec.HTTPS
	challengeDir string             // Runtime.ChallengeDir
}

// setTLS fills w's tlsConf for the hosts of groups (and their prev.
// hosts when withPrev).
func (w *confWriter) setTLS(ri runtimeInstance, spec Spec, groups []hostGroup, withPrev bool) error {
	var hosts []string
	for _, g := range groups {
		hosts = append(hosts, g.host)
		if withPrev {
			hosts = append(hosts, "prev."+g.host)
		}
	}
	tls, err := ri.tlsHosts(spec, hosts)
	if err != nil {
		return err
	}
	if ri.rt.ChallengeDir != "" {
		if err := checkNginxPath("challenge directory", ri.rt.ChallengeDir); err != nil {
			return err
		}
	}
	w.tlsConf = tlsConf{tls: tls, https: spec.HTTPS, challengeDir: ri.rt.ChallengeDir}
	return nil
}
