package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/payments"
)

// decisionJobs returns the payment's process_payment jobs' args and max
// attempts, whatever their state.
func decisionJobs(t *testing.T, a *app.App, id string) (args []payments.ProcessArgs, maxAttempts []int) {
	t.Helper()
	rows, err := a.Pool.Query(context.Background(), `SELECT args, max_attempts FROM river_job
		WHERE kind = 'process_payment' AND args->>'payment_id' = $1 ORDER BY id`, id)
	require.NoError(t, err)
	var raw []byte
	var n int
	_, err = pgx.ForEachRow(rows, []any{&raw, &n}, func() error {
		var a payments.ProcessArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		args, maxAttempts = append(args, a), append(maxAttempts, n)
		return nil
	})
	require.NoError(t, err)
	return args, maxAttempts
}

// waitingTen makes payments due ten seconds after creation: held by the
// process that creates them, not yet decided, for a test's moment.
func waitingTen(c *app.Config) { c.TestProcessingDelay = 10 * time.Second }

// The process that creates a payment decides it itself: the payment gets
// no job, is decided, and its events are sent.
func TestFirstDecisionIsMadeByTheCreatingProcess(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	id := pay(t, a, h)["id"].(string)
	require.Equal(t, payments.StatusSuccess, waitFinal(t, a, h, id)["status"])
	args, _ := decisionJobs(t, a, id)
	require.Empty(t, args, "decided without a job")
	require.Eventually(t, func() bool { held, _ := a.Payments.FirstDecisions(); return held == 0 },
		10*time.Second, 5*time.Millisecond)
}

// A payment decided by the process that creates it is decided at its
// DecideAt, not before.
func TestFirstDecisionWaitsForDecideAt(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	a := apptest.New(t, func(c *app.Config) { c.TestProcessingDelay = delay })
	h := apptest.TestMerchant()
	id := pay(t, a, h)["id"].(string)
	require.Equal(t, payments.StatusSuccess, waitFinal(t, a, h, id)["status"])
	args, _ := decisionJobs(t, a, id)
	require.Empty(t, args)
	var waited bool
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT decided_at - created_at > $2::interval / 2
		FROM payments WHERE id = $1`, id, delay).Scan(&waited))
	require.True(t, waited, "decided before its delay")
}

// A payment is taken only when it fits (decided within the reconciler's
// threshold), in a transaction whose end the process learns, and while the
// process is not stopping; the room is freed by a rollback. Stopping gives
// the waiting payments back as jobs due at their DecideAt, with every
// attempt left.
func TestFirstDecisionsTakeOnlyWhatTheyCan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := apptest.TestMerchant()

	never := apptest.New(t, pendingForever)
	args, _ := decisionJobs(t, never, pay(t, never, h)["id"].(string))
	require.Len(t, args, 1, "due in an hour: not decided within a minute here, so a job")

	// River stopped, so that no periodic job is inserted meanwhile.
	a := riverDecidesNothing(apptest.New(t, waitingTen))
	created := time.Now()
	waiting := pay(t, a, h)["id"].(string)
	args, _ = decisionJobs(t, a, waiting)
	require.Empty(t, args, "taken")
	held, deciding := a.Payments.FirstDecisions()
	require.Equal(t, 1, held)
	require.Zero(t, deciding)
	var jobs int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job
		WHERE state IN ('available', 'scheduled', 'retryable', 'pending')`).Scan(&jobs))
	status, body := call(t, a, "GET", "/api/v1/test/jobs/status", "", nil)
	require.Equal(t, 200, status)
	require.EqualValues(t, jobs+1, body["pending"], "counted as pending, beside River's jobs")

	failed := errors.New("rolled back")
	orderID := createOrder(t, a, h, 50000)
	require.ErrorIs(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		_, err := a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, payments.PaymentInput{OrderID: orderID, Method: "upi", VPA: "a@b"})
		require.NoError(t, err)
		held, _ := a.Payments.FirstDecisions()
		require.Equal(t, 2, held)
		return failed
	}), failed)
	held, _ = a.Payments.FirstDecisions()
	require.Equal(t, 1, held, "freed by the rollback")

	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	p, err := a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, payments.PaymentInput{OrderID: orderID, Method: "upi", VPA: "a@b"})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	args, _ = decisionJobs(t, a, p.ID)
	require.Len(t, args, 1, "its transaction's end would go unseen: a job")

	a.Payments.StopFirstDecisions(ctx)
	args, maxAttempts := decisionJobs(t, a, waiting)
	require.Len(t, args, 1, "given back")
	require.Zero(t, args[0].Asked)
	require.Equal(t, 6, maxAttempts[0])
	require.WithinDuration(t, created.Add(10*time.Second), args[0].DecideAt, 2*time.Second, "due when it was")
	args, _ = decisionJobs(t, a, pay(t, a, h)["id"].(string))
	require.Len(t, args, 1, "stopped: a job")
}

// A payment whose transaction commits once Stop has begun is given back by
// its committer.
func TestAFirstDecisionCommittedAsStopBeginsIsGivenBack(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, waitingTen)
	ctx := context.Background()
	orderID := createOrder(t, a, apptest.TestMerchant(), 50000)
	var p payments.Payment
	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		var err error
		p, err = a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, payments.PaymentInput{OrderID: orderID, Method: "upi", VPA: "a@b"})
		require.NoError(t, err)
		held, _ := a.Payments.FirstDecisions()
		require.Equal(t, 1, held, "taken")
		a.Payments.StopFirstDecisions(ctx)
		return nil
	}))
	args, _ := decisionJobs(t, a, p.ID)
	require.Len(t, args, 1, "given back at its commit")
}

