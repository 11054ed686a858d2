package db

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// Jobs inserted by paygate's own statements.
//
// Invariant: paygate writes river_job rows itself only for plain jobs, and
// writes each exactly as River's client would; anything else (a unique job,
// a scheduled one) goes through River. What makes "as River would" hold, to
// recheck on every River upgrade: every such job names its queue and its
// attempts in its own InsertOpts (JobRowsOf refuses one that leaves them to
// the client's configuration), and the app gives River no schema, no
// MaxAttempts, no insert hooks or middleware (app.go). The tests compare
// the rows with River's and have River work them.
//
// River's InsertTx and InsertManyTx read their statement's result before
// they return, so a request that inserts its job through them waits one
// round trip for it inside its transaction, and another for its COMMIT,
// holding its connection and row locks across both. The hot paths' jobs (a
// payment's decision, a refund's processing, an event's first delivery) are
// plain: available at once, not unique, without tags or metadata. For them
// JobRowsOf resolves each row as River's insert does (kind, JSON args, and
// queue, max attempts and priority from the insert options, then the args'
// own, then River's default priority), and InsertJobsFrom writes the
// statement that inserts them: a part of the statement that writes the row
// the job is for (a payment's, a refund's, an event's log), or a statement
// of its own that ExecAtCommit sends with the COMMIT. The river_job table
// is the interface River's clients in other languages insert through; a
// test checks that these rows equal River's own and are worked.
//
// Measured in the bench's ceiling: a payment row and its job in one round
// trip committed 1.5–2 times the transactions per second of River's
// InsertTx in a pgx transaction, at 30–40 % less database CPU each.

// JobRows are job rows to insert, column by column.
type JobRows struct {
	Args        [][]byte
	Kinds       []string
	Queues      []string
	MaxAttempts []int16
	Priorities  []int16
}

// errNotPlain refuses a job InsertJobsFrom cannot insert as River would.
var errNotPlain = errors.New("db: only a job available at once, not unique, without tags or metadata, with its queue and attempts named, is inserted by paygate's own statement")

// JobRowsOf resolves params into rows as River's client would insert them:
// kind, JSON args, and queue, attempts and priority from the insert's
// options, then the args' own, then River's default priority.
func JobRowsOf(params ...river.InsertManyParams) (JobRows, error) {
	rows := JobRows{
		Args:        make([][]byte, len(params)),
		Kinds:       make([]string, len(params)),
		Queues:      make([]string, len(params)),
		MaxAttempts: make([]int16, len(params)),
		Priorities:  make([]int16, len(params)),
	}
	for i, p := range params {
		var opts, own river.InsertOpts
		if p.InsertOpts != nil {
			opts = *p.InsertOpts
		}
		if withOpts, ok := p.Args.(river.JobArgsWithInsertOpts); ok {
			own = withOpts.InsertOpts()
		}
		for _, o := range []river.InsertOpts{opts, own} {
			if !o.ScheduledAt.IsZero() || o.Tags != nil || o.Metadata != nil || !uniqueEmpty(o.UniqueOpts) || o.Pending {
				return JobRows{}, fmt.Errorf("%s: %w", p.Args.Kind(), errNotPlain)
			}
		}
		queue, attempts := cmp.Or(opts.Queue, own.Queue), cmp.Or(opts.MaxAttempts, own.MaxAttempts)
		if queue == "" || attempts == 0 {
			return JobRows{}, fmt.Errorf("%s: %w", p.Args.Kind(), errNotPlain)
		}
		args, err := json.Marshal(p.Args)
		if err != nil {
			return JobRows{}, fmt.Errorf("%s args: %w", p.Args.Kind(), err)
		}
		priority := cmp.Or(opts.Priority, own.Priority, river.PriorityDefault)
		if priority < 1 || priority > 4 {
			return JobRows{}, fmt.Errorf("%s: priority %d is not 1–4", p.Args.Kind(), priority)
		}
		rows.Args[i] = args
		rows.Kinds[i] = p.Args.Kind()
		rows.Queues[i] = queue
		rows.MaxAttempts[i] = int16(attempts)
		rows.Priorities[i] = int16(priority)
	}
	return rows, nil
}

func uniqueEmpty(u river.UniqueOpts) bool {
	return !u.ByArgs && u.ByPeriod == 0 && !u.ByQueue && u.ByState == nil && !u.ExcludeKind
}

// Params are JobRows' arrays in InsertJobsFrom's column order: args jsonb[],
// kind text[], queue text[], max_attempts smallint[], priority smallint[].
func (r JobRows) Params() []any {
	return []any{r.Args, r.Kinds, r.Queues, r.MaxAttempts, r.Priorities}
}

// InsertJobsFrom is the statement that inserts the rows of query (columns
// args, kind, queue, max_attempts, priority) as jobs available now, as
// River's insert does.
func InsertJobsFrom(query string) string {
	return `INSERT INTO river_job (args, kind, queue, max_attempts, priority, state, scheduled_at, tags, metadata)
		SELECT q.args, q.kind, q.queue, q.max_attempts, q.priority, 'available', now(), '{}', '{}'
		FROM (` + query + `) AS q`
}

// Unnest is the query of the rows (InsertJobsFrom's columns) from Params
// passed as a statement's arguments $first to $first+4.
func (JobRows) Unnest(first int) string {
	return fmt.Sprintf(`SELECT * FROM unnest($%d::jsonb[], $%d::text[], $%d::text[], $%d::smallint[], $%d::smallint[])
			AS j(args, kind, queue, max_attempts, priority)`, first, first+1, first+2, first+3, first+4)
}

