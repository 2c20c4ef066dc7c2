package apps

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
	"github.com/gitreceive/gitreceive/receiver/certs"
	"github.com/rs/zerolog"
)

// The operator's certificate operations (admin commands certs,
// certs:add, certs:renew, certs:remove).

// maxBundleUpload bounds what AddCert reads (CheckBundle's own bound + 1).
const maxBundleUpload = 1<<20 + 1

// CertRow is one certificate the receiver holds, for `certs`.
type CertRow struct {
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

// Certs lists every certificate the receiver holds, by host, with the
// nodes that serve it; note says which nodes did not answer.
func (a *Apps) Certs(ctx context.Context) (rows []CertRow, note string, err error) {
	hosts, err := a.https.store.Hosts()
	if err != nil {
		return nil, "", Internal(err, "cannot read the certificates")
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return nil, "", Internal(err, "cannot read the node inventory")
	}
	holders, err := a.fleet.CertHolders(ctx, targets)
	if err != nil {
		note = oneLine(err.Error())
	}
	rows = []CertRow{}
	for _, host := range hosts {
		row, err := a.certRow(host, holders, len(targets))
		if err != nil {
			return nil, "", Internal(err, "cannot read the certificate of %s", host)
		}
		rows = append(rows, row)
	}
	return rows, note, nil
}

func (a *Apps) certRow(host string, holders map[string]map[string][]string, total int) (CertRow, error) {
	m, err := a.https.store.Meta(host)
	if err != nil {
		return CertRow{}, err
	}
	row := CertRow{Host: host, Source: string(m.Source), Issuer: m.Issuer, NotAfter: m.NotAfter, Renewed: m.Renewed,
		Nodes: []string{}, NodesTotal: total, LastError: m.LastError, NextAttempt: m.NextAttempt}
	row.App, row.Instance, _ = a.hostInstance(host)
	if !m.NotAfter.IsZero() {
		cert, err := a.https.store.Get(host)
		if err != nil {
			return CertRow{}, err
		}
		if on := holders[host][agentapi.CertID(cert.Chain)]; on != nil {
			row.Nodes = on
		}
	}
	return row, nil
}

// checkCertHost reads the HOST of certs:add/renew/remove.
func checkCertHost(host string) (string, error) {
	h := canonicalHost(host)
	if !names.IsHost(h) {
		return "", Failf("%s is not a host name", names.Show(host))
	}
	return h, nil
}

// AddCert installs an operator's certificate for host, read from bundle:
// checked, spread to every node all-or-nothing, then stored; ACME never
// touches the host again.
func (a *Apps) AddCert(ctx context.Context, host string, bundle io.Reader) (certs.Meta, error) {
	host, err := checkCertHost(host)
	if err != nil {
		return certs.Meta{}, err
	}
	data, err := io.ReadAll(io.LimitReader(bundle, maxBundleUpload))
	if err != nil {
		return certs.Meta{}, Failf("reading the bundle from stdin: %v", err)
	}
	now := time.Now()
	b, err := certs.CheckBundle(data, host, now)
	if err != nil {
		return certs.Meta{}, Failf("certs:add %s: %v; nothing was changed", host, err)
	}
	unlock, err := a.lockHostApp(ctx, host)
	if err != nil {
		return certs.Meta{}, Failf("certs:add %s: %v", host, err)
	}
	defer unlock()
	cert := certs.Cert{
		Meta: certs.Meta{Host: host, Source: certs.SourceOperator, Issuer: b.Leaf.Issuer.CommonName,
			NotBefore: b.Leaf.NotBefore, NotAfter: b.Leaf.NotAfter, Renewed: now},
		Chain: b.Chain, Key: b.Key,
	}
	if err := a.installCert(ctx, cert); err != nil {
		return certs.Meta{}, Failf("certs:add %s: %s", host, oneLine(err.Error()))
	}
	if err := a.https.store.Put(cert); err != nil {
		return certs.Meta{}, Internal(err, "the certificate of %s is on the nodes but could not be stored", host)
	}
	zerolog.Ctx(ctx).Info().Str("host", host).Str("issuer", cert.Meta.Issuer).Time("not_after", cert.Meta.NotAfter).Msg("operator certificate added")
	return cert.Meta, nil
}

// RenewCert gets a new ACME certificate for host now and installs it on
// every node.
func (a *Apps) RenewCert(ctx context.Context, host string) (certs.Meta, error) {
	host, err := checkCertHost(host)
	if err != nil {
		return certs.Meta{}, err
	}
	if a.https.renewer == nil {
		return certs.Meta{}, Failf("certs:renew %s: %s", host, a.https.off)
	}
	if ok, why := certs.Eligible(host); !ok {
		return certs.Meta{}, Failf("certs:renew %s: %s", host, why)
	}
	unlock, err := a.lockHostApp(ctx, host)
	if err != nil {
		return certs.Meta{}, Failf("certs:renew %s: %v", host, err)
	}
	defer unlock()
	if err := a.https.renewer.Renew(ctx, host); err != nil {
		return certs.Meta{}, Failf("certs:renew %s: %s", host, oneLine(err.Error()))
	}
	m, err := a.https.store.Meta(host)
	if err != nil {
		return certs.Meta{}, Internal(err, "cannot read the certificate of %s", host)
	}
	return m, nil
}

// RemoveCert takes host's certificate off every node (HTTPS stops there),
// then out of the receiver.
func (a *Apps) RemoveCert(ctx context.Context, host string) error {
	host, err := checkCertHost(host)
	if err != nil {
		return err
	}
	if _, err := a.https.store.Meta(host); errors.Is(err, fs.ErrNotExist) {
		return Failf("certs:remove %s: the receiver holds no certificate for it", host)
	}
	unlock, err := a.lockHostApp(ctx, host)
	if err != nil {
		return Failf("certs:remove %s: %v", host, err)
	}
	defer unlock()
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return Internal(err, "cannot read the node inventory")
	}
	if err := a.fleet.RemoveCert(ctx, targets, host); err != nil {
		return Failf("certs:remove %s: %s; the receiver keeps it, run certs:remove again", host, oneLine(err.Error()))
	}
	if err := a.https.store.Remove(host); err != nil {
		return Internal(err, "the certificate of %s is off the nodes but could not be removed from the receiver", host)
	}
	zerolog.Ctx(ctx).Info().Str("host", host).Msg("certificate removed")
	return nil
}
