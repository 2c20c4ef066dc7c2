package testbed

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// parentPID reads the parent of pid from /proc/PID/stat.
func parentPID(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may contain spaces and parentheses,
	// so parse from the last ')'.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too short", pid)
	}
	return strconv.Atoi(fields[1])
}

// findChild waits (bounded by ctx) for parent's first child to appear and
// returns its pid. It is how we learn a node's init pid: unshare --fork
// starts init as its only child.
func findChild(ctx context.Context, parent int) (int, error) {
	for attempt := 0; attempt < 500; attempt++ {
		if pid := scanForChild(parent); pid > 0 {
			return pid, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no child of pid %d: %w", parent, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("no child of pid %d after 500 attempts", parent)
}

func scanForChild(parent int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentPID(pid); err == nil && ppid == parent {
			return pid
		}
	}
	return 0
}

func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
