//go:build bench

package main_test

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// benchSwitch: the release switch without an nginx reload (issue 20,
// DESIGN.md decision 12), on set-up test-bed nodes with a small app:
// push-to-live of a one-line change against a raw `git push` of the same
// change; phase 2 alone, and the receiver's own CPU per node per deploy,
// at 1, 8 and 32 nodes; and GITRECEIVE_BENCH_SWITCHES (default 100)
// switches under load: flips (an older release answering after a newer
// one), failed requests, and what another app on the node saw meanwhile.
func benchSwitch(t *testing.T, tb *benchTable) {
	f, bed := fanOutBed(t, "bs", "10.77.248.0/24", 32)
	s := &switchBench{t: t, f: f, bed: bed, tb: tb}
	s.pushToLive(startSSHD(t, f.alice))
	s.atScale(8)
	s.atScale(32)
	s.underLoad(benchEnv(t, "GITRECEIVE_BENCH_SWITCHES", 100, 1000))
}

type switchBench struct {
	t   *testing.T
	f   *fixture
	bed *testbed.Bed
	tb  *benchTable
}

// switchPage is a one-file app whose / answers marker.
func switchPage(marker string) map[string]string {
	return map[string]string{"app.py": "def application(environ, start_response):\n" +
		"    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'" + marker + "']\n"}
}

// pageRelease reads switchPage's marker "vN".
func pageRelease(body string) (int, bool) {
	rest, ok := strings.CutPrefix(body, "v")
	n, err := strconv.Atoi(rest)
	return n, ok && err == nil
}

// useNodes makes the first k test nodes the receiver's nodes.
func (s *switchBench) useNodes(k int) []*testbed.Node {
	for _, n := range s.bed.Nodes {
		_ = exec.Command(bin, "nodes", "--data", s.f.data, "remove", n.Name).Run()
	}
	for _, n := range s.bed.Nodes[:k] {
		if out, err := exec.Command(bin, "nodes", "--data", s.f.data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
			s.t.Fatalf("nodes add: %v\n%s", err, out)
		}
	}
	return s.bed.Nodes[:k]
}

// deployed is what one push of switchBench.deploy took.
type deployed struct {
	live, pushed, phase2, cpu time.Duration
}

// deploy pushes release i of app (first: a new work tree) and returns the
// push-to-live time, the push's own, the phase 2 time and the receiver's
// own CPU time.
func (s *switchBench) deploy(work *string, app string, i int, nodes []*testbed.Node) deployed {
	marker := "v" + strconv.Itoa(i)
	if *work == "" {
		*work = s.f.alice.WorkTree(s.t, receivertest.App(app, switchPage(marker)))
	} else {
		s.f.alice.Commit(s.t, *work, "one line", switchPage(marker))
	}
	cpu0 := ownCPU(s.f.srv.PID())
	live, pushed := pushWatchingLive(s.t, s.f, *work, app, nodes, app+".localhost", marker)
	return deployed{live: live, pushed: pushed, phase2: lastSwitch(s.f.srv), cpu: ownCPU(s.f.srv.PID()) - cpu0}
}

// pushToLive: a one-line change on 1 node, alternating with a raw push of
// the same commit to OpenSSH + git receive-pack.
func (s *switchBench) pushToLive(sshd sshdProc) {
	runs := max(10, benchRuns(s.t))
	nodes := s.useNodes(1)
	var work string
	s.deploy(&work, "swlive", 1, nodes)
	rawURL := sshd.repo(s.t, "swlive", false)
	timed(s.t, s.f.alice, work, rawURL)
	var live, pushed, raw, phase2 []time.Duration
	for i := 2; i < runs+2; i++ {
		d := s.deploy(&work, "swlive", i, nodes)
		live, pushed, phase2 = append(live, d.live), append(pushed, d.pushed), append(phase2, d.phase2)
		raw = append(raw, timed(s.t, s.f.alice, work, rawURL))
	}
	fmt.Printf("\nswitch: push-to-live of a one-line change, 1 node: %s (%s); the push ended at %s; raw push %s; phase 2 %s\n",
		ms(median(live)), spread(live), ms(median(pushed)), ms(median(raw)), ms(median(phase2)))
	s.tb.addTimes("7. push-to-live: one-line change of a small app, 1 node", live, raw, "<= 1.6x",
		fmt.Sprintf("`git push` start to the new release answering over HTTP (polled every 5 ms from the push's start), median of %d alternating runs (min-max %s) vs a raw `git push` of the same commit "+
			"to OpenSSH + git receive-pack (min-max %s); phase 2 %s of it; the push itself ended at %s (after each node's tidying)", runs, spread(live), spread(raw), ms(median(phase2)), ms(median(pushed))))
	s.tb.add("7. phase 2 (the switch) alone: 1 node", ms(median(phase2)), "", "", "<= 20 ms",
		fmt.Sprintf("the receiver's \"switch\" log line (the word to switch on every node's open prepare session, in parallel, to the last answer), median of %d (min-max %s)", runs, spread(phase2)))
}

