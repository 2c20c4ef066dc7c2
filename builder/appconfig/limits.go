package appconfig

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Bounds of the resource keys that hold whatever the receiver's settings
// say: below them an instance cannot run, above them the kernel's cgroup
// files refuse the number.
const (
	// MinMemoryMB is the least memory an instance may be given: a uWSGI
	// master and one worker of a small app.
	MinMemoryMB = 32
	// MemoryCeilingMB (16 TiB) bounds every memory size read, so that
	// sizes stay far from int overflow on any platform.
	MemoryCeilingMB = 16 << 20
	// MinMaxProcesses is the least max_processes: a master, a few workers
	// and the processes an instance runs beside them (ExtraProcesses).
	MinMaxProcesses = 8
	// ProcessesCeiling is Linux's highest pid_max (PID_MAX_LIMIT on 64-bit):
	// pids.max can never need more.
	ProcessesCeiling = 4194304
	// ExtraProcesses is what max_processes must hold beyond the workers:
	// uWSGI's master, and room for what an instance runs beside its web
	// workers (the previous release's idle master answering prev.HOST and
	// the worker it starts on demand, an update_fetch script or `run`).
	ExtraProcesses = 4
)

// The node agent's defaults for the worker keys, which the resource checks
// need when app.ini leaves them out. receiver's tests check that they are
// agent.DefaultWorkers and agent.DefaultReloadOnRSS (builder cannot import
// the agent).
const (
	DefaultWorkers     = 2
	DefaultReloadOnRSS = 512
)

// Limits are the receiver's settings that bound what one instance may use
// on a node. A zero field means that setting's default (DefaultLimits), so
// a receiver configured in code gets the defaults.
type Limits struct {
	DefaultMemoryMB     int // default_memory: an app.ini without memory gets this
	MaxMemoryMB         int // max_memory: an app.ini asking more is refused
	DefaultMaxProcesses int // default_max_processes: an app.ini without max_processes gets this
	MaxProcesses        int // max_processes: an app.ini asking more is refused
}

// DefaultLimits are the receiver's settings when its gitreceive.ini says
// nothing: room for a typical Python app with a few workers, and a cap that
// stops one app from taking a small node's memory.
func DefaultLimits() Limits {
	return Limits{DefaultMemoryMB: 512, MaxMemoryMB: 4096, DefaultMaxProcesses: 128, MaxProcesses: 1024}
}

// WithDefaults returns l with its zero fields set to DefaultLimits'.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct {
		v *int
		d int
	}{
		{&l.DefaultMemoryMB, d.DefaultMemoryMB}, {&l.MaxMemoryMB, d.MaxMemoryMB},
		{&l.DefaultMaxProcesses, d.DefaultMaxProcesses}, {&l.MaxProcesses, d.MaxProcesses},
	} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	return l
}

// Resources is what an instance runs with on each node once the receiver's
// defaults fill what app.ini leaves out.
type Resources struct {
	MemoryMB     int // memory, else the receiver's default_memory
	MaxProcesses int // max_processes, else the receiver's default_max_processes
	Workers      int // workers, else DefaultWorkers
	// ReloadOnRSS is reload_on_rss, else each worker's share of the
	// memory (at most DefaultReloadOnRSS): a worker is recycled before the
	// workers together reach the instance's memory limit, where the kernel
	// would kill one in the middle of a request.
	ReloadOnRSS int
}

// Resources fills in what c leaves to the receiver (l, zero fields meaning
// DefaultLimits). It does not check anything: CheckLimits does.
func (c *Config) Resources(l Limits) Resources {
	l = l.WithDefaults()
	r := Resources{MemoryMB: c.MemoryMB, MaxProcesses: c.MaxProcesses, Workers: c.Workers, ReloadOnRSS: c.ReloadOnRSS}
	if r.MemoryMB == 0 {
		r.MemoryMB = l.DefaultMemoryMB
	}
	if r.MaxProcesses == 0 {
		r.MaxProcesses = l.DefaultMaxProcesses
	}
	if r.Workers == 0 {
		r.Workers = DefaultWorkers
	}
	if r.ReloadOnRSS == 0 {
		// At least 1: 0 would mean the agent's default, 512 MB, whatever
		// the memory (32M shared by 64 workers rounds down to 0).
		r.ReloadOnRSS = max(1, min(DefaultReloadOnRSS, r.MemoryMB/r.Workers))
	}
	return r
}

