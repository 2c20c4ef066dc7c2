package nodes

import (
	"context"
	"fmt"
	"io"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// InstallPackages installs what of pkgs (an app's packages = line, checked
// against the receiver's packages_allowed) is missing on every node, in
// parallel, with their agents brought up to date first; each line they
// print goes to say. Every node must succeed: the error names each that
// did not.
func (f *Fleet) InstallPackages(ctx context.Context, nodes []Node, pkgs []string, say func(Node, string)) error {
	if len(pkgs) == 0 {
		return nil
	}
	return f.onNodes(nodes, say, func(n Node, w io.Writer) error {
		c, err := f.serviceConn(ctx, n)
		if err != nil {
			return err
		}
		if err := c.agent(ctx, nil, w, agentapi.Packages{Packages: pkgs}.Argv()...); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		return nil
	})
}
