package nodes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
	gossh "golang.org/x/crypto/ssh"
)

// Terminal is a client's PTY request, carried to the node so that `ssh -t
// silver run ...` gets a terminal there.
type Terminal struct {
	Term          string
	Width, Height int
	Resize        <-chan [2]int // later sizes: width, height
}

// RunScript runs a script in the live release of app's instance on node n
// (the agent's `run`: the app user, the app's environment), with the
// caller's streams flowing both ways and, with term, on a PTY. Ending ctx
// (the client left) stops it on the node. It returns the script's exit code;
// err is for not reaching the node or the agent.
func (f *Fleet) RunScript(ctx context.Context, n Node, app, instance, script string, args, env []string, stdin io.Reader, stdout, stderr io.Writer, term *Terminal) (int, error) {
	c := &conn{fleet: f, node: n}
	if !n.Local {
		// A connection of its own, closed when the client leaves: sshd
		// keeps a session whose command still runs until the whole
		// connection goes, and only then hangs up on the agent, which
		// stops the script (SSH signal requests are refused for root).
		client, err := f.Dial(ctx, n)
		if err != nil {
			return -1, err
		}
		defer client.Close()
		c.client = client
		go func() {
			<-ctx.Done()
			client.Close()
		}()
	}
	// env goes in the command line only root on the node can see (/proc
	// is mounted hidepid there), never in a log.
	req := agentapi.Run{Target: agentapi.At(app, instance), TTY: term != nil, Env: env, Script: script, Args: args}
	argv := append([]string{c.agentBin(), "node"}, req.Argv()...)
	if n.Local {
		return runLocalInteractive(ctx, stdin, stdout, stderr, term, argv)
	}
	return c.runSSHInteractive(ctx, stdin, stdout, stderr, term, argv)
}

// runSSHInteractive is runSSH for a person at the other end: stdin is
// copied by us, not by the session, whose Wait would otherwise block on a
// stdin that never ends after the command exited.
func (c *conn) runSSHInteractive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error) {
	sess, err := c.session(ctx)
	if err != nil {
		return -1, err
	}
	defer sess.Close()
	if term != nil {
		if err := sess.RequestPty(term.Term, term.Height, term.Width, gossh.TerminalModes{}); err != nil {
			return -1, fmt.Errorf("node %s: a terminal: %w", c.node.Name, err)
		}
		go func() {
			for size := range term.Resize {
				_ = sess.WindowChange(size[1], size[0])
			}
		}()
	}
	in, err := sess.StdinPipe()
	if err != nil {
		return -1, err
	}
	sess.Stdout, sess.Stderr = stdout, stderr
	if err := sess.Start(shellWords(argv)); err != nil {
		return -1, fmt.Errorf("node %s: %w", c.node.Name, err)
	}
	go func() {
		_, _ = io.Copy(in, stdin)
		in.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The agent turns the signal (or the hang-up of its terminal when
		// the session closes) into stopping the script's process group.
		_ = sess.Signal(gossh.SIGTERM)
		sess.Close()
		return -1, ctx.Err()
	}
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	}
	return -1, fmt.Errorf("node %s: %w", c.node.Name, err)
}

// runLocalInteractive runs argv as a child, on a PTY of our own with term.
func runLocalInteractive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var wait func() error
	if term != nil {
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(term.Height), Cols: uint16(term.Width)})
		if err != nil {
			return -1, err
		}
		defer tty.Close()
		go func() {
			for size := range term.Resize {
				_ = pty.Setsize(tty, &pty.Winsize{Rows: uint16(size[1]), Cols: uint16(size[0])})
			}
		}()
		go func() { _, _ = io.Copy(tty, stdin) }()
		copied := make(chan struct{})
		go func() {
			_, _ = io.Copy(stdout, tty) // ends with EIO once the child and its children closed the terminal
			close(copied)
		}()
		wait = func() error {
			err := cmd.Wait()
			select {
			case <-copied:
			case <-time.After(2 * time.Second):
			}
			return err
		}
	} else {
		in, err := cmd.StdinPipe()
		if err != nil {
			return -1, err
		}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return -1, err
		}
		go func() {
			_, _ = io.Copy(in, stdin)
			in.Close()
		}()
		wait = cmd.Wait
	}
	done := make(chan error, 1)
	go func() { done <- wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// The agent stops the script when told to; its own group (or
		// session, on a PTY) is ours to end if it does not.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		return -1, ctx.Err()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
	}
	return -1, err
}
