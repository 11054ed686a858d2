package app

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A worker process beats every heartbeatPeriod while its River client runs;
// a beat older than heartbeatFresh means no worker is working jobs.
const (
	heartbeatPeriod = 5 * time.Second
	heartbeatFresh  = 20 * time.Second
)

type heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
	until  chan context.Context // the stop's, which bounds the last write
}

func startHeartbeat(pool *pgxpool.Pool, logger *slog.Logger) *heartbeat {
	host, _ := os.Hostname()
	id := host + "/" + uuid.NewString()
	ctx, cancel := context.WithCancel(context.Background())
	h := &heartbeat{cancel: cancel, done: make(chan struct{}), until: make(chan context.Context, 1)}
	beat := func() {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		// Beats of processes that died without saying so are swept here.
		_, err := pool.Exec(bctx, `
			WITH gone AS (DELETE FROM worker_heartbeats WHERE beat_at < now() - interval '1 hour')
			INSERT INTO worker_heartbeats (worker_id, hostname, beat_at) VALUES ($1, $2, now())
			ON CONFLICT (worker_id) DO UPDATE SET beat_at = now()`, id, host)
		if err != nil && ctx.Err() == nil {
			logger.Warn("worker heartbeat failed", "error", err)
		}
	}
	// The first beat is written before Start returns, so that /health
	// answers 200 from the moment HTTP is served.
	beat()
	go func() {
		defer close(h.done)
		t := time.NewTicker(heartbeatPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				// Say at once that this worker is gone, within the stop's
				// deadline (the database may be the reason of the stop).
				dctx, cancel := context.WithTimeout(<-h.until, 3*time.Second)
				_, _ = pool.Exec(dctx, `DELETE FROM worker_heartbeats WHERE worker_id = $1`, id)
				cancel()
				return
			case <-t.C:
				beat()
			}
		}
	}()
	return h
}

// stop ends the beats; the worker's row is deleted within ctx.
func (h *heartbeat) stop(ctx context.Context) {
	h.until <- ctx
	h.cancel()
	<-h.done
}
