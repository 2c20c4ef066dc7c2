package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"golang.org/x/crypto/ssh"
)

const (
	knownHostsName = "known_hosts"
	clientKeyName  = "id_ed25519"
)

func runUp(args []string) error {
	flags := flag.NewFlagSet("up", flag.ContinueOnError)
	prefix := flags.String("prefix", defaultPrefix, "name prefix of namespaces and links ([a-z0-9], at most 10)")
	subnet := flags.String("subnet", defaultSubnet, "IPv4 subnet inside 10.77.0.0/16")
	count := flags.Int("count", defaultCount, "number of nodes (1..200)")
	keyFile := flags.String("key", "", "public key file authorized for root on every node (default: generate DIR/"+clientKeyName+")")
	dir := flags.String("dir", "", "state directory (default: $TMPDIR/gitreceive-testbed-PREFIX)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	absDir, err := stateDir(*dir, *prefix)
	if err != nil {
		return err
	}
	if _, err := os.Stat(statePath(absDir)); err == nil {
		return fmt.Errorf("%s exists: a bed is already up; run testbedctl down --dir %s first", statePath(absDir), absDir)
	}

	st := state{Prefix: *prefix, Dir: absDir}
	// Record what we create as we go, so down can remove exactly that even
	// if up fails half-way.
	if _, err := os.Stat(absDir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(absDir, 0o700); err != nil {
			return err
		}
		st.CreatedDir = true
	}
	if err := st.save(); err != nil {
		return err
	}

	privateKey := strings.TrimSuffix(*keyFile, ".pub")
	if *keyFile == "" {
		privateKey = filepath.Join(absDir, clientKeyName)
		if err := writeClientKey(privateKey); err != nil {
			return err
		}
		st.Created = append(st.Created, privateKey, privateKey+".pub")
		*keyFile = privateKey + ".pub"
	}
	authorized, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("read --key: %w", err)
	}

	if err := testbed.CleanupStale(*prefix); err != nil {
		return err
	}
	bed, err := testbed.Start(context.Background(), testbed.Options{
		Prefix:         *prefix,
		Subnet:         *subnet,
		Count:          *count,
		AuthorizedKeys: authorizedLines(string(authorized)),
		WorkDir:        absDir,
	})
	if err != nil {
		return errors.Join(fmt.Errorf("%w\nclean up with: testbedctl down --dir %s", err, absDir), st.save())
	}
	knownHosts := filepath.Join(absDir, knownHostsName)
	if err := os.WriteFile(knownHosts, []byte(bed.KnownHosts()), 0o644); err != nil {
		return err
	}
	st.Created = append(st.Created, knownHosts)
	for _, n := range bed.Nodes {
		st.Created = append(st.Created, n.Dir)
		st.Nodes = append(st.Nodes, nodeState{Name: n.Name, IP: n.IP, PID: n.PID})
	}
	if err := st.save(); err != nil {
		return err
	}

	for _, n := range bed.Nodes {
		fmt.Printf("%s\t%s\tssh -i %s -o UserKnownHostsFile=%s root@%s\n", n.Name, n.IP, privateKey, knownHosts, n.IP)
	}
	fmt.Printf("tear down: testbedctl down --dir %s\n", absDir)
	return nil
}

// authorizedLines keeps the non-empty, non-comment lines of a key file.
func authorizedLines(text string) []string {
	var lines []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines
}

// writeClientKey writes a new ed25519 key pair in OpenSSH format.
func writeClientKey(path string) error {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(private, "gitreceive testbed")
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(private)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	return os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
}
