//go:build e2e

package main_test

// Workers and cron jobs (DESIGN.md decision 11) on two test-bed nodes: one
// app, pushed twice, checked at every step.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/services"
)

// workersApp is an app with a worker that appends a line every 0.2 s (and
// one when SIGTERM ends it) and two cron jobs: tick, due every minute, and
// long, which never comes due in a test and goes on until the test puts
// SILVER_LOGS/go-on in place (a minute at most).
var workersApp = map[string]string{
	"app.ini": `[production]
app_name = wrkapp
runner = wsgi.py
worker.ticker = bin/ticker.py
worker.ticker.stop_timeout = 5
cron.tick = * * * * * bin/job.py tick 0
cron.long = 0 0 1 1 * bin/job.py long wait
`,
	"wsgi.py": "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n",
	"bin/ticker.py": `import os, signal, sys, time
LOG = os.path.join(os.environ["SILVER_LOGS"], "ticks.log")
REL = os.environ["SILVER_RELEASE"]
def say(what):
    with open(LOG, "a") as f:
        f.write("v%s %d %s\n" % (REL, os.getpid(), what))
def stop(*_):
    say("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    say("tick")
    time.sleep(0.2)
`,
	"bin/job.py": `import os, sys, time
LOG = os.path.join(os.environ["SILVER_LOGS"], "cron.log")
REL = os.environ["SILVER_RELEASE"]
def say(what):
    with open(LOG, "a") as f:
        f.write("%s %s v%s\n" % (sys.argv[1], what, REL))
say("start")
print("%s from v%s" % (sys.argv[1], REL), flush=True)
if sys.argv[2] == "wait":
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(os.environ["SILVER_LOGS"], "go-on")):
        time.sleep(0.1)
else:
    time.sleep(float(sys.argv[2]))
say("end")
`,
}

