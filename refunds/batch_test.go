package refunds_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/merchants"
	"paygate/refunds"
	"paygate/webhooks"
)

// pendingRefund creates a refund of amount of the payment whose job is
// deleted in the same transaction: it stays pending until a test processes
// it.
func pendingRefund(t *testing.T, f fixture, paymentID string, amount int64) string {
	t.Helper()
	ctx := context.Background()
	var id string
	require.NoError(t, db.WithTx(ctx, f.a.Pool, func(tx pgx.Tx) error {
		r, err := f.a.Refunds.CreateTx(ctx, tx, merchants.TestMerchantID, paymentID, refunds.Input{Amount: &amount})
		if err != nil {
			return err
		}
		id = r.ID
		_, err = tx.Exec(ctx, `DELETE FROM river_job WHERE kind = 'process_refund' AND args->>'refund_id' = $1`, id)
		return err
	}))
	return id
}

// processed is what the database holds of a refund's processing.
type processed struct {
	Status string
	Events int // its refund.processed logs
	Jobs   int // first delivery jobs of those logs
}

var (
	done    = processed{Status: refunds.StatusProcessed, Events: 1, Jobs: 1}
	pending = processed{Status: refunds.StatusPending}
)

func processingOf(t *testing.T, f fixture, id string) processed {
	t.Helper()
	var p processed
	require.NoError(t, f.a.Pool.QueryRow(context.Background(), `
		SELECT r.status,
		       (SELECT count(*) FROM webhook_logs l
		        WHERE l.merchant_id = r.merchant_id AND l.event = 'refund.processed'
		          AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'refund'->>'id' = r.id),
		       (SELECT count(*) FROM webhook_logs l JOIN river_job j ON j.args @> jsonb_build_object('log_id', l.id, 'run', 0)
		        WHERE l.merchant_id = r.merchant_id AND l.event = 'refund.processed'
		          AND j.kind = 'deliver_webhook' AND j.unique_key IS NULL
		          AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'refund'->>'id' = r.id)
		FROM refunds r WHERE r.id = $1 AND r.merchant_id = $2`, id, merchants.TestMerchantID).
		Scan(&p.Status, &p.Events, &p.Jobs))
	return p
}

// refunded is the payment's amount_refunded.
func refunded(t *testing.T, f fixture, paymentID string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, f.a.Pool.QueryRow(context.Background(),
		`SELECT amount_refunded FROM payments WHERE id = $1 AND merchant_id = $2`, paymentID, merchants.TestMerchantID).Scan(&n))
	return n
}

// One batch processes many refunds, each once with one event and one
// delivery job, and adds up the amounts of several refunds of one payment.
// A refund processed before the batch, a refund named twice, one named
// under another merchant and an unknown one change nothing.
func TestProcessBatch(t *testing.T) {
	t.Parallel()
	f := setup(t)
	riverDelivers(f)
	receive(t, f)
	ctx := context.Background()
	second := apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)
	third := apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)
	w := &refunds.Worker{Service: f.a.Refunds}
	key := func(id string) refunds.Key { return refunds.NewKey(merchants.TestMerchantID, id) }

	before := pendingRefund(t, f, second, 5000)
	changed, err := w.ProcessBatch(ctx, []refunds.Key{key(before)})
	require.NoError(t, err)
	require.Equal(t, []bool{true}, changed)
	var beforeRow string
	require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT r::text FROM refunds r WHERE id = $1`, before).Scan(&beforeRow))

	first := []string{pendingRefund(t, f, f.paymentID, 10000), pendingRefund(t, f, f.paymentID, 15000),
		pendingRefund(t, f, f.paymentID, 25000)} // the whole payment
	other := []string{pendingRefund(t, f, second, 20000), pendingRefund(t, f, second, 1)}
	elsewhere := pendingRefund(t, f, third, 700) // named only under another merchant

	keys := []refunds.Key{key(first[2]), key(before), key(other[0]), key(first[0]),
		refunds.NewKey(uuid.New(), elsewhere), key(other[1]), key(first[1]),
		key(first[0]), key(other[0]), // the duplicates: a job run again while its first run processes
		key("rfnd_0000000000000000")}
	changed, err = w.ProcessBatch(ctx, keys)
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, true, true, false, true, true, false, false, false}, changed)
	for _, id := range append(first, other...) {
		require.Equal(t, done, processingOf(t, f, id), id)
	}
	require.Equal(t, done, processingOf(t, f, before), "processed before: its one event, no other")
	var beforeNow string
	require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT r::text FROM refunds r WHERE id = $1`, before).Scan(&beforeNow))
	require.Equal(t, beforeRow, beforeNow)
	require.Equal(t, pending, processingOf(t, f, elsewhere))
	require.EqualValues(t, 50000, refunded(t, f, f.paymentID))
	require.EqualValues(t, 25001, refunded(t, f, second))
	require.Zero(t, refunded(t, f, third))

	// The same batch again (every job run again) changes nothing.
	changed, err = w.ProcessBatch(ctx, keys)
	require.NoError(t, err)
	require.Equal(t, make([]bool, len(keys)), changed)
	for _, id := range append(first, other...) {
		require.Equal(t, done, processingOf(t, f, id), id)
	}
	require.EqualValues(t, 50000, refunded(t, f, f.paymentID))
	require.EqualValues(t, 25001, refunded(t, f, second))
}