// atScale: phase 2 and the receiver's own CPU per node per deploy at k nodes.
func (s *switchBench) atScale(k int) {
	runs := benchRuns(s.t)
	nodes := s.useNodes(k)
	app := fmt.Sprintf("swscale%d", k)
	var work string
	s.deploy(&work, app, 1, nodes)
	var phase2, cpu []time.Duration
	for i := 2; i < runs+2; i++ {
		d := s.deploy(&work, app, i, nodes)
		phase2, cpu = append(phase2, d.phase2), append(cpu, d.cpu/time.Duration(k))
	}
	fmt.Printf("switch: %d nodes: phase 2 %s (%s), receiver CPU per node per deploy %s\n", k, ms(median(phase2)), spread(phase2), ms(median(cpu)))
	target := map[int]string{8: "-", 32: "<= 60 ms"}[k]
	s.tb.add(fmt.Sprintf("7. phase 2 (the switch) alone: %d nodes", k), ms(median(phase2)), "", "", target,
		fmt.Sprintf("median of %d one-line redeploys (min-max %s)", runs, spread(phase2)))
	s.tb.add(fmt.Sprintf("7. receiver's own CPU per node per deploy: %d nodes", k), ms(median(cpu)), "", "", "<= 10 ms",
		fmt.Sprintf("utime + stime of the receiver process (not its children: git, the builder's hook relay) over a whole one-line redeploy, / %d; median of %d", k, runs))
}

// underLoad: n switches of one app on 1 node, under 4 clients on fresh
// connections and a poller watching for flips, while another app on the
// node serves 4 clients on keep-alive connections.
func (s *switchBench) underLoad(n int) {
	nodes := s.useNodes(1)
	var other, work string
	s.deploy(&other, "swother", 1, nodes)
	s.deploy(&work, "swload", 1, nodes)
	// The second deploy routes prev.HOST: a new host, so nginx reloads
	// (and closes keep-alive connections) once, before the clients start.
	s.deploy(&work, "swload", 2, nodes)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var p poller
	var requests int64
	var failed []string
	var kept keptLoad
	wg.Add(3)
	pollDone := make(chan struct{})
	go func() { defer wg.Done(); p.run(nodes[0], "swload.localhost", pageRelease, stop, pollDone) }()
	go func() { defer wg.Done(); requests, failed = load(nodes, "swload.localhost", 4, 0, stop) }()
	go func() { defer wg.Done(); kept = keepAliveLoad(nodes[0], "swother.localhost", 4, stop) }()
	began := time.Now()
	for i := 3; i < n+3; i++ {
		s.deploy(&work, "swload", i, nodes)
	}
	took := time.Since(began)
	close(stop)
	wg.Wait()
	fmt.Printf("switch: %d switches in %s: %d flips, %d of %d requests failed (+ %d polls, %d failed); other app: %d requests, %d failed, longest %s, %d keep-alive connections closed\n",
		n, took.Round(time.Second), len(p.flips), len(failed), requests, len(p.seen), len(p.failures), kept.requests, len(kept.failed), ms(kept.longest), kept.closed)
	s.tb.add(fmt.Sprintf("7. %d switches under load, 1 node: flips / failed requests", n), fmt.Sprintf("%d / %d", len(p.flips), len(failed)+len(p.failures)), "", "", "0 / 0",
		fmt.Sprintf("flips: a request on a fresh connection answered by an older release after a newer one answered (%d sequential polls); "+
			"failed: of %d requests by 4 clients on fresh connections and the polls", len(p.seen), requests))
	s.tb.add(fmt.Sprintf("7. another app on the node during those %d deploys: failed requests, longest request, keep-alive connections closed", n),
		fmt.Sprintf("%d, %s, %d", len(kept.failed), ms(kept.longest), kept.closed), "", "", "0, -, 0",
		fmt.Sprintf("4 clients on keep-alive connections, a request every 100 ms each (%d requests); a connection nginx closes after keepalive_requests (1000) is not counted", kept.requests))
	for _, bad := range [][]string{p.flips, failed, p.failures, kept.failed} {
		if len(bad) > 0 {
			s.t.Errorf("under load: %v", bad[:min(3, len(bad))])
		}
	}
}

// keptLoad is what clients on keep-alive connections saw.
type keptLoad struct {
	requests int
	failed   []string
	longest  time.Duration
	closed   int // connections the server closed before keepalive_requests
}

// keepAliveLoad runs clients requesting host on keep-alive connections,
// one request every 100 ms each, until stop.
func keepAliveLoad(node *testbed.Node, host string, clients int, stop <-chan struct{}) keptLoad {
	var mu sync.Mutex
	var all keptLoad
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := newKeptConn(node, host, pageRelease)
			onConn := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				began := time.Now()
				_, reused, err := k.get()
				took := time.Since(began)
				mu.Lock()
				all.requests++
				all.longest = max(all.longest, took)
				if err != nil {
					all.failed = append(all.failed, err.Error())
				}
				if i > 0 && !reused && onConn < 1000 {
					all.closed++
				}
				mu.Unlock()
				if !reused {
					onConn = 0
				}
				onConn++
			}
		}()
	}
	wg.Wait()
	return all
}

// spread is "min-max" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return ms(slices.Min(ds)) + "-" + ms(slices.Max(ds))
}

// ownCPU is utime + stime of pid (its threads, not its children).
func ownCPU(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, i := range []int{11, 12} { // fields 14-15 of stat, counted from state (field 3)
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTick
}
