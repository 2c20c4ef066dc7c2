//go:build e2e

// Package httpse2e_test is HTTPS end to end (issue 19): a receiver in this
// process (so that its renewal job can run every second), two test-bed
// nodes, and a real ACME server (pebble, in process) whose DNS answers
// send its HTTP-01 validations to the nodes.
package httpse2e_test

import (
	"log/slog"
	"os"
	"testing"

	legolog "github.com/go-acme/lego/v5/log"

	"github.com/gitreceive/gitreceive/receiver/certs/certstest"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

var bin string

// legoLogs is lego's log (process-wide), kept for the scan for keys.
var legoLogs = &receivertest.LockedBuffer{}

func TestMain(m *testing.M) {
	certstest.SetEnv()
	legolog.SetDefault(slog.New(slog.NewTextHandler(legoLogs, nil)))
	os.Exit(receivertest.RunWithBinary(m, &bin))
}
