package hooks

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
)

// Progress writes what the pusher sees as `remote:` lines, in the
// Heroku/Dokku convention every deploy tool's users already read:
// "-----> " starts a step, seven spaces indent its details, " !     " marks
// an error and "=====> " the final result.
type Progress struct {
	mu sync.Mutex // nodes report in parallel; lines must not interleave
	w  io.Writer
}

// NewProgress returns a Progress writing to w.
func NewProgress(w io.Writer) *Progress { return &Progress{w: w} }

// Line prefixes.
const (
	StepPrefix   = "-----> "
	DetailPrefix = "       "
	ErrorPrefix  = " !     "
	DonePrefix   = "=====> "
)

// Step starts a step.
func (p *Progress) Step(format string, a ...any) { p.write(StepPrefix, format, a) }

// Detail adds detail under the current step.
func (p *Progress) Detail(format string, a ...any) { p.write(DetailPrefix, format, a) }

// Error reports a failure.
func (p *Progress) Error(format string, a ...any) { p.write(ErrorPrefix, format, a) }

// Done reports the final result.
func (p *Progress) Done(format string, a ...any) { p.write(DonePrefix, format, a) }

func (p *Progress) write(prefix, format string, a []any) {
	msg := strings.TrimRight(fmt.Sprintf(format, a...), "\n")
	var b strings.Builder
	for _, line := range strings.Split(msg, "\n") {
		b.WriteString(prefix)
		// Lines carry what apps and nodes said (update_fetch output, an
		// app.log tail in an error, file names from the pushed tree): on
		// the pusher's terminal none of it may act as a control sequence
		// or start a line of its own that looks like ours.
		b.WriteString(termsafe.String(line))
		b.WriteByte('\n')
	}
	// Output is best effort: a pusher who went away must not fail the work.
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = io.WriteString(p.w, b.String())
}

// Size shows a byte count to people.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
