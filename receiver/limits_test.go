//go:build e2e

package receiver_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// banner is the server's first line, or "" when it closed the connection.
func banner(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// One address holding connections open before auth cannot lock everyone
// out: past the per-address cap its next connection is dropped, while
// another address is still served.
func TestUnauthenticatedConnectionsPerAddress(t *testing.T) {
	alice := startServer(t, time.Minute, nil)
	addr := alice.Server.Addr
	var idle []net.Conn
	for range 48 { // maxUnauthPerHost
		c := dialFrom(t, "127.0.0.2", addr)
		if b := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
			t.Fatalf("connection %d got %q", len(idle)+1, b)
		}
		idle = append(idle, c)
	}
	if b := banner(dialFrom(t, "127.0.0.2", addr)); b != "" {
		t.Fatalf("a 49th connection from one address got %q, want it dropped", b)
	}
	if b := banner(dialFrom(t, "127.0.0.3", addr)); !strings.HasPrefix(b, "SSH-2.0-") {
		t.Fatalf("another address got %q", b)
	}
	if r := alice.SSH(t, "", nil, "version"); r.Code != 0 {
		t.Fatalf("alice while 127.0.0.2 holds its cap: %s", r)
	}
	for _, c := range idle {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for b := banner(dialFrom(t, "127.0.0.2", addr)); !strings.HasPrefix(b, "SSH-2.0-"); b = banner(dialFrom(t, "127.0.0.2", addr)) {
		if time.Now().After(deadline) {
			t.Fatal("the address is still refused after its connections closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
