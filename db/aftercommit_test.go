package db_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// AfterCommit runs its callback once the WithTx transaction commits, never
// when it rolls back, and never in a transaction WithTx does not run; no
// transaction is remembered after it ends.
func TestAfterCommitOnlyAfterWithTxCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 4)

	ran := 0
	var seen pgx.Tx
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		seen = tx
		db.AfterCommit(tx, func() { ran++ })
		require.Zero(t, ran, "not before the commit")
		return nil
	}))
	require.Equal(t, 1, ran)
	require.False(t, db.Tracked(seen))

	failed := errors.New("rolled back")
	require.ErrorIs(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		seen = tx
		db.AfterCommit(tx, func() { ran++ })
		return failed
	}), failed)
	require.Equal(t, 1, ran, "not after a rollback")
	require.False(t, db.Tracked(seen))

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	db.AfterCommit(tx, func() { ran++ })
	require.False(t, db.Tracked(tx), "a transaction WithTx does not run keeps nothing")
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, ran)
}

// AfterEnd learns how its transaction ended: committed after the commit,
// rolled back after a rollback or an undone Track, unknown when the
// COMMIT got no answer; each once.
func TestAfterEndTellsHowTheTransactionEnded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 4)

	var ends []db.Outcome
	record := func(o db.Outcome) { ends = append(ends, o) }
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		require.True(t, db.Tracked(tx))
		db.AfterEnd(tx, record)
		require.Empty(t, ends, "not before the commit")
		return nil
	}))
	require.Equal(t, []db.Outcome{db.Committed}, ends)

	failed := errors.New("rolled back")
	require.ErrorIs(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		db.AfterEnd(tx, record)
		return failed
	}), failed)
	require.Equal(t, []db.Outcome{db.Committed, db.RolledBack}, ends)

	// A COMMIT the server refuses (a deferred constraint) rolled back.
	_, err := pool.Exec(ctx, `CREATE TABLE deferred_things (id int PRIMARY KEY,
		parent int REFERENCES deferred_things DEFERRABLE INITIALLY DEFERRED)`)
	require.NoError(t, err)
	err = db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		db.AfterEnd(tx, record)
		_, err := tx.Exec(ctx, `INSERT INTO deferred_things VALUES (1, 2)`)
		return err
	})
	require.Error(t, err)
	require.Equal(t, db.RolledBack, db.CommitOutcome(err))
	require.Equal(t, []db.Outcome{db.Committed, db.RolledBack, db.RolledBack}, ends)

	// A COMMIT on a connection that broke before it was sent: never run.
	err = db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		db.AfterEnd(tx, record)
		return tx.Conn().PgConn().Close(ctx)
	})
	require.Error(t, err, "the COMMIT's")
	require.Equal(t, db.RolledBack, ends[len(ends)-1])

	// A COMMIT answered FATAL (its backend terminated in it) may have
	// committed: unknown, and WithTx's error says so.
	_, err = pool.Exec(ctx, `CREATE FUNCTION terminate_self() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NULL; END $$;
		CREATE TABLE doomed (id int);
		CREATE CONSTRAINT TRIGGER doomed_at_commit AFTER INSERT ON doomed DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION terminate_self()`)
	require.NoError(t, err)
	err = db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		db.AfterEnd(tx, record)
		_, err := tx.Exec(ctx, `INSERT INTO doomed VALUES (1)`)
		return err
	})
	require.ErrorIs(t, err, db.ErrCommitUnknown)
	require.Equal(t, db.Unknown, ends[len(ends)-1])

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	end := db.Track(tx)
	db.AfterEnd(tx, record)
	end(db.RolledBack)
	end(db.Committed)
	require.Equal(t, db.RolledBack, ends[len(ends)-1], "the first end counts")
	require.False(t, db.Tracked(tx))
}

// Only a certain rollback is reported as one: a COMMIT not sent, a
// transaction already failed or ended, or an ERROR from the server. A
// FATAL (a backend terminated after it may have committed), a connection
// error or no answer leave the outcome unknown.
func TestCommitOutcomeIsRolledBackOnlyWhenCertain(t *testing.T) {
	t.Parallel()
	require.Equal(t, db.Committed, db.CommitOutcome(nil))
	for _, err := range []error{
		pgx.ErrTxCommitRollback,
		pgx.ErrTxClosed,
		&pgconn.PgError{Severity: "ERROR", Code: "23505"},
		fmt.Errorf("commit: %w", &pgconn.PgError{Severity: "ERROR", Code: "40001"}),
		fmt.Errorf("commit: %w", pgx.ErrPreprocessingBatch{}), // the batch with the COMMIT was never sent
	} {
		require.Equal(t, db.RolledBack, db.CommitOutcome(err), "%v", err)
	}
	for _, err := range []error{
		io.ErrUnexpectedEOF,
		&pgconn.PgError{Severity: "FATAL", Code: "57P01"},
		&pgconn.PgError{Severity: "ERROR", Code: "08006"},
		&pgconn.PgError{Severity: "ERROR", Code: "57P02"},
		&pgconn.PgError{Severity: "PANIC", Code: "XX000"},
	} {
		require.Equal(t, db.Unknown, db.CommitOutcome(err), "%v", err)
	}
}
