package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// riverVersion pins River's schema to the version that River v0.51.2
// expects. Upgrading River means adding a new goose migration with the new
// target, never editing this one.
const riverVersion = 8

// RiverJobIndexes are the indexes of river_job that paygate's schema keeps
// of River's (migrations 00017 and 00018 drop the others). River's
// reindexer, which rebuilds its indexes daily, is configured with these:
// by default it names the dropped ones too, and warns every day that they
// do not exist.
func RiverJobIndexes() []string {
	return []string{"river_job_pkey", "river_job_prioritized_fetching_index",
		"river_job_state_and_finalized_at_index", "river_job_unique_idx"}
}

// riverSchemaVersion is the goose version of the Go migration that installs
// River's schema. SQL files must not use it.
const riverSchemaVersion = 2

func riverMigration() *goose.Migration {
	up := func(ctx context.Context, db *sql.DB) error {
		m, err := rivermigrate.New(riverdatabasesql.New(db), nil)
		if err != nil {
			return err
		}
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: riverVersion})
		return err
	}
	down := func(ctx context.Context, db *sql.DB) error {
		m, err := rivermigrate.New(riverdatabasesql.New(db), nil)
		if err != nil {
			return err
		}
		_, err = m.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1})
		return err
	}
	// RunDB: River's migrator manages its own transactions.
	return goose.NewGoMigration(riverSchemaVersion, &goose.GoFunc{RunDB: up}, &goose.GoFunc{RunDB: down})
}

// Migrate applies every pending migration. Concurrent callers (several
// paygate processes starting at once) are serialised by a Postgres session
// advisory lock, which a caller waits for as long as ctx lasts, telling
// logger (migrationLock); running it again changes nothing. A migration
// that sets its own lock_timeout (one that locks a busy table) gives up
// when a long transaction holds the table, since the table's requests would
// queue behind it meanwhile: it is run again, after lockRetry and then
// twice as long each time up to a minute (with jitter, as other processes
// may be trying too), while ctx lasts, and logged. It returns the
// migrations applied, those before an error too.
func Migrate(ctx context.Context, sqlDB *sql.DB, logger *slog.Logger) ([]string, error) {
	p, err := provider(sqlDB, logger)
	if err != nil {
		return nil, err
	}
	var applied []string
	for wait := lockRetry; ; wait = min(2*wait, time.Minute) {
		results, err := p.Up(ctx)
		var partial *goose.PartialError
		if errors.As(err, &partial) {
			results = partial.Applied
		}
		for _, r := range results {
			name := r.Source.Path
			if name == "" {
				name = fmt.Sprintf("river schema v%d", riverVersion)
			}
			applied = append(applied, name)
		}
		if err == nil {
			return applied, nil
		}
		if !lockTimedOut(err, partial) {
			return applied, fmt.Errorf("migrate: %w", err)
		}
		pause := wait/2 + rand.N(wait) // 0.5 to 1.5 times
		logger.Warn("migrations: a migration could not take a table's lock in time (a long transaction holds the table); it runs again later",
			"migration", partial.Failed.Source.Path, "error", err.Error(), "again_in", pause.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return applied, fmt.Errorf("migrate: %w", context.Cause(ctx))
		case <-time.After(pause):
		}
	}
}

// lockTimedOut reports whether err is a migration's own lock_timeout: a
// lock not available (55P03) in a migration that sets one. Another's (a
// lock_timeout of the role, under an index built concurrently) is an error.
func lockTimedOut(err error, partial *goose.PartialError) bool {
	var pgErr *pgconn.PgError
	if partial == nil || partial.Failed == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		return false
	}
	sql, rerr := fs.ReadFile(migrations, "migrations/"+filepath.Base(partial.Failed.Source.Path))
	return rerr == nil && bytes.Contains(sql, []byte("SET LOCAL lock_timeout"))
}

// provider is goose over the embedded migrations and River's schema.
func provider(sqlDB *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithGoMigrations(riverMigration()),
		goose.WithSessionLocker(migrationLock{logger}),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// migrationLock is the migrations' lock: goose's session advisory lock
// (its id, so that a previous version's process and this one exclude each
// other), waited for as long as the caller's context lasts, where goose's
// own gives up after five minutes: a replica that starts while another
// process runs a long migration (an index built concurrently on a large
// table) waits for it and starts then, rather than exit. The lock is tried
// every lockPoll, not waited for in PostgreSQL, so that a lock_timeout or
// statement_timeout set for the role does not end the wait. The log says
// that it waits, and again every lockWaitLog.
type migrationLock struct{ logger *slog.Logger }

var (
	lockPoll    = time.Second
	lockWaitLog = time.Minute
	lockRetry   = 5 * time.Second // the first wait after a migration's lock_timeout
)

func (l migrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	start, told := time.Now(), time.Time{}
	for {
		var locked bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lock.DefaultLockID).Scan(&locked); err != nil {
			return fmt.Errorf("taking the migrations' lock: %w", err)
		}
		if locked {
			if !told.IsZero() {
				l.logger.Info("migrations: took the migrations' lock", "waited", time.Since(start).Round(time.Second).String())
			}
			return nil
		}
		if now := time.Now(); now.Sub(told) >= lockWaitLog {
			told = now
			l.logger.Info("migrations: waiting for the migrations' lock: another process is migrating this database",
				"waited", now.Sub(start).Round(time.Second).String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the migrations' lock: %w", context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
}

func (l migrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var unlocked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1)`, lock.DefaultLockID).Scan(&unlocked); err != nil {
		return fmt.Errorf("releasing the migrations' lock: %w", err)
	}
	if !unlocked {
		return errors.New("releasing the migrations' lock: it was not held")
	}
	return nil
}

// MigrationsHash identifies the schema that Migrate produces: a hash of
// every migration file and the pinned River version. Test templates are keyed
// by it.
func MigrationsHash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "river:%d\n", riverVersion)
	err := fs.WalkDir(migrations, "migrations", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := migrations.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\n", path)
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}
