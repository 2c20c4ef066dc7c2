package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
)

// netnsDir is where ip(8) keeps named network namespaces.
const netnsDir = "/run/netns"

func createBridge(ctx context.Context, name string, addr netip.Prefix) error {
	steps := [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", addr.String(), "dev", name},
		{"link", "set", name, "up"},
	}
	return runIPSteps(ctx, steps)
}

// createNodeNetwork makes namespace ns and a veth pair: the host end joins
// bridge, the other end becomes eth0 in ns with addr. There is deliberately
// no default route: nodes reach the subnet and nothing else.
func createNodeNetwork(ctx context.Context, ns, hostVeth, peerVeth, bridge string, addr netip.Prefix) error {
	steps := [][]string{
		{"link", "add", hostVeth, "type", "veth", "peer", "name", peerVeth},
		{"link", "set", peerVeth, "netns", ns},
		{"link", "set", hostVeth, "master", bridge, "up"},
		{"-n", ns, "link", "set", peerVeth, "name", "eth0"},
		{"-n", ns, "addr", "add", addr.String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	}
	return runIPSteps(ctx, steps)
}

func runIPSteps(ctx context.Context, steps [][]string) error {
	for _, args := range steps {
		if _, err := runCommand(ctx, "ip", args...); err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
	}
	return nil
}

func createNetns(ctx context.Context, name string) error {
	if _, err := runCommand(ctx, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

// deleteNetns removes a named network namespace if it exists. Deleting it also
// destroys the veth end inside, and with it the host end.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := runCommand(ctx, "ip", "netns", "delete", name); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

// deleteLink removes a link of the root network namespace if it exists.
func deleteLink(ctx context.Context, name string) error {
	if !linkExists(name) {
		return nil
	}
	if _, err := runCommand(ctx, "ip", "link", "delete", name); err != nil {
		// Deleting one veth end removes the other; it may have gone meanwhile.
		if !linkExists(name) {
			return nil
		}
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// listNetns returns the names of all named network namespaces.
func listNetns() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: list namespaces: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// listLinks returns the names of all links of the root network namespace.
func listLinks() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("testbed: list links: %w", err)
	}
	names := make([]string, 0, len(ifaces))
	for _, i := range ifaces {
		names = append(names, i.Name)
	}
	return names, nil
}