// A transaction whose COMMIT got no answer may have committed or not: its
// taken payment is given back as a job (whose worker cancels it, should the
// payment not exist).
func TestAFirstDecisionOfAnUnknownOutcomeIsGivenBack(t *testing.T) {
	t.Parallel()
	a := riverDecidesNothing(apptest.New(t, waitingTen))
	ctx := context.Background()
	orderID := createOrder(t, a, apptest.TestMerchant(), 50000)
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	end := db.Track(tx)
	p, err := a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, payments.PaymentInput{OrderID: orderID, Method: "upi", VPA: "a@b"})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx)) // committed; its client could not tell
	end(db.Unknown)
	held, _ := a.Payments.FirstDecisions()
	require.Zero(t, held)
	args, _ := decisionJobs(t, a, p.ID)
	require.Len(t, args, 1, "given back")
}

// Stopping gives back at once a due payment still waiting for its turn to
// ask the acquirer; one being asked is cancelled at the deadline and given
// back too, as not asked.
func TestStopGivesBackWhatWaitsForATurn(t *testing.T) {
	t.Parallel()
	asking := make(chan struct{}, 2)
	a := riverDecidesNothing(apptest.New(t, func(c *app.Config) {
		c.PaymentsWorkers = 1
		c.Acquirer = func(ctx context.Context, _ payments.Payment, _ uuid.UUID) (bool, error) {
			asking <- struct{}{}
			<-ctx.Done()
			return false, ctx.Err()
		}
	}))
	h := apptest.TestMerchant()
	first := pay(t, a, h)["id"].(string)
	<-asking // the one turn is taken
	second := pay(t, a, h)["id"].(string)
	require.Eventually(t, func() bool { held, deciding := a.Payments.FirstDecisions(); return held == 2 && deciding == 1 },
		10*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	a.Payments.StopFirstDecisions(ctx)
	for _, id := range []string{first, second} {
		args, maxAttempts := decisionJobs(t, a, id)
		require.Len(t, args, 1, "given back")
		require.Zero(t, args[0].Asked, "never answered")
		require.Equal(t, 6, maxAttempts[0])
	}
	require.Len(t, asking, 0, "the second was never asked")
}

// An acquirer error on the first question gives the decision back as a job
// that goes on with the attempts and waits left.
func TestFirstDecisionAfterAnAcquirerErrorGoesOnAsAJob(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	a := apptest.New(t, func(c *app.Config) {
		c.Acquirer = func(context.Context, payments.Payment, uuid.UUID) (bool, error) {
			asked.Add(1)
			return false, errors.New("acquirer down")
		}
		c.PaymentRetry = []time.Duration{time.Hour, 2 * time.Hour}
	})
	h := apptest.TestMerchant()
	id := pay(t, a, h)["id"].(string)
	var args []payments.ProcessArgs
	var maxAttempts []int
	require.Eventually(t, func() bool { args, maxAttempts = decisionJobs(t, a, id); return len(args) == 1 },
		10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, asked.Load())
	require.Equal(t, 1, args[0].Asked)
	require.Equal(t, 5, maxAttempts[0], "the attempts left")
	require.WithinDuration(t, time.Now().Add(time.Hour), args[0].DecideAt, time.Minute, "after the first wait")

	// Its first attempt failing, the wait is the schedule's second.
	w := &payments.Worker{Retry: []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour}}
	next := w.NextRetry(&river.Job[payments.ProcessArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: args[0]})
	require.WithinDuration(t, time.Now().Add(2*time.Hour), next, time.Minute)
}

// A payment due with too little time left before the reconciler's
// threshold to be asked and recorded here (its commit came late) is given
// back at once, not asked.
func TestAFirstDecisionDueTooLateIsGivenBack(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	a := riverDecidesNothing(apptest.New(t, waitingTen, func(c *app.Config) {
		c.Acquirer = func(context.Context, payments.Payment, uuid.UUID) (bool, error) { asked.Add(1); return true, nil }
	}))
	id := pay(t, a, apptest.TestMerchant())["id"].(string)
	a.Payments.DueLate()
	var args []payments.ProcessArgs
	require.Eventually(t, func() bool { args, _ = decisionJobs(t, a, id); return len(args) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, args[0].Asked)
	require.Zero(t, asked.Load())
}

// A payment taken by a process that died before deciding it is pending
// without a job: the reconciler resumes it once its threshold has passed,
// and not before.
func TestReconcilerResumesALostFirstDecision(t *testing.T) {
	t.Parallel()
	a := riverDecidesNothing(apptest.New(t, waitingTen)) // and its reconciler
	ctx := context.Background()
	id := pay(t, a, apptest.TestMerchant())["id"].(string)
	a.Payments.DropFirstDecisions()
	n, err := a.Payments.Reconcile(ctx, time.Minute)
	require.NoError(t, err)
	require.Zero(t, n, "within the threshold its process may still decide it")
	_, err = a.Pool.Exec(ctx, `UPDATE payments SET created_at = now() - interval '61 seconds' WHERE id = $1`, id)
	require.NoError(t, err)
	n, err = a.Payments.Reconcile(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	args, _ := decisionJobs(t, a, id)
	require.Len(t, args, 1)
}
