package nodes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// A conn whose connection died and whose node cannot be dialed again
// fails every later command with an error: it once kept a nil client, and
// the next command (undoing the deploy) crashed the receiver.
func TestSessionAfterFailedRedial(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := gossh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		serverSide, err := ln.Accept()
		if err != nil {
			return
		}
		cfg := &gossh.ServerConfig{NoClientAuth: true}
		cfg.AddHostKey(hostKey)
		if sc, _, _, err := gossh.NewServerConn(serverSide, cfg); err == nil {
			sc.Close() // the node goes away
		}
	}()
	clientSide, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc, chans, reqs, err := gossh.NewClientConn(clientSide, "node", &gossh.ClientConfig{
		User: "root", HostKeyCallback: gossh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	client := gossh.NewClient(cc, chans, reqs)
	_ = client.Wait()

	// No known_hosts in the data dir: dialing the node again fails.
	f := OpenFleet(t.TempDir())
	c := &sshTransport{fleet: f, node: Node{Name: "gone", User: "root", Host: "127.0.0.1", Port: 1}, client: client}
	for i := range 3 {
		if _, err := c.session(context.Background()); err == nil {
			t.Fatalf("session %d on a dead node succeeded", i)
		}
	}
}
