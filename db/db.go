// Package db owns the connection to PostgreSQL: the pgx pool, transactions
// (pgx's, WithTx, and pipelined ones whose BEGIN and COMMIT travel with
// statements: PipelinedTx, which the API's requests and the hot paths' batches
// run in), batches (Batcher: one statement or transaction for the requests of
// many jobs, or of many API requests), migrations (our SQL and River's schema,
// applied by goose under a session lock), the hot paths' job inserts
// (InsertJobsFrom: plain River jobs written by paygate's own statement, exactly
// as River's client would write them, to be rechecked on every River upgrade)
// and the embedded PostgreSQL supervisor used when no DATABASE_URL is given.
//
// Invariants: every transaction is rolled back unless committed (WithTx and
// WithPipelinedTx defer the rollback); migrations are idempotent and serialised
// across processes by goose's Postgres advisory lock; a statement sent with the
// COMMIT (ExecAtCommit) fails the commit when it fails, and a scan of its rows
// that fails leaves the commit's outcome unknown (QueryAtCommit).
package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"
)

// Open connects a pool to url. It does not wait for the database: the first
// query does. Connection attempts are bounded so that an unreachable database
// is reported as such within a request timeout instead of hanging.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	return open(ctx, url, maxConns, false)
}

// open connects a pool; kept: one of kept plans (OpenKeptPlans).
// DefaultMaxConns is a pool's size when neither its caller nor the URL's
// pool_max_conns sets one.
const DefaultMaxConns = 25

func open(ctx context.Context, url string, maxConns int32, kept bool) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	return openConfig(ctx, cfg, maxConns, kept)
}

// OpenKeptConfig opens a pool of cfg.MaxConns connections that keep their
// plans, as those of KeptPlans do (PlanMode), for a test that traces them
// (cfg.ConnConfig.Tracer); close closes it, and forgets it as such.
func OpenKeptConfig(ctx context.Context, cfg *pgxpool.Config) (pool *pgxpool.Pool, close func(), err error) {
	pool, err = openConfig(ctx, cfg, cfg.MaxConns, true)
	if err != nil {
		return nil, nil, err
	}
	return pool, func() {
		pool.Close()
		keptPools.Delete(pool)
	}, nil
}

func openConfig(ctx context.Context, cfg *pgxpool.Config, maxConns int32, kept bool) (*pgxpool.Pool, error) {
	url := cfg.ConnString()
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	switch {
	case maxConns > 0:
		cfg.MaxConns = maxConns
	case !strings.Contains(url, "pool_max_conns"):
		// pgx's default (the CPU count, at least 4) is too few for a server
		// whose requests wait on row locks.
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.HealthCheckPeriod = 10 * time.Second
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		// uuid.UUID as PostgreSQL's uuid, in binary: without this pgx
		// encodes every id through its driver.Valuer (a string, after a
		// failed binary plan that allocates an error) and scans it back
		// through sql.Scanner, about 5 % of paygate's CPU under load. A
		// NULL uuid scans into *uuid.UUID (nil), and is an error for a
		// plain uuid.UUID, where sql.Scanner made it the zero id.
		pgxuuid.Register(c.TypeMap())
		if kept {
			keptConns.Store(c, struct{}{})
		}
		return nil
	}
	if !kept {
		return pgxpool.NewWithConfig(ctx, cfg)
	}
	for k, v := range keptPlanSettings {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.BeforeClose = func(c *pgx.Conn) { keptConns.Delete(c) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		keptPools.Store(pool, struct{}{})
	}
	return pool, err
}

// Querier is what a pool and a transaction have in common, for reads that
// run either alone or inside a use case's transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// QueryOne runs sql and returns its one row as T, columns matched to fields
// by name; pgx.ErrNoRows when there is none.
func QueryOne[T any](ctx context.Context, q Querier, sql string, args ...any) (T, error) {
	rows, _ := q.Query(ctx, sql, args...) // a failed Query reports through CollectOneRow
	return pgx.CollectOneRow(rows, pgx.RowToStructByName[T])
}

// ErrCommitUnknown is WithTx's error when its COMMIT failed in a way that
// leaves the transaction's outcome unknown (CommitOutcome): it may have
// committed. It wraps the COMMIT's own error.
var ErrCommitUnknown = errors.New("the transaction's commit may have committed")

// WithTx runs fn in a transaction and commits when fn returns nil; the
// AfterCommit callbacks of tx run after the commit. A COMMIT whose outcome
// is unknown is reported as ErrCommitUnknown; any other error means that
// nothing of fn's was committed.
func WithTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	return runTx(ctx, tx, fn)
}

// runTx is WithTx in tx, which the caller has begun and rolls back once
// runTx returns (a no-op after its commit).
func runTx(ctx context.Context, tx pgx.Tx, fn func(tx pgx.Tx) error) error {
	track(tx)
	defer ended(tx, RolledBack) // a no-op once ended
	if err := fn(tx); err != nil {
		return err
	}
	err := tx.Commit(ctx)
	outcome := CommitOutcome(err)
	ended(tx, outcome)
	if outcome == Unknown {
		return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
	}
	return err
}

// IsUnavailable tells whether err means the database cannot be reached (as
// opposed to a query that failed): connection refused or timed out, the
// server shutting down, starting up or out of connections, a connection
// that dropped mid-query (EOF, reset, broken pipe) or that the driver had
// already closed, and the pool closed under a stopping process.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "57": // connection exception, operator intervention (shutdown)
			return pgErr.Code != "57014" // query_canceled is ours, not the server's
		case "3D": // invalid catalog name: the database is gone
			return true
		}
		return pgErr.Code == "53300" // too_many_connections
	}
	for _, gone := range connectionGone {
		if errors.Is(err, gone) {
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// connectionGone are what pgx reports when the connection under a query
// dropped: the server's end closed (EOF), reset, a write to a closed socket,
// or a connection pgx had closed after such an error.
var connectionGone = []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNREFUSED,
	syscall.ECONNABORTED, net.ErrClosed, pgconn.ErrConnClosed, puddle.ErrClosedPool}

// IsUniqueViolation tells whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// IsUniqueViolationOf reports whether err violates the unique constraint or
// index named constraint.
func IsUniqueViolationOf(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}
