package db

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errNested refuses a nested transaction: no use case run in one opens one.
var errNested = errors.New("db: nested transactions are not supported")

// PipelinedTx is a transaction on one pooled connection whose BEGIN travels
// with its first statement (one round trip instead of two), and whose
// COMMIT may travel with its last ones (CommitWith). On a loaded machine
// every round trip inside a transaction holds its connection and its row
// locks for one more wake-up of paygate, which is what the database's
// sessions were found waiting on ("idle in transaction").
//
// It is a pgx.Tx for the use cases (River's InsertTx included): its
// statements run on the connection in order, inside the transaction. The
// results of the batch that carried BEGIN are read to their end before
// anything else is sent (settle).
//
// Statements given to ExecAtCommit and QueryAtCommit (db.ExecAtCommit,
// db.QueryAtCommit) wait to travel with the COMMIT: a request's last writes
// (its event with its delivery job, whose rows a callback reads as they
// come; River's insert notification) cost no round trip of their own.
// Should anything else be sent first, they go just before it.
//
// Statements given to SendFirst (a keyed request's claim of its key) travel
// with BEGIN and the first statement, whatever starts the transaction:
// their results are checked before that statement's, and should the check
// fail, the statement's results are read and dropped and it fails with the
// check's error (FirstResult), the transaction left open for the caller to
// roll back to a savepoint or end.
type PipelinedTx struct {
	conn    *pgxpool.Conn
	begun   bool             // BEGIN has been sent
	closed  bool             // committed or rolled back
	pending pgx.BatchResults // the results of the batch that carried BEGIN, until read
	later   *pgx.Batch       // the statements queued for the COMMIT, not yet sent

	first      *pgx.Batch                   // SendFirst's statements, not yet sent
	checkFirst func(pgx.BatchResults) error // reads each of their results
	firstErr   error                        // the check's error, or the batch's that carried them
}

// errFirstNotSent is FirstResult's answer should a transaction have begun
// without SendFirst's statements: every way to begin sends them, and the
// work of a transaction whose claim was never checked must not commit.
var errFirstNotSent = errors.New("db: the transaction began without its first statements")

// SendFirst queues b to be sent with BEGIN, ahead of the first statement,
// and check to read every one of b's results when they come.
func (t *PipelinedTx) SendFirst(b *pgx.Batch, check func(pgx.BatchResults) error) {
	t.first, t.checkFirst = b, check
}

// FirstResult sends SendFirst's statements now if nothing was sent yet, and
// returns what their check said: nil only once they ran and passed it.
func (t *PipelinedTx) FirstResult(ctx context.Context) error {
	if t.first != nil {
		if t.begun || t.closed {
			return errFirstNotSent
		}
		t.begin(ctx, &pgx.Batch{}).Close() //nolint:errcheck // firstErr says it, or the transaction failed
		if t.firstErr == nil && t.closed {
			return pgx.ErrTxClosed
		}
	}
	return t.firstErr
}

// ExecAtCommit queues sql to be sent with the COMMIT (db.ExecAtCommit), and
// reports whether it did: not for a statement that cannot go in a batch
// (BatchArgs). A failure of it fails the commit, and the transaction is
// rolled back.
func (t *PipelinedTx) ExecAtCommit(sql string, args ...any) bool {
	args, ok := BatchArgs(args)
	if ok {
		t.queueLater(sql, args...)
	}
	return ok
}

// QueryAtCommit is ExecAtCommit for a statement whose rows scan reads when
// they come (db.QueryAtCommit).
func (t *PipelinedTx) QueryAtCommit(scan func(pgx.Rows) error, sql string, args ...any) bool {
	args, ok := BatchArgs(args)
	if ok {
		t.queueLater(sql, args...).Query(scan)
	}
	return ok
}

func (t *PipelinedTx) queueLater(sql string, args ...any) *pgx.QueuedQuery {
	if t.later == nil {
		t.later = &pgx.Batch{}
	}
	return t.later.Queue(sql, args...)
}

// DropAtCommit forgets the statements queued for the COMMIT: the work that
// queued them was rolled back.
func (t *PipelinedTx) DropAtCommit() { t.later = nil }

// sendLater sends the statements queued for the COMMIT now, because
// something else is about to be sent.
func (t *PipelinedTx) sendLater(ctx context.Context) error {
	if t.later == nil {
		return nil
	}
	b := t.later
	t.later = nil
	return t.SendBatch(ctx, b).Close()
}

