// Package dbtest gives each test its own PostgreSQL database, cloned from a
// template that has every migration applied (pgtestdb). One throwaway server
// serves a whole test binary, with durability off; PAYGATE_TEST_DATABASE_URL
// names an existing server instead.
package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver pgtestdb uses
	"github.com/peterldowns/pgtestdb"

	"paygate/db"
)

var server pgtestdb.Config

// Main runs the package's tests against a server of their own. Use it from
// TestMain: func TestMain(m *testing.M) { dbtest.Main(m) }.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// Run is Main without the exit, for a TestMain that has more to stop
// afterwards (the browser tests' Chromium).
func Run(m *testing.M) int { return run(m) }

func run(m *testing.M) int {
	if url := os.Getenv("PAYGATE_TEST_DATABASE_URL"); url != "" {
		cfg, err := configFromURL(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dbtest:", err)
			return 1
		}
		server = cfg
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "paygate-test-pg-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	// DieWithParent: a test binary killed by its timeout skips the deferred
	// Stop below, and must not leave its server running.
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Fast: true, DieWithParent: true, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbtest: start test postgres:", err)
		return 1
	}
	defer pg.Stop(context.Background())
	server = pgtestdb.Config{
		DriverName: "pgx", User: "postgres", Database: "postgres",
		// pgx lets the query's host (our socket folder) win over the URL's.
		Host: "localhost", Port: "5432", Options: "sslmode=disable&host=" + pg.SocketDir(),
		ForceTerminateConnections: true,
	}
	return m.Run()
}

func configFromURL(url string) (pgtestdb.Config, error) {
	c, err := pgx.ParseConfig(url)
	if err != nil {
		return pgtestdb.Config{}, fmt.Errorf("PAYGATE_TEST_DATABASE_URL: %w", err)
	}
	return pgtestdb.Config{
		DriverName: "pgx", User: c.User, Password: c.Password, Database: c.Database,
		Host: c.Host, Port: strconv.Itoa(int(c.Port)), Options: "sslmode=disable",
		ForceTerminateConnections: true,
	}, nil
}

// New returns the URL of a fresh, fully migrated database that is dropped
// when the test ends.
func New(t testing.TB) string {
	t.Helper()
	if server.DriverName == "" {
		t.Fatal("dbtest: call dbtest.Main from the package's TestMain")
	}
	return pgtestdb.Custom(t, server, migrator{}).URL()
}

// Empty returns the URL of a fresh database with no migrations applied,
// dropped when the test ends: for tests of the upgrade path.
func Empty(t testing.TB) string {
	t.Helper()
	if server.DriverName == "" {
		t.Fatal("dbtest: call dbtest.Main from the package's TestMain")
	}
	return pgtestdb.Custom(t, server, emptyMigrator{}).URL()
}

type emptyMigrator struct{}

func (emptyMigrator) Hash() (string, error) { return "empty", nil }

func (emptyMigrator) Migrate(context.Context, *sql.DB, pgtestdb.Config) error { return nil }

// migrator adapts db.Migrate to pgtestdb; templates are keyed by the hash of
// the migrations, so a changed migration gets a fresh template.
type migrator struct{}

func (migrator) Hash() (string, error) { return db.MigrationsHash() }

func (migrator) Migrate(ctx context.Context, sqlDB *sql.DB, _ pgtestdb.Config) error {
	_, err := db.Migrate(ctx, sqlDB)
	return err
}

// RunsUnprepared runs work seven times (as often as PostgreSQL takes to
// cache a generic plan for a prepared statement), each in a transaction on
// one connection that is then rolled back, and fails t if the connection
// has prepared and kept any statement over unnest(…) (that names one of
// tables, when they are given): the batched statements are planned for each
// execution (db.PlannedEachTime). It checks that the check can see one,
// too: a statement run the usual way is kept.
func RunsUnprepared(t testing.TB, pool *pgxpool.Pool, work func(ctx context.Context, tx pgx.Tx) error, tables ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if tables == nil {
		tables = []string{} // not NULL
	}
	kept := func() (n int) {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements
			WHERE statement LIKE '%unnest(%' AND statement NOT LIKE '%pg_prepared_statements%'
			  AND (cardinality($1::text[]) = 0 OR EXISTS (SELECT FROM unnest($1::text[]) AS t WHERE statement LIKE '%' || t || '%'))`,
			tables).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 7 {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := work(ctx, tx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := kept(); n != 0 {
		t.Fatalf("%d statements over unnest(…) were prepared and kept", n)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM unnest($1::int[]) -- "+strings.Join(tables, ", "), []int32{1}); err != nil {
		t.Fatal(err)
	}
	if kept() != 1 {
		t.Fatal("a statement run the usual way was not seen kept")
	}
}
