//go:build e2e

package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Test-only entry points. Tests on a test-bed node copy this test binary
// into the node (its /tmp is not the host's) and run it there with
// testHelperEnv naming a helper; the helper reads its arguments (JSON) from
// testHelperArgsEnv, since the test bed's Exec has no stdin, prints its
// error on stderr and exits non-zero on failure. Add a case per helper.
const (
	testHelperEnv     = "GITRECEIVE_AGENT_TEST_HELPER"
	testHelperArgsEnv = "GITRECEIVE_AGENT_TEST_ARGS"
)

func TestMain(m *testing.M) {
	// On a test node this binary is the agent: the emperor's vassal
	// wrapper links to it, and `run` and update_fetch re-execute it.
	if filepath.Base(os.Args[0]) == VassalWrapperName {
		fmt.Fprintln(os.Stderr, VassalExec(os.Args[1:]))
		os.Exit(1)
	}
	if len(os.Args) > 2 && os.Args[1] == "node" && os.Args[2] == "enter" {
		fmt.Fprintln(os.Stderr, enter(os.Args[3:]))
		os.Exit(127)
	}
	switch helper := os.Getenv(testHelperEnv); helper {
	case "":
		os.Exit(m.Run())
	case "route", "unroute":
		os.Exit(routeHelper(helper, os.Getenv(testHelperArgsEnv)))
	case "start", "stop", "demote":
		os.Exit(runtimeHelper(helper, os.Getenv(testHelperArgsEnv)))
	case "run", "destroy":
		os.Exit(runScriptHelper(helper, os.Getenv(testHelperArgsEnv)))
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: no such test helper\n", testHelperEnv, helper)
		os.Exit(2)
	}
}
