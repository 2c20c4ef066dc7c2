package apps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// AppFromRepoArg turns the path git sends ("myapp", "/myapp.git", "~/myapp")
// into a validated app name. Nothing touches the disk before this passes.
func AppFromRepoArg(arg string) (string, error) {
	name := arg
	switch {
	case strings.HasPrefix(name, "~/"):
		name = name[2:]
	case strings.HasPrefix(name, "/"):
		name = name[1:]
	}
	name = strings.TrimSuffix(name, ".git")
	if err := keystore.ValidAppName(name); err != nil {
		return "", fmt.Errorf("invalid app name %s: use lowercase letters, digits and dashes, starting with a letter (at most 63)", names.Show(arg))
	}
	return name, nil
}

// Repos manages the bare repositories under DATA/repos.
type Repos struct{ dir string }

func (r Repos) Path(app string) string { return filepath.Join(r.dir, app+".git") }

func (r Repos) Exists(app string) bool {
	st, err := os.Stat(r.Path(app))
	return err == nil && st.IsDir()
}

// Ensure creates app's bare repository on first push (created reports
// that) and (re)installs the hook on every push, so hooks follow upgrades
// of the binary's script.
func (r Repos) Ensure(app string) (dir string, created bool, err error) {
	dir = r.Path(app)
	if !r.Exists(app) {
		if err := r.create(app); err != nil {
			return "", false, err
		}
		created = true
	}
	if err := installHook(dir); err != nil {
		return "", created, err
	}
	return dir, created, nil
}

// RemoveIfEmpty deletes app's repository when it holds no refs: a rejected
// first push must not leave an app behind.
func (r Repos) RemoveIfEmpty(app string) error {
	refs, err := listRefs(context.Background(), r.Path(app))
	if err != nil || len(refs) > 0 {
		return err
	}
	return os.RemoveAll(r.Path(app))
}

// create initialises the repository in a temporary directory and renames it
// into place, so a concurrent first push never sees a half-made repository.
func (r Repos) create(app string) error {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", r.dir, err)
	}
	tmp, err := os.MkdirTemp(r.dir, ".new-"+app+"-")
	if err != nil {
		return fmt.Errorf("creating repository for %s: %w", app, err)
	}
	defer os.RemoveAll(tmp)
	repo, err := git.PlainInitWithOptions(tmp, &git.PlainInitOptions{
		Bare:        true,
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return fmt.Errorf("initialising repository for %s: %w", app, err)
	}
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("reading config of new repository for %s: %w", app, err)
	}
	receive := cfg.Raw.Section("receive")
	// Verify every pushed object; a corrupt object must not reach the nodes.
	receive.SetOption("fsckObjects", "true")
	// Push options (git push -o) carry per-push settings such as node exclusion.
	receive.SetOption("advertisePushOptions", "true")
	// A reflog lets an operator see and recover every position a branch had.
	cfg.Raw.Section("core").SetOption("logAllRefUpdates", "always")
	if err := repo.SetConfig(cfg); err != nil {
		return fmt.Errorf("configuring repository for %s: %w", app, err)
	}
	// Deleting the production branch is refused by the pre-receive handler,
	// not receive.denyDeletes: that setting is repository-wide and would also
	// refuse `git push silver :feature-x`, which tears a staging instance down.
	err = os.Rename(tmp, r.Path(app))
	if err != nil && r.Exists(app) {
		return nil // another first push won the race; use its repository
	}
	if err != nil {
		return fmt.Errorf("creating repository for %s: %w", app, err)
	}
	return nil
}

// PointHeadAtProduction makes HEAD name the production branch that exists
// (main, else master), so `git clone` checks it out.
func (r Repos) PointHeadAtProduction(app string) error {
	repo, err := git.PlainOpen(r.Path(app))
	if err != nil {
		return err
	}
	head, err := repo.Reference(plumbing.HEAD, false)
	if err != nil {
		return err
	}
	if _, err := repo.Reference(head.Target(), false); err == nil {
		return nil
	}
	for _, b := range []string{"main", "master"} {
		name := plumbing.NewBranchReferenceName(b)
		if _, err := repo.Reference(name, false); err == nil {
			return repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, name))
		}
	}
	return nil
}

func installHook(repoDir string) error {
	dir := filepath.Join(repoDir, "hooks")
	path := filepath.Join(dir, "pre-receive")
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, hooks.PreReceiveScript) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading hook %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := atomicfile.Write(path, hooks.PreReceiveScript, 0o755); err != nil {
		return fmt.Errorf("installing hook: %w", err)
	}
	return nil
}
