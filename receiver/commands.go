package receiver

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/apps"
)

// command is one entry of the allow-list of what a client may run.
type command struct {
	usage   string
	summary string
	admin   bool // admins only
	pty     bool // may run on a terminal (ssh -t)
	hidden  bool // git's own commands are not listed in help
	// flags declares the command's options; the dispatcher parses them
	// (parseArgv) wherever they stand among its words.
	flags func(fs *flag.FlagSet)
	// target, for a command on one app, checks the words' shape (the name
	// first) and returns the APP[@BRANCH] one; the dispatcher parses and
	// authorizes it, once, into call.target.
	target func(a argv) (string, error)
	// confirm, for a command that deletes data, returns the --confirm
	// value, which must name the target's app, and what was not done
	// when it does not.
	confirm func(a argv) (value, undone string)
	// lock, for a command that changes an instance, says what it does for
	// whoever waits on the app's lock; the dispatcher holds the lock
	// while it runs.
	lock func(a argv) string
	// endless says the session runs until its client ends it (logs -f):
	// a stopping receiver ends it at once instead of waiting for it.
	endless func(a argv) bool
	run     func(s *Server, c *call) error
}

// lockAs is a lock func for a command described by a fixed phrase.
func lockAs(what string) func(argv) string { return func(argv) string { return what } }

// confirmFlag declares --confirm APP, which commands that delete data
// require.
func confirmFlag(fs *flag.FlagSet) { fs.String("confirm", "", "the app's name, to confirm") }

// commands is the complete allow-list; anything else is refused.
var commands map[string]command

func init() {
	commands = map[string]command{
		"git-receive-pack": {usage: "git-receive-pack APP", summary: "receive a git push (run by git push)", hidden: true, run: (*Server).gitCommand},
		"git-upload-pack":  {usage: "git-upload-pack APP", summary: "serve a git clone or fetch (run by git)", hidden: true, run: (*Server).gitCommand},
		"keys":             {usage: keysUsage, summary: "list, add or remove SSH keys", admin: true, run: (*Server).keysCommand},
		"nodes":            {usage: nodes.RemoteUsage, summary: "list the nodes, or check they are reachable", admin: true, run: (*Server).nodesCommand},
		"releases":         {usage: releasesUsage, summary: "list an instance's releases and which is live", pty: true, flags: jsonFlag, target: positional(releasesUsage, 2), run: (*Server).releasesCommand},
		"activate":         {usage: activateUsage, summary: "make an earlier release live again (rollback), with a health check", pty: true, target: positional(activateUsage, 3), lock: func(a argv) string { return "activate " + a.words[2] }, run: (*Server).activateCommand},
		"logs":             {usage: logsUsage, summary: "show (-f: follow) an instance's app, access and error logs from its nodes", pty: true, flags: logsFlags, target: positional(logsUsage, 2), endless: func(a argv) bool { return a.bool("f") }, run: (*Server).logsCommand},
		"run":              {usage: runUsage, summary: "run a script of the live release on a node, as the app runs (ssh -t for a terminal; without one its output is escaped, --raw leaves stdout as it is)", pty: true, target: runTarget, run: (*Server).runCommand},
		"apps":             {usage: appsUsage, summary: "list the apps you may manage: instances, location, live release, nodes, services", pty: true, flags: jsonFlag, run: (*Server).appsCommand},
		"destroy":          {usage: destroyUsage, summary: "remove an instance (APP@BRANCH) or a whole app (APP) from every node", pty: true, flags: destroyFlags, target: positional(destroyUsage, 2, "confirm"), confirm: func(a argv) (string, string) { return a.string("confirm"), "destroyed" }, lock: lockAs("destroy"), run: (*Server).destroyCommand},
		"config":           {usage: configUsage, summary: "list an instance's config variables (names only)", pty: true, target: positional(configUsage, 2), run: (*Server).configCommand},
		"config:set":       {usage: configSetUsage, summary: "set config values and restart the instance with them", pty: true, target: configSetTarget, lock: lockAs("config"), run: (*Server).configSetCommand},
		"config:unset":     {usage: configUnsetUsage, summary: "remove config values and restart the instance without them", pty: true, target: configUnsetTarget, lock: lockAs("config"), run: (*Server).configUnsetCommand},
		"disable":          {usage: disableUsage, summary: "answer 503 for an instance (kept through deploys) until enabled", pty: true, target: positional(disableUsage, 2), run: (*Server).disableCommand},
		"enable":           {usage: enableUsage, summary: "serve a disabled instance again", pty: true, target: positional(enableUsage, 2), run: (*Server).enableCommand},
		"backup":           {usage: backupUsage, summary: "write a tar of every service's data of an instance to stdout", target: positional(backupUsage, 2), run: (*Server).backupCommand},
		"restore":          {usage: restoreUsage, summary: "replace an instance's service data with a backup read from stdin (checked first)", target: positional(restoreUsage, 2), lock: lockAs("restore"), run: (*Server).restoreCommand},
		"clear":            {usage: clearUsage, summary: "empty one service of an instance (or remove one app.ini no longer asks for)", pty: true, flags: confirmFlag, target: positional(clearUsage, 3, "confirm"), confirm: func(a argv) (string, string) { return a.string("confirm"), "cleared" }, lock: func(a argv) string { return "clear " + a.words[2] }, run: (*Server).clearCommand},
		"hosts":            {usage: hostsUsage, summary: "list the claimed and routed hosts and which app holds each", admin: true, pty: true, flags: jsonFlag, run: (*Server).hostsCommand},
		"hosts:release":    {usage: hostsReleaseUsage, summary: "release an app's claim on a host it no longer serves", admin: true, pty: true, run: (*Server).hostsReleaseCommand},
		"ps":               {usage: psUsage, summary: "show an instance's processes on each node: web, workers (pid, uptime, restarts, memory), cron jobs (node, last run, next run)", pty: true, flags: jsonFlag, target: positional(psUsage, 2), run: (*Server).psCommand},
		"ps:restart":       {usage: psRestartUsage, summary: "restart an instance's workers (or the one named) on every node, each with SIGTERM first", pty: true, target: psRestartTarget, run: (*Server).psRestartCommand},
		"cron:run":         {usage: cronRunUsage, summary: "run a cron job now on the node that holds it, its output streamed (not while its last run still goes)", pty: true, target: cronRunTarget, run: (*Server).cronRunCommand},
		"certs":            {usage: certsUsage, summary: "list the certificates: host, instance, issuer, expiry, nodes serving it, last renewal error", admin: true, pty: true, flags: jsonFlag, run: (*Server).certsCommand},
		"certs:add":        {usage: certsAddUsage, summary: "install your own certificate chain + key for a host on every node (never renewed by ACME)", admin: true, run: (*Server).certsAddCommand},
		"certs:renew":      {usage: certsRenewUsage, summary: "get a new ACME certificate for a host now and install it on every node", admin: true, pty: true, run: (*Server).certsRenewCommand},
		"certs:remove":     {usage: certsRemoveUsage, summary: "stop serving a host over HTTPS and remove its certificate", admin: true, pty: true, run: (*Server).certsRemoveCommand},
		"help":             {usage: "help [COMMAND]", summary: "list the commands, or show one command's usage", pty: true, run: (*Server).helpCommand},
		"version":          {usage: "version", summary: "print the server's version", pty: true, run: (*Server).versionCommand},
	}
}

