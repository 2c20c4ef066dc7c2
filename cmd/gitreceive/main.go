// Command gitreceive is the receiver daemon, its local admin CLI, and the
// relay git's hooks run. This file only wires subcommands to packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: gitreceive COMMAND [ARGS]

  serve [--listen ADDR] [--data DIR]   run the SSH receiver (default :2222, /var/lib/gitreceive)
  keys [--data DIR] list|add|remove    manage the SSH keys allowed to push (see: gitreceive keys)
  nodes [--data DIR] list|add|remove|check|setup   manage the nodes apps deploy to (see: gitreceive nodes)
  hook pre-receive                     run by git inside a push; not for people
  node VERB ...                        the node agent, run by the receiver on nodes; not for people
  version                              print the version

The data dir can also be set with GITRECEIVE_DATA, the listen address with
GITRECEIVE_LISTEN or "listen =" in DATA/gitreceive.ini.
`

func main() {
	if filepath.Base(os.Args[0]) == agent.VassalWrapperName {
		// The uWSGI emperor starts every vassal through this name.
		err := agent.VassalExec(os.Args[1:]) // returns only when it could not exec
		fmt.Fprintf(os.Stderr, "gitreceive %s: %v\n", agent.VassalWrapperName, err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "keys":
		data, rest, err := dataFlag(args[1:])
		if err != nil {
			fmt.Fprintf(stderr, "gitreceive: %v\n", err)
			return 2
		}
		store := keystore.Open(apps.KeyStorePath(apps.ResolveDataDir(data)))
		return receiver.KeysCommand(store, rest, stdin, stdout, stderr, true)
	case "nodes":
		data, rest, err := dataFlag(args[1:])
		if err != nil {
			fmt.Fprintf(stderr, "gitreceive: %v\n", err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		dir := apps.ResolveDataDir(data)
		fleet := nodes.OpenFleet(dir)
		defer fleet.Close()
		if fleet.SetupPackages, err = apps.LivePackages(dir); err != nil {
			fmt.Fprintf(stderr, "gitreceive: %v\n", err)
			return 1
		}
		fleet.SetupCerts = apps.CertFiles(dir)
		return fleet.Command(ctx, rest, stdout, stderr, true)
	case "node":
		// The agent side, run by the receiver on a node (over SSH, or as a
		// child process on the local node). A dropped session hangs up.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer stop()
		return agent.Run(ctx, agent.Root(), "gitreceive "+version, args[1:], stdin, stdout, stderr)
	case "hook":
		if len(args) != 2 || args[1] != "pre-receive" {
			fmt.Fprintln(stderr, "gitreceive: usage: gitreceive hook pre-receive (run by git, not by people)")
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return hooks.Relay(ctx, args[1], stdin, stdout, os.Getenv, os.Environ())
	case "version", "--version":
		fmt.Fprintf(stdout, "gitreceive %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gitreceive: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// dataFlag takes --data DIR (or --data=DIR) from anywhere in args.
func dataFlag(args []string) (data string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--data":
			if i+1 == len(args) {
				return "", nil, errors.New("--data needs a directory")
			}
			i++
			data = args[i]
		case strings.HasPrefix(a, "--data="):
			data = strings.TrimPrefix(a, "--data=")
		default:
			rest = append(rest, a)
		}
	}
	return data, rest, nil
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on (default :2222)")
	data := fs.String("data", "", "data directory (default /var/lib/gitreceive)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gitreceive: serve takes no arguments, got %q\n", fs.Args())
		return 2
	}
	log := newLogger(stderr)
	cfg, err := apps.LoadConfig(apps.ResolveDataDir(*data), *listen)
	for _, w := range cfg.Warnings { // first: a misspelt key may explain the error
		log.Warn().Msg(w)
	}
	if err != nil {
		log.Error().Err(err).Msg("configuration")
		return 1
	}
	cfg.Version = version
	srv, err := receiver.New(cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	printFirstRun(cfg.DataDir, stderr)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error().Err(err).Str("listen", cfg.Listen).Msg("cannot listen")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			log.Error().Err(err).Msg("server stopped")
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	// A second SIGTERM or ^C ends the wait at once: what still runs is
	// cancelled and undone, as at shutdown_timeout. (Registered before the
	// first handler goes, so that no signal meets the default action.)
	drainCtx, cancelDrain := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancelDrain()
	stop()
	drainCtx, cancelTimeout := context.WithTimeout(drainCtx, cfg.ShutdownTimeout)
	defer cancelTimeout()
	log.Info().Dur("shutdown_timeout", cfg.ShutdownTimeout).Msg("signal received: stopping")
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn().Err(err).Msg("stopped")
	}
	if err := <-done; err != nil {
		log.Error().Err(err).Msg("server stopped")
	}
	log.Info().Msg("stopped")
	return 0
}

// printFirstRun tells the operator how to let the first person in.
func printFirstRun(dataDir string, stderr io.Writer) {
	keys, err := keystore.Open(apps.KeyStorePath(dataDir)).List()
	if err != nil || len(keys) > 0 {
		return
	}
	dataArg := ""
	if dataDir != apps.DefaultDataDir {
		dataArg = " --data " + dataDir
	}
	fmt.Fprintf(stderr, `
No SSH keys are allowed yet. Add the first admin key with:

    gitreceive keys%s add NAME --admin < ~/.ssh/id_ed25519.pub

`, dataArg)
}

// newLogger logs for people on a terminal and as JSON lines otherwise.
func newLogger(w io.Writer) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).With().Timestamp().Logger()
}
