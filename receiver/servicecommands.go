package receiver

import (
	"github.com/gitreceive/gitreceive/hooks"
)

const (
	backupUsage  = "backup APP[@BRANCH] > APP.tar"
	restoreUsage = "restore APP[@BRANCH] < APP.tar"
	clearUsage   = "clear APP[@BRANCH] SERVICE --confirm APP"
)

func (s *Server) backupCommand(c *call) error {
	// stdout is the archive: progress goes to stderr.
	return s.apps.Backup(c.ctx, c.target, c.stdout(), hooks.NewProgress(c.stderr()))
}

func (s *Server) restoreCommand(c *call) error {
	return s.apps.Restore(c.ctx, c.target, c.sess, c.out)
}

func (s *Server) clearCommand(c *call) error {
	return s.apps.Clear(c.ctx, c.target, c.args[2], c.out)
}
