package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// launchInit starts the node's init in its network namespace, its cgroup
// subtree and fresh cgroup/mount/pid/uts/ipc namespaces, and records its pid.
func launchInit(ctx context.Context, n *Node, exe string, cgroups cgroupHost) error {
	spec, err := json.Marshal(initConfig{
		Hostname: n.Name,
		Cgroups:  cgroups.nodeMounts(),
		CgroupV2: cgroups.v2,
		EtcUpper: n.dirs.etcUpper,
		EtcWork:  n.dirs.etcWork,
		VarUpper: n.dirs.varUpper,
		VarWork:  n.dirs.varWork,
		UsrUpper: n.dirs.usrUpper,
		UsrWork:  n.dirs.usrWork,
		Srv:      n.dirs.srv,
		Root:     n.dirs.root,
		Home:     n.dirs.home,
	})
	if err != nil {
		return fmt.Errorf("testbed: node %s: %w", n.Name, err)
	}
	logFile, err := os.OpenFile(n.dirs.initLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testbed: node %s: %w", n.Name, err)
	}
	defer logFile.Close()

	// Not CommandContext: the node must outlive Start's context (and, for
	// testbedctl, this process). sh joins the node's cgroups and execs ip,
	// ip netns exec execs unshare in place, so the launcher's pid is
	// unshare's, and init is unshare's only child. unshare --cgroup roots
	// the node's cgroup namespace where sh has just moved.
	cmd := exec.Command("sh", joinedCommand(cgroups.joinFiles(n.Name, false),
		"ip", "netns", "exec", n.Namespace,
		"unshare", "--cgroup", "--mount", "--propagation", "private", "--uts", "--ipc", "--pid",
		"--fork", "--kill-child=SIGKILL", "--mount-proc", "--", exe)...)
	cmd.Env = append(slices.Clone(cleanEnv), initEnv+"="+string(spec))
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own session: a Ctrl-C meant for the test or testbedctl must not reach nodes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testbed: node %s: start init: %w", n.Name, err)
	}
	n.launcher = cmd
	n.launcherDone = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.launcherDone)
	}()

	pid, err := findChild(ctx, cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("testbed: node %s: find init pid: %w%s", n.Name, err, n.diagnostics())
	}
	n.PID = pid
	if cgroups.v2 {
		if err := leaveNodeCgroup(cmd.Process.Pid); err != nil {
			return fmt.Errorf("testbed: node %s: move the launcher (pid %d) out of the node's cgroup: %w", n.Name, cmd.Process.Pid, err)
		}
	}
	return nil
}

// waitForSSHD polls until the node's sshd sends its banner, the node's init
// dies, or ctx ends.
func waitForSSHD(ctx context.Context, n *Node) error {
	addr := net.JoinHostPort(n.IP, "22")
	var lastErr error
	for attempt := 0; attempt < 1000; attempt++ {
		select {
		case <-n.launcherDone:
			return fmt.Errorf("testbed: node %s: init exited before sshd was ready%s", n.Name, n.diagnostics())
		default:
		}
		if lastErr = probeSSHD(ctx, addr); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: node %s: sshd on %s not ready: %w (last attempt: %v)%s", n.Name, addr, ctx.Err(), lastErr, n.diagnostics())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("testbed: node %s: sshd on %s not ready after 1000 attempts: %v%s", n.Name, addr, lastErr, n.diagnostics())
}

// probeSSHD connects and reads the first bytes of the server's version line,
// so that a listening socket of anything but sshd does not count.
func probeSSHD(ctx context.Context, addr string) error {
	dialer := net.Dialer{Timeout: time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	banner := make([]byte, 4)
	if _, err := io.ReadFull(conn, banner); err != nil {
		return fmt.Errorf("read banner: %w", err)
	}
	if string(banner) != "SSH-" {
		return fmt.Errorf("not an SSH server: banner starts %q", banner)
	}
	return nil
}

// diagnostics returns the ends of the node's init and sshd logs, for errors.
func (n *Node) diagnostics() string {
	out := ""
	// The uWSGI emperor's log says which vassal started, died or respawned.
	emperor := filepath.Join(filepath.Dir(n.dirs.sshdLog()), "gitreceive", "emperor.log")
	for _, path := range []string{n.dirs.initLog(), n.dirs.sshdLog(), emperor} {
		if tail := fileTail(path, 2048); tail != "" {
			out += "\n--- " + path + " ---\n" + tail
		}
	}
	return out
}

func fileTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > max {
		if _, err := f.Seek(-max, io.SeekEnd); err != nil {
			return ""
		}
	}
	data, _ := io.ReadAll(io.LimitReader(f, max))
	return string(data)
}
