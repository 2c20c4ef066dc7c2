package testbed

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips the test when this machine cannot run a test bed. With
// CI=true it fails instead: CI must never pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	reason := missingPrerequisite()
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testbed: %s (CI=true, so not skipping)", reason)
	}
	t.Skipf("testbed: %s", reason)
}

func missingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	for _, tool := range []string{"ip", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "needs " + tool + " in PATH"
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return "needs " + sshdPath + " (apt-get install openssh-server)"
	}
	if _, err := detectCgroups(); err != nil {
		return err.Error()
	}
	return ""
}

// New is Start for tests: it calls Require and CleanupStale(opt.Prefix),
// defaults WorkDir to t.TempDir(), and registers Close with t.Cleanup, so
// teardown runs also after a failed test. When the test failed, the nodes'
// logs are added to its output first.
func New(t testing.TB, opt Options) *Bed {
	t.Helper()
	Require(t)
	if opt.WorkDir == "" {
		opt.WorkDir = t.TempDir()
	}
	opt, err := opt.InSlot()
	if err != nil {
		t.Fatal(err)
	}
	if err := CleanupStale(opt.Prefix); err != nil {
		t.Fatalf("clean up stale test bed: %v", err)
	}
	b, err := Start(t.Context(), opt)
	if err != nil {
		t.Fatalf("start test bed: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range b.Nodes {
				t.Logf("node %s (%s) logs:%s", n.Name, n.IP, n.diagnostics())
			}
		}
		if err := b.Close(); err != nil {
			t.Errorf("close test bed: %v", err)
		}
	})
	return b
}
