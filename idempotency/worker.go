package idempotency

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"paygate/db"
)

// PruneArgs is the periodic job that forgets expired keys.
type PruneArgs struct{}

func (PruneArgs) Kind() string { return "idempotency_prune" }

func (PruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: db.QueueMaintenance, UniqueOpts: river.UniqueOpts{ByPeriod: time.Hour}}
}

// PruneWorker deletes expired keys. It is the one query here that spans
// merchants: expiry is the same rule for all of them.
type PruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	Keys *Keys
}

func (w *PruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	_, err := w.Keys.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= $1`, w.Keys.Now())
	return err
}

// PeriodicPrune schedules PruneArgs every hour and once at start.
func PeriodicPrune() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return PruneArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: "idempotency_prune"})
}
