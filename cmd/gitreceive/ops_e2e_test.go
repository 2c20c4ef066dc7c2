//go:build e2e

package main_test

// The operator commands over the real ssh client: run, apps, config,
// disable/enable, destroy, on two set-up test-bed nodes.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/services"
)

// scripts the test adds to the example app's bin/.
var opsScripts = map[string]string{
	"bin/showenv":    "#!/bin/sh\nenv | grep -E '^(SILVER_|CONFIG_)' | sort\necho \"user=$(id -un) cwd=$(pwd)\"\n",
	"bin/args.py":    "import sys\nfor a in sys.argv[1:]:\n    print('[%s]' % a)\n",
	"bin/exit3":      "#!/bin/sh\necho failing >&2\nexit 3\n",
	"bin/readstdin":  "#!/bin/sh\necho \"got: $(cat)\"\n",
	"bin/istty":      "#!/bin/sh\nif [ -t 0 ]; then echo tty; else echo notty; fi\n",
	"bin/sleeper":    "#!/bin/sh\nsleep 271 &\necho started\nwait\n",
	"bin/tinyver.py": "import tinylib\nprint('tinylib', tinylib.VERSION)\n",
}

func TestOperatorCommands(t *testing.T) {
	f, bed := fanOutBed(t, "ops", "10.77.226.0/24", 2)
	const host = "sampleapp.example.com"
	work := exampleWorkTree(t, f.alice, "djangoapp")
	for name, content := range opsScripts {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.alice.MustGit(t, work, "add", "-A")
	f.alice.MustGit(t, work, "commit", "-qm", "scripts")
	f.alice.MustGit(t, work, "push", f.alice.URL("sampleapp"), "main")
	ssh := func(stdin string, opts []string, remote ...string) (string, string, int) {
		t.Helper()
		r := f.alice.SSH(t, stdin, opts, remote...)
		return r.Stdout, r.Stderr, r.Code
	}

	// run sees exactly what the web app sees, as the app user in the release.
	out, errOut, code := ssh("", nil, "run", "sampleapp", "showenv")
	if code != 0 {
		t.Fatalf("run showenv: %d %s", code, errOut)
	}
	_, webEnv := get(bed.Nodes[0], host, "/env")
	var fromWeb []string
	for _, line := range strings.Split(webEnv, "\n") {
		if strings.HasPrefix(line, "SILVER_") || strings.HasPrefix(line, "CONFIG_") {
			fromWeb = append(fromWeb, line)
		}
	}
	sort.Strings(fromWeb)
	var fromRun []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "SILVER_") || strings.HasPrefix(line, "CONFIG_") {
			fromRun = append(fromRun, line)
		}
	}
	if strings.Join(fromRun, "\n") != strings.Join(fromWeb, "\n") || len(fromRun) < 5 {
		t.Fatalf("run's environment differs from the app's:\nrun:\n%s\napp:\n%s", strings.Join(fromRun, "\n"), strings.Join(fromWeb, "\n"))
	}
	mustContain(t, out, "user="+services.Instance{App: "sampleapp", Name: "production"}.UnixUser()+" cwd=/srv/gitreceive/apps/sampleapp/production/releases/v1")

	// Arguments keep their spaces and quotes: the command line is split
	// with sh rules by the receiver and never reaches a shell on the node.
	out, errOut, code = ssh("", nil, `run sampleapp args.py "a b" 'it'\''s "quoted"' '$HOME' '*'`)
	if code != 0 || out != "[a b]\n[it's \"quoted\"]\n[$HOME]\n[*]\n" {
		t.Fatalf("args: %d %q %s", code, out, errOut)
	}
	// A python script imports through the fixed .pth files.
	if out, errOut, code = ssh("", nil, "run", "sampleapp", "tinyver.py"); code != 0 || out != "tinylib 1.0\n" {
		t.Fatalf("tinyver.py: %d %q %s", code, out, errOut)
	}
	if _, errOut, code = ssh("", nil, "run", "sampleapp", "exit3"); code != 3 || !strings.Contains(errOut, "failing") {
		t.Fatalf("exit3: exit %d, stderr %q", code, errOut)
	}
	if out, _, code = ssh("hello from stdin\n", nil, "run", "sampleapp", "readstdin"); code != 0 || out != "got: hello from stdin\n" {
		t.Fatalf("readstdin: %d %q", code, out)
	}
	if out, _, code = ssh("", []string{"-tt"}, "run", "sampleapp", "istty"); code != 0 || !strings.Contains(out, "tty") || strings.Contains(out, "notty") {
		t.Fatalf("istty under -tt: %d %q", code, out)
	}
	if out, _, _ = ssh("", nil, "run", "sampleapp", "istty"); !strings.Contains(out, "notty") {
		t.Fatalf("istty without -t: %q", out)
	}
	// --all-nodes runs on each node with its name on every line.
	out, _, code = ssh("", nil, "run", "sampleapp", "--all-nodes", "args.py", "x")
	for _, n := range bed.Nodes {
		mustContain(t, out, n.Name+" ")
	}
	if code != 0 {
		t.Fatalf("--all-nodes: %d", code)
	}
	for _, bad := range [][]string{
		{"run", "sampleapp", "../../etc/passwd"},
		{"run", "sampleapp", "/etc/passwd"},
		{"run", "sampleapp", "--node", "nosuch", "showenv"},
	} {
		if _, errOut, code := ssh("", nil, bad...); code == 0 || errOut == "" {
			t.Fatalf("%v: exit %d, stderr %q", bad, code, errOut)
		}
	}
	if r := f.bob.SSH(t, "", nil, "run", "sampleapp", "showenv"); r.Code == 0 || !strings.Contains(r.Stderr, "may not") {
		t.Fatalf("bob ran a script of an app he is not granted: %d %s", r.Code, r.Stderr)
	}

	// A client that goes away stops the script on the node.
	node := bed.Nodes[0] // the services node: the first
	client := exec.Command("sh", "-c", f.alice.SSHCommand()+" -p "+f.srv.Port()+" git@127.0.0.1 run sampleapp sleeper")
	client.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "started\n" {
		t.Fatalf("sleeper said %q", line)
	}
	if out, _ := bed.Exec(context.Background(), node, "sh", "-c", "pgrep -f '[s]leep 271' || true"); strings.TrimSpace(string(out)) == "" {
		t.Fatal("the script is not running on the services node")
	}
	syscall.Kill(-client.Process.Pid, syscall.SIGKILL)
	client.Wait()
	waitNoProcess(t, bed, node, "[s]leep 271")

	// apps shows the instance; config lists names, never values.
	out, _, _ = ssh("", nil, "apps")
	mustContain(t, out, "sampleapp")
	mustContain(t, out, "http://"+host)
	mustContain(t, out, "v1 on 2")
	out, _, _ = ssh("", nil, "apps", "--json")
	var apps []struct {
		App, Instance, Location string
		Nodes                   int
		Services                []string
	}
	if err := json.Unmarshal([]byte(out), &apps); err != nil || len(apps) != 1 || apps[0].Instance != "production" || apps[0].Nodes != 2 ||
		apps[0].Location != "http://"+host || strings.Join(apps[0].Services, ",") != "files" {
		t.Fatalf("apps --json: %v\n%s", err, out)
	}
	out, errOut, code = ssh("", nil, "config:set sampleapp 'GREETING=hi from config:set' EXTRA=secret-value-123")
	if code != 0 {
		t.Fatalf("config:set: %d %s", code, errOut)
	}
	if strings.Contains(out+errOut, "secret-value-123") || strings.Contains(out+errOut, "hi from") {
		t.Fatalf("config:set echoed a value:\n%s%s", out, errOut)
	}
	mustContain(t, errOut, "is live on 2 nodes")
	for _, n := range bed.Nodes {
		mustGet(t, n, host, "/", "hi from config:set (sampleapp 1.0")
		mustGet(t, n, host, "/env", "CONFIG_EXTRA=secret-value-123")
	}
	out, _, _ = ssh("", nil, "config", "sampleapp")
	mustContain(t, out, "CONFIG_EXTRA")
	mustContain(t, out, "config:set")
	if strings.Contains(out, "secret-value-123") {
		t.Fatalf("config shows a value:\n%s", out)
	}
	if _, errOut, code = ssh("", nil, "config:unset", "sampleapp", "EXTRA"); code != 0 {
		t.Fatalf("config:unset: %s", errOut)
	}
	if _, body := get(bed.Nodes[1], host, "/env"); strings.Contains(body, "CONFIG_EXTRA") {
		t.Fatalf("CONFIG_EXTRA still set after config:unset:\n%s", body)
	}

	// disable answers 503 on every node, also after a deploy; enable serves again.
	if _, errOut, code = ssh("", nil, "disable", "sampleapp"); code != 0 {
		t.Fatalf("disable: %s", errOut)
	}
	for _, n := range bed.Nodes {
		if code, _ := get(n, host, "/"); code != 503 {
			t.Fatalf("%s: disabled instance answered %d", n.Name, code)
		}
	}
	if _, errOut, code = ssh("", nil, "enable", "sampleapp"); code != 0 {
		t.Fatalf("enable: %s", errOut)
	}
	for _, n := range bed.Nodes {
		mustGet(t, n, host, "/", "hi from config:set")
	}

	// destroy leaves nothing of the instance on any node.
	if _, errOut, code = ssh("", nil, "destroy", "sampleapp@main", "--confirm", "wrong"); code == 0 {
		t.Fatalf("destroy without the right --confirm succeeded: %s", errOut)
	}
	if _, errOut, code = ssh("", nil, "destroy", "sampleapp@main", "--confirm", "sampleapp"); code != 0 {
		t.Fatalf("destroy: %s", errOut)
	}
	for _, n := range bed.Nodes {
		if code, _ := get(n, host, "/"); code != 404 {
			t.Fatalf("%s: a destroyed instance answered %d", n.Name, code)
		}
		out, err := bed.Exec(context.Background(), n, "sh", "-c",
			"ls -d /srv/gitreceive/apps/sampleapp/production /etc/gitreceive/nginx/sampleapp.* /etc/gitreceive/vassals/sampleapp.* "+
				"/run/gitreceive/sockets/sampleapp.* /var/log/gitreceive/apps/sampleapp/production /var/log/gitreceive/nginx/sampleapp/production 2>/dev/null || true")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("%s keeps parts of the destroyed instance: %v\n%s", n.Name, err, out)
		}
	}
	// The repository stays; a push brings the instance back.
	f.alice.MustGit(t, work, "commit", "--allow-empty", "-qm", "again")
	f.alice.MustGit(t, work, "push", f.alice.URL("sampleapp"), "main")
	mustGet(t, bed.Nodes[0], host, "/", "hello from sampleapp")
}

// waitNoProcess fails unless no process on node matches pattern within 10 s.
func waitNoProcess(t *testing.T, bed *testbed.Bed, node *testbed.Node, pattern string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := bed.Exec(context.Background(), node, "sh", "-c", "pgrep -f '"+pattern+"' || true")
		if strings.TrimSpace(string(out)) == "" {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := bed.Exec(context.Background(), node, "ps", "-eo", "pid,ppid,pgid,sid,user,args")
			t.Fatalf("%s still runs %q (%s) after its client left:\n%s", node.Name, pattern, out, ps)
		}
	}
}