// BeginPipelined takes a connection of pool for a transaction whose BEGIN
// is sent with its first statement; Release gives it back.
func BeginPipelined(ctx context.Context, pool *pgxpool.Pool) (*PipelinedTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &PipelinedTx{conn: conn}, nil
}

// WithPipelinedTx is WithTx in a PipelinedTx: for the hot paths' batches,
// whose first statements (a batch of creations' claim of its keys:
// idempotency.ClaimTx; its payments' INSERT; a batch of decisions' UPDATE)
// travel with BEGIN, and whose last writes (the keys' answers on kept
// plans, the events, the jobs) with COMMIT.
func WithPipelinedTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := BeginPipelined(ctx, pool)
	if err != nil {
		return err
	}
	defer tx.Release(ctx)
	return runTx(ctx, tx, fn)
}

// Release rolls back what was not committed and gives the connection back.
func (t *PipelinedTx) Release(ctx context.Context) {
	t.Rollback(ctx) //nolint:errcheck // the connection is closed if this fails; ErrTxClosed after a commit
	t.conn.Release()
}

// settle reads what is left of the batch that carried BEGIN.
func (t *PipelinedTx) settle() error {
	if t.pending == nil {
		return nil
	}
	err := t.pending.Close()
	t.pending = nil
	return err
}

// begin sends b with BEGIN (and SendFirst's statements) in front of it,
// or as it is once begun. The caller reads b's results from what it
// returns, then settles.
func (t *PipelinedTx) begin(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.settle(); err != nil {
		return errBatch{err}
	}
	if t.closed {
		return errBatch{pgx.ErrTxClosed}
	}
	if t.begun {
		return t.conn.SendBatch(ctx, b)
	}
	t.begun = true
	first := t.first
	t.first = nil
	withBegin := &pgx.Batch{}
	withBegin.Queue("BEGIN")
	if first != nil {
		withBegin.QueuedQueries = append(withBegin.QueuedQueries, first.QueuedQueries...)
	}
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	results := t.conn.SendBatch(ctx, withBegin)
	if _, err := results.Exec(); err != nil {
		// BEGIN failed or was never sent (the batch failed before it, as
		// when a statement cannot be prepared): there is no transaction,
		// and a later statement would run on its own, a later COMMIT
		// "succeed" outside one. Everything from now on fails.
		results.Close() //nolint:errcheck // err says it
		t.closed = true
		if first != nil {
			t.firstErr = err
		}
		return errBatch{err}
	}
	t.pending = results
	if first != nil {
		if err := t.checkFirst(results); err != nil {
			// b ran, or was skipped after a failure: its results are
			// read and dropped, and the transaction is left as it is
			// for the caller to roll back or go on.
			t.firstErr = err
			t.settle() //nolint:errcheck // err says it
			return errBatch{err}
		}
	}
	return settlingBatch{BatchResults: results, tx: t}
}

// settlingBatch are the results of the batch that carried BEGIN: closing
// them is settling the transaction, however often.
type settlingBatch struct {
	pgx.BatchResults
	tx *PipelinedTx
}

func (b settlingBatch) Close() error { return b.tx.settle() }

// ensureBegun sends BEGIN alone, for what cannot go in a batch.
func (t *PipelinedTx) ensureBegun(ctx context.Context) error {
	if err := t.settle(); err != nil {
		return err
	}
	if t.closed {
		return pgx.ErrTxClosed
	}
	if !t.begun && t.first != nil {
		return t.begin(ctx, &pgx.Batch{}).Close()
	}
	if !t.begun {
		t.begun = true
		if _, err := t.conn.Exec(ctx, "BEGIN"); err != nil {
			t.closed = true // no transaction: nothing may run as if in one
			return err
		}
	}
	return nil
}

// BatchArgs are a statement's arguments as a batch takes them, and whether
// it may go in one. pgx runs a batch's statements in the connection's
// default mode, and takes no mode as an argument: a statement that asks to
// be planned each time (db.PlannedEachTime, on the main pool) may not go in
// a batch; one that asks for its plan to be kept (QueryExecModeCacheStatement,
// on a connection of kept plans: db.PlanMode) goes without asking, since
// every default mode either keeps a prepared statement's plan so (pgx's
// default, which paygate's pools keep) or plans each time, which is never
// less safe.
func BatchArgs(args []any) ([]any, bool) {
	if len(args) == 0 {
		return args, true
	}
	mode, ok := args[0].(pgx.QueryExecMode)
	if !ok {
		return args, true
	}
	return args[1:], mode == pgx.QueryExecModeCacheStatement
}

