package receiver

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gitreceive/gitreceive/receiver/apps"
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

func (s *Server) certsCommand(c *call) error {
	if err := noWords(c.argv, certsUsage); err != nil {
		return err
	}
	rows, note, err := s.apps.Certs(c.ctx)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintf(c.stderr(), "note: %s\n", note)
	}
	if c.argv.bool("json") {
		return printJSON(c, rows)
	}
	writeCertRows(c.stdout(), rows)
	return nil
}

func writeCertRows(w io.Writer, rows []apps.CertRow) {
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
			lastErr, _, _ = strings.Cut(r.LastError, "\n")
		}
		nodes := fmt.Sprintf("%d/%d", len(r.Nodes), r.NodesTotal)
		if len(r.Nodes) > 0 {
			nodes += " (" + strings.Join(r.Nodes, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, instance, r.Source, issuer, notAfter, nodes, lastErr)
	}
	tw.Flush()
}

// printCert says where a certificate now is.
func printCert(c *call, m certs.Meta) {
	fmt.Fprintf(c.stdout(), "%s: certificate from %s, valid until %s, installed on every node\n", m.Host, m.Issuer,
		m.NotAfter.UTC().Format("2006-01-02 15:04 UTC"))
}

func (s *Server) certsAddCommand(c *call) error {
	if len(c.args) != 2 {
		return c.fail("usage: %s", certsAddUsage)
	}
	m, err := s.apps.AddCert(c.ctx, c.args[1], c.sess)
	if err != nil {
		return err
	}
	printCert(c, m)
	return nil
}

func (s *Server) certsRenewCommand(c *call) error {
	if len(c.args) != 2 {
		return c.fail("usage: %s", certsRenewUsage)
	}
	m, err := s.apps.RenewCert(c.ctx, c.args[1])
	if err != nil {
		return err
	}
	printCert(c, m)
	return nil
}

func (s *Server) certsRemoveCommand(c *call) error {
	if len(c.args) != 2 {
		return c.fail("usage: %s", certsRemoveUsage)
	}
	if err := s.apps.RemoveCert(c.ctx, c.args[1]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout(), "%s: certificate removed; it is served over plain HTTP only (the next deploy of its app asks the CA again unless https is off)\n",
		strings.ToLower(strings.TrimSuffix(c.args[1], ".")))
	return nil
}
