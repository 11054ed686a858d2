package db

import (
	"context"
	"database/sql"
	"log/slog"
	"time"
)

// MeasureAge is how old k's measures may grow before For makes another.
func (k *KeptPlans) MeasureAge() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.age()
}

// MigrateUpTo applies the migrations up to version, as an older paygate
// left the database, for tests of a later migration's upgrade path.
func MigrateUpTo(ctx context.Context, sqlDB *sql.DB, version int64) error {
	p, err := provider(sqlDB, slog.Default())
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

// MigrateDownTo undoes the migrations after version.
func MigrateDownTo(ctx context.Context, sqlDB *sql.DB, version int64) error {
	p, err := provider(sqlDB, slog.Default())
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}

// SetMigrationLockPolls sets how often a migration waiting for the
// migrations' lock tries it, and tells that it waits.
func SetMigrationLockPolls(poll, log time.Duration) (restore func()) {
	was, wasLog := lockPoll, lockWaitLog
	lockPoll, lockWaitLog = poll, log
	return func() { lockPoll, lockWaitLog = was, wasLog }
}

// SetEmbeddedStartWait sets how long a start waits for a server that does
// not answer, and how often it tells that it waits for one starting up.
func SetEmbeddedStartWait(wait, log time.Duration) (restore func()) {
	was, wasLog := startWait, recoveryLog
	startWait, recoveryLog = wait, log
	return func() { startWait, recoveryLog = was, wasLog }
}

// SetMigrationLockRetry sets how soon a migration that timed out on a
// table's lock runs again.
func SetMigrationLockRetry(d time.Duration) (restore func()) {
	was := lockRetry
	lockRetry = d
	return func() { lockRetry = was }
}

// Queued reports whether statements wait to be sent with the COMMIT.
func (t *PipelinedTx) Queued() bool { return t.later != nil }