func (t *PipelinedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.sendLater(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	batched, ok := BatchArgs(args)
	if t.begun || !ok {
		if err := t.ensureBegun(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.conn.Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, batched...)
	results := t.begin(ctx, b)
	tag, err := results.Exec()
	if settleErr := t.settle(); err == nil {
		err = settleErr
	}
	return tag, err
}

func (t *PipelinedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.sendLater(ctx); err != nil {
		return errRows{err}, err
	}
	batched, ok := BatchArgs(args)
	if t.begun || !ok {
		if err := t.ensureBegun(ctx); err != nil {
			return errRows{err}, err
		}
		return t.conn.Query(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, batched...)
	rows, err := t.begin(ctx, b).Query()
	if err != nil {
		t.settle() //nolint:errcheck // err says it
		return errRows{err}, err
	}
	return &settlingRows{Rows: rows, tx: t}, nil
}

func (t *PipelinedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, _ := t.Query(ctx, sql, args...) // an error is reported by Scan
	return firstRow{rows}
}

func (t *PipelinedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.sendLater(ctx); err != nil {
		return errBatch{err}
	}
	if !t.begun {
		return t.begin(ctx, b) // settled by the next statement, Commit or Rollback
	}
	if err := t.ensureBegun(ctx); err != nil {
		return errBatch{err}
	}
	return t.conn.SendBatch(ctx, b)
}

func (t *PipelinedTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.sendLater(ctx); err != nil {
		return 0, err
	}
	if err := t.ensureBegun(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, columns, src)
}

func (t *PipelinedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.sendLater(ctx); err != nil {
		return nil, err
	}
	if err := t.settle(); err != nil {
		return nil, err
	}
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	return t.conn.Conn().Prepare(ctx, name, sql)
}

func (t *PipelinedTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNested }

// LargeObjects need pgx's own transaction; the zero value fails on first use.
func (t *PipelinedTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (t *PipelinedTx) Conn() *pgx.Conn { return t.conn.Conn() }

func (t *PipelinedTx) Commit(ctx context.Context) error {
	return t.CommitWith(ctx, &pgx.Batch{})
}

// CommitWith sends the statements queued for the COMMIT, b and COMMIT in
// one round trip (with BEGIN too if nothing was sent yet). A statement that
// fails ends the batch before COMMIT; the transaction is then rolled back by
// Release.
func (t *PipelinedTx) CommitWith(ctx context.Context, b *pgx.Batch) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	if err := t.FirstResult(ctx); err != nil {
		return err // nothing of the work may commit unchecked
	}
	if t.later != nil {
		b.QueuedQueries = append(t.later.QueuedQueries, b.QueuedQueries...)
		t.later = nil
	}
	if !t.begun && b.Len() == 0 {
		t.closed = true // nothing was sent: nothing to commit
		return nil
	}
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		if tag.String() != "COMMIT" {
			return pgx.ErrTxCommitRollback // the transaction had failed
		}
		return nil
	})
	err := t.SendBatch(ctx, b).Close()
	t.pending = nil
	if err == nil || t.conn.Conn().PgConn().TxStatus() == 'I' {
		t.closed = true
	}
	return err
}

func (t *PipelinedTx) Rollback(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	t.DropAtCommit()
	settleErr := t.settle()
	if !t.begun || t.conn.Conn().PgConn().TxStatus() == 'I' {
		return settleErr
	}
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.conn.Conn().Close(ctx) //nolint:errcheck // the pool drops a closed connection
		return err
	}
	return nil
}

// settlingRows are the rows of the statement that carried BEGIN: closing
// them reads the rest of its batch.
type settlingRows struct {
	pgx.Rows
	tx  *PipelinedTx
	err error
}

func (r *settlingRows) Close() {
	r.Rows.Close()
	if err := r.tx.settle(); err != nil && r.err == nil {
		r.err = err
	}
}

func (r *settlingRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *settlingRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// firstRow is pgx's QueryRow over any rows: the first row, or ErrNoRows.
type firstRow struct{ rows pgx.Rows }

func (r firstRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// errRows is the rows and the row of a statement that was not sent.
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
