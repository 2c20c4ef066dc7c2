package receivertest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// LockedBuffer collects what several goroutines write (a server's log, a
// command's output read while it runs).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AddAdmin puts key in data's key store as an admin.
func AddAdmin(t testing.TB, data string, key Key) {
	t.Helper()
	if err := keystore.Open(apps.KeyStorePath(data)).Add(keystore.Key{Name: key.Name, Role: keystore.RoleAdmin, PublicKey: key.Signer.PublicKey()}); err != nil {
		t.Fatal(err)
	}
}

// ServeInProcess serves srv (made with data as its data dir) on a
// loopback port until the test ends, then shuts it down; logs is shown
// when the test failed.
func ServeInProcess(t testing.TB, srv *receiver.Server, data string, logs *LockedBuffer) Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return Server{Addr: ln.Addr().String(), DataDir: data}
}
