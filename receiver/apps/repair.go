package apps

import (
	"context"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// repairInterrupted runs once when the daemon starts: a receiver that was
// killed while it switched nodes leaves them live on a release it never
// recorded. Every instance's nodes go back to its last recorded release,
// under the app's lock, so a push waits for it rather than racing it.
// Failures are logged; the next deploy of the instance takes such a node
// back too (nodes.upload).
func (a *Apps) repairInterrupted(ctx context.Context) {
	apps, err := os.ReadDir(a.cfg.releasesDir())
	if err != nil {
		return
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		a.log.Error().Err(err).Msg("repair: reading the node inventory")
		return
	}
	for _, app := range apps {
		if !a.repairApp(ctx, app.Name(), targets) {
			return
		}
	}
}

// repairApp is repairInterrupted for one app; false if the daemon is
// stopping. The lock is released by a deferred call: a panic here,
// recovered by guard.Go, must not leave the app locked.
func (a *Apps) repairApp(ctx context.Context, app string, targets []nodes.Node) bool {
	instances, err := a.appInstances(app)
	if err != nil || len(instances) == 0 {
		return true
	}
	release, err := a.locks.acquire(ctx, app, &lockHolder{user: "gitreceive", branch: "-", commit: "repair after a restart"}, a.cfg.LockTimeout, lockWaitInterval, func(*lockHolder) {})
	if err != nil {
		return false
	}
	defer release()
	for _, inst := range instances {
		last, _, _, err := a.history.Last(app, inst)
		if err != nil {
			continue
		}
		log := a.log.With().Str("app", app).Str("instance", inst).Logger()
		opCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		back, err := a.fleet.TakeBackUnrecorded(opCtx, targets, app, inst, last.Number)
		cancel()
		for _, n := range back {
			log.Warn().Str("node", n.Name).Int("release", last.Number).Msg("switched back a node an interrupted deploy left on an unrecorded release")
		}
		if err != nil {
			log.Warn().Err(err).Msg("repair: could not check or switch back every node; the next deploy will")
		}
	}
	return true
}

// How long and how often takeBackLater tries.
const (
	takeBackFirst   = 5 * time.Second
	takeBackMax     = time.Minute
	takeBackFor     = time.Hour
	takeBackProbe   = 15 * time.Second
	takeBackTimeout = 2 * time.Minute
)

// takeBackLater follows an undo that could not reach every node it had
// switched (a link cut mid-switch): such a node may serve a release no
// deploy recorded. In the background, each is switched back to the
// instance's recorded release as soon as it answers again, rather than at
// the next deploy or receiver start. Attempts back off from takeBackFirst
// to takeBackMax, and end after takeBackFor or at Shutdown.
func (a *Apps) takeBackLater(log zerolog.Logger, app, instance string, pending []nodes.Node) {
	if len(pending) == 0 {
		return
	}
	log = log.With().Str("app", app).Str("instance", instance).Logger()
	log.Warn().Strs("nodes", nodeNames(pending)).Msg("nodes that may be live on an unrecorded release could not be reached; switching them back once they answer")
	guard.Go(log, "take-back", func() {
		end := time.Now().Add(takeBackFor)
		for wait := takeBackFirst; len(pending) > 0; wait = min(2*wait, takeBackMax) {
			if time.Now().Add(wait).After(end) {
				log.Error().Strs("nodes", nodeNames(pending)).Msg("gave up switching back nodes that do not answer; the next deploy of the instance or the next receiver start will")
				return
			}
			select {
			case <-a.life.Done():
				return
			case <-time.After(wait):
			}
			pending = a.takeBack(a.life, log, app, instance, pending)
		}
	})
}

// takeBack is one attempt of takeBackLater: the nodes of pending that
// answer are switched back, under the app's lock, to the instance's
// recorded release. It returns the nodes still to do.
func (a *Apps) takeBack(ctx context.Context, log zerolog.Logger, app, instance string, pending []nodes.Node) []nodes.Node {
	// Probed without the lock: a push must not wait for a dial timeout.
	probeCtx, cancel := context.WithTimeout(ctx, takeBackProbe)
	statuses := a.fleet.Check(probeCtx, pending)
	cancel()
	var answering, silent []nodes.Node
	for _, st := range statuses {
		if st.Err == nil {
			answering = append(answering, st.Node)
		} else {
			silent = append(silent, st.Node)
		}
	}
	if len(answering) == 0 {
		return pending
	}
	release, err := a.locks.acquire(ctx, app, &lockHolder{user: "gitreceive", branch: "-", commit: "switching back a node an interrupted deploy left live"}, a.cfg.LockTimeout, lockWaitInterval, func(*lockHolder) {})
	if err != nil {
		return pending
	}
	defer release()
	last, _, _, err := a.history.Last(app, instance)
	if err != nil {
		log.Error().Err(err).Msg("take-back: reading release history")
		return pending
	}
	opCtx, cancel := context.WithTimeout(ctx, takeBackTimeout)
	defer cancel()
	back, err := a.fleet.TakeBackUnrecorded(opCtx, answering, app, instance, last.Number)
	for _, n := range back {
		log.Warn().Str("node", n.Name).Int("release", last.Number).Msg("switched back a node an interrupted deploy left on an unrecorded release")
	}
	if err != nil {
		log.Warn().Err(err).Msg("take-back: not every node could be checked or switched back; trying again")
		return pending
	}
	return silent
}

func nodeNames(ns []nodes.Node) []string {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Name
	}
	return names
}
