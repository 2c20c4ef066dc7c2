//go:build e2e

package services

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// Test-only entry point. Node tests (see sharedServicesNode) copy this
// test binary into a test-bed node and run it there with testHelperEnv
// set to "service": it runs one operation of one registered service
// (generic over Lookup, so every plugin can be exercised the same way),
// with its arguments (serviceHelperArgs, JSON) in testHelperArgsEnv since
// the test bed's Exec has no stdin. It prints a serviceHelperResult on
// stdout; on failure the error also goes to stderr and it exits 1.
const (
	testHelperEnv     = "GITRECEIVE_SERVICES_TEST_HELPER"
	testHelperArgsEnv = "GITRECEIVE_SERVICES_TEST_ARGS"
)

func TestMain(m *testing.M) {
	switch helper := os.Getenv(testHelperEnv); helper {
	case "":
		code := m.Run()
		if err := closeSharedServicesNode(); err != nil {
			fmt.Fprintf(os.Stderr, "close services test bed: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		os.Exit(code)
	case "service":
		os.Exit(serviceHelper(os.Getenv(testHelperArgsEnv)))
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: no such test helper\n", testHelperEnv, helper)
		os.Exit(2)
	}
}

// serviceHelperArgs are one operation on one service.
type serviceHelperArgs struct {
	Service     string      `json:"service"` // a registered name: "mysql", "redis", ...
	Op          string      `json:"op"`      // install|provision|env|backup|checkbackup|restore|clear|destroy
	App         string      `json:"app"`
	Instance    string      `json:"instance"`
	Credentials Credentials `json:"credentials"`
	Host        string      `json:"host,omitempty"`   // env: where app nodes reach the service
	Input       string      `json:"input,omitempty"`  // restore, checkbackup: file to read (node path)
	Output      string      `json:"output,omitempty"` // backup: file to write (node path)
	// Host fields; defaults below.
	DataDir    string   `json:"data_dir,omitempty"`
	AppUser    string   `json:"app_user,omitempty"`
	NginxGroup string   `json:"nginx_group,omitempty"`
	Listen     []string `json:"listen,omitempty"` // addresses servers bind besides loopback
}

// serviceHelperResult is the helper's answer.
type serviceHelperResult struct {
	Out     string            `json:"out"`   // what the service wrote to Host.Output
	Ready   string            `json:"ready"` // provision's answer
	Env     map[string]string `json:"env,omitempty"`
	Error   string            `json:"error"`
	Seconds float64           `json:"seconds"`
}

const serviceHelperTimeout = 2 * time.Minute

func serviceHelper(args string) int {
	var a serviceHelperArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		fmt.Fprintf(os.Stderr, "service helper: arguments: %v\n", err)
		return 2
	}
	var out bytes.Buffer
	started := time.Now()
	res := serviceHelperResult{}
	err := runServiceOp(a, &out, &res)
	res.Out, res.Seconds = out.String(), time.Since(started).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func runServiceOp(a serviceHelperArgs, out *bytes.Buffer, res *serviceHelperResult) error {
	s, ok := Lookup(a.Service)
	if !ok {
		return fmt.Errorf("no service %q (have %s)", a.Service, strings.Join(Names(), ", "))
	}
	h := Host{DataDir: a.DataDir, AppUser: a.AppUser, NginxGroup: a.NginxGroup, Listen: a.Listen, Output: out}
	if h.DataDir == "" {
		h.DataDir = "/var/lib/gitreceive"
	}
	if h.AppUser == "" {
		h.AppUser = "www-data"
	}
	if h.NginxGroup == "" {
		h.NginxGroup = "www-data"
	}
	inst := Instance{App: a.App, Name: a.Instance}
	ctx, cancel := context.WithTimeout(context.Background(), serviceHelperTimeout)
	defer cancel()
	switch a.Op {
	case "install":
		return s.Install(ctx, h)
	case "provision":
		ready, err := s.Provision(ctx, h, inst, a.Credentials)
		res.Ready = ready
		return err
	case "env":
		res.Env = s.Env(inst, a.Credentials, a.Host, h)
		return nil
	case "backup":
		f, err := os.OpenFile(a.Output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if err := s.Backup(ctx, h, inst, a.Credentials, f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case "checkbackup", "restore":
		f, err := os.Open(a.Input)
		if err != nil {
			return err
		}
		defer f.Close()
		if a.Op == "checkbackup" {
			return s.CheckBackup(f)
		}
		return s.Restore(ctx, h, inst, a.Credentials, f)
	case "clear":
		return s.Clear(ctx, h, inst, a.Credentials)
	case "destroy":
		return s.Destroy(ctx, h, inst, a.Credentials)
	default:
		return fmt.Errorf("no operation %q", a.Op)
	}
}

// One test bed for every node test of the package: one node, started by
// the first test that asks for it and closed by TestMain after all.
const (
	servicesBedPrefix = "sv"
	servicesBedSubnet = "10.77.250.0/24"
	// servicesHelperPath is where the test binary lives inside the node
	// (the node's /srv is NODE.Dir/srv on the host; the host's /tmp, where
	// the binary is, is not visible in the node).
	servicesHelperPath = "/srv/services.test"
)

var sharedBed struct {
	mu      sync.Mutex
	bed     *testbed.Bed
	node    *testbed.Node
	workDir string
	err     error
}

func startSharedServicesNode() error {
	opt, err := testbed.Options{Prefix: servicesBedPrefix, Subnet: servicesBedSubnet, Count: 1}.InSlot()
	if err != nil {
		return err
	}
	if err := testbed.CleanupStale(opt.Prefix); err != nil {
		return fmt.Errorf("clean up stale test bed: %w", err)
	}
	dir, err := os.MkdirTemp("", "gitreceive-services-bed-")
	if err != nil {
		return err
	}
	sharedBed.workDir = dir
	opt.WorkDir = dir
	bed, err := testbed.Start(context.Background(), opt)
	if err != nil {
		return fmt.Errorf("start test bed: %w", err)
	}
	sharedBed.bed, sharedBed.node = bed, bed.Nodes[0]
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		return err
	}
	dst := filepath.Join(sharedBed.node.Dir, "srv", strings.TrimPrefix(servicesHelperPath, "/srv/"))
	return os.WriteFile(dst, bin, 0o755)
}

func closeSharedServicesNode() error {
	sharedBed.mu.Lock()
	defer sharedBed.mu.Unlock()
	var err error
	if sharedBed.bed != nil {
		err = sharedBed.bed.Close()
		sharedBed.bed = nil
	}
	if sharedBed.workDir != "" {
		if rerr := os.RemoveAll(sharedBed.workDir); err == nil {
			err = rerr
		}
		sharedBed.workDir = ""
	}
	return err
}

// svNode is the shared node as one test sees it.
type svNode struct {
	t    *testing.T
	bed  *testbed.Bed
	node *testbed.Node
}

// sharedServicesNode is the package's test node, started on first use.
// Like every test-bed test it skips without root, and fails instead when
// CI=true.
func sharedServicesNode(t *testing.T) *svNode {
	t.Helper()
	testbed.Require(t)
	sharedBed.mu.Lock()
	defer sharedBed.mu.Unlock()
	if sharedBed.bed == nil && sharedBed.err == nil {
		started := time.Now()
		sharedBed.err = startSharedServicesNode()
		t.Logf("services test node up in %.2fs", time.Since(started).Seconds())
	}
	if sharedBed.err != nil {
		t.Fatalf("services test node: %v", sharedBed.err)
	}
	return &svNode{t: t, bed: sharedBed.bed, node: sharedBed.node}
}

// fs is path p of the node's file system as the host reaches it.
func (n *svNode) fs(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.node.PID), p)
}

// exec runs args in the node.
func (n *svNode) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), serviceHelperTimeout+30*time.Second)
	defer cancel()
	out, err := n.bed.Exec(ctx, n.node, args...)
	return string(out), err
}

