package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
	"github.com/gitreceive/gitreceive/receiver/certs"
)

// The operator's certificate commands (admin): certs [--json],
// certs:add HOST < bundle.pem, certs:renew HOST, certs:remove HOST.

const (
	certsUsage       = "certs [--json]"
	certsAddUsage    = "certs:add HOST < bundle.pem"
	certsRenewUsage  = "certs:renew HOST"
	certsRemoveUsage = "certs:remove HOST"
)

// maxBundleUpload bounds what certs:add reads (CheckBundle's own bound + 1).
const maxBundleUpload = 1<<20 + 1

// certRow is one line of `certs`.
type certRow struct {
	Host        string    `json:"host"`
	App         string    `json:"app,omitempty"`
	Instance    string    `json:"instance,omitempty"`
	Source      string    `json:"source"`
	Issuer      string    `json:"issuer,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	Renewed     time.Time `json:"renewed,omitzero"`
	Nodes       []string  `json:"nodes"`       // nodes serving this very certificate
	NodesTotal  int       `json:"nodes_total"` // nodes deploys go to
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

func (s *Server) certsCommand(c *call) error {
	asJSON := len(c.args) == 2 && c.args[1] == "--json"
	if len(c.args) != 1 && !asJSON {
		return c.fail("usage: %s", certsUsage)
	}
	hosts, err := s.https.store.Hosts()
	if err != nil {
		return c.internal(err, "cannot read the certificates")
	}
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	holders, err := s.fleet.CertHolders(c.sess.Context(), targets)
	if err != nil {
		fmt.Fprintf(c.stderr(), "note: %s\n", oneLine(err.Error()))
	}
	rows := []certRow{}
	for _, host := range hosts {
		row, err := s.certRow(host, holders, len(targets))
		if err != nil {
			return c.internal(err, "cannot read the certificate of %s", host)
		}
		rows = append(rows, row)
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return exitStatus(1)
		}
		return nil
	}
	writeCertRows(c.stdout(), rows)
	return nil
}

func (s *Server) certRow(host string, holders map[string]map[string][]string, total int) (certRow, error) {
	m, err := s.https.store.Meta(host)
	if err != nil {
		return certRow{}, err
	}
	row := certRow{Host: host, Source: string(m.Source), Issuer: m.Issuer, NotAfter: m.NotAfter, Renewed: m.Renewed,
		Nodes: []string{}, NodesTotal: total, LastError: m.LastError, NextAttempt: m.NextAttempt}
	row.App, row.Instance, _ = s.hostInstance(host)
	if !m.NotAfter.IsZero() {
		cert, err := s.https.store.Get(host)
		if err != nil {
			return certRow{}, err
		}
		if on := holders[host][agentapi.CertID(cert.Chain)]; on != nil {
			row.Nodes = on
		}
	}
	return row, nil
}

func writeCertRows(w io.Writer, rows []certRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tINSTANCE\tSOURCE\tISSUER\tNOT AFTER\tNODES\tLAST ERROR")
	for _, r := range rows {
		instance, notAfter, issuer, lastErr := "-", "-", "-", "-"
		if r.App != "" {
			instance = r.App + "/" + r.Instance
		}
		if !r.NotAfter.IsZero() {
			notAfter = r.NotAfter.UTC().Format("2006-01-02 15:04")
		}
		if r.Issuer != "" {
			issuer = r.Issuer
		}
		if r.LastError != "" {
			lastErr = oneLine(r.LastError)
		}
		nodes := fmt.Sprintf("%d/%d", len(r.Nodes), r.NodesTotal)
		if len(r.Nodes) > 0 {
			nodes += " (" + strings.Join(r.Nodes, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, instance, r.Source, issuer, notAfter, nodes, lastErr)
	}
	tw.Flush()
}

// certHost reads the HOST argument of certs:add/renew/remove.
func certHost(c *call, usage string) (string, error) {
	if len(c.args) != 2 {
		return "", c.fail("usage: %s", usage)
	}
	host := canonicalHost(c.args[1])
	if !names.IsHost(host) {
		return "", c.fail("%s is not a host name", names.Show(c.args[1]))
	}
	return host, nil
}

// certsAddCommand installs an operator's certificate: checked, spread
// all-or-nothing, then stored; ACME never touches the host again.
func (s *Server) certsAddCommand(c *call) error {
	host, err := certHost(c, certsAddUsage)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(c.sess, maxBundleUpload))
	if err != nil {
		return c.fail("reading the bundle from stdin: %v", err)
	}
	now := time.Now()
	b, err := certs.CheckBundle(data, host, now)
	if err != nil {
		return c.fail("certs:add %s: %v; nothing was changed", host, err)
	}
	unlock, err := s.lockHostApp(c.sess.Context(), host)
	if err != nil {
		return c.fail("certs:add %s: %v", host, err)
	}
	defer unlock()
	cert := certs.Cert{
		Meta: certs.Meta{Host: host, Source: certs.SourceOperator, Issuer: b.Leaf.Issuer.CommonName,
			NotBefore: b.Leaf.NotBefore, NotAfter: b.Leaf.NotAfter, Renewed: now},
		Chain: b.Chain, Key: b.Key,
	}
	if err := s.installCert(c.sess.Context(), cert); err != nil {
		return c.fail("certs:add %s: %s", host, oneLine(err.Error()))
	}
	if err := s.https.store.Put(cert); err != nil {
		return c.internal(err, "the certificate of %s is on the nodes but could not be stored", host)
	}
	c.log.Info().Str("host", host).Str("issuer", cert.Meta.Issuer).Time("not_after", cert.Meta.NotAfter).Msg("operator certificate added")
	fmt.Fprintf(c.stdout(), "%s: certificate from %s, valid until %s, installed on every node\n", host, cert.Meta.Issuer,
		cert.Meta.NotAfter.UTC().Format("2006-01-02 15:04 UTC"))
	return nil
}

func (s *Server) certsRenewCommand(c *call) error {
	host, err := certHost(c, certsRenewUsage)
	if err != nil {
		return err
	}
	if s.https.renewer == nil {
		return c.fail("certs:renew %s: %s", host, s.https.off)
	}
	if ok, why := certs.Eligible(host); !ok {
		return c.fail("certs:renew %s: %s", host, why)
	}
	unlock, err := s.lockHostApp(c.sess.Context(), host)
	if err != nil {
		return c.fail("certs:renew %s: %v", host, err)
	}
	defer unlock()
	if err := s.https.renewer.Renew(c.log.WithContext(c.sess.Context()), host); err != nil {
		return c.fail("certs:renew %s: %s", host, oneLine(err.Error()))
	}
	m, err := s.https.store.Meta(host)
	if err != nil {
		return c.internal(err, "cannot read the certificate of %s", host)
	}
	fmt.Fprintf(c.stdout(), "%s: certificate from %s, valid until %s, installed on every node\n", host, m.Issuer,
		m.NotAfter.UTC().Format("2006-01-02 15:04 UTC"))
	return nil
}

func (s *Server) certsRemoveCommand(c *call) error {
	host, err := certHost(c, certsRemoveUsage)
	if err != nil {
		return err
	}
	if _, err := s.https.store.Meta(host); errors.Is(err, fs.ErrNotExist) {
		return c.fail("certs:remove %s: the receiver holds no certificate for it", host)
	}
	unlock, err := s.lockHostApp(c.sess.Context(), host)
	if err != nil {
		return c.fail("certs:remove %s: %v", host, err)
	}
	defer unlock()
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	if err := s.fleet.RemoveCert(c.sess.Context(), targets, host); err != nil {
		return c.fail("certs:remove %s: %s; the receiver keeps it, run certs:remove again", host, oneLine(err.Error()))
	}
	if err := s.https.store.Remove(host); err != nil {
		return c.internal(err, "the certificate of %s is off the nodes but could not be removed from the receiver", host)
	}
	c.log.Info().Str("host", host).Msg("certificate removed")
	fmt.Fprintf(c.stdout(), "%s: certificate removed; it is served over plain HTTP only (the next deploy of its app asks the CA again unless https is off)\n", host)
	return nil
}
