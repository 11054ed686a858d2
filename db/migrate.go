package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"

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
// advisory lock; running it again changes nothing.
func Migrate(ctx context.Context, sqlDB *sql.DB) ([]string, error) {
	p, err := provider(sqlDB)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]string, 0, len(results))
	for _, r := range results {
		name := r.Source.Path
		if name == "" {
			name = fmt.Sprintf("river schema v%d", riverVersion)
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// provider is goose over the embedded migrations and River's schema.
func provider(sqlDB *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithGoMigrations(riverMigration()),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
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
