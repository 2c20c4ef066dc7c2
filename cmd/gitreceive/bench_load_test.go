//go:build bench

package main_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// benchConcurrentPushes: N (50) first pushes of N new apps at once, to the
// receiver that deploys them (to node local: built, placed and switched),
// to OpenSSH sshd + git receive-pack (the baseline), and to the receiver
// with deploy off, in turn. Total wall time, the receiver's peak RSS
// (VmHWM, reset before each run) and the server process tree's peak RSS.
func benchConcurrentPushes(t *testing.T, tb *benchTable) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "/usr/sbin/sshd")
	f := newFixture(t)
	off := startDeployOff(t, f)
	sshd := startSSHD(t, f.alice)
	runs := benchRuns(t)
	n := benchEnv(t, "GITRECEIVE_BENCH_PUSHES", 50, 200)
	idleOn, idleOff := procStatus(f.srv.PID(), "VmRSS"), procStatus(off.srv.PID(), "VmRSS")

	var on, raw, offm []serverRun
	for i := 0; i < runs; i++ {
		apps := make([]string, n)
		works := make([]string, n)
		rawURLs := make([]string, n)
		for j := range apps {
			apps[j] = fmt.Sprintf("c%d-%d", i, j)
			works[j] = f.alice.WorkTree(t, receivertest.App(apps[j], smallAppFiles(j)))
			rawURLs[j] = sshd.repo(t, apps[j], false)
		}
		pushAll := func(c *receivertest.Client, url func(j int) string) func() error {
			return func() error {
				errs := make(chan error, n)
				for j := range apps {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
						defer cancel()
						out, err := c.GitCmd(ctx, works[j], "push", "-q", url(j), "main").CombinedOutput()
						if err != nil {
							err = fmt.Errorf("push of %s: %v\n%s", apps[j], err, out)
						}
						errs <- err
					}()
				}
				var all []error
				for range apps {
					all = append(all, <-errs)
				}
				return errors.Join(all...)
			}
		}
		on = append(on, measureServer(t, f.srv.PID(), true, pushAll(f.alice, func(j int) string { return f.alice.URL(apps[j]) })))
		raw = append(raw, measureServer(t, sshd.cmd.Process.Pid, false, pushAll(f.alice, func(j int) string { return rawURLs[j] })))
		offm = append(offm, measureServer(t, off.srv.PID(), true, pushAll(off.alice, func(j int) string { return off.alice.URL(apps[j]) })))
	}
	live := strings.Count(f.srv.Logs(), `"release live"`)
	if live < runs*n {
		t.Errorf("%d releases went live, want %d", live, runs*n)
	}

	fmt.Printf("\n%d concurrent first pushes to %d apps, median of %d (peaks: highest of the runs)\n", n, n, runs)
	fmt.Printf("%-24s %10s %12s %14s %15s %15s\n", "server", "wall", "server CPU", "server VmHWM", "tree peak PSS", "its RSS sum")
	type server struct {
		name string
		m    []serverRun
	}
	all := []server{{"gitreceive, deploying", on}, {"OpenSSH sshd + git", raw}, {"gitreceive, deploy off", offm}}
	for _, r := range all {
		fmt.Printf("%-24s %10s %12s %14s %15s %15s\n", r.name, ms(medianWall(r.m)), ms(medianCPU(r.m)), mb(peakHWM(r.m)), mb(peakTree(r.m)), mb(peakRun(r.m).treeRSS))
	}
	for _, r := range all {
		fmt.Printf("PSS at the tree's peak, %s: %s\n", r.name, composition(peakRun(r.m).atPeak))
	}

	name := fmt.Sprintf("5. %d concurrent first pushes to %d apps", n, n)
	cpuNote := func(gr []serverRun) string {
		return fmt.Sprintf("server CPU (process + children, all %d pushes) %s vs sshd's %s", n, ms(medianCPU(gr)), ms(medianCPU(raw)))
	}
	tb.addTimes(name+", deploying to node local: total time", walls(on), walls(raw), "",
		"22-file app; each push built, placed and switched on node local; baseline: the same pushes to OpenSSH sshd + git receive-pack; "+cpuNote(on))
	tb.addTimes(name+", deploy off: total time", walls(offm), walls(raw), "<= 1.2x", cpuNote(offm))
	tb.add(name+", deploying: receiver peak RSS (VmHWM)", mb(peakHWM(on)), "", "", "",
		fmt.Sprintf("the receiver process alone, reset before each run, highest of the runs; idle %s; with deploy off %s (idle %s)",
			mb(idleOn), mb(peakHWM(offm)), mb(idleOff)))
	tb.add(name+", deploying: peak memory of the whole process tree (PSS)", mb(peakTree(on)), mb(peakTree(raw)), ratio(float64(peakTree(on)), float64(peakTree(raw))), "",
		fmt.Sprintf("PSS summed over the server and its descendants (git, hook relays, local agents | sshd sessions, shells, git), sampled every %s, highest of the runs; "+
			"with deploy off %s; at gitreceive's peak: %s", sampleEvery, mb(peakTree(offm)), composition(peakRun(on).atPeak)))
}

