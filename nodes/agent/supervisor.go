package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// The workers of a release run under one supervisor per instance, release
// and node (docs/ARCHITECTURE.md, "Workers"): a vassal of the emperor like
// the web one, but its file (ID.vN.workers.ini) carries workersMarker, so
// the emperor's wrapper (VassalExec) runs superviseWorkers in the
// instance's cgroup instead of uWSGI. The emperor starts it again at boot
// and when it dies, and stops it by the vassal protocol (a 0 byte on
// UWSGI_EMPEROR_FD) when the file goes. The supervisor stays root, like a
// uWSGI master before it drops privileges, to write the workers' logs in
// root's directory; each worker runs as the instance's user with no
// supplementary groups, no_new_privs (set by the wrapper, inherited) and
// the release's environment (as `run` gives it), and dies with the
// supervisor (Pdeathsig).
const workersMarker = "; gitreceive-workers:"

// Bounds of a worker's life under the supervisor.
const (
	// earlyExit: a worker that exits sooner than this after its start is
	// failing, not finishing: the next start waits longer (back-off), and
	// the push that started the release reports it.
	earlyExit       = 10 * time.Second
	firstBackoff    = time.Second
	maxBackoff      = time.Minute
	crashLoopStarts = 3 // early exits in a row that make a crash loop
	workerLogCap    = 8 << 20
)

// workersState is what the supervisor says of its workers (run/vN.workers.json,
// root's): read by `ps` and by the agent watching a new release's start.
type workersState struct {
	Release    int            `json:"release"`
	Supervisor int            `json:"supervisor_pid"`
	Started    time.Time      `json:"started"`
	Processes  []processState `json:"processes"`
}

// processState is one worker process (NAME, copy Index of its count).
type processState struct {
	Name      string    `json:"name"`
	Index     int       `json:"index"`
	PID       int       `json:"pid"` // 0 while it waits to start again
	Started   time.Time `json:"started"`
	Restarts  int       `json:"restarts"`
	LastExit  string    `json:"last_exit,omitempty"` // "exit status 1", "signal: killed"
	ExitedAt  time.Time `json:"exited_at"`
	CrashLoop bool      `json:"crash_loop,omitempty"`
	Error     string    `json:"error,omitempty"`     // why it could not start
	OneNode   bool      `json:"one_node,omitempty"`  // worker.NAME.nodes = one
	Elsewhere bool      `json:"elsewhere,omitempty"` // OneNode, and this node does not hold the singletons
}

// crashLooping says whether the process is in a crash loop now: it was at
// its last exit and has not run for earlyExit since.
func (p processState) crashLooping(now time.Time) bool {
	return p.CrashLoop && (p.PID == 0 || now.Sub(p.Started) < earlyExit)
}

// supervisor runs release n's workers.
type supervisor struct {
	ri      runtimeInstance
	n       int
	spec    Spec
	release string   // real path
	env     []string // the release's environment
	t       tenant
	hold    *holdGate // whether this node holds the singletons

	mu    sync.Mutex
	state workersState
	logs  map[string]*cappedLog
	// writing keeps state file writes in order: a write of an older
	// state must not land after a newer one.
	writing sync.Mutex
}

// superviseWorkers is the supervisor's life: it returns once asked to
// stop (the emperor's 0 byte or its pipe closing, SIGTERM, SIGINT) and
// every worker has ended.
func superviseWorkers(app, instance string, n int) error {
	ri := SystemRuntime().instance(app, instance)
	s, workers, err := newSupervisor(ri, n)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	restart := s.watchControl(stop)
	go s.watchHold(ctx)
	s.scheduleCron(ctx, s.spec)
	s.runAll(ctx, workers, restart)
	os.Remove(s.statePath())
	return nil
}

// newSupervisor reads release n's spec and environment and opens its
// workers' logs.
func newSupervisor(ri runtimeInstance, n int) (*supervisor, []WorkerSpec, error) {
	if err := checkNames(ri.app, ri.name, n); err != nil {
		return nil, nil, err
	}
	spec, err := readSpec(ri.dir(), n)
	if err != nil {
		return nil, nil, err
	}
	release, err := filepath.EvalSymlinks(ri.releaseDir(n))
	if err != nil {
		return nil, nil, err
	}
	env, err := ri.runEnv(n, false)
	if err != nil {
		return nil, nil, err
	}
	t, err := ri.instanceUser(false)
	if err != nil {
		return nil, nil, err
	}
	s := &supervisor{ri: ri, n: n, spec: spec, release: release, env: env, t: t, logs: map[string]*cappedLog{},
		hold: newHoldGate(holdsSingletons(ri.dir(), spec))}
	s.state = workersState{Release: n, Supervisor: os.Getpid(), Started: time.Now().UTC()}
	workers := spec.BackgroundWorkers
	held, _ := s.hold.get()
	for _, w := range workers {
		l, err := openCappedLog(ri.workerLogPath(w.Name), t.gid, workerLogCap)
		if err != nil {
			return nil, nil, err
		}
		s.logs[w.Name] = l
		for i := 1; i <= w.Count; i++ {
			s.state.Processes = append(s.state.Processes, processState{Name: w.Name, Index: i, OneNode: w.OneNode, Elsewhere: w.OneNode && !held})
		}
	}
	return s, workers, nil
}