// A batch that fails commits nothing: no refund is processed without its
// amount, event and job, and the batch, run again, processes them all.
func TestFailedProcessBatchRollsBack(t *testing.T) {
	t.Parallel()
	f := setup(t)
	riverDelivers(f)
	receive(t, f)
	ctx := context.Background()
	ids := []string{pendingRefund(t, f, f.paymentID, 100), pendingRefund(t, f, f.paymentID, 200),
		pendingRefund(t, f, f.paymentID, 300)}
	var keys []refunds.Key
	for _, id := range ids {
		keys = append(keys, refunds.NewKey(merchants.TestMerchantID, id))
	}

	// The failure comes after the refunds, the payment and the logs were
	// written in the batch's transaction.
	boom := errors.New("boom")
	svc := &refunds.Service{Pool: f.a.Refunds.Pool, Payments: f.a.Refunds.Payments, Delay: f.a.Refunds.Delay}
	var logs int
	svc.Emit = func(ctx context.Context, tx pgx.Tx, events []webhooks.Event) error {
		require.NoError(t, f.a.Refunds.Emit(ctx, tx, events))
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM webhook_logs WHERE event = 'refund.processed'`).Scan(&logs))
		return boom
	}
	_, err := (&refunds.Worker{Service: svc}).ProcessBatch(ctx, keys)
	require.ErrorIs(t, err, boom)
	require.Equal(t, len(ids), logs, "the batch wrote its logs before it failed")
	for _, id := range ids {
		require.Equal(t, pending, processingOf(t, f, id))
	}
	require.Zero(t, refunded(t, f, f.paymentID))

	changed, err := (&refunds.Worker{Service: f.a.Refunds}).ProcessBatch(ctx, keys)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true}, changed)
	for _, id := range ids {
		require.Equal(t, done, processingOf(t, f, id))
	}
	require.EqualValues(t, 600, refunded(t, f, f.paymentID))
}

// The payments table backs the refund limit that creation keeps: refunds
// that would take a payment's amount_refunded over its amount (written here
// past CreateTx, which refuses them) fail their batch, which commits
// nothing.
func TestProcessBatchKeepsThePaymentLimit(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	ok := pendingRefund(t, f, f.paymentID, 30000)
	over := "rfnd_OverTheLimit0000"
	_, err := f.a.Pool.Exec(ctx, `INSERT INTO refunds (id, payment_id, merchant_id, amount) VALUES ($1, $2, $3, 30000)`,
		over, f.paymentID, merchants.TestMerchantID)
	require.NoError(t, err)

	_, err = (&refunds.Worker{Service: f.a.Refunds}).ProcessBatch(ctx,
		[]refunds.Key{refunds.NewKey(merchants.TestMerchantID, ok), refunds.NewKey(merchants.TestMerchantID, over)})
	require.Error(t, err)
	require.Equal(t, pending, processingOf(t, f, ok))
	require.Equal(t, pending, processingOf(t, f, over))
	require.Zero(t, refunded(t, f, f.paymentID))
}

// Workers that process at the same time go through the batches: each refund
// is processed once, with one event and one job, the amounts add up, and
// running every job again changes nothing. A job of an unknown refund is
// cancelled.
func TestConcurrentRefundsAreProcessedOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	riverDelivers(f)
	receive(t, f)
	payments := []string{f.paymentID, apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)}
	var ids []string
	for i := range 30 {
		ids = append(ids, pendingRefund(t, f, payments[i%2], 1000+int64(i)))
	}
	w := &refunds.Worker{Service: f.a.Refunds}
	job := func(i int, id string) *river.Job[refunds.ProcessArgs] {
		return &river.Job[refunds.ProcessArgs]{
			JobRow: &rivertype.JobRow{ID: int64(i), Kind: refunds.ProcessArgs{}.Kind(), Attempt: 1, MaxAttempts: 25},
			Args:   refunds.ProcessArgs{RefundID: id, MerchantID: merchants.TestMerchantID},
		}
	}
	work := func() {
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() { require.NoError(t, w.Work(context.Background(), job(i, id))) })
		}
		wg.Wait()
	}
	check := func() {
		for _, id := range ids {
			require.Equal(t, done, processingOf(t, f, id), id)
		}
		// 15 refunds each: 1000, 1002, … 1028 and 1001, 1003, … 1029.
		require.EqualValues(t, 15*1000+2*(0+14)*15/2, refunded(t, f, payments[0]))
		require.EqualValues(t, 15*1000+2*(0+14)*15/2+15, refunded(t, f, payments[1]))
	}
	work()
	check()
	work() // processed already: each job finds nothing to do
	check()

	err := w.Work(context.Background(), job(99, "rfnd_0000000000000000"))
	var cancel *river.JobCancelError
	require.ErrorAs(t, err, &cancel)
}

// The batched statement is planned for each batch, never prepared and
// cached on the connection (db.PlannedEachTime).
func TestBatchedStatementIsNotCached(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	dbtest.RunsUnprepared(t, a.Pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := a.Refunds.ProcessTx(ctx, tx, merchants.TestMerchantID, "rfnd_AAAAAAAAAAAAAAAA")
		return err
	})
}