// smallAppFiles is a few more files for the concurrent pushes' apps: 22
// files, about 40 KB.
func smallAppFiles(seed int) map[string]string {
	files := map[string]string{}
	for k := 0; k < 20; k++ {
		files[fmt.Sprintf("lib/m%02d.py", k)] = strings.Repeat(fmt.Sprintf("# module %d of app %d\nVALUE = %d\n", k, seed, k*seed), 60)
	}
	return files
}

// benchConnections: N (1,000) SSH connections, 16 at a time, each a fresh
// TCP connection and SSH handshake (Go x/crypto/ssh clients, ed25519 key)
// running one command: `version` on the receiver, `echo` (through root's
// shell) on OpenSSH sshd, alternating run by run.
func benchConnections(t *testing.T, tb *benchTable) {
	receivertest.RequireTools(t, "ssh-keygen", "/usr/sbin/sshd")
	f := newFixture(t)
	sshd := startSSHD(t, f.alice)
	runs := benchRuns(t)
	n := benchEnv(t, "GITRECEIVE_BENCH_CONNS", 1000, 100000)
	const concurrency = 16
	// One key exchange for both servers (Go's default would be ML-KEM with
	// gitreceive and curve25519 with OpenSSH 9.2).
	kex := gossh.Config{KeyExchanges: []string{"curve25519-sha256"}}
	grCfg := &gossh.ClientConfig{Config: kex, User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(f.aliceKey.Signer)},
		HostKeyCallback: gossh.FixedHostKey(f.srv.HostKey(t)), Timeout: 10 * time.Second}
	sshdCfg := &gossh.ClientConfig{Config: kex, User: "root", Auth: []gossh.AuthMethod{gossh.PublicKeys(f.aliceKey.Signer)},
		HostKeyCallback: gossh.FixedHostKey(sshd.hostKey(t)), Timeout: 10 * time.Second}
	sshdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sshd.port))
	idle := procStatus(f.srv.PID(), "VmRSS")

	type connRun struct {
		serverRun
		p50, p99 time.Duration
	}
	run := func(pid int, resetHWM bool, addr string, cfg *gossh.ClientConfig, command, want string) connRun {
		var lat []time.Duration
		m := measureServer(t, pid, resetHWM, func() error {
			var mu sync.Mutex
			var errs []error
			next := make(chan int)
			var wg sync.WaitGroup
			for w := 0; w < concurrency; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						d, err := sshCommand(addr, cfg, command, want)
						mu.Lock()
						if err != nil {
							errs = append(errs, err)
						} else {
							lat = append(lat, d)
						}
						mu.Unlock()
					}
				}()
			}
			for i := 0; i < n; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
			if len(errs) > 0 {
				return fmt.Errorf("%d of %d commands failed, the first: %w", len(errs), n, errs[0])
			}
			return nil
		})
		slices.Sort(lat)
		return connRun{serverRun: m, p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)]}
	}
	var gr, base []connRun
	for i := 0; i < runs; i++ {
		gr = append(gr, run(f.srv.PID(), true, f.srv.Addr, grCfg, "version", "gitreceive "))
		base = append(base, run(sshd.cmd.Process.Pid, false, sshdAddr, sshdCfg, "echo gitreceive version", "gitreceive "))
	}
	rate := func(rs []connRun) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, float64(n)/r.wall.Seconds())
		}
		return median(v)
	}
	pick := func(rs []connRun, f func(connRun) time.Duration) []time.Duration {
		var v []time.Duration
		for _, r := range rs {
			v = append(v, f(r))
		}
		return v
	}
	servers := func(rs []connRun) []serverRun {
		var v []serverRun
		for _, r := range rs {
			v = append(v, r.serverRun)
		}
		return v
	}
	p50 := func(r connRun) time.Duration { return r.p50 }
	p99 := func(r connRun) time.Duration { return r.p99 }
	cpuPer := func(rs []connRun) string { return ms(medianCPU(servers(rs)) / time.Duration(n)) }

	fmt.Printf("\n%d SSH commands, %d at a time, fresh TCP + SSH handshake each (Go clients), median of %d\n", n, concurrency, runs)
	fmt.Printf("%-24s %12s %10s %10s %14s %14s %15s\n", "server", "commands/s", "p50", "p99", "CPU/command", "server VmHWM", "tree peak PSS")
	for _, r := range []struct {
		name string
		rs   []connRun
	}{{"gitreceive `version`", gr}, {"OpenSSH sshd `echo`", base}} {
		fmt.Printf("%-24s %12.0f %10s %10s %14s %14s %15s\n", r.name, rate(r.rs), ms(median(pick(r.rs, p50))), ms(median(pick(r.rs, p99))),
			cpuPer(r.rs), mb(peakHWM(servers(r.rs))), mb(peakTree(servers(r.rs))))
	}

	name := fmt.Sprintf("6. %d SSH connections running `ssh silver version`, %d at a time", n, concurrency)
	clients := "Go x/crypto/ssh clients in the bench process, a fresh TCP connection + SSH handshake (curve25519, ed25519 key) per command; baseline: OpenSSH sshd running `echo` through root's shell"
	tb.add(name+": throughput", fmt.Sprintf("%.0f commands/s", rate(gr)), fmt.Sprintf("%.0f commands/s", rate(base)), ratio(rate(gr), rate(base)), "",
		clients+"; ratio > 1: gitreceive serves more; server CPU per command "+cpuPer(gr)+" vs sshd's "+cpuPer(base))
	tb.addTimes(name+": latency p50", pick(gr, p50), pick(base, p50), "", "connect to exit status, per command; median of the runs' p50")
	tb.addTimes(name+": latency p99", pick(gr, p99), pick(base, p99), "", "median of the runs' p99")
	tb.add(name+": peak memory", mb(peakHWM(servers(gr))), mb(peakTree(servers(base))), ratio(float64(peakHWM(servers(gr))), float64(peakTree(servers(base)))), "",
		fmt.Sprintf("receiver VmHWM (one process: `version` starts no child; reset before each run; idle %s) vs PSS summed over sshd and its per-connection processes, sampled every %s; highest of the runs",
			mb(idle), sampleEvery))
}