func TestWorkersAndCron(t *testing.T) {
	f, bed := fanOutBed(t, "wrk", "10.77.233.0/24", 2)
	// The receiver checks the cron node every second (default 30 s).
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("cron_check = 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.srv.Kill()
	f.srv.Restart(t)
	work := f.alice.WorkTree(t, workersApp)
	push := f.alice.MustGit(t, work, "push", f.alice.URL("wrkapp"), "main")
	if strings.Contains(push.Stderr, "warning: v1 is live") {
		t.Fatalf("the first push warned about its workers:\n%s", push.Stderr)
	}
	user := services.Instance{App: "wrkapp", Name: "production"}.UnixUser()
	ctx := context.Background()
	sh := func(n *testbed.Node, script string) string {
		t.Helper()
		out, err := bed.Exec(ctx, n, "sh", "-c", script)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", n.Name, script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tickers := func(n *testbed.Node) []string {
		return strings.Fields(sh(n, "pgrep -u "+user+" -f '[t]icker.py' || true"))
	}
	logs := "/var/log/gitreceive/apps/wrkapp/production/"

	// The worker runs on both nodes, as the instance's user.
	pids := map[string]string{}
	for _, n := range bed.Nodes {
		got := tickers(n)
		if len(got) != 1 {
			t.Fatalf("%s runs %d tickers as %s, want 1:\n%s", n.Name, len(got), user, sh(n, "ps -eo pid,user,args"))
		}
		pids[n.Name] = got[0]
	}
	ps := psJSON(t, f)
	holders := 0
	for _, n := range bed.Nodes {
		rep := ps[n.Name]
		if rep.Release != 1 || len(rep.Workers) != 1 || strconv.Itoa(rep.Workers[0].PID) != pids[n.Name] || rep.Workers[0].Release != 1 {
			t.Fatalf("ps on %s: %+v, want ticker %s of v1", n.Name, rep, pids[n.Name])
		}
		for _, j := range rep.Cron {
			if j.Name == "tick" && j.Here {
				holders++
				if j.Next.IsZero() || time.Until(j.Next) > time.Minute {
					t.Fatalf("tick's next run on %s: %v", n.Name, j.Next)
				}
			}
		}
	}
	if holders != 1 {
		t.Fatalf("%d nodes hold the cron job tick, want 1: %+v", holders, ps)
	}
	out := f.alice.SSH(t, "", nil, "ps", "wrkapp")
	mustContain(t, out.Stdout, "ticker.1")
	mustContain(t, out.Stdout, "tick")

	// Killed, the worker is started again.
	n1 := bed.Nodes[1]
	sh(n1, "kill -9 "+pids[n1.Name])
	pollUntil(t, 10*time.Second, "the killed ticker on "+n1.Name+" to be started again", func() bool {
		got := tickers(n1)
		return len(got) == 1 && got[0] != pids[n1.Name]
	})
	if rep := psJSON(t, f)[n1.Name]; rep.Workers[0].Restarts != 1 {
		t.Fatalf("ps after the kill: %+v, want 1 restart", rep.Workers[0])
	}
	mustContain(t, f.alice.SSH(t, "", nil, "logs", "wrkapp", "--process", "ticker", "-n", "50").Stdout, "ticker exited (signal: killed)")

	// cron:run runs the job on one node, its output streamed.
	r := f.alice.SSH(t, "", nil, "cron:run", "wrkapp", "tick")
	if r.Code != 0 {
		t.Fatalf("cron:run: %d %s", r.Code, r.Stderr)
	}
	mustContain(t, r.Stdout, "tick from v1")
	runs := 0
	for _, n := range bed.Nodes {
		runs += strings.Count(sh(n, "cat "+logs+"cron.log 2>/dev/null || true"), "tick start v1")
	}
	if runs < 1 || runs > 2 { // the minute may also have come
		t.Fatalf("tick ran %d times across the nodes", runs)
	}

	// A long run is not started twice, and a push lets it finish under v1
	// while the next run uses v2.
	long := exec.Command("sh", "-c", f.alice.SSHCommand()+" -p "+f.srv.Port()+" git@127.0.0.1 cron:run wrkapp long")
	longOut := &strings.Builder{}
	long.Stdout, long.Stderr = longOut, longOut
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	holder := holderOf(t, f, bed, "long")
	if holder == nil {
		t.Fatal("no node holds the cron job long")
	}
	pollUntil(t, 10*time.Second, "the long job to start", func() bool {
		return strings.Contains(sh(holder, "cat "+logs+"cron.log 2>/dev/null || true"), "long start v1")
	})
	if r := f.alice.SSH(t, "", nil, "cron:run", "wrkapp", "long"); r.Code == 0 || !strings.Contains(r.Stderr, "still going") {
		t.Fatalf("a second run of long while one goes: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	for _, j := range psJSON(t, f)[holder.Name].Cron {
		if j.Name == "long" && (!j.Running || j.Skipped != 1 || j.Release != 1) {
			t.Fatalf("ps of the running long job: %+v, want running v1 with 1 skipped run", j)
		}
	}
	f.alice.MustGit(t, work, "commit", "--allow-empty", "-qm", "v2")
	f.alice.MustGit(t, work, "push", f.alice.URL("wrkapp"), "main")
	if log := sh(holder, "cat "+logs+"cron.log"); strings.Contains(log, "long end") {
		t.Fatalf("the long job ended during the push:\n%s", log)
	}
	sh(holder, "touch "+logs+"go-on")
	if err := long.Wait(); err != nil {
		t.Fatalf("the long run: %v\n%s", err, longOut)
	}
	if log := sh(holder, "cat "+logs+"cron.log"); !strings.Contains(log, "long end v1") {
		t.Fatalf("the long job did not finish under v1:\n%s", log)
	}
	mustContain(t, f.alice.SSH(t, "", nil, "cron:run", "wrkapp", "tick").Stdout, "tick from v2")

	// The push replaced the workers: v1's got SIGTERM and stopped, v2's run,
	// nothing of v1 is left.
	ps = psJSON(t, f)
	for _, n := range bed.Nodes {
		got := tickers(n)
		rep := ps[n.Name]
		if len(got) != 1 || len(rep.Workers) != 1 || rep.Workers[0].Release != 2 || strconv.Itoa(rep.Workers[0].PID) != got[0] {
			t.Fatalf("%s after the second push: tickers %v, ps %+v", n.Name, got, rep)
		}
		ticks := sh(n, "cat "+logs+"ticks.log")
		mustContain(t, ticks, "stop\n")
		mustContain(t, ticks, "v2 "+got[0]+" tick")
	}

	// The node holding the cron jobs goes away: the other takes them, and
	// keeps them when it comes back.
	holder = holderOf(t, f, bed, "tick")
	other := bed.Nodes[0]
	if other == holder {
		other = bed.Nodes[1]
	}
	if out, err := bed.Exec(ctx, holder, "pkill", "-9", "-x", "sshd|sshd-session"); err != nil {
		t.Fatalf("stopping sshd on %s: %v %s", holder.Name, err, out)
	}
	pollUntil(t, time.Minute, "the cron jobs to move to "+other.Name, func() bool { return holderOf(t, f, bed, "tick") == other })
	r = f.alice.SSH(t, "", nil, "cron:run", "wrkapp", "tick")
	mustContain(t, r.Stdout, other.Name+" ")
	mustContain(t, r.Stdout, "tick from v2")
	if err := bed.StartSSHD(ctx, holder); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Minute, holder.Name+" to be told it no longer holds the cron jobs", func() bool {
		held := 0
		for _, rep := range psJSON(t, f) {
			for _, j := range rep.Cron {
				if j.Name == "tick" && j.Here {
					held++
				}
			}
		}
		return held == 1 && holderOf(t, f, bed, "tick") == other
	})

	// disable stops the workers, enable starts them again.
	if r := f.alice.SSH(t, "", nil, "disable", "wrkapp"); r.Code != 0 {
		t.Fatalf("disable: %s", r.Stderr)
	}
	for _, n := range bed.Nodes {
		if got := tickers(n); len(got) != 0 {
			t.Fatalf("%s runs tickers %v while disabled", n.Name, got)
		}
	}
	if r := f.alice.SSH(t, "", nil, "enable", "wrkapp"); r.Code != 0 {
		t.Fatalf("enable: %s", r.Stderr)
	}
	for _, n := range bed.Nodes {
		pollUntil(t, 10*time.Second, "the ticker on "+n.Name+" after enable", func() bool { return len(tickers(n)) == 1 })
	}

	// A bad app.ini is refused with file:line, the branch unmoved.
	head := strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "HEAD").Stdout)
	bad := strings.Replace(workersApp["app.ini"], "worker.ticker.stop_timeout = 5", "worker.ticker.count = 17\nworker.ticker.colour = red\nworker.ghost = bin/nothere", 1)
	bad = strings.Replace(bad, "* * * * * bin/job.py tick 0", "61 * * * * bin/job.py tick 0", 1)
	if err := os.WriteFile(filepath.Join(work, "app.ini"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	f.alice.MustGit(t, work, "commit", "-qam", "bad")
	r = f.alice.Git(t, work, "push", f.alice.URL("wrkapp"), "main")
	if r.Code == 0 {
		t.Fatalf("a bad app.ini was accepted:\n%s", r.Stderr)
	}
	for _, want := range []string{"app.ini:5", "app.ini:6", "app.ini:7", "app.ini:8", "not a number from 1 to 16", "has no setting colour", "bin/nothere", "61 * * * *"} {
		mustContain(t, r.Stderr, want)
	}
	if remote := strings.Fields(f.alice.MustGit(t, work, "ls-remote", f.alice.URL("wrkapp"), "main").Stdout); len(remote) == 0 || remote[0] != head {
		t.Fatalf("the refused push moved main: %v, want %s", remote, head)
	}

	// destroy leaves no worker and no supervisor.
	if r := f.alice.SSH(t, "", nil, "destroy", "wrkapp@main", "--confirm", "wrkapp"); r.Code != 0 {
		t.Fatalf("destroy: %s", r.Stderr)
	}
	for _, n := range bed.Nodes {
		if left := sh(n, "ls /etc/gitreceive/vassals/ | grep wrkapp || true; pgrep -f '[t]icker.py' || true"); left != "" {
			t.Fatalf("%s keeps workers of the destroyed instance:\n%s", n.Name, left)
		}
	}
}

// psJSON is `ps wrkapp --json`, by node.
func psJSON(t *testing.T, f *fixture) map[string]agent.PsReport {
	t.Helper()
	r := f.alice.SSH(t, "", nil, "ps", "wrkapp", "--json")
	var reps map[string]agent.PsReport
	if err := json.Unmarshal([]byte(r.Stdout), &reps); r.Code != 0 || err != nil {
		t.Fatalf("ps --json: %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return reps
}

// holderOf is the node that ps says runs cron job name (nil: none).
func holderOf(t *testing.T, f *fixture, bed *testbed.Bed, name string) *testbed.Node {
	t.Helper()
	for node, rep := range psJSON(t, f) {
		for _, j := range rep.Cron {
			if j.Name == name && j.Here {
				for _, n := range bed.Nodes {
					if n.Name == node {
						return n
					}
				}
			}
		}
	}
	return nil
}

// pollUntil polls cond every 100 ms until it holds, failing after limit.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
