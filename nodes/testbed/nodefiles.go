package testbed

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// configDirInNode is where a node finds its sshd config, host key and
// authorized keys. The files are written into the /etc overlay's upper dir,
// so they exist only inside the node and survive the tmpfs on /tmp.
const configDirInNode = "/etc/gitreceive-testbed"

const (
	sshdConfigName     = "sshd_config"
	hostKeyName        = "ssh_host_ed25519_key"
	authorizedKeysName = "authorized_keys"
	initLogName        = "init.log"
)

// nodeDirs are the host-side directories of one node, all under base.
type nodeDirs struct {
	base     string
	etcUpper string
	etcWork  string
	varUpper string
	varWork  string
	usrUpper string
	usrWork  string
	srv      string
	root     string
	home     string
}

func newNodeDirs(workDir, name string) nodeDirs {
	base := filepath.Join(workDir, name)
	return nodeDirs{
		base:     base,
		etcUpper: filepath.Join(base, "etc-upper"),
		etcWork:  filepath.Join(base, "etc-work"),
		varUpper: filepath.Join(base, "var-upper"),
		varWork:  filepath.Join(base, "var-work"),
		usrUpper: filepath.Join(base, "usr-upper"),
		usrWork:  filepath.Join(base, "usr-work"),
		srv:      filepath.Join(base, "srv"),
		root:     filepath.Join(base, "root"),
		home:     filepath.Join(base, "home"),
	}
}

func (d nodeDirs) initLog() string { return filepath.Join(d.base, initLogName) }

// sshdLog is the host-side path of the node's /var/log/sshd.log.
func (d nodeDirs) sshdLog() string { return filepath.Join(d.varUpper, "log", "sshd.log") }

// createSubdirs makes the directories inside base, which the caller has just
// created (Close removes base, so it must be ours).
func (d nodeDirs) createSubdirs() error {
	// An overlay's merged root takes its mode from the upper dir, so upper
	// dirs get the mode of /etc, /var and /usr; /root is private as on Debian.
	modes := []struct {
		path string
		mode os.FileMode
	}{
		{d.etcUpper, 0o755}, {d.etcWork, 0o700},
		{d.varUpper, 0o755}, {d.varWork, 0o700},
		{d.usrUpper, 0o755}, {d.usrWork, 0o700},
		{d.srv, 0o755}, {d.root, 0o700}, {d.home, 0o755},
		{d.configDirOnHost(), 0o755},
	}
	for _, m := range modes {
		if err := os.Mkdir(m.path, m.mode); err != nil {
			return fmt.Errorf("testbed: node dir: %w", err)
		}
		// Mkdir is subject to the umask; sshd's StrictModes and the overlay
		// need the exact modes.
		if err := os.Chmod(m.path, m.mode); err != nil {
			return fmt.Errorf("testbed: node dir: %w", err)
		}
	}
	return nil
}

// configDirOnHost is configDirInNode as seen from the host.
func (d nodeDirs) configDirOnHost() string {
	return filepath.Join(d.etcUpper, strings.TrimPrefix(configDirInNode, "/etc/"))
}

// writeSSHDFiles writes the node's sshd config, a fresh ed25519 host key and
// the authorized keys, and returns the host's public key.
func (d nodeDirs) writeSSHDFiles(listenIP string, authorizedKeys []string) (ssh.PublicKey, error) {
	dir := d.configDirOnHost()
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testbed: host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(private, "testbed host key")
	if err != nil {
		return nil, fmt.Errorf("testbed: host key: %w", err)
	}
	hostKey, err := ssh.NewPublicKey(public)
	if err != nil {
		return nil, fmt.Errorf("testbed: host key: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{hostKeyName, pem.EncodeToMemory(block), 0o600},
		{hostKeyName + ".pub", ssh.MarshalAuthorizedKey(hostKey), 0o644},
		{authorizedKeysName, []byte(strings.Join(authorizedKeys, "\n") + "\n"), 0o644},
		{sshdConfigName, []byte(sshdConfig(listenIP)), 0o644},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("testbed: %w", err)
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return nil, fmt.Errorf("testbed: %w", err)
		}
	}
	return hostKey, nil
}

func sshdConfig(listenIP string) string {
	return strings.Join([]string{
		"ListenAddress " + listenIP + ":22",
		"HostKey " + configDirInNode + "/" + hostKeyName,
		"AuthorizedKeysFile " + configDirInNode + "/" + authorizedKeysName,
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		// Tests open many connections at once; the default 10:30:100 drops them.
		"MaxStartups 100:30:200",
		"PidFile /run/sshd.pid",
		"Subsystem sftp /usr/lib/openssh/sftp-server",
		"",
	}, "\n")
}

func checkAuthorizedKey(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("testbed: authorized key must be one line: %q", line)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
		return fmt.Errorf("testbed: authorized key %q: %w", line, err)
	}
	return nil
}
