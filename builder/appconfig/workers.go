package appconfig

import (
	"errors"
	"strconv"
)

// workerSetting is a whole-number key tuning the app's worker processes
// (or how long a new release may take to come up), with the range that
// makes sense for it.
type workerSetting struct {
	key      string
	min, max int
	unit     string // appended to the range in messages, e.g. " seconds"
	field    func(*Config) *int
}

var workerSettings = []workerSetting{
	{keyWorkers, 1, 64, "", func(c *Config) *int { return &c.Workers }},
	{keyHarakiri, 1, 3600, " seconds", func(c *Config) *int { return &c.Harakiri }},
	{keyMaxRequests, 1, 1000000, "", func(c *Config) *int { return &c.MaxRequests }},
	{keyReloadOnRSS, minReloadOnRSS, 65536, " MB", func(c *Config) *int { return &c.ReloadOnRSS }},
	{keyHealthTimeout, 1, 600, " seconds", func(c *Config) *int { return &c.HealthCheckTimeout }},
	// The receiver's max_processes caps it further (CheckLimits).
	{keyMaxProcesses, MinMaxProcesses, ProcessesCeiling, "", func(c *Config) *int { return &c.MaxProcesses }},
	// cgroup v2's cpu.weight range.
	{keyCPUWeight, 1, 10000, "", func(c *Config) *int { return &c.CPUWeight }},
}

// checkWorkerSettings fills cfg's worker settings; unset ones stay 0, the
// default.
func (c *checker) checkWorkerSettings(cfg *Config) {
	for _, w := range workerSettings {
		*w.field(cfg) = c.checkWorkerSetting(w)
	}
}

func (c *checker) checkWorkerSetting(w workerSetting) int {
	value, line, ok := c.oneLine(w.key)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(value)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		c.errorf(line, w.key, "%q is not a whole number; set a number from %d to %d%s, or remove %s to use the default",
			value, w.min, w.max, w.unit, w.key)
		return 0
	case err != nil || n < w.min || n > w.max:
		c.errorf(line, w.key, "%s is out of range; set a number from %d to %d%s, or remove %s to use the default",
			value, w.min, w.max, w.unit, w.key)
		return 0
	}
	return n
}
