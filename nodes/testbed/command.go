package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cleanEnv is the environment of every command we run, so that nothing of the
// test's environment (CI tokens, GOFLAGS, ...) leaks into nodes.
var cleanEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
}

// runCommand runs a host command and returns its stdout; a failure names the
// command and carries its stderr.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runCommandShown(ctx, nil, name, args...)
}

// runCommandShown is runCommand naming the command shown in a failure
// (when not nil) rather than name and args: a wrapper's arguments would
// bury what was asked for.
func runCommandShown(ctx context.Context, shown []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if shown == nil {
		shown = cmd.Args
	}
	cmd.Env = cleanEnv
	// A killed command's children may hold the pipes open; don't wait forever.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(shown, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Exec runs args inside all of node's namespaces (as root, in its mount,
// pid, net, uts, ipc and cgroup namespaces, cwd /) and in its cgroups, as
// sshd's sessions run, and returns the command's stdout. On failure the
// error names the node and command and includes stderr. It is meant for
// tests that look at or break a node: kill sshd, fill a disk.
func (b *Bed) Exec(ctx context.Context, node *Node, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("testbed: exec on %s: no command", node.Name)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("testbed: exec %q on %s: bed is closed", args, node.Name)
	}
	// nsenter enters the node's cgroup namespace but moves into no cgroup:
	// sh joins the node's cgroups first (where sshd's sessions run), then
	// becomes nsenter.
	nsenter := append([]string{"nsenter", "--target", strconv.Itoa(node.PID), "--all", "--"}, args...)
	out, err := runCommandShown(ctx, args, "sh", joinedCommand(b.cgroups.joinFiles(node.Name, true), nsenter...)...)
	if err != nil {
		return out, fmt.Errorf("testbed: exec on %s: %w", node.Name, err)
	}
	return out, nil
}

// StartSSHD starts sshd again on node after a test killed it (it detaches;
// the node's init reaps it), so a test can check recovery after a fault.
func (b *Bed) StartSSHD(ctx context.Context, node *Node) error {
	_, err := b.Exec(ctx, node, sshdPath, "-E", "/var/log/sshd.log", "-f", configDirInNode+"/"+sshdConfigName)
	return err
}