func (s *supervisor) statePath() string { return workersStatePath(s.ri.dir(), s.n) }

// workersStatePath is release n's workersState file.
func workersStatePath(dir string, n int) string { return releaseRunPrefix(dir, n) + ".workers.json" }

// restartRequestPath names the workers `ps:restart` restarts (one name a
// line; none: all), read on SIGHUP.
func restartRequestPath(dir string, n int) string {
	return releaseRunPrefix(dir, n) + ".workers.restart"
}

// watchControl ends the supervisor (stop) on the emperor's stop, on
// SIGTERM or SIGINT; SIGHUP (ps:restart) and the emperor's reload send the
// workers to restart (an empty set: all) on the channel it returns.
func (s *supervisor) watchControl(stop func()) <-chan map[string]bool {
	restart := make(chan map[string]bool, 4)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				stop()
				return
			}
			restart <- s.readRestartRequest()
		}
	}()
	fd, err := strconv.Atoi(os.Getenv("UWSGI_EMPEROR_FD"))
	if err != nil {
		return restart
	}
	syscall.CloseOnExec(fd)
	pipe := os.NewFile(uintptr(fd), "emperor")
	go func() {
		b := make([]byte, 1)
		for {
			if _, err := pipe.Read(b); err != nil || b[0] == 0 {
				stop() // the vassal file was removed, or the emperor is gone
				return
			}
			if b[0] == 1 { // the vassal file was touched: reload
				restart <- nil
			}
		}
	}()
	return restart
}

func (s *supervisor) readRestartRequest() map[string]bool {
	p := restartRequestPath(s.ri.dir(), s.n)
	data, err := os.ReadFile(p)
	os.Remove(p)
	if err != nil {
		return nil
	}
	names := map[string]bool{}
	for _, name := range strings.Fields(string(data)) {
		names[name] = true
	}
	return names
}

// runAll runs every worker process until ctx ends, passing restart
// requests on to the processes they name.
func (s *supervisor) runAll(ctx context.Context, workers []WorkerSpec, restart <-chan map[string]bool) {
	var wg sync.WaitGroup
	var kicks []chan struct{}
	var kickNames []string
	slot := 0
	for _, w := range workers {
		for i := 1; i <= w.Count; i++ {
			kick := make(chan struct{}, 1)
			kicks, kickNames = append(kicks, kick), append(kickNames, w.Name)
			wg.Add(1)
			go func(w WorkerSpec, slot int) {
				defer wg.Done()
				if w.OneNode {
					s.runSingleton(ctx, w, slot, kick)
				} else {
					s.runProcess(ctx, w, slot, kick)
				}
			}(w, slot)
			slot++
		}
	}
	s.writeState()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case names := <-restart:
			for i, kick := range kicks {
				if len(names) == 0 || names[kickNames[i]] {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			}
		}
	}
}

// runProcess keeps one worker process running (state slot) until ctx ends:
// started again when it exits, after a back-off that doubles with every
// early exit in a row; kick restarts it at once (SIGTERM first).
func (s *supervisor) runProcess(ctx context.Context, w WorkerSpec, slot int, kick <-chan struct{}) {
	early := 0
	for ctx.Err() == nil {
		started := time.Now()
		cmd, err := s.spawn(w, slot)
		if err != nil {
			s.update(slot, func(p *processState) { p.Error, p.PID = err.Error(), 0 })
			s.logs[w.Name].line("cannot start %s: %v", w.Name, err)
			early++
		} else {
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-ctx.Done():
				s.terminate(w, cmd, done)
				return
			case <-kick:
				s.terminate(w, cmd, done)
				early = 0
				continue
			case err := <-done:
				s.exited(w, slot, err, time.Since(started) < earlyExit, &early)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
			early = 0
		case <-time.After(backoff(early)):
		}
	}
}

