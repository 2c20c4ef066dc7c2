//go:build bench

package main_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// benchPush: the same commits pushed, in turn, to a receiver with `deploy =
// false` (rows 1: the receiver as a git server), to OpenSSH sshd + `git
// receive-pack` on a bare repository (the baseline), and to a receiver
// that builds and deploys to node local (rows 2: the builder). Each run
// makes a new 5,000-file / 60 MB app: its first push, then a one-file
// change; and a new 2-file app's first push.
func benchPush(t *testing.T, tb *benchTable) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "/usr/sbin/sshd")
	f := newFixture(t)
	off := startDeployOff(t, f)
	sshd := startSSHD(t, f.alice)
	runs := benchRuns(t)

	type series struct{ off, raw, on, build, pipe, offHook []time.Duration }
	var first, one, small series
	var plainFirst []time.Duration // the baseline without receive.fsckObjects
	push := func(s *series, app, work, rawURL string) {
		s.off = append(s.off, timed(t, off.alice, work, off.alice.URL(app)))
		s.offHook = append(s.offHook, lastLogged(t, off.srv, "push accepted"))
		s.raw = append(s.raw, timed(t, f.alice, work, rawURL))
		s.on = append(s.on, timed(t, f.alice, work, f.alice.URL(app)))
		s.build = append(s.build, lastLogged(t, f.srv, "release built"))
		s.pipe = append(s.pipe, lastLogged(t, f.srv, "push accepted"))
	}
	for i := 0; i < runs; i++ {
		app := fmt.Sprintf("bench%d", i)
		work := bigApp(t, f.alice, app)
		rawURL := sshd.repo(t, app, false)
		push(&first, app, work, rawURL)
		plainFirst = append(plainFirst, timed(t, f.alice, work, sshd.repo(t, app+"-plain", true)))
		f.alice.Commit(t, work, "one file", map[string]string{"src/f00042.py": fmt.Sprintf("changed = %d\n", i)})
		push(&one, app, work, rawURL)

		app = fmt.Sprintf("small%d", i)
		work = f.alice.WorkTree(t, receivertest.App(app, nil))
		push(&small, app, work, sshd.repo(t, app, false))
	}

	fmt.Printf("\ngit push, median of %d runs (deploy off | raw git+ssh | deploying to node local); raw first push without fsckObjects: %s\n", runs, ms(median(plainFirst)))
	fmt.Printf("%-26s %12s %12s %9s %12s %10s %14s %10s\n", "push", "deploy off", "raw git+ssh", "off/raw", "deploying", "build", "local deploy", "build/raw")
	for _, r := range []struct {
		name string
		s    series
	}{{"60 MB app, first push", first}, {"60 MB app, one-file change", one}, {"2-file app, first push", small}} {
		raw := float64(median(r.s.raw))
		fmt.Printf("%-26s %12s %12s %8.2fx %12s %10s %14s %9.2fx\n", r.name, ms(median(r.s.off)), ms(median(r.s.raw)), float64(median(r.s.off))/raw,
			ms(median(r.s.on)), ms(median(r.s.build)), ms(median(r.s.pipe)-median(r.s.build)), float64(median(r.s.build))/raw)
	}

	const offNote = "receiver with `deploy = false` vs OpenSSH sshd + git receive-pack on a loopback port, both repositories configured alike (receive.fsckObjects on), whole `git push`; "
	tb.addTimes("1. `git push`, deploy off: 5,000-file / 60 MB app, first push", first.off, first.raw, "<= 1.2x",
		offNote+"pre-receive in the daemon "+ms(median(first.offHook)))
	tb.addTimes("1. `git push`, deploy off: the same first push vs a bare repository with git's defaults", first.off, plainFirst, "",
		"baseline: a `git init --bare` with git's defaults, which does not check every pushed object as gitreceive's repositories do (receive.fsckObjects)")
	tb.addTimes("1. `git push`, deploy off: one-file change of that app", one.off, one.raw, "<= 1.2x",
		offNote+"pre-receive in the daemon "+ms(median(one.offHook)))
	tb.addTimes("1. `git push`, deploy off: 2-file app, first push", small.off, small.raw, "<= 1.2x",
		offNote+"pre-receive in the daemon "+ms(median(small.offHook)))

	deployNote := func(s series) string {
		return fmt.Sprintf("whole `git push` that builds and deploys to node local (placed and switched, not served); build %s, local deploy %s (server log)",
			ms(median(s.build)), ms(median(s.pipe)-median(s.build)))
	}
	tb.addTimes("2. push + build + local deploy: 60 MB app, first push", first.on, first.raw, "", deployNote(first))
	tb.addTimes("2. push + build + local deploy: one-file change", one.on, one.raw, "", deployNote(one))
	tb.addTimes("2. push + build + local deploy: 2-file app, first push", small.on, small.raw, "", deployNote(small))
	tb.addTimes("2. builder alone: 60 MB app, first push", first.build, first.raw, "",
		"app.ini, tree rules, .pth fixing, manifest (sha256 of every file) vs the raw push of the same commit")
	tb.addTimes("2. builder alone: one-file change", one.build, one.raw, "< 0.20x",
		"hashes only the changed blob; vs the raw push of the same commit")
}
