//go:build bench

package main_test

// `make bench`: measured, not asserted. Pushes of a 5,000-file / 60 MB app
// through gitreceive, against raw `git push` of the same commits over
// OpenSSH to a bare repository on a private sshd, in the same run.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

const (
	benchFiles = 5000
	benchBytes = 60 << 20
	benchRuns  = 5
)

func TestBenchPipeline(t *testing.T) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "/usr/sbin/sshd")
	f := newFixture(t)
	sshd := startSSHD(t, f.alice)

	var rawFirst, rawOne, grFirst, grOne, pipeFirst, pipeOne []time.Duration
	for i := 0; i < benchRuns; i++ {
		app := fmt.Sprintf("bench%d", i)
		work := bigApp(t, f.alice, app)
		bare := filepath.Join(sshd.root, app+".git")
		if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		rawURL := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sshd.port, bare)

		rawFirst = append(rawFirst, timed(t, f.alice, work, rawURL))
		grFirst = append(grFirst, timed(t, f.alice, work, f.alice.URL(app)))
		pipeFirst = append(pipeFirst, lastPipeline(t, f.srv))

		f.alice.Commit(t, work, "one file", map[string]string{"src/f00042.py": fmt.Sprintf("changed = %d\n", i)})
		rawOne = append(rawOne, timed(t, f.alice, work, rawURL))
		grOne = append(grOne, timed(t, f.alice, work, f.alice.URL(app)))
		pipeOne = append(pipeOne, lastPipeline(t, f.srv))
	}

	fmt.Printf("\nbuilder pipeline, %d files / %d MB, median of %d runs\n", benchFiles, benchBytes>>20, benchRuns)
	fmt.Printf("%-22s %12s %14s %14s %12s %12s\n", "push", "raw git+ssh", "gitreceive", "pipeline", "total/raw", "pipeline/raw")
	row := func(name string, raw, gr, pipe []time.Duration) {
		r, g, p := median(raw), median(gr), median(pipe)
		fmt.Printf("%-22s %12s %14s %14s %11.2fx %11.2fx\n", name, r.Round(time.Millisecond), g.Round(time.Millisecond),
			p.Round(time.Millisecond), float64(g)/float64(r), float64(p)/float64(r))
	}
	row("first push", rawFirst, grFirst, pipeFirst)
	row("one-file change", rawOne, grOne, pipeOne)
	fmt.Println("pipeline = the pre-receive handler's own time (server log); target for the one-file change: < 0.20x")
}

// bigApp makes a work tree of benchFiles files totalling benchBytes.
func bigApp(t *testing.T, c *receivertest.Client, app string) string {
	t.Helper()
	files := receivertest.App(app, nil)
	rng := rand.New(rand.NewSource(int64(len(app))))
	per := benchBytes / benchFiles
	buf := make([]byte, per)
	for i := 0; len(files) < benchFiles; i++ {
		rng.Read(buf)
		files[fmt.Sprintf("src/f%05d.py", i)] = fmt.Sprintf("%x", buf[:per/2])
	}
	return c.WorkTree(t, files)
}

func timed(t *testing.T, c *receivertest.Client, dir, url string) time.Duration {
	t.Helper()
	start := time.Now()
	c.MustGit(t, dir, "push", "-q", url, "main")
	return time.Since(start)
}

// lastPipeline reads the duration of the newest accepted push from the log.
func lastPipeline(t *testing.T, p *receivertest.Process) time.Duration {
	t.Helper()
	var d time.Duration
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e struct {
			Message  string
			Duration float64
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "push accepted" {
			d = time.Duration(e.Duration * float64(time.Millisecond))
		}
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

type sshdProc struct {
	port int
	root string
}

// startSSHD runs a private OpenSSH sshd on a loopback port that lets key in
// as root: the baseline transport for a raw git push.
func startSSHD(t *testing.T, c *receivertest.Client) sshdProc {
	t.Helper()
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, []byte(c.Key.PubLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := 20000 + rand.Intn(20000)
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf("ListenAddress 127.0.0.1:%d\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s/sshd.pid\n", port, hostKey, auth, dir)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The client pins this host key too.
	pub, _ := os.ReadFile(hostKey + ".pub")
	c.TrustHost(t, fmt.Sprintf("[127.0.0.1]:%d %s", port, pub))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.Command("ssh-keyscan", "-p", fmt.Sprint(port), "127.0.0.1").CombinedOutput(); err == nil && len(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sshd did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	root := filepath.Join(dir, "repos")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return sshdProc{port: port, root: root}
}
