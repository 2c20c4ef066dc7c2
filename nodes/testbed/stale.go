package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CleanupStale removes what a crashed run with this prefix left behind:
// processes in its network namespaces (which takes their pid namespaces and
// mounts down), the nodes' cgroups, the namespaces, and its veths and
// bridge. It does not touch a bed whose prefix merely starts with prefix,
// and it removes no files: WorkDir belongs to the caller.
func CleanupStale(prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	ours := staleNamePattern(prefix)

	namespaces, err := listNetns()
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range namespaces {
		if !ours.MatchString(ns) {
			continue
		}
		if err := killNetnsProcesses(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, deleteNetns(ctx, ns))
	}
	// A host without the cgroups Start needs has none of ours to remove.
	if cgroups, err := detectCgroups(); err == nil {
		dirs, err := cgroups.staleNodeCgroups(prefix)
		errs = append(errs, err, removeNodeCgroups(dirs))
	}

	links, err := listLinks()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, link := range links {
		if ours.MatchString(link) {
			errs = append(errs, deleteLink(ctx, link))
		}
	}
	return errors.Join(errs...)
}

// killNetnsProcesses SIGKILLs every process in network namespace ns and waits
// (bounded) until none is left. Node inits go first, alone: their parents
// (unshare) then reap them and exit, rather than leaving zombies to the
// host's PID 1.
func killNetnsProcesses(ctx context.Context, ns string) error {
	if err := killNodeInits(ctx, ns); err != nil {
		return err
	}
	for attempt := 0; attempt < 50; attempt++ {
		out, err := runCommand(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return fmt.Errorf("testbed: stale namespace %s: %w", ns, err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		for _, field := range pids {
			if pid, err := strconv.Atoi(field); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: stale namespace %s: processes %v survive SIGKILL: %w", ns, pids, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("testbed: stale namespace %s: processes survive SIGKILL after 50 attempts", ns)
}

// killNodeInits SIGKILLs the processes of ns that are PID 1 of a nested pid
// namespace, and waits (bounded) for them to be reaped.
func killNodeInits(ctx context.Context, ns string) error {
	out, err := runCommand(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return fmt.Errorf("testbed: stale namespace %s: %w", ns, err)
	}
	var inits []int
	for _, field := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(field); err == nil && isNestedPIDNamespaceInit(pid) {
			inits = append(inits, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for attempt := 0; attempt < 20 && slices.ContainsFunc(inits, processExists); attempt++ {
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: stale namespace %s: %w", ns, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// isNestedPIDNamespaceInit tells whether pid is PID 1 of a pid namespace
// below ours: the NSpid line of its status lists its pid in every namespace
// from ours down to its own.
func isNestedPIDNamespaceInit(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			ids := strings.Fields(rest)
			return len(ids) >= 2 && ids[len(ids)-1] == "1"
		}
	}
	return false
}
