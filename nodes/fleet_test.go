//go:build e2e

package nodes_test

// The inventory against real nodes: network namespaces running OpenSSH.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// fleetWithBed makes a receiver data dir and a bed of count nodes that
// accept the receiver's client key.
func fleetWithBed(t *testing.T, prefix, subnet string, count int) (*nodes.Fleet, *testbed.Bed, string) {
	t.Helper()
	testbed.Require(t)
	data := t.TempDir()
	fleet := nodes.OpenFleet(data)
	line, err := fleet.AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: prefix, Subnet: subnet, Count: count, AuthorizedKeys: []string{line}})
	return fleet, bed, data
}

func run(fleet *nodes.Fleet, local bool, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := fleet.Command(ctx, args, &out, &errOut, local)
	return out.String(), errOut.String(), code
}

func TestAddListCheckRemove(t *testing.T) {
	fleet, bed, data := fleetWithBed(t, "nf", "10.77.210.0/24", 2)
	n1, n2 := bed.Nodes[0], bed.Nodes[1]

	out, errOut, code := run(fleet, true, "add", "web1", "root@"+n1.IP)
	if code != 0 {
		t.Fatalf("add web1: %s", errOut)
	}
	for _, want := range []string{"added node web1 (root@" + n1.IP + ")", gossh.FingerprintSHA256(n1.HostKey), "trusted on first use", "ssh-ed25519 "} {
		if !strings.Contains(out, want) {
			t.Fatalf("add output lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, code := run(fleet, true, "add", "web2", n2.IP+":22", "--services", "--host-key-fingerprint", gossh.FingerprintSHA256(n2.HostKey)); code != 0 {
		t.Fatalf("add web2 with fingerprint: %s", errOut)
	}
	out, _, _ = run(fleet, false, "list")
	if !strings.Contains(out, "web1  root@"+n1.IP) || !strings.Contains(out, "web2  root@"+n2.IP+"  yes") {
		t.Fatalf("list:\n%s", out)
	}
	out, errOut, code = run(fleet, false, "check")
	if code != 0 || strings.Count(out, " ok (") != 2 || !strings.Contains(out, " GB") {
		t.Fatalf("check: %d\n%s%s", code, out, errOut)
	}

	// A node whose host key changed is refused, by name.
	kh := filepath.Join(data, "known_hosts")
	orig, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	swapped := strings.Replace(string(orig), marshal(n1.HostKey), marshal(n2.HostKey), 1)
	if err := os.WriteFile(kh, []byte(swapped), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = run(fleet, false, "check", "web1")
	if code == 0 || !strings.Contains(out, "the host key of node web1 ("+n1.IP+":22) changed") {
		t.Fatalf("changed host key: %d\n%s", code, out)
	}
	if err := os.WriteFile(kh, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// Changing the fleet is local only.
	if _, errOut, code := run(fleet, false, "remove", "web1"); code == 0 || !strings.Contains(errOut, "usage") {
		t.Fatalf("remove over SSH: %d %s", code, errOut)
	}
	if _, errOut, code := run(fleet, true, "remove", "web1"); code != 0 {
		t.Fatalf("remove: %s", errOut)
	}
	out, _, _ = run(fleet, true, "list")
	if strings.Contains(out, "web1") {
		t.Fatalf("web1 still listed:\n%s", out)
	}
	if b, _ := os.ReadFile(kh); strings.Contains(string(b), n1.IP) {
		t.Fatalf("web1's host key still pinned:\n%s", b)
	}
}

func TestBadAddsChangeNothing(t *testing.T) {
	fleet, bed, data := fleetWithBed(t, "nb", "10.77.211.0/24", 2)
	n1, n2 := bed.Nodes[0], bed.Nodes[1]
	if _, errOut, code := run(fleet, true, "add", "web1", "root@"+n1.IP); code != 0 {
		t.Fatalf("add: %s", errOut)
	}
	before := snapshot(t, data)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "Web_1", n1.IP}, "invalid node name"},
		{[]string{"add", "web2", n1.IP + ":99999"}, "invalid port"},
		{[]string{"add", "web2", n1.IP + ":x"}, "invalid port"},
		{[]string{"add", "web2", "ro;ot@" + n1.IP}, "invalid user"},
		{[]string{"add", "web2", "bad_host!"}, "invalid host"},
		{[]string{"add", "web1", "root@" + n1.IP}, "already exists"},
		{[]string{"add", "web2", "root@" + n1.IP}, "is already node"},
		// An address in the bed's subnet where no node lives.
		{[]string{"add", "web2", "root@10.77.211.250"}, "cannot reach node web2"},
		{[]string{"add", "web3", n1.IP + ":2222"}, "cannot reach node web3"},
		{[]string{"add", "web2", n2.IP, "--host-key-fingerprint", gossh.FingerprintSHA256(n1.HostKey)}, "not the " + gossh.FingerprintSHA256(n1.HostKey) + " you gave"},
		{[]string{"add", "web2", n1.IP, "--host-key-fingerprint", "md5:aa"}, "SHA256:"},
		{[]string{"add", "web2"}, "usage"},
		{[]string{"remove", "nope"}, `no node "nope"`},
		{[]string{"check", "nope"}, `no node "nope"`},
	} {
		_, errOut, code := run(fleet, true, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: want failure mentioning %q, got %d %q", tc.args, tc.want, code, errOut)
		}
	}
	if after := snapshot(t, data); after != before {
		t.Fatalf("a refused command changed the inventory:\nbefore %s\nafter  %s", before, after)
	}
}

func marshal(k gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

func snapshot(t *testing.T, data string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range []string{"nodes.ini", "known_hosts"} {
		content, err := os.ReadFile(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(name + ":" + string(content))
	}
	return b.String()
}
