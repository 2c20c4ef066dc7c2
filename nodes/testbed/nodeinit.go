package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// initEnv carries a node's initConfig (JSON) to the re-executed binary. Its
// presence turns any binary that links this package into a node's PID 1.
//
// Re-executing ourselves instead of depending on tini keeps the test bed
// dependency-free, and unlike tini our init survives sshd's death, so a test
// can kill sshd and still Exec into the node.
const initEnv = "GITRECEIVE_TESTBED_INIT"

const sshdPath = "/usr/sbin/sshd"

// initConfig is what a node's init needs; paths are host paths, resolved
// before anything is mounted over them.
type initConfig struct {
	Hostname string
	Cgroups  []cgroupMount
	CgroupV2 bool
	EtcUpper string
	EtcWork  string
	VarUpper string
	VarWork  string
	UsrUpper string
	UsrWork  string
	Srv      string
	Root     string
	Home     string
}

func init() {
	spec, ok := os.LookupEnv(initEnv)
	if !ok {
		return
	}
	// Runs before the importing program's own init and main (and before the
	// testing package parses flags), so nothing else of the program starts.
	if err := runNodeInit(spec); err != nil {
		fmt.Fprintf(os.Stderr, "testbed init: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runNodeInit(spec string) error {
	var cfg initConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.Unsetenv(initEnv); err != nil {
		return err
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("must run as PID 1 of a new pid namespace, am %d", os.Getpid())
	}
	if err := mountNodeFilesystems(cfg); err != nil {
		return err
	}
	if err := syscall.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("sethostname %s: %w", cfg.Hostname, err)
	}
	// sshd's privilege separation chroots here; /run is a fresh tmpfs.
	if err := os.Mkdir("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("mkdir /run/sshd: %w", err)
	}
	return superviseSSHD()
}

// mountNodeFilesystems runs inside the node's private mount namespace.
func mountNodeFilesystems(cfg initConfig) error {
	overlay := func(dir, upper, work string) error {
		data := "lowerdir=" + dir + ",upperdir=" + upper + ",workdir=" + work
		if err := syscall.Mount("overlay", dir, "overlay", 0, data); err != nil {
			return fmt.Errorf("mount overlay on %s (%s): %w", dir, data, err)
		}
		return nil
	}
	if err := overlay("/etc", cfg.EtcUpper, cfg.EtcWork); err != nil {
		return err
	}
	if err := overlay("/var", cfg.VarUpper, cfg.VarWork); err != nil {
		return err
	}
	// /usr too: installing packages and the node agent on a node must not
	// touch the host or the other nodes.
	if err := overlay("/usr", cfg.UsrUpper, cfg.UsrWork); err != nil {
		return err
	}

	// Open every bind source before mounting any: WorkDir may lie under
	// /root or /home, which the first bind mounts hide. Mounting from
	// /proc/self/fd/N reaches the directory whatever is mounted over its path.
	binds := []struct{ source, target string }{
		{cfg.Srv, "/srv"}, {cfg.Root, "/root"}, {cfg.Home, "/home"},
	}
	fds := make([]int, len(binds))
	for i, b := range binds {
		fd, err := syscall.Open(b.source, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", b.source, err)
		}
		fds[i] = fd
	}
	for i, b := range binds {
		source := "/proc/self/fd/" + strconv.Itoa(fds[i])
		if err := syscall.Mount(source, b.target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.source, b.target, err)
		}
		syscall.Close(fds[i])
	}

	// Our copy of the host's /run/netns holds a reference to every node
	// namespace that existed when this node started; drop it so that each
	// namespace dies with its own node, not with the last node alive.
	if err := syscall.Unmount(netnsDir, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
		return fmt.Errorf("unmount %s: %w", netnsDir, err)
	}
	// Last, because WorkDir is typically under /tmp.
	tmpfs := []struct{ target, mode string }{{"/run", "0755"}, {"/tmp", "1777"}}
	for _, m := range tmpfs {
		if err := syscall.Mount("tmpfs", m.target, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode="+m.mode); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", m.target, err)
		}
	}
	return mountNodeCgroups(cfg.Cgroups, cfg.CgroupV2)
}

// superviseSSHD starts sshd and then reaps every child, including orphans
// re-parented to us as PID 1, until SIGTERM/SIGINT. It keeps running after
// sshd exits so that the node stays inspectable; Close ends it with SIGKILL.
func superviseSSHD() error {
	signals := make(chan os.Signal, 16)
	// Subscribe before starting sshd so that no SIGCHLD is missed.
	signal.Notify(signals, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)

	args := []string{sshdPath, "-D", "-E", "/var/log/sshd.log", "-f", configDirInNode + "/" + sshdConfigName}
	sshdPID, err := syscall.ForkExec(sshdPath, args, &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		return fmt.Errorf("start %s: %w", sshdPath, err)
	}
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return nil
		}
		reapChildren(sshdPID)
	}
	return nil
}

// reapChildren collects every exited child. Signals coalesce, so one SIGCHLD
// may stand for many exits; loop until none is left (bounded by the number
// of processes that can exist).
func reapChildren(sshdPID int) {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
		if pid == sshdPID {
			fmt.Fprintf(os.Stderr, "testbed init: sshd (pid %d) exited: %v\n", pid, describeWaitStatus(status))
		}
	}
}

func describeWaitStatus(s syscall.WaitStatus) string {
	if s.Signaled() {
		return "signal " + s.Signal().String()
	}
	return "status " + strconv.Itoa(s.ExitStatus())
}