// CheckLimits checks c's resource keys against the receiver's limits l
// (zero fields meaning DefaultLimits): nothing above a cap, and workers
// that fit in the memory and processes the instance gets. Parse cannot
// check this, as the receiver's settings decide; the receiver calls it
// before anything of a deploy is provisioned or uploaded. Its error is an
// Errors, each naming the file, line and key, like Parse's.
func (c *Config) CheckLimits(l Limits) error {
	l = l.WithDefaults()
	r := c.Resources(l)
	at := c.at
	if at == nil {
		at = &keyPositions{file: "app.ini"}
	}
	var errs Errors
	fail := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: at.file, Line: at.lines[key], Key: key, Message: fmt.Sprintf(format, args...)})
	}
	if c.MemoryMB > l.MaxMemoryMB {
		fail(keyMemory, "%s is more than this receiver allows (max_memory = %s); lower memory or ask the operator to raise max_memory",
			at.text(keyMemory, FormatSize(c.MemoryMB)), FormatSize(l.MaxMemoryMB))
	}
	if c.MaxProcesses > l.MaxProcesses {
		fail(keyMaxProcesses, "%d is more than this receiver allows (its max_processes setting = %d); lower max_processes or ask the operator to raise the receiver's max_processes",
			c.MaxProcesses, l.MaxProcesses)
	}
	if c.ReloadOnRSS != 0 && r.Workers*c.ReloadOnRSS > r.MemoryMB {
		fail(keyReloadOnRSS, "%s x reload_on_rss = %d x %d MB = %d MB, more than %s; %s",
			c.workersText(at), r.Workers, c.ReloadOnRSS, r.Workers*c.ReloadOnRSS, c.memoryText(at, l), c.reloadFix(r, l))
	}
	if need := r.Workers + ExtraProcesses; need > r.MaxProcesses {
		fail(keyWorkers, "%d workers need max_processes = %d or more (the workers, uWSGI's master and %d more), but %s; %s",
			r.Workers, need, ExtraProcesses-1, c.maxProcessesText(at, l), workersFix(r, l))
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
		return errs
	}
	return nil
}

// memoryText says where the instance's memory comes from, for messages.
func (c *Config) memoryText(at *keyPositions, l Limits) string {
	if c.MemoryMB == 0 {
		return fmt.Sprintf("the %s this instance may use (memory is not set, so it is the receiver's default_memory)", FormatSize(l.DefaultMemoryMB))
	}
	return fmt.Sprintf("memory = %s%s", at.text(keyMemory, FormatSize(c.MemoryMB)), at.onLine(keyMemory))
}

// workersText names the workers in a message: the key when app.ini sets
// it, else the default.
func (c *Config) workersText(at *keyPositions) string {
	if c.Workers == 0 {
		return "workers (not set, so the default)"
	}
	return "workers" + at.onLine(keyWorkers)
}

// maxProcessesText says where the instance's max_processes comes from.
func (c *Config) maxProcessesText(at *keyPositions, l Limits) string {
	if c.MaxProcesses == 0 {
		return fmt.Sprintf("max_processes is not set and the receiver's default_max_processes is %d", l.DefaultMaxProcesses)
	}
	return fmt.Sprintf("max_processes = %d%s", c.MaxProcesses, at.onLine(keyMaxProcesses))
}

// reloadFix says what to do about workers that can grow past the memory;
// more memory is only offered when the receiver allows it.
func (c *Config) reloadFix(r Resources, l Limits) string {
	var fixes []string
	if share := r.MemoryMB / r.Workers; share >= minReloadOnRSS {
		fixes = append(fixes, fmt.Sprintf("lower reload_on_rss to %d or less", share))
	}
	fixes = append(fixes, "use fewer workers")
	if need := r.Workers * c.ReloadOnRSS; need <= l.MaxMemoryMB {
		fixes = append(fixes, "set memory = "+FormatSize(need)+" or more")
	}
	if len(fixes) == 1 {
		return fixes[0]
	}
	return strings.Join(fixes[:len(fixes)-1], ", ") + " or " + fixes[len(fixes)-1]
}

