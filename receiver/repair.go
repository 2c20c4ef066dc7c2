package receiver

import (
	"context"
	"os"
	"time"
)

// repairInterrupted runs once when the daemon starts: a receiver that was
// killed while it switched nodes leaves them live on a release it never
// recorded. Every instance's nodes go back to its last recorded release,
// under the app's lock, so a push waits for it rather than racing it.
// Failures are logged; the next deploy of the instance takes such a node
// back too (nodes.upload).
func (s *Server) repairInterrupted(ctx context.Context) {
	apps, err := os.ReadDir(s.cfg.releasesDir())
	if err != nil {
		return
	}
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		s.log.Error().Err(err).Msg("repair: reading the node inventory")
		return
	}
	for _, a := range apps {
		app := a.Name()
		instances, err := s.appInstances(app)
		if err != nil || len(instances) == 0 {
			continue
		}
		release, err := s.locks.acquire(ctx, app, &lockHolder{user: "gitreceive", branch: "-", commit: "repair after a restart"}, s.cfg.LockTimeout, lockWaitInterval, func(*lockHolder) {})
		if err != nil {
			return
		}
		for _, inst := range instances {
			last, _, _, err := s.history.Last(app, inst)
			if err != nil {
				continue
			}
			log := s.log.With().Str("app", app).Str("instance", inst).Logger()
			opCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			back, err := s.fleet.TakeBackUnrecorded(opCtx, targets, app, inst, last.Number)
			cancel()
			for _, n := range back {
				log.Warn().Str("node", n.Name).Int("release", last.Number).Msg("switched back a node an interrupted deploy left on an unrecorded release")
			}
			if err != nil {
				log.Warn().Err(err).Msg("repair: could not check or switch back every node; the next deploy will")
			}
		}
		release()
	}
}
