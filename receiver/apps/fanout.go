package apps

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// prepare sends a built release to every node (phase 1); Switch makes it
// live.
func (a *Apps) prepare(ctx context.Context, r *builder.Release, spec agent.Spec, targets []nodes.Node, out *hooks.Progress) (*nodes.Prepared, error) {
	log := logger(ctx)
	// update_fetch runs once, on the first node (migrations act on the
	// instance's shared database).
	rel := nodes.Release{App: r.App, Instance: r.Instance, Number: r.Number, Manifest: r.Manifest.WithoutBlobs(), Spec: spec, UpdateFetchOn: targets[0].Name,
		WriteContents: func(ctx context.Context, hashes []string, w io.Writer) error {
			guard.Point("contents " + r.App) // runs in a goroutine of nodes' own
			return writeContents(ctx, r, hashes, w)
		}}
	out.Step("Uploading release v%d to %d node%s", r.Number, len(targets), Plural(len(targets)))
	say := func(n nodes.Node, line string) { nodeDetail(out, n.Name, "%s", line) }
	pr, err := a.fleet.Prepare(ctx, targets, rel, say, func(rep nodes.Report) {
		guard.Point("deploy " + r.App) // runs in the node's own goroutine
		if rep.Err != nil {
			nodeDetail(out, rep.Node.Name, "failed  %.2fs", rep.Duration.Seconds())
			return
		}
		if rep.TookBack {
			back := "no release"
			if rep.Back > 0 {
				back = fmt.Sprintf("v%d", rep.Back)
			}
			nodeDetail(out, rep.Node.Name, "was live on v%d, which an interrupted deploy left there: switched back to %s first", r.Number, back)
			log.Warn().Str("node", rep.Node.Name).Int("release", r.Number).Int("back", rep.Back).Msg("took back a release an interrupted deploy left live")
		}
		if rep.Full {
			nodeDetail(out, rep.Node.Name, "its live release did not match its manifest: sent the whole release")
			log.Warn().Str("node", rep.Node.Name).Msg("live release did not match its manifest; full upload")
		}
		nodeDetail(out, rep.Node.Name, "ready  %.2fs  (%d files, %s)", rep.Duration.Seconds(), rep.Files, hooks.Size(rep.Bytes))
		log.Info().Str("node", rep.Node.Name).Int("files", rep.Files).Int64("bytes", rep.Bytes).Dur("duration", rep.Duration).Msg("node ready")
	})
	if err != nil {
		log.Warn().Err(err).Msg("deploy to nodes failed")
		return nil, fmt.Errorf("v%d was not deployed: %w; every node keeps its previous release", r.Number, err)
	}
	return pr, nil
}

// writeContents writes the tar of the contents with these hashes, each
// once, streamed from git: nothing is held in memory whole.
func writeContents(ctx context.Context, r *builder.Release, hashes []string, w io.Writer) error {
	want := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		want[h] = true
	}
	tw := tar.NewWriter(w)
	err := r.EachFile(ctx, func(e builder.ManifestEntry) bool { return e.Mode != builder.ModeSymlink && want[e.SHA256] },
		func(e builder.ManifestEntry, content io.Reader) error {
			if !want[e.SHA256] {
				return nil // the same content under another path was sent already
			}
			delete(want, e.SHA256)
			hdr := &tar.Header{Name: e.SHA256, Mode: 0o644, Size: e.Size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err := io.Copy(tw, content)
			return err
		})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Plural is the "s" of "node%s" for n of them.
func Plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
