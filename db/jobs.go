package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// QueueMaintenance is the River queue of the periodic housekeeping jobs:
// idempotency key pruning, webhook log pruning (retention), and the
// reconciliation of payments, refunds and webhook logs that lost their job.
// Each domain package names its own queue beside its jobs; the app
// configures them all from those names.
const QueueMaintenance = "maintenance"

// Completing jobs. The payment and refund workers do not complete their job
// inside the transaction of their work (river.JobCompleteTx): River's
// completer marks jobs completed after Work returns, many in one statement,
// where JobCompleteTx costs one heavy statement per job inside the work's
// transaction — the largest share of the database's time per payment
// (docs/benchmarks-history.md, cost account). Exactly once still holds,
// because their change is conditional (a payment is decided only while
// pending, a refund processed only while pending): a job that runs again
// after its work committed — its completion lost to a crash, or the job
// rescued — changes nothing. At least once holds because a job is only
// completed after its work committed. The webhook worker does the same for a
// final attempt (the log leaves pending), and keeps CompleteJobTx for an
// attempt to be retried: it inserts the next attempt's job, unique by args,
// in the same transaction, and a log is pending exactly while a job of its
// run is alive.

// LiveJobStates is the SQL list of the states of a job that is still to run
// or running: a row whose job is in none of them has lost it (the
// reconcilers, a webhook retry).
const LiveJobStates = `('available', 'pending', 'running', 'retryable', 'scheduled')`

// maxSnooze is River's scheduler interval: a snooze up to it leaves the job
// available (picked at the first fetch poll after it is due), a longer one
// makes it scheduled, to be woken by the scheduler up to 5 s late.
const maxSnooze = 5 * time.Second

// shortWait is the longest wait a job sleeps through in its worker rather
// than snooze: a snooze costs the job an update, a fetch and a read again,
// more than holding a worker for a moment (a payment decided 1 ms after it
// is created, in test mode, would otherwise snooze whenever it was fetched
// within that millisecond).
const shortWait = 10 * time.Millisecond

// SnoozeUntil returns nil once at has come (sleeping through a wait of up
// to shortWait, or ctx's error should ctx end first), and otherwise the
// error that snoozes the running job towards it. A job inserted available
// and snoozed like this runs on time; one scheduled for at would wait for
// River's 5 s scheduler tick. A snooze costs no attempt and holds no worker
// slot.
func SnoozeUntil(ctx context.Context, at time.Time) error {
	wait := time.Until(at)
	switch {
	case wait <= 0:
		return nil
	case wait <= shortWait:
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return river.JobSnooze(min(wait, maxSnooze))
}

// CompleteJobTx completes the running job in tx, the transaction of the work
// it did, so the work and the completion commit together: for a worker that
// inserts its successor job unique by args, which the running job would
// otherwise duplicate. It costs one statement per job; the hot paths leave
// completion to River's batch completer (above). River answers a job that
// is no longer ours (rescued and run elsewhere) unchanged and without error:
// that is an error here, so that the work is rolled back.
func CompleteJobTx[T river.JobArgs](ctx context.Context, tx pgx.Tx, job *river.Job[T]) error {
	done, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
	if err != nil {
		return err
	}
	if done.State != rivertype.JobStateCompleted {
		return fmt.Errorf("%s job %d is %s, not completed", job.Kind, job.ID, done.State)
	}
	return nil
}
