//go:build e2e

// Package realapps deploys applications nobody here wrote, taken from
// Debian's packages, the way a user would copy them into an app: the Silver
// Lining tutorial's Django layout and WordPress. It is a package of its own
// so that `go test` runs it beside cmd/gitreceive's long e2e suite.
package realapps

import (
	"os"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

var bin string

func TestMain(m *testing.M) { os.Exit(receivertest.RunWithBinary(m, &bin)) }

var mustContain = receivertest.MustContain
