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
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/services"
)

// workersApp is an app with a worker that appends a line every 0.2 s (and
// one when SIGTERM ends it), a worker of nodes = one that sleeps, and two
// cron jobs: tick, due every minute, and long, which never comes due in a
// test and goes on until the test puts SILVER_LOGS/go-on in place (a
// minute at most). Its Procfile names ticker too: app.ini's wins.
var workersApp = map[string]string{
	"app.ini": `[production]
app_name = wrkapp
runner = wsgi.py
worker.ticker = bin/ticker.py
worker.ticker.stop_timeout = 5
cron.tick = * * * * * bin/job.py tick 0
cron.long = 0 0 1 1 * bin/job.py long wait
worker.single = bin/single.py
worker.single.nodes = one
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
	"Procfile":      "ticker: bin/job.py tick 0\n",
	"bin/single.py": "import time\nwhile True:\n    time.sleep(1)\n",
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
	mustContain(t, push.Stderr, "ticker is also declared in app.ini:4, which wins")
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
	singles := func(n *testbed.Node) int {
		return len(strings.Fields(sh(n, "pgrep -u "+user+" -f '[s]ingle.py' || true")))
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
		if tk, count := workerOf(rep, "ticker"); rep.Release != 1 || count != 1 || strconv.Itoa(tk.PID) != pids[n.Name] || tk.Release != 1 {
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
	// The worker of nodes = one runs on the node holding the cron jobs only.
	checkSingle(t, bed, ps, holderOf(t, f, bed, "tick"), singles)
	out := f.alice.SSH(t, "", nil, "ps", "wrkapp")
	mustContain(t, out.Stdout, "ticker.1")
	mustContain(t, out.Stdout, "tick")
	mustContain(t, out.Stdout, "single.1 (nodes = one)")

	// Killed, the worker is started again.
	n1 := bed.Nodes[1]
	sh(n1, "kill -9 "+pids[n1.Name])
	pollUntil(t, 10*time.Second, "the killed ticker on "+n1.Name+" to be started again", func() bool {
		got := tickers(n1)
		return len(got) == 1 && got[0] != pids[n1.Name]
	})
	if tk, _ := workerOf(psJSON(t, f)[n1.Name], "ticker"); tk.Restarts != 1 {
		t.Fatalf("ps after the kill: %+v, want 1 restart", tk)
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
		if tk, count := workerOf(rep, "ticker"); len(got) != 1 || count != 1 || tk.Release != 2 || strconv.Itoa(tk.PID) != got[0] {
			t.Fatalf("%s after the second push: tickers %v, ps %+v", n.Name, got, rep)
		}
		ticks := sh(n, "cat "+logs+"ticks.log")
		mustContain(t, ticks, "stop\n")
		mustContain(t, ticks, "v2 "+got[0]+" tick")
	}

	// The node holding the cron jobs and the worker of nodes = one goes
	// away: the other takes them, and keeps them when it comes back, which
	// stops its copy of the worker.
	holder = holderOf(t, f, bed, "tick")
	other := bed.Nodes[0]
	if other == holder {
		other = bed.Nodes[1]
	}
	checkSingle(t, bed, psJSON(t, f), holder, singles)
	if out, err := bed.Exec(ctx, holder, "pkill", "-9", "-x", "sshd|sshd-session"); err != nil {
		t.Fatalf("stopping sshd on %s: %v %s", holder.Name, err, out)
	}
	pollUntil(t, time.Minute, "the cron jobs to move to "+other.Name, func() bool { return holderOf(t, f, bed, "tick") == other })
	pollUntil(t, 10*time.Second, "the worker of nodes = one to start on "+other.Name, func() bool { return singles(other) == 1 })
	r = f.alice.SSH(t, "", nil, "cron:run", "wrkapp", "tick")
	mustContain(t, r.Stdout, other.Name+" ")
	mustContain(t, r.Stdout, "tick from v2")
	mustContain(t, f.alice.SSH(t, "", nil, "apps").Stdout, "not reached: "+holder.Name)
	if err := bed.StartSSHD(ctx, holder); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Minute, holder.Name+" to be told it no longer holds the cron jobs and the worker of nodes = one", func() bool {
		held := 0
		for _, rep := range psJSON(t, f) {
			for _, j := range rep.Cron {
				if j.Name == "tick" && j.Here {
					held++
				}
			}
		}
		return held == 1 && holderOf(t, f, bed, "tick") == other && singles(holder) == 0
	})
	checkSingle(t, bed, psJSON(t, f), other, singles)

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
	pollUntil(t, 10*time.Second, "the worker of nodes = one on "+other.Name+" after enable", func() bool { return singles(other) == 1 })
	checkSingle(t, bed, psJSON(t, f), other, singles)

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

	testStagingWorkers(t, f, work)
}

// psJSON is `ps wrkapp --json`, by node.
func psJSON(t *testing.T, f *fixture) map[string]agent.PsReport {
	t.Helper()
	return psJSONOf(t, f, "wrkapp")
}

// psJSONOf is `ps TARGET --json`, by node.
func psJSONOf(t *testing.T, f *fixture, target string) map[string]agent.PsReport {
	t.Helper()
	r := f.alice.SSH(t, "", nil, "ps", target, "--json")
	var reps map[string]agent.PsReport
	if err := json.Unmarshal([]byte(r.Stdout), &reps); r.Code != 0 || err != nil {
		t.Fatalf("ps --json: %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return reps
}

// workerOf is worker name's first copy in rep, and how many copies rep lists.
func workerOf(rep agent.PsReport, name string) (agent.WorkerReport, int) {
	var first agent.WorkerReport
	count := 0
	for _, w := range rep.Workers {
		if w.Name == name {
			if count == 0 {
				first = w
			}
			count++
		}
	}
	return first, count
}

// checkSingle checks that the worker of nodes = one runs on node holder
// only, as ps says and as the nodes' process lists (count) do.
func checkSingle(t *testing.T, bed *testbed.Bed, ps map[string]agent.PsReport, holder *testbed.Node, count func(*testbed.Node) int) {
	t.Helper()
	if holder == nil {
		t.Fatal("no node holds the cron jobs")
	}
	for _, n := range bed.Nodes {
		rep := ps[n.Name]
		w, listed := workerOf(rep, "single")
		want := 0
		if n == holder {
			want = 1
			if !w.OneNode || w.PID == 0 || !rep.Singletons {
				t.Fatalf("ps on %s, which holds the singletons: %+v", n.Name, rep)
			}
		}
		if got := count(n); listed != want || got != want {
			t.Fatalf("%s runs %d copies of the worker of nodes = one and ps lists %d, want %d (%s holds it): %+v", n.Name, got, listed, want, holder.Name, ps)
		}
	}
}

// testStagingWorkers pushes branch stage of wrkapp (work) twice: its app.ini
// has no worker.*, its Procfile two workers, one of them exiting at once.
// Staging instances run their workers (staging_workers is on by default),
// and `apps` shows the crash loop on each node; with staging_workers = off,
// the next push runs no worker and no cron job.
func testStagingWorkers(t *testing.T, f *fixture, work string) {
	t.Helper()
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "stage")
	defer f.alice.MustGit(t, work, "checkout", "-q", "main")
	f.alice.Commit(t, work, "stage: Procfile workers", map[string]string{
		"app.ini":      "[production]\napp_name = wrkapp\nrunner = wsgi.py\ncron.tick = 0 0 1 1 * bin/job.py tick 0\n",
		"Procfile":     "ticker: bin/ticker.py\ncrash: bin/crash.py\n",
		"bin/crash.py": "import sys\nsys.exit(3)\n",
	})
	r := f.alice.MustGit(t, work, "push", f.alice.URL("wrkapp"), "stage")
	mustContain(t, r.Stderr, "worker crash exited")
	for node, rep := range psJSONOf(t, f, "wrkapp@stage") {
		if tk, count := workerOf(rep, "ticker"); count != 1 || tk.PID == 0 || tk.Restarts != 0 || len(rep.Cron) != 1 {
			t.Fatalf("ps wrkapp@stage on %s: %+v, want the Procfile's ticker running and cron job tick", node, rep)
		}
	}
	var row apps.AppRow
	pollUntil(t, 20*time.Second, "apps to show the crash loop of wrkapp@stage on both nodes", func() bool {
		row = appsRow(t, f, "stage")
		return len(row.CrashLoops) == 2 && row.CrashLoops[0].Worker == "crash" && row.CrashLoops[1].Worker == "crash"
	})
	if len(row.Unreached) != 0 || row.Nodes != 2 {
		t.Fatalf("apps --json, wrkapp@stage: %+v", row)
	}
	mustContain(t, f.alice.SSH(t, "", nil, "apps").Stdout, "crash loop: crash on ")

	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("cron_check = 1s\nstaging_workers = off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.srv.Kill()
	f.srv.Restart(t)
	f.alice.MustGit(t, work, "commit", "--allow-empty", "-qm", "stage v2")
	f.alice.MustGit(t, work, "push", f.alice.URL("wrkapp"), "stage")
	for node, rep := range psJSONOf(t, f, "wrkapp@stage") {
		if rep.Release != 2 || len(rep.Workers) != 0 || len(rep.Cron) != 0 {
			t.Fatalf("ps wrkapp@stage on %s with staging_workers = off: %+v, want v2 without workers or cron jobs", node, rep)
		}
	}
	if row := appsRow(t, f, "stage"); len(row.CrashLoops) != 0 {
		t.Fatalf("apps --json, wrkapp@stage without workers: %+v", row)
	}
}

// appsRow is the row of wrkapp's instance of branch in `apps --json`.
func appsRow(t *testing.T, f *fixture, branch string) apps.AppRow {
	t.Helper()
	r := f.alice.SSH(t, "", nil, "apps", "--json")
	var rows []apps.AppRow
	if err := json.Unmarshal([]byte(r.Stdout), &rows); r.Code != 0 || err != nil {
		t.Fatalf("apps --json: %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	for _, row := range rows {
		if row.App == "wrkapp" && row.Branch == branch {
			return row
		}
	}
	t.Fatalf("apps --json has no row for wrkapp's branch %s:\n%s", branch, r.Stdout)
	return apps.AppRow{}
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