// sshCommand connects, runs command and checks its output starts with want.
func sshCommand(addr string, cfg *gossh.ClientConfig, command, want string) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, err
	}
	c, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if err != nil {
		return 0, err
	}
	client := gossh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return 0, err
	}
	out, err := sess.Output(command)
	if err != nil {
		return 0, fmt.Errorf("%s: %w (%q)", command, err, out)
	}
	if !strings.HasPrefix(string(out), want) {
		return 0, fmt.Errorf("%s printed %q", command, out)
	}
	return time.Since(start), nil
}

func (s sshdProc) hostKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(filepath.Dir(s.root), "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, _, _, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// serverRun is what one run cost the server process pid.
type serverRun struct {
	wall     time.Duration
	cpu      time.Duration // user + system of the process and its waited-for descendants
	hwmKB    int64         // VmHWM of the process (reset first when asked)
	treePeak int64         // highest sampled PSS of the process and its descendants, kB
	treeRSS  int64         // the sum of their RSS in that sample (shared pages counted in every process)
	atPeak   map[string]procGroup
}

const sampleEvery = 100 * time.Millisecond

// measureServer runs work and reports what it cost the server pid. A
// failing work is an error of the benchmark.
func measureServer(t *testing.T, pid int, resetHWM bool, work func() error) serverRun {
	t.Helper()
	if resetHWM {
		// "5" resets the peak RSS to the current RSS (proc(5), Linux >= 4.0).
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			t.Logf("cannot reset VmHWM of %d: %v", pid, err)
		}
	}
	cpu0 := procCPU(pid)
	stop := make(chan struct{})
	peak := make(chan serverRun)
	go func() {
		var p serverRun
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			if m := treeMemory(pid); m.pss > p.treePeak {
				p.treePeak, p.treeRSS, p.atPeak = m.pss, m.rss, m.groups
			}
			select {
			case <-stop:
				peak <- p
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	err := work()
	wall := time.Since(start)
	close(stop)
	r := <-peak
	r.wall, r.cpu, r.hwmKB = wall, procCPU(pid)-cpu0, procStatus(pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func walls(rs []serverRun) []time.Duration {
	var v []time.Duration
	for _, r := range rs {
		v = append(v, r.wall)
	}
	return v
}

func medianWall(rs []serverRun) time.Duration { return median(walls(rs)) }

func medianCPU(rs []serverRun) time.Duration {
	var v []time.Duration
	for _, r := range rs {
		v = append(v, r.cpu)
	}
	return median(v)
}

func peakHWM(rs []serverRun) int64 {
	var p int64
	for _, r := range rs {
		p = max(p, r.hwmKB)
	}
	return p
}

func peakTree(rs []serverRun) int64 { return peakRun(rs).treePeak }

// peakRun is the run with the highest tree peak.
func peakRun(rs []serverRun) serverRun {
	var p serverRun
	for _, r := range rs {
		if r.treePeak >= p.treePeak {
			p = r
		}
	}
	return p
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/PID/status.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// procStat is the fields of /proc/PID/stat after the command name.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux.
const clockTick = 100

// procCPU is utime + stime + cutime + cstime of pid.
func procCPU(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14-17 of stat, counted from state (field 3)
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// treeMemory sums the RSS and the PSS of pid and all its descendants, and
// says which programs (by command name) the PSS is made of.
func treeMemory(pid int) treeMem {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return treeMem{}
	}
	children := map[int][]int{}
	rss := map[int]int64{}
	comm := map[int]string{}
	page := int64(os.Getpagesize()) / 1024
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		open, closing := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(string(data[closing+1:]))
		if len(f) < 22 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pages, _ := strconv.ParseInt(f[21], 10, 64) // field 24, rss
		children[ppid] = append(children[ppid], p)
		rss[p] = pages * page
		comm[p] = string(data[open+1 : closing])
	}
	var t treeMem
	t.groups = map[string]procGroup{}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		pss := smapsPss(p)
		t.rss += rss[p]
		t.pss += pss
		g := t.groups[comm[p]]
		g.n++
		g.kB += pss
		t.groups[comm[p]] = g
		queue = append(queue, children[p]...)
	}
	return t
}

// treeMem is the memory of a process tree, kB.
type treeMem struct {
	rss, pss int64
	groups   map[string]procGroup // PSS by command name
}

// smapsPss is the proportional set size of pid, kB: its private pages
// plus its share of the pages it shares (a binary's text, libraries).
func smapsPss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// procGroup is the processes of one command name in a tree.
type procGroup struct {
	n  int
	kB int64
}

// composition shows a tree's programs, largest first: "git 50 (300 MB), ...".
func composition(groups map[string]procGroup) string {
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return int(groups[b].kB - groups[a].kB) })
	var parts []string
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s x%d %s", name, groups[name].n, mb(groups[name].kB)))
	}
	return strings.Join(parts, ", ")
}
