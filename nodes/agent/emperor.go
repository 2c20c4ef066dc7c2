package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// emperorVassal is one vassal in the emperor's stats.
type emperorVassal struct {
	ID       string `json:"id"`
	PID      int    `json:"pid"`
	Respawns int    `json:"respawns"`
}

// emperorVassals asks the emperor's stats socket for its vassals. The
// connection also makes the emperor scan its directory; the answer tells
// what it knew before that scan.
func emperorVassals(ctx context.Context, socket string) ([]emperorVassal, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	// Cancelled (a start whose health check passed stops its watcher):
	// the read ends now, not when the busy emperor answers.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	data, err := io.ReadAll(io.LimitReader(conn, 8<<20))
	if err != nil {
		return nil, err
	}
	var stats struct {
		Vassals []emperorVassal `json:"vassals"`
	}
	if err := json.Unmarshal(data, &stats); err != nil {
		return nil, fmt.Errorf("emperor stats: %w", err)
	}
	return stats.Vassals, nil
}

// ringEmperor makes the emperor scan its vassals directory now rather than
// at its next tick. Errors do not matter: the scan every second still finds
// the change.
func ringEmperor(ctx context.Context, socket string) {
	emperorVassals(ctx, socket)
}
