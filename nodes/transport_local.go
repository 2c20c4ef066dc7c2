package nodes

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// localTransport runs commands on the receiver host itself (LocalNode):
// the agent is this binary, run as a child process.
type localTransport struct{ bin string }

func (localTransport) open(context.Context) error { return nil }

func (t localTransport) agentBin() string { return t.bin }

func (localTransport) uploadsAgent() bool { return false }

func (localTransport) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	return runLocal(ctx, stdin, stdout, stderr, argv)
}

func (localTransport) interactive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error) {
	return runLocalInteractive(ctx, stdin, stdout, stderr, term, argv)
}

// runLocal runs argv as a child process in its own process group, killed
// whole when ctx ends.
func runLocal(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return &exitError{code: ee.ExitCode()}
	}
	return err
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
