package agent

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gitreceive/gitreceive/services"
)

// packagesTimeout bounds one `packages` run: apt waits for its lock, updates
// its lists and installs within it, or the push fails and says so.
const packagesTimeout = 10 * time.Minute

// installPackages is `packages PACKAGE...` (names checked by agentapi): what of an app's packages =
// line is missing is installed (as root: the receiver's packages_allowed
// decided what a deployer may ask for), saying what it installed. A node
// whose root is moved serves no apps and installs nothing.
func installPackages(ctx context.Context, root string, pkgs []string, stdout io.Writer) error {
	if root != defaultRoot {
		fmt.Fprintf(stdout, "not installed: this node's root is moved (%s)\n", RootEnv)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, packagesTimeout)
	defer cancel()
	if err := services.EnsurePackages(ctx, stdout, pkgs); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("installing packages took more than %s: %w", packagesTimeout, err)
		}
		return err
	}
	return nil
}
