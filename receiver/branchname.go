package receiver

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
)

// maxInstanceName is the longest instance name the node agent accepts
// (nodes/agent's instanceName): an instance is a directory on every node.
const maxInstanceName = 200

// deployableBranch is what a branch that deploys may be called. Git allows
// far more ('$', ';', '`', '|', quotes, braces, any Unicode, look-alikes of
// "main" included), but a branch name becomes an instance directory on the
// nodes, a host name label and part of every line about it.
var deployableBranch = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// checkBranchName refuses a branch that cannot be deployed, before the push
// waits for the app's lock or builds anything.
func checkBranchName(branch string) error {
	if !deployableBranch.MatchString(branch) {
		return fmt.Errorf("branch %s cannot be deployed: a branch name becomes a directory and a host name on the nodes, so it may hold only ASCII letters, digits, '.', '_', '-' and '/', starting with a letter or digit; push it under another name", showName(branch))
	}
	// git's own rules (git check-ref-format) for these characters. git
	// checks them only after pre-receive, when the deploy is already live.
	if strings.Contains(branch, "..") || strings.HasSuffix(branch, ".") || strings.HasSuffix(branch, "/") ||
		slices.ContainsFunc(strings.Split(branch, "/"), func(c string) bool {
			return c == "" || strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock")
		}) {
		return fmt.Errorf("branch %s is not a valid git branch name (no \"..\", \"//\", component starting with '.' or ending with \".lock\", and no '.' or '/' at the end); push it under another name", showName(branch))
	}
	if n := len(builder.InstanceName(branch)); n > maxInstanceName {
		return fmt.Errorf("branch %s is too long to deploy: it is %d characters and its instance name would be %d, more than %d (each '/' counts 3); push it under a shorter name", showName(branch), len(branch), n, maxInstanceName)
	}
	return nil
}

// showName quotes a name a client sent for an error message: escaped to
// ASCII, so a Cyrillic 'а' shows as \u0430 instead of passing for an 'a',
// and cut short when it is long.
func showName(s string) string {
	if max := 60; len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		return strconv.QuoteToASCII(s[:max]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// checkRefUpdates refuses, before anything is deployed, branch updates that
// git would refuse only after pre-receive (when their deploy would already
// be live with no branch to show for it): a name that cannot be deployed,
// the same branch twice, and a branch next to one it would have to be a
// directory of, or contain ("feature" beside "feature/x": git stores refs
// as files). existing are the refs the repository holds now; one this push
// deletes still counts, as git may try the creation first.
func checkRefUpdates(updates []hooks.RefUpdate, existing []string) error {
	refs := slices.Clone(existing)
	seen := map[string]bool{}
	for _, u := range updates {
		if seen[u.Ref] {
			return fmt.Errorf("%s is updated twice in one push; push it once", showName(shortRef(u.Ref)))
		}
		seen[u.Ref] = true
		b := u.Branch()
		if b == "" || u.IsDelete() {
			continue
		}
		if err := checkBranchName(b); err != nil {
			return err
		}
		for _, r := range refs {
			if strings.HasPrefix(r, u.Ref+"/") || strings.HasPrefix(u.Ref, r+"/") {
				return fmt.Errorf("branch %s cannot be created while %s exists: git stores one as a directory of the other; delete %s first or push under another name",
					showName(b), showName(shortRef(r)), showName(shortRef(r)))
			}
		}
		refs = append(refs, u.Ref)
	}
	return nil
}
