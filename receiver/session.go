package receiver

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/cmdline"
	"github.com/gitreceive/gitreceive/receiver/guard"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// call is one command run over SSH, bound to its session and to the
// identity of the key the client proved.
type call struct {
	sess ssh.Session
	key  keystore.Key
	args []string // the words of the command line, the name first (argv.words)
	argv argv     // the words and the command's options
	// target is the APP[@BRANCH] of a command on one app, parsed and
	// authorized by the dispatcher.
	target apps.Target
	// ctx ends with the session and carries log (zerolog.Ctx), for the
	// back-end.
	ctx context.Context
	// out is the session's progress lines on stderr.
	out *hooks.Progress
	log zerolog.Logger
}

func (c *call) stdout() io.Writer { return c.sess }
func (c *call) stderr() io.Writer { return c.sess.Stderr() }

// fail is a userError: one sentence for the client (see exitCode).
func (c *call) fail(format string, a ...any) error { return apps.Failf(format, a...) }

func (s *Server) handleSession(sess ssh.Session) {
	start := time.Now()
	log := s.log.With().Str("remote", sess.RemoteAddr().String()).Logger()
	c := &call{sess: sess, log: log, out: hooks.NewProgress(sess.Stderr())}
	if s.refuseWhileStopping(c) {
		return
	}
	defer func() {
		if s.drain.end(c) {
			c.log.Warn().Msg("cancelled at shutdown_timeout: what this session had begun is undone")
		}
	}()
	defer guard.Recover(&c.log, "session", func(sentence string) {
		fmt.Fprintf(c.stderr(), "gitreceive: %s\n", sentence)
		_ = sess.Exit(1)
	})
	code := exitCode(c.log, c.stderr(), s.runSession(c))
	c.log.Info().Int("exit", code).Dur("duration", time.Since(start)).Msg("session ended")
	// The exact status goes back: a failed command never looks like success.
	_ = sess.Exit(code)
}

func (s *Server) runSession(c *call) (err error) {
	// The identity comes from the key this session proved, looked up now:
	// nothing remembered from the auth callbacks is trusted, and a key
	// removed since the connection was made no longer works.
	key, ok, err := s.keys.Lookup(c.sess.PublicKey())
	if err != nil {
		c.log.Error().Err(err).Msg("reading the key store")
		return c.fail("the key store cannot be read; tell the operator")
	}
	if !ok {
		return c.fail("your key is not (or no longer) authorized")
	}
	c.key = key
	c.log = c.log.With().Str("key", key.Name).Str("fingerprint", key.Fingerprint()).Logger()

	args, err := cmdline.Split(c.sess.RawCommand())
	if err != nil {
		c.log.Info().Err(err).Msg("unparsable command line")
		return c.fail("cannot parse the command: %v", err)
	}
	if len(args) == 0 {
		c.log.Info().Msg("shell refused")
		return c.fail("there is no shell here; try \"help\"")
	}
	c.args = args
	c.log = c.log.With().Str("command", args[0]).Logger()
	cmd, ok := commands[args[0]]
	if !ok {
		c.log.Info().Msg("unknown command")
		return c.fail("unknown command %q; try \"help\"", args[0])
	}
	if cmd.admin && !key.IsAdmin() {
		c.log.Info().Msg("admin command refused")
		return c.fail("%q is for admins only", args[0])
	}
	if _, _, isPty := c.sess.Pty(); isPty && !cmd.pty {
		return c.fail("%q does not run on a terminal; run ssh without -t", args[0])
	}
	guard.Point("command " + args[0])
	if c.argv, err = parseArgv(cmd, args); err != nil {
		return err
	}
	c.args = c.argv.words
	if cmd.target != nil {
		arg, err := cmd.target(c.argv)
		if err != nil {
			return err
		}
		if c.target, err = s.appTarget(c, arg); err != nil {
			return err
		}
	}
	if cmd.confirm != nil {
		if value, undone := cmd.confirm(c.argv); value != c.target.App {
			return c.fail("--confirm %s does not name the app; nothing was %s", value, undone)
		}
	}
	c.ctx = c.log.WithContext(c.sess.Context())
	if cmd.endless != nil && cmd.endless(c.argv) {
		ctx, cancel := context.WithCancelCause(c.ctx)
		defer cancel(nil)
		c.ctx = ctx
		s.drain.endless(c, cancel)
		defer func() { err = endedByStop(ctx, err) }()
	}
	if cmd.lock != nil {
		release, err := s.apps.Lock(c.ctx, c.target, c.key.Name, cmd.lock(c.argv), c.out)
		if err != nil {
			return err
		}
		defer release()
	}
	return cmd.run(s, c)
}
