package apps

import (
	"fmt"
	"strings"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// Target is the APP[@BRANCH] an operation works on: an app and one of its
// instances (the branch's).
type Target struct {
	App, Branch, Instance string
}

func (t Target) String() string { return t.App + "@" + t.Branch }

// ParseTarget validates APP[@BRANCH] (the branch defaults to main) before
// anything uses it.
func ParseTarget(arg string) (Target, error) {
	app, branch, hasBranch := strings.Cut(arg, "@")
	if !hasBranch {
		branch = "main"
	}
	if err := keystore.ValidAppName(app); err != nil {
		return Target{}, fmt.Errorf("invalid app name %q: use lowercase letters, digits and dashes, starting with a letter", app)
	}
	if err := names.CheckBranch(branch); err != nil {
		return Target{}, fmt.Errorf("invalid branch %q in %q: %w", branch, arg, err)
	}
	return Target{App: app, Branch: branch, Instance: names.Instance(branch)}, nil
}