// backoff is the wait before the next start after early early exits in a
// row: 1 s, 2 s, 4 s ... up to a minute.
func backoff(early int) time.Duration {
	d := firstBackoff
	for i := 1; i < early && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// exited records a process's end.
func (s *supervisor) exited(w WorkerSpec, slot int, err error, early bool, inARow *int) {
	how := "exit status 0"
	if err != nil {
		how = err.Error()
	}
	if early {
		*inARow++
	} else {
		*inARow = 0
	}
	n := *inARow
	s.update(slot, func(p *processState) {
		p.PID, p.LastExit, p.ExitedAt, p.Restarts = 0, how, time.Now().UTC(), p.Restarts+1
		p.CrashLoop = n >= crashLoopStarts
	})
	s.logs[w.Name].line("%s exited (%s); starting it again in %s", w.Name, how, backoff(n))
}

// spawn starts one copy of w as the instance's user.
func (s *supervisor) spawn(w WorkerSpec, slot int) (*exec.Cmd, error) {
	argv, err := scriptCommand(s.release, w.Command, envValue(s.env, "PATH"), w.Args)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.release
	cmd.Env = s.env
	out := s.logs[w.Name]
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: &syscall.Credential{Uid: uint32(s.t.uid), Gid: uint32(s.t.gid), Groups: []uint32{}},
		// The worker must not outlive its supervisor (killed at the end
		// of its stop timeout, or by the emperor).
		Pdeathsig: syscall.SIGKILL,
	}
	// A grandchild holding the output pipe must not keep Wait waiting.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	s.update(slot, func(p *processState) { p.PID, p.Started, p.Error = cmd.Process.Pid, now, "" })
	out.line("%s started (pid %d)", w.Name, cmd.Process.Pid)
	return cmd, nil
}

// terminate stops a running process's group: SIGTERM, then SIGKILL after
// w's stop timeout.
func (s *supervisor) terminate(w WorkerSpec, cmd *exec.Cmd, exited <-chan error) {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Duration(w.StopTimeout) * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		s.logs[w.Name].line("%s did not stop %d s after SIGTERM: killed", w.Name, w.StopTimeout)
		<-exited
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // what it left in its group
}

// update changes slot's state and writes the state file.
func (s *supervisor) update(slot int, change func(*processState)) {
	s.mu.Lock()
	change(&s.state.Processes[slot])
	s.mu.Unlock()
	s.writeState()
}

func (s *supervisor) writeState() {
	s.writing.Lock()
	defer s.writing.Unlock()
	s.mu.Lock()
	data, err := json.Marshal(s.state)
	s.mu.Unlock()
	if err == nil {
		_ = atomicfile.Write(s.statePath(), data, 0o640)
	}
}

// readWorkersState reads release n's state file (root's, in run/).
func readWorkersState(dir string, n int) (workersState, error) {
	var st workersState
	data, err := os.ReadFile(workersStatePath(dir, n))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// cappedLog is a worker's log: what it prints, and the supervisor's lines
// on its starts and exits. Past limit bytes the file moves to NAME.1 (the
// one before is dropped) and a new one starts.
type cappedLog struct {
	mu    sync.Mutex
	path  string
	gid   int
	limit int64
	f     *os.File
	size  int64
}

// openCappedLog opens path (in a directory only root may write) for
// appending: root's, readable by the instance's group (gid).
func openCappedLog(path string, gid int, limit int64) (*cappedLog, error) {
	l := &cappedLog{path: path, gid: gid, limit: limit}
	return l, l.open()
}

func (l *cappedLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("the worker log %s: %w", l.path, err)
	}
	if err := f.Chown(0, l.gid); err != nil {
		f.Close()
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func (l *cappedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size+int64(len(p)) > l.limit && l.size > 0 {
		l.f.Close()
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// line writes one line of the supervisor's own, dated.
func (l *cappedLog) line(format string, args ...any) {
	fmt.Fprintf(l, "%s [gitreceive] %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// workersVassal reads the workers marker of a vassal file (root's, in the
// root-owned vassals directory): which release's workers it supervises.
func workersVassal(file string) (app, instance string, n int, ok bool) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 4096))
	for sc.Scan() {
		rest, found := bytes.CutPrefix(sc.Bytes(), []byte(workersMarker))
		if !found {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) != 3 {
			return "", "", 0, false
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil || checkNames(fields[0], fields[1], n) != nil {
			return "", "", 0, false
		}
		return fields[0], fields[1], n, true
	}
	return "", "", 0, false
}
