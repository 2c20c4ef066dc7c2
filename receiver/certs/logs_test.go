package certs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	legolog "github.com/go-acme/lego/v5/log"

	"github.com/rs/zerolog"
)

// legoLogs is lego's log (a process-wide setting, made in TestMain) for
// the scans for keys.
var legoLogs = &lockedBuffer{}

// captureLogs gives a test a zerolog logger (in the returned context) with
// its own buffer.
func captureLogs(t *testing.T) (context.Context, *lockedBuffer) {
	t.Helper()
	buf := &lockedBuffer{}
	logger := zerolog.New(buf).Level(zerolog.DebugLevel)
	ctx, cancel := context.WithTimeout(logger.WithContext(context.Background()), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, buf
}

// TestMain sets what pebble reads from the environment once for the whole
// binary, so that the tests starting pebbles can run in parallel (most of
// their time is lego waiting for its next poll): no random sleeps before
// validating, no rejected nonces, no reused authorizations. Pebble's
// deliberate flakiness is for clients' retry code, which lego has and these
// tests are not about. Lego's log goes to legoLogs.
func TestMain(m *testing.M) {
	for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
		if err := os.Setenv(k, v); err != nil {
			panic(err)
		}
	}
	legolog.SetDefault(slog.New(slog.NewTextHandler(legoLogs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	os.Exit(m.Run())
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
