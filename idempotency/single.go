package idempotency

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errSecondStatement means a use case run by DoStatement sent more than one
// statement: a wiring bug, since the first has committed by then. It is
// refused before it reaches the database.
var errSecondStatement = errors.New("idempotency: a second statement in a use case run by DoStatement")

// errNeedsTransaction refuses what only a transaction can do.
var errNeedsTransaction = errors.New("idempotency: DoStatement runs one statement, outside a transaction")

// single is the pgx.Tx that DoStatement hands a use case when no key is
// sent. Its first statement (a query, or one batch, which PostgreSQL runs as
// one implicit transaction) runs on the pool and commits on its own; any
// later one is refused with errSecondStatement. Commit and Rollback have
// nothing to do; nested transactions, COPY and prepared statements are
// refused.
type single struct {
	pool *pgxpool.Pool
	used bool
}

func (s *single) take() error {
	if s.used {
		return errSecondStatement
	}
	s.used = true
	return nil
}

func (s *single) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := s.take(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return s.pool.Exec(ctx, sql, args...)
}

func (s *single) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := s.take(); err != nil {
		return errRows{err}, err
	}
	return s.pool.Query(ctx, sql, args...)
}

func (s *single) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := s.take(); err != nil {
		return errRows{err}
	}
	return s.pool.QueryRow(ctx, sql, args...)
}

func (s *single) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := s.take(); err != nil {
		return errBatch{err}
	}
	return s.pool.SendBatch(ctx, b)
}

func (s *single) Begin(context.Context) (pgx.Tx, error) { return nil, errNeedsTransaction }
func (s *single) Commit(context.Context) error          { return nil }
func (s *single) Rollback(context.Context) error        { return nil }

func (s *single) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errNeedsTransaction
}

func (s *single) Prepare(context.Context, string, string) (*pgconn.StatementDescription, error) {
	return nil, errNeedsTransaction
}

// LargeObjects need a transaction; the zero value fails on first use.
func (s *single) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

// Conn is nil: there is no connection until the statement runs.
func (s *single) Conn() *pgx.Conn { return nil }

// errRows is the rows and the row of a refused statement.
type errRows struct{ err error }

func (r errRows) Close()                                       {}
func (r errRows) Err() error                                   { return r.err }
func (r errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r errRows) Next() bool                                   { return false }
func (r errRows) Scan(...any) error                            { return r.err }
func (r errRows) Values() ([]any, error)                       { return nil, r.err }
func (r errRows) RawValues() [][]byte                          { return nil }
func (r errRows) Conn() *pgx.Conn                              { return nil }
func (r errRows) TypeMap() *pgtype.Map                         { return nil }

// errBatch is the results of a refused batch.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return errRows(b), b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRows(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