// Insert is the statement that inserts the rows, and its arguments.
func (r JobRows) Insert() (string, []any) {
	return InsertJobsFrom(r.Unnest(1)), r.Params()
}

// InsertJobsAtCommit inserts jobs in tx with one statement sent with tx's
// COMMIT where tx sends statements that way (ExecAtCommit), and notifies
// their queues' producers as River's insert would.
func InsertJobsAtCommit(ctx context.Context, tx pgx.Tx, params ...river.InsertManyParams) error {
	if len(params) == 0 {
		return nil
	}
	rows, err := JobRowsOf(params...)
	if err != nil {
		return err
	}
	sql, args := rows.Insert()
	if err := ExecAtCommit(ctx, tx, sql, args...); err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	return NotifyInsertAtCommit(ctx, tx, rows.Queues...)
}

// atCommit is a transaction that can send statements with its COMMIT
// (PipelinedTx, which every API request and the hot paths' batches run in).
type atCommit interface {
	ExecAtCommit(sql string, args ...any) (queued bool)
	QueryAtCommit(scan func(pgx.Rows) error, sql string, args ...any) (queued bool)
}

// ExecAtCommit runs sql in tx: with tx's COMMIT when tx can send it so,
// otherwise now (pgx's transaction; a statement asking for a mode a batch does
// not run it in: PlannedEachTime). Sent with the COMMIT, its error is the
// commit's, and nothing of the transaction commits; its row count is not known.
// It is for a use case's last writes: should the use case send anything after
// it, sql is sent first, and its error would come back as that statement's.
func ExecAtCommit(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	if later, ok := tx.(atCommit); ok && later.ExecAtCommit(sql, args...) {
		return nil
	}
	_, err := tx.Exec(ctx, sql, args...)
	return err
}

// QueryAtCommit is ExecAtCommit for a statement whose rows scan reads:
// sent with tx's COMMIT, scan runs when they come back, before the COMMIT's
// answer, so only for a transaction that then commits (or fails); sent now
// otherwise. Sent now, scan's error fails the statement like its own; sent
// with the COMMIT, which the server runs whatever scan says, it leaves the
// commit's outcome unknown (CommitOutcome: WithTx's ErrCommitUnknown), so
// scan is for reading rows, not for checking them.
func QueryAtCommit(ctx context.Context, tx pgx.Tx, scan func(pgx.Rows) error, sql string, args ...any) error {
	if later, ok := tx.(atCommit); ok && later.QueryAtCommit(scan, sql, args...) {
		return nil
	}
	return QueryScan(ctx, tx, scan, sql, args...)
}

// QueryScan runs a query now and reads its rows with scan, whose error
// fails it like the query's own.
func QueryScan(ctx context.Context, q Querier, scan func(pgx.Rows) error, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	return ScanRows(rows, scan)
}

// ScanRows reads rows with scan and closes them: scan's error, or theirs.
func ScanRows(rows pgx.Rows, scan func(pgx.Rows) error) error {
	defer rows.Close()
	if err := scan(rows); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// Insert notifications. River's producers LISTEN on "<schema>.river_insert"
// (the connection's current schema) and fetch a queue a notification names
// at once (after their cooldown), instead of at their next poll. River's
// client sends one for a queue at most once per fetch cooldown, in the
// inserting transaction; NotifyInsertAtCommit does so at most once per
// queue per insertNotifyEvery in this process (the default cooldown,
// whatever RIVER_FETCH_COOLDOWN says: producers still poll), because each
// NOTIFY holds PostgreSQL's notify lock through its transaction's commit. A test (TestInsertedJobsWakeTheirQueue) fails
// should River listen elsewhere.
const insertNotifyEvery = 50 * time.Millisecond

// InsertChannel is the SQL of River's insert notification channel.
const InsertChannel = `coalesce(current_schema() || '.', '') || 'river_insert'`

var insertNotified = struct {
	sync.Mutex
	last map[string]time.Time
}{last: map[string]time.Time{}}

// NotifyDue returns the queues that are due an insert notification at now,
// and marks them notified.
func NotifyDue(now time.Time, queues ...string) []string {
	insertNotified.Lock()
	defer insertNotified.Unlock()
	var due []string
	for _, q := range queues {
		if slices.Contains(due, q) || now.Sub(insertNotified.last[q]) < insertNotifyEvery {
			continue
		}
		insertNotified.last[q] = now
		due = append(due, q)
	}
	return due
}

// NotifyInsertAtCommit sends River's insert notification for the queues
// that are due one, with tx's COMMIT (ExecAtCommit): PostgreSQL delivers it
// when tx commits, and never if it rolls back.
func NotifyInsertAtCommit(ctx context.Context, tx pgx.Tx, queues ...string) error {
	due := NotifyDue(time.Now(), queues...)
	if len(due) == 0 {
		return nil
	}
	payloads := make([]string, len(due))
	for i, q := range due {
		payloads[i] = InsertPayload(q)
	}
	return ExecAtCommit(ctx, tx, `SELECT pg_notify(`+InsertChannel+`, p) FROM unnest($1::text[]) AS p`, payloads)
}

// InsertPayload is River's insert notification for queue, as its producers
// read it.
func InsertPayload(queue string) string {
	payload, _ := json.Marshal(map[string]string{"queue": queue}) // a map of strings always marshals
	return string(payload)
}
