package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// HTTPS on the nodes (issue 19): the receiver's ACME answers and
// certificates, placed on every node of an instance through the agent's
// `challenge` and `cert` verbs. Keys travel on stdin only.

// CertFile is a host's certificate chain (leaf first) and private key,
// PEM, as the nodes get them. It never prints its key.
type CertFile struct {
	Host  string
	Chain []byte
	Key   []byte
}

func (c CertFile) String() string { return "certificate for " + c.Host }

// PutChallenge places an HTTP-01 answer on every node and returns only
// when all hold it; when any node fails, it is removed from all.
func (f *Fleet) PutChallenge(ctx context.Context, nodes []Node, token, keyAuth string) error {
	err := f.onEveryNodeIn(ctx, nodes, func() []byte { return []byte(keyAuth + "\n") },
		agentapi.Challenge{Op: agentapi.ChallengePut, Token: token})
	if err != nil {
		_ = f.RemoveChallenge(context.WithoutCancel(ctx), nodes, token)
		return err
	}
	return nil
}

// RemoveChallenge removes an HTTP-01 answer from every node it can reach.
func (f *Fleet) RemoveChallenge(ctx context.Context, nodes []Node, token string) error {
	return f.onEveryNode(ctx, nodes, agentapi.Challenge{Op: agentapi.ChallengeRemove, Token: token})
}

// InstallCert puts c on every node, all or nothing: staged everywhere,
// tested with nginx -t everywhere, then committed (switched and nginx
// reloaded) everywhere. Until the commit, a failure on any node unstages
// it everywhere and every node keeps serving the certificate it had. A
// commit that fails on one node after others switched is retried by the
// next install (the receiver keeps the certificate and says so).
func (f *Fleet) InstallCert(ctx context.Context, nodes []Node, c CertFile) error {
	id := agentapi.CertID(c.Chain)
	req := func(op string) agentapi.Request { return agentapi.Cert{Op: op, Host: c.Host, ID: id} }
	bundle := func() []byte { return append(append([]byte{}, c.Chain...), c.Key...) }
	err := f.onEveryNodeIn(ctx, nodes, bundle, req(agentapi.CertStage))
	if err == nil {
		err = f.onEveryNode(ctx, nodes, req(agentapi.CertTest))
	}
	if err != nil {
		_ = f.onEveryNode(context.WithoutCancel(ctx), nodes, req(agentapi.CertUnstage))
		return fmt.Errorf("host %s: the certificate was not installed, every node keeps the one it had: %w", c.Host, err)
	}
	// Past this point every node has accepted it: a node that fails now
	// is one that broke in between; the others keep the new one.
	if err := f.onEveryNode(context.WithoutCancel(ctx), nodes, req(agentapi.CertCommit)); err != nil {
		return fmt.Errorf("host %s: the certificate is live on some nodes only: %w", c.Host, err)
	}
	return nil
}

// RemoveCert stops HTTPS for host on every node and removes its
// certificate there.
func (f *Fleet) RemoveCert(ctx context.Context, nodes []Node, host string) error {
	return f.onEveryNode(ctx, nodes, agentapi.Cert{Op: agentapi.CertRemove, Host: host})
}

// CertHolders asks every node which certificates it serves: host ->
// certificate ID -> the names of the nodes serving it. Nodes that do not
// answer are in the error, the others in the map.
func (f *Fleet) CertHolders(ctx context.Context, nodes []Node) (map[string]map[string][]string, error) {
	lists := make([][]agent.CertInfo, len(nodes))
	errs := make([]error, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		c, err := f.connect(ctx, n)
		var out bytes.Buffer
		if err == nil {
			err = c.agent(ctx, nil, &out, agentapi.Cert{Op: agentapi.CertList}.Argv()...)
		}
		if err == nil {
			err = json.Unmarshal(out.Bytes(), &lists[i])
		}
		if err != nil {
			errs[i] = fmt.Errorf("node %s: %w", n.Name, err)
		}
	})
	holders := map[string]map[string][]string{}
	for i, list := range lists {
		for _, ci := range list {
			if holders[ci.Host] == nil {
				holders[ci.Host] = map[string][]string{}
			}
			holders[ci.Host][ci.ID] = append(holders[ci.Host][ci.ID], nodes[i].Name)
		}
	}
	return holders, errors.Join(errs...)
}

// installSetupCerts gives a node that was just set up every certificate
// the receiver holds (SetupCerts), one at a time.
func (f *Fleet) installSetupCerts(ctx context.Context, n Node, say func(string)) error {
	if f.SetupCerts == nil {
		return nil
	}
	certs, err := f.SetupCerts()
	if err != nil {
		return err
	}
	var failed []string
	for _, c := range certs {
		if err := f.InstallCert(ctx, []Node{n}, c); err != nil {
			failed = append(failed, c.Host)
			say(fmt.Sprintf("https: %v", err))
		}
	}
	if len(certs) > 0 {
		say(fmt.Sprintf("https: %d of %d certificates installed", len(certs)-len(failed), len(certs)))
	}
	if len(failed) > 0 {
		return fmt.Errorf("certificates not installed for %s", strings.Join(failed, ", "))
	}
	return nil
}

// onEveryNodeIn is onEveryNode with stdin (made afresh for each node).
func (f *Fleet) onEveryNodeIn(ctx context.Context, nodes []Node, stdin func() []byte, req agentapi.Request) error {
	errs := make([]error, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		c, err := f.connect(ctx, n)
		var in io.Reader // nil, not an empty reader: the verbs without input
		if b := stdin(); b != nil {
			in = bytes.NewReader(b)
		}
		if err == nil {
			err = c.agent(ctx, in, nil, req.Argv()...)
		}
		if err != nil {
			errs[i] = fmt.Errorf("node %s: %w", n.Name, err)
		}
	})
	return errors.Join(errs...)
}
