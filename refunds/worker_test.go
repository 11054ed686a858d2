package refunds_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/refunds"
	"paygate/webhooks"
)

// The refund, its job and its refund.created event commit together or not
// at all.
func TestRefundJobAndEventCommitTogether(t *testing.T) {
	t.Parallel()
	f := setup(t)
	receive(t, f)
	ctx := context.Background()
	count := func(q db.Querier) (refunds, jobs, logs int) {
		require.NoError(t, q.QueryRow(ctx, `SELECT (SELECT count(*) FROM refunds),
			(SELECT count(*) FROM river_job WHERE kind = 'process_refund' AND queue = 'refunds'),
			(SELECT count(*) FROM webhook_logs WHERE event = 'refund.created')`).Scan(&refunds, &jobs, &logs))
		return refunds, jobs, logs
	}

	tx, err := f.a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = f.a.Refunds.CreateTx(ctx, tx, merchants.TestMerchantID, f.paymentID, refunds.Input{Amount: new(int64(100))})
	require.NoError(t, err)
	refundsIn, jobs, logs := count(tx)
	require.Equal(t, []int{1, 1, 1}, []int{refundsIn, jobs, logs})
	require.NoError(t, tx.Rollback(ctx))

	refundsIn, jobs, logs = count(f.a.Pool)
	require.Equal(t, []int{0, 0, 0}, []int{refundsIn, jobs, logs})
}

// Running the job again after it completed changes nothing: no second
// amount on the payment, no second event.
func TestWorkerRunTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	receive(t, f)
	ctx := context.Background()
	status, r := f.refund(t, amountBody(20000))
	require.Equal(t, http.StatusCreated, status, "%v", r)
	id := r["id"].(string)
	waitProcessed(t, f, id)

	rows := func() string {
		var s string
		require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT r::text || p::text || (SELECT count(*) FROM webhook_logs)
			FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`, id).Scan(&s))
		return s
	}
	before := rows()
	apptest.RerunJob(t, f.a, "process_refund", "refund_id", id)
	require.Equal(t, before, rows())

	// And processing it by hand reports that nothing was left to do.
	require.NoError(t, db.WithTx(ctx, f.a.Pool, func(tx pgx.Tx) error {
		changed, err := f.a.Refunds.ProcessTx(ctx, tx, merchants.TestMerchantID, id)
		require.False(t, changed)
		return err
	}))
	require.Equal(t, before, rows())
	_, p := apptest.Call(t, f.a, http.MethodGet, "/api/v1/payments/"+f.paymentID, "", f.h)
	require.EqualValues(t, 20000, p["amount_refunded"])
}

// A delayed refund is processed no earlier than its delay, by a job that
// snoozed without using attempts.
func TestWorkerWaitsForProcessAt(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	f := setup(t, func(c *app.Config) { c.TestProcessingDelay = delay })
	status, r := f.refund(t, amountBody(100))
	require.Equal(t, http.StatusCreated, status, "%v", r)
	waitProcessed(t, f, r["id"].(string))

	var waited time.Duration
	var attempt int
	require.NoError(t, f.a.Pool.QueryRow(context.Background(), `
		SELECT r.processed_at - r.created_at, j.attempt FROM refunds r
		JOIN river_job j ON j.kind = 'process_refund' AND j.args->>'refund_id' = r.id
		WHERE r.id = $1`, r["id"]).Scan(&waited, &attempt))
	require.GreaterOrEqual(t, waited, delay)
	require.Equal(t, 1, attempt)
}

// refund.created and refund.processed reach the merchant's endpoint with the
// refund in data.refund.
func TestRefundWebhooks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := receive(t, f, webhooks.EventRefundCreated, webhooks.EventRefundProcessed)
	status, r := f.refund(t, `{"amount":25000,"reason":"Customer requested"}`)
	require.Equal(t, http.StatusCreated, status, "%v", r)
	done := waitProcessed(t, f, r["id"].(string))

	type body struct {
		Event     string `json:"event"`
		Timestamp int64  `json:"timestamp"`
		Data      struct {
			Refund map[string]any `json:"refund"`
		} `json:"data"`
	}
	byEvent := map[string]body{}
	for _, raw := range rcv.wait(t, 2) {
		var b body
		require.NoError(t, json.Unmarshal(raw, &b), string(raw))
		require.NotZero(t, b.Timestamp)
		byEvent[b.Event] = b
	}
	require.Len(t, byEvent, 2)
	require.Equal(t, r, byEvent[webhooks.EventRefundCreated].Data.Refund)
	require.Equal(t, done, byEvent[webhooks.EventRefundProcessed].Data.Refund)
	require.Equal(t, "processed", done["status"])
	require.NotNil(t, done["processed_at"])
}

// A pending refund whose job left River some other way (discarded,
// cancelled, deleted) is given a new one by the reconciler and processed,
// so its amount does not stay held from the payment.
func TestReconcilerResumesARefundThatLostItsJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// The refund's job is put off for an hour before the refund commits,
	// so no worker processes it during the test.
	var id string
	require.NoError(t, db.WithTx(ctx, f.a.Pool, func(tx pgx.Tx) error {
		r, err := f.a.Refunds.CreateTx(ctx, tx, merchants.TestMerchantID, f.paymentID, refunds.Input{Amount: new(int64(100))})
		if err != nil {
			return err
		}
		id = r.ID
		_, err = tx.Exec(ctx, `UPDATE river_job SET state = 'scheduled', scheduled_at = now() + interval '1 hour'
			WHERE kind = 'process_refund' AND args->>'refund_id' = $1`, id)
		return err
	}))
	n, err := f.a.Refunds.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "a refund with a live job is left alone")

	_, err = f.a.Pool.Exec(ctx, `DELETE FROM river_job WHERE kind = 'process_refund' AND args->>'refund_id' = $1`, id)
	require.NoError(t, err)
	n, err = f.a.Refunds.Reconcile(ctx, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "a refund younger than the bound is left alone")

	n, err = f.a.Refunds.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, refunds.StatusProcessed, waitProcessed(t, f, id)["status"])
	n, err = f.a.Refunds.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
}
