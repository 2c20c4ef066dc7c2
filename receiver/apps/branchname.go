package apps

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/names"
)

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
			return fmt.Errorf("%s is updated twice in one push; push it once", names.Show(shortRef(u.Ref)))
		}
		seen[u.Ref] = true
		b := u.Branch()
		if b == "" || u.IsDelete() {
			continue
		}
		if err := names.CheckBranch(b); err != nil {
			return err
		}
		for _, r := range refs {
			if strings.HasPrefix(r, u.Ref+"/") || strings.HasPrefix(u.Ref, r+"/") {
				return fmt.Errorf("branch %s cannot be created while %s exists: git stores one as a directory of the other; delete %s first or push under another name",
					names.Show(b), names.Show(shortRef(r)), names.Show(shortRef(r)))
			}
		}
		refs = append(refs, u.Ref)
	}
	return nil
}