func (n *svNode) mustExec(args ...string) string {
	n.t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// helper runs one service operation inside the node.
func (n *svNode) helper(a serviceHelperArgs) serviceHelperResult {
	n.t.Helper()
	if a.Listen == nil {
		// As the agent is told by the receiver: the node's inventory
		// address, where the tests' clients connect.
		a.Listen = []string{n.node.IP}
	}
	data, err := json.Marshal(a)
	if err != nil {
		n.t.Fatal(err)
	}
	// A -race binary sleeps a second at exit unless told not to.
	stdout, err := n.exec("env", "GORACE=atexit_sleep_ms=0", testHelperEnv+"=service", testHelperArgsEnv+"="+string(data), servicesHelperPath)
	var res serviceHelperResult
	if jerr := json.Unmarshal([]byte(stdout), &res); jerr != nil {
		n.t.Fatalf("%s %s %s/%s: no result (%v): %v", a.Service, a.Op, a.App, a.Instance, jerr, err)
	}
	n.t.Logf("%s %s %s/%s (%.2fs): error %q %s", a.Service, a.Op, a.App, a.Instance, res.Seconds, res.Error, strings.TrimSpace(res.Out))
	return res
}

// must runs an operation that has to succeed.
func (n *svNode) must(a serviceHelperArgs) serviceHelperResult {
	n.t.Helper()
	res := n.helper(a)
	if res.Error != "" {
		n.t.Fatalf("%s %s %s/%s: %s\n%s", a.Service, a.Op, a.App, a.Instance, res.Error, res.Out)
	}
	return res
}

// logsOnFailure adds the tails of these node files to a failed test's
// output.
func (n *svNode) logsOnFailure(paths ...string) {
	n.t.Cleanup(func() {
		if !n.t.Failed() {
			return
		}
		for _, p := range paths {
			data, err := os.ReadFile(n.fs(p))
			if err != nil {
				n.t.Logf("%s: %v", p, err)
				continue
			}
			if len(data) > 4000 {
				data = data[len(data)-4000:]
			}
			n.t.Logf("%s (tail):\n%s", p, data)
		}
	})
}

// python runs a python3 program in the node with one JSON argument and
// decodes the JSON it prints into out.
func (n *svNode) python(program string, arg any, out any) {
	n.t.Helper()
	data, err := json.Marshal(arg)
	if err != nil {
		n.t.Fatal(err)
	}
	stdout, err := n.exec("/usr/bin/python3", "-c", program, string(data))
	if err != nil {
		n.t.Fatalf("python: %v\n%s", err, stdout)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		n.t.Fatalf("python printed %q: %v", stdout, err)
	}
}
