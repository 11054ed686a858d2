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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
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

// Pool opens a pool of at most conns connections on a fresh, fully migrated
// database (New), closed when the test ends.
func Pool(t testing.TB, conns int32) *pgxpool.Pool {
	t.Helper()
	pool, err := db.Open(context.Background(), New(t), conns)
	if err != nil {
		t.Fatalf("dbtest: open a pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
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
	_, err := db.Migrate(ctx, sqlDB, slog.New(slog.DiscardHandler))
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
	runRolledBack(t, conn, 7, work)
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

// Grown are the tables Grow fills.
var Grown = []string{"orders", "payments", "webhook_logs", "idempotency_keys"}

// Grow adds n rows of merchantID's to each table of Grown (paid orders,
// their successful payments, logs of which one in ten is still pending,
// answered keys): with n = 1,000 each is at least 64 kB on disk, so
// that PostgreSQL plans for tables of that size (PlansByUniqueKeys).
func Grow(t testing.TB, pool *pgxpool.Pool, merchantID uuid.UUID, n int) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		WITH o AS (
			INSERT INTO orders (id, merchant_id, amount, currency, status)
			SELECT 'order_' || lpad(g::text, 16, 'G'), $1, 10000, 'INR', 'paid' FROM generate_series(1, $2) g
			RETURNING id
		), p AS (
			INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, decided_at)
			SELECT 'pay_' || substr(id, 7), id, $1, 10000, 'INR', 'upi', 'a@b', 'success', now() FROM o
		), l AS (
			INSERT INTO webhook_logs (id, merchant_id, event, payload, status, attempts, run)
			SELECT gen_random_uuid(), $1, 'payment.success', '\x7b7d', CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'success' END,
			       CASE WHEN g % 10 = 0 THEN 0 ELSE 1 END, 0
			FROM generate_series(1, $2) g
		)
		INSERT INTO idempotency_keys (merchant_id, route, key, request_hash, status_code, response_body, created_at, expires_at)
		SELECT $1, 'POST /api/v1/payments', 'grown-' || g, '\x00', 201, '\x7b7d', now(), now() + interval '1 day'
		FROM generate_series(1, $2) g`, merchantID, n)
	if err != nil {
		t.Fatal(err)
	}
}

// PlansByUniqueKeys checks the plans kept by the connections of k
// (db.KeptPlans), as they are made once the tables of a batch have grown:
// the test has grown them (Grow) to the size k asks for, which it lowers
// for speed (SetMinBytes: a primary key wins more clearly the larger the
// table). It analyzes the database, checks that k gives tables the pool of
// kept plans now, runs work twice on one of its connections, each time in
// a transaction then rolled back, checks that a statement holding each of
// prepared was prepared there, and fails t unless every statement the
// connection has prepared (but the test's own, marked "/* test */", and
// the transactions' and settings' statements, which have no plan)
// reaches each table through an index scan of a primary or unique key
// with an equality on each of its columns: no sequential, bitmap or other
// index scan, no hash or merge join.
func PlansByUniqueKeys(t testing.TB, k *db.KeptPlans, tables, prepared []string, work func(ctx context.Context, tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	if _, err := k.Kept().Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	if k.Measured(tables...) != k.Kept() {
		t.Fatalf("tables %v have not grown to the size kept plans wait for", tables)
	}
	conn, err := k.Kept().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	runRolledBack(t, conn, 2, work)
	type statement struct {
		Name, Statement string
		Params          int
	}
	rows, _ := conn.Query(ctx, `SELECT name, statement, cardinality(parameter_types) AS params FROM pg_prepared_statements
		WHERE statement NOT LIKE '%pg_prepared_statements%' AND statement NOT LIKE '/* test */%'
		  AND statement !~* '^\s*(SET|BEGIN|COMMIT|ROLLBACK|SAVEPOINT)\M'`) // no plan to check
	stmts, err := pgx.CollectRows(rows, pgx.RowToStructByName[statement])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prepared {
		if !slices.ContainsFunc(stmts, func(s statement) bool { return strings.Contains(s.Statement, p) }) {
			t.Errorf("no statement holding %q was prepared on the connection of kept plans", p)
		}
	}
	for _, s := range stmts {
		args := ""
		if s.Params > 0 {
			args = "(" + strings.TrimSuffix(strings.Repeat("NULL, ", s.Params), ", ") + ")"
		}
		var plan []struct{ Plan map[string]any }
		if err := conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) EXECUTE `+pgx.Identifier{s.Name}.Sanitize()+args).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		for _, bad := range scansNotByUniqueKey(t, conn, plan[0].Plan) {
			t.Errorf("%s\nin the generic plan of %s", bad, s.Statement)
		}
	}
}

// scansNotByUniqueKey describes each node of plan that reaches a table
// otherwise than through a primary or unique key's index with an equality
// on each of its columns, or joins by hashing or merging.
func scansNotByUniqueKey(t testing.TB, conn *pgxpool.Conn, plan map[string]any) (bad []string) {
	t.Helper()
	node, _ := plan["Node Type"].(string)
	switch node {
	case "Seq Scan", "Bitmap Heap Scan", "Bitmap Index Scan", "Tid Scan", "Tid Range Scan", "Sample Scan",
		"Hash Join", "Merge Join", "Hash":
		bad = append(bad, fmt.Sprintf("%s on %v", node, plan["Relation Name"]))
	case "Index Scan", "Index Only Scan":
		if plan["Relation Name"] == "merchants" {
			break // a few rows (db.KeptPlans)
		}
		var columns []string
		if err := conn.QueryRow(context.Background(), `
			SELECT coalesce(array_agg(a.attname::text) FILTER (WHERE i.indisunique), '{}')
			FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
			WHERE c.relname = $1`, plan["Index Name"]).Scan(&columns); err != nil {
			t.Fatal(err)
		}
		cond, _ := plan["Index Cond"].(string)
		ok := len(columns) > 0
		for _, c := range columns {
			ok = ok && strings.Contains(cond, "("+c+" = ")
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s on %v using %v, condition %q", node, plan["Relation Name"], plan["Index Name"], cond))
		}
	}
	children, _ := plan["Plans"].([]any)
	for _, c := range children {
		if c, ok := c.(map[string]any); ok {
			bad = append(bad, scansNotByUniqueKey(t, conn, c)...)
		}
	}
	return bad
}

// runRolledBack runs work times times on conn, each time in a transaction
// then rolled back.
func runRolledBack(t testing.TB, conn *pgxpool.Conn, times int, work func(ctx context.Context, tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	for range times {
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
}

// RoundTrips counts what a pool's connections send that waits for an
// answer: a query, a batch (one round trip however many statements it
// carries) or a statement's preparation outside a batch. The statements a
// batch prepares are not counted: a test runs its work once first.
type RoundTrips struct{ N atomic.Int32 }

func (r *RoundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.N.Add(1)
	return ctx
}
func (r *RoundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *RoundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.N.Add(1)
	return ctx
}
func (r *RoundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *RoundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (r *RoundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	r.N.Add(1)
	return ctx
}
func (r *RoundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TracedPool is a pool of one connection to url whose round trips are
// counted; kept: one whose connection keeps its plans, as those of
// db.KeptPlans do (db.PlanMode).
func TracedPool(t testing.TB, url string, kept bool) (*pgxpool.Pool, *RoundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	trips := &RoundTrips{}
	cfg.ConnConfig.Tracer = trips
	var pool *pgxpool.Pool
	closePool := func() { pool.Close() }
	if kept {
		pool, closePool, err = db.OpenKeptConfig(context.Background(), cfg)
	} else {
		pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closePool)
	return pool, trips
}