// workersFix says what to do about workers max_processes cannot hold.
func workersFix(r Resources, l Limits) string {
	need := r.Workers + ExtraProcesses
	fewer := fmt.Sprintf("or use %d workers or fewer", max(1, r.MaxProcesses-ExtraProcesses))
	if need > l.MaxProcesses {
		return fmt.Sprintf("this receiver allows at most max_processes = %d, so use %d workers or fewer, or ask the operator to raise its max_processes",
			l.MaxProcesses, l.MaxProcesses-ExtraProcesses)
	}
	return fmt.Sprintf("set max_processes = %d or more (this receiver allows up to %d), %s", need, l.MaxProcesses, fewer)
}

// keyPositions remembers where the keys CheckLimits judges were set, so
// that its errors point at lines as Parse's do.
type keyPositions struct {
	file  string
	lines map[string]int    // key -> line; absent when unset or unknown
	texts map[string]string // key -> the value as written, where messages show it
}

func (at *keyPositions) text(key, fallback string) string {
	if t := at.texts[key]; t != "" {
		return t
	}
	return fallback
}

// onLine is " (line N)" when key's line is known.
func (at *keyPositions) onLine(key string) string {
	if n := at.lines[key]; n > 0 {
		return fmt.Sprintf(" (line %d)", n)
	}
	return ""
}

// recordPositions keeps where the resource keys are for CheckLimits.
func (c *checker) recordPositions(cfg *Config) {
	at := &keyPositions{file: c.file, lines: map[string]int{}, texts: map[string]string{}}
	for _, key := range []string{keyMemory, keyMaxProcesses, keyWorkers, keyReloadOnRSS} {
		if s, ok := c.setting(key); ok {
			at.lines[key] = s.line()
			at.texts[key] = strings.TrimSpace(s.value)
		}
	}
	cfg.at = at
}

// minReloadOnRSS is reload_on_rss's least value (workerSettings).
const minReloadOnRSS = 16

// size is a memory size as app.ini and gitreceive.ini write it: a whole
// number of megabytes, or one followed by M or G (any case, B optional).
var size = regexp.MustCompile(`^([0-9]+)([MmGg][Bb]?)?$`)

// Errors of ParseSize.
var (
	ErrSizeSyntax   = errors.New("not a size")
	ErrSizeTooLarge = errors.New("size too large")
)

// ParseSize reads a memory size ("512M", "1G", "256m", "2048": megabytes)
// into megabytes. A size above MemoryCeilingMB is ErrSizeTooLarge, anything
// that is not a size ErrSizeSyntax.
func ParseSize(s string) (int, error) {
	m := size.FindStringSubmatch(s)
	if m == nil {
		return 0, ErrSizeSyntax
	}
	digits := strings.TrimLeft(m[1], "0")
	if len(digits) > 12 {
		return 0, ErrSizeTooLarge // before Atoi could overflow
	}
	n, err := strconv.Atoi("0" + digits)
	if err != nil {
		return 0, ErrSizeSyntax
	}
	if m[2] != "" && strings.ToUpper(m[2][:1]) == "G" {
		n *= 1024
	}
	if n > MemoryCeilingMB {
		return 0, ErrSizeTooLarge
	}
	return n, nil
}

// FormatSize writes megabytes the shortest way ParseSize reads back:
// 4096 is "4G", 1536 is "1536M".
func FormatSize(mb int) string {
	if mb != 0 && mb%1024 == 0 {
		return strconv.Itoa(mb/1024) + "G"
	}
	return strconv.Itoa(mb) + "M"
}

// checkMemory reads memory, the most the instance's processes may use
// together on each node; 0 when unset (the receiver's default).
func (c *checker) checkMemory() int {
	value, line, ok := c.oneLine(keyMemory)
	if !ok {
		return 0
	}
	mb, err := ParseSize(value)
	switch {
	case errors.Is(err, ErrSizeTooLarge):
		c.errorf(line, keyMemory, "%s is more than any receiver allows (at most %s); lower memory", value, FormatSize(MemoryCeilingMB))
	case err != nil:
		c.errorf(line, keyMemory, "%q is not a size; write megabytes or gigabytes such as 512M or 1G (a plain number is megabytes), or remove memory to use the receiver's default", value)
	case mb < MinMemoryMB:
		c.errorf(line, keyMemory, "%s is less than %dM, the least an instance can run in; set memory = %dM or more, or remove memory to use the receiver's default",
			value, MinMemoryMB, MinMemoryMB)
	default:
		return mb
	}
	return 0
}
