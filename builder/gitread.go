package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/gitreceive/gitreceive/hooks"
)

// Git reads a repository with C git plumbing. During pre-receive the pushed
// objects are still in git's quarantine directory, which only git itself
// sees through the environment the hook forwarded (go-git cannot), so every
// read goes through git with Env.
type Git struct {
	Dir string   // the bare repository
	Env []string // quarantine variables (GIT_OBJECT_DIRECTORY, ...)
}

func (g Git) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir", g.Dir}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "HOME=/nonexistent"}, g.Env...)
	return cmd
}

func (g Git) output(ctx context.Context, args ...string) ([]byte, error) {
	cmd := g.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// entry is one line of `git ls-tree -r -t -l -z`.
type entry struct {
	mode string // 100644, 100755, 120000, 040000, 160000
	kind string // blob, tree, commit
	oid  string
	size int64 // blobs only
	path string
}

// listTree lists every blob and tree reachable from commit's root tree.
func (g Git) listTree(ctx context.Context, commit string) ([]entry, error) {
	out, err := g.output(ctx, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit)
	if err != nil {
		return nil, err
	}
	var entries []entry
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, path, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("unexpected ls-tree output %q", rec)
		}
		e := entry{mode: f[0], kind: f[1], oid: f[2], path: string(path)}
		if f[3] != "-" {
			if e.size, err = strconv.ParseInt(f[3], 10, 64); err != nil {
				return nil, fmt.Errorf("unexpected ls-tree size %q", f[3])
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// blobReader streams blobs through one `git cat-file --batch` process, so
// reading thousands of files costs one process, and a large file is never
// held in memory whole.
type blobReader struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	// pending is what is left of the blob being read; it must be drained
	// before the next request.
	pending *io.LimitedReader
}

func (g Git) openBlobs(ctx context.Context) (*blobReader, error) {
	cmd := g.command(ctx, "cat-file", "--batch")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting git cat-file: %w", err)
	}
	return &blobReader{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 64<<10)}, nil
}

// open returns a reader of blob oid's content, valid until the next call.
func (b *blobReader) open(oid string) (io.Reader, int64, error) {
	if err := b.drain(); err != nil {
		return nil, 0, err
	}
	if _, err := io.WriteString(b.in, oid+"\n"); err != nil {
		return nil, 0, fmt.Errorf("git cat-file: %w", err)
	}
	header, err := b.out.ReadString('\n')
	if err != nil {
		return nil, 0, fmt.Errorf("git cat-file: %w", err)
	}
	f := strings.Fields(header)
	if len(f) == 2 && f[1] == "missing" {
		return nil, 0, fmt.Errorf("object %s is missing", oid)
	}
	if len(f) != 3 || f[1] != "blob" {
		return nil, 0, fmt.Errorf("git cat-file: unexpected header %q", header)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("git cat-file: unexpected size in %q", header)
	}
	b.pending = &io.LimitedReader{R: b.out, N: size}
	return b.pending, size, nil
}

// read returns blob oid's whole content; for small files (links, .pth, app.ini).
func (b *blobReader) read(oid string, limit int64) ([]byte, error) {
	r, size, err := b.open(oid)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("it is %s, more than the %s such a file may be", hooks.Size(size), hooks.Size(limit))
	}
	return io.ReadAll(r)
}

func (b *blobReader) drain() error {
	if b.pending == nil {
		return nil
	}
	if _, err := io.Copy(io.Discard, b.pending); err != nil {
		return fmt.Errorf("git cat-file: %w", err)
	}
	b.pending = nil
	if c, err := b.out.ReadByte(); err != nil || c != '\n' {
		return errors.New("git cat-file: stream out of step")
	}
	return nil
}

func (b *blobReader) close() error {
	b.in.Close()
	_, _ = io.Copy(io.Discard, b.out)
	return b.cmd.Wait()
}
