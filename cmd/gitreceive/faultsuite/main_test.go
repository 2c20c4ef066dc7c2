//go:build e2e

// Package faultsuite breaks deploys on real test nodes at every step (a
// node down, links cut, the receiver killed, the pusher gone, pushes at
// once, load) and checks that every node ends up on one release. It is a
// package of its own so that `go test` runs it beside cmd/gitreceive's other
// e2e tests; nodes' deploy_test.go tests the same steps on a scripted fake.
package faultsuite

import (
	"os"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

var bin string

func TestMain(m *testing.M) { os.Exit(receivertest.RunWithBinary(m, &bin)) }

// The shared helpers, under the names these tests use.
var (
	requireStack = receivertest.RequireStack
	get          = receivertest.Get
	mustContain  = receivertest.MustContain
)