func (s *Server) helpCommand(c *call) error {
	switch len(c.args) {
	case 1:
	case 2:
		cmd, ok := commands[c.args[1]]
		if !ok {
			return c.fail("unknown command %q; try \"help\"", c.args[1])
		}
		fmt.Fprintf(c.stdout(), "usage: %s\n\n%s\n", cmd.usage, cmd.summary)
		return nil
	default:
		return c.fail("usage: %s", commands["help"].usage)
	}
	names := make([]string, 0, len(commands))
	for name, cmd := range commands {
		if !cmd.hidden && (!cmd.admin || c.key.IsAdmin()) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("gitreceive commands (ssh silver COMMAND ...):\n")
	for _, name := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", name, commands[name].summary)
	}
	b.WriteString("\nPush with `git push silver BRANCH`; `help COMMAND` shows a command's usage.\n")
	fmt.Fprint(c.stdout(), b.String())
	return nil
}

func (s *Server) versionCommand(c *call) error {
	if len(c.args) != 1 {
		return c.fail("usage: version")
	}
	fmt.Fprintf(c.stdout(), "gitreceive %s\n", s.cfg.Version)
	return nil
}

func (s *Server) keysCommand(c *call) error {
	err := runKeys(s.keys, c.args[1:], c.sess, c.stdout(), false)
	// Who changed which key is the audit trail of access; args hold no secrets.
	code := 0
	if err != nil {
		code = 1
	}
	c.log.Info().Strs("args", c.args[1:]).Int("exit", code).Msg("keys")
	return err
}

func (s *Server) nodesCommand(c *call) error {
	return apps.ExitWith(s.apps.Fleet().Command(c.sess.Context(), c.args[1:], c.stdout(), c.stderr(), false))
}
