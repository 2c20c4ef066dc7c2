package hooks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ErrNoDaemon is returned when the hook was not started by the daemon, for
// example when someone runs git by hand inside a repository on the server.
var ErrNoDaemon = errors.New("gitreceive: this hook runs only for pushes through the gitreceive SSH server; push with `git push silver BRANCH`")

// Relay runs the hook side of a push: it reads git's ref updates from in,
// sends them with the forwarded environment to the daemon, copies the
// daemon's output to out, and returns the daemon's exit code. getenv and
// environ give the hook's environment (os.Getenv, os.Environ in production).
func Relay(ctx context.Context, hook string, in io.Reader, out io.Writer, getenv func(string) string, environ []string) int {
	socket, token := getenv(EnvSocket), getenv(EnvToken)
	if socket == "" || token == "" {
		fmt.Fprintln(out, ErrNoDaemon)
		return 1
	}
	req := Request{Token: token, Hook: hook, Env: map[string]string{}}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && ForwardedEnv(k) {
			req.Env[k] = v
		}
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		u, err := ParseRefUpdate(sc.Text())
		if err != nil {
			fmt.Fprintf(out, "gitreceive: %v\n", err)
			return 1
		}
		if len(req.Updates) == MaxUpdates {
			fmt.Fprintf(out, "gitreceive: more than %d refs in one push; push fewer refs at a time\n", MaxUpdates)
			return 1
		}
		req.Updates = append(req.Updates, u)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "gitreceive: reading ref updates: %v\n", err)
		return 1
	}

	code, err := exchange(ctx, socket, req, out)
	if err != nil {
		fmt.Fprintf(out, "gitreceive: %v; nothing was changed\n", err)
		return 1
	}
	return code
}

func exchange(ctx context.Context, socket string, req Request, out io.Writer) (int, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 1, fmt.Errorf("cannot reach the gitreceive daemon: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return 1, fmt.Errorf("sending the push to the daemon: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var m Message
		if err := dec.Decode(&m); err != nil {
			return 1, fmt.Errorf("lost the connection to the gitreceive daemon before it decided: %w", err)
		}
		if m.Output != "" {
			if _, err := io.WriteString(out, m.Output); err != nil {
				return 1, fmt.Errorf("writing output: %w", err)
			}
		}
		if m.Exit != nil {
			return *m.Exit, nil
		}
	}
}
