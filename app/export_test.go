package app

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// RiverConfig is the River configuration a builds its client with.
func RiverConfig(a *App) *river.Config { return a.riverConfig(river.NewWorkers(), nil) }

// StartHeartbeat starts a worker's heartbeat on pool; stop ends it.
func StartHeartbeat(pool *pgxpool.Pool) (stop func(context.Context)) {
	return startHeartbeat(pool, slog.Default()).stop
}

// CountJobs runs the count behind /api/v1/test/jobs/status once.
func CountJobs(ctx context.Context, a *App) error {
	_, err := a.countJobs(ctx)
	return err
}
