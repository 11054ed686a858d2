package refunds_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/payments"
	"paygate/refunds"
	"paygate/web"
)

// A batch of refunds takes each from what its payment has left, in the
// order the requests came, and answers the others the error each would
// get alone, without failing the batch: an amount over what is left,
// nothing left, a payment not successful, another merchant's, an unknown
// one, a malformed id. The refunds made commit in one transaction, each
// with its processing job and its refund.created event.
func TestABatchOfRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	receive(t, f) // its events are recorded
	h := apptest.TestMerchant()
	second := apptest.PaySuccessfully(t, f.a, h)["id"].(string)
	failed := apptest.PaySuccessfully(t, f.a, h)["id"].(string)
	_, err := f.a.Pool.Exec(ctx, `UPDATE payments SET status = 'failed', error_code = 'PAYMENT_FAILED',
		error_description = 'Payment processing failed' WHERE id = $1`, failed)
	require.NoError(t, err)
	_, other := apptest.NewMerchant(t, f.a, "refund-batch-other@example.com")
	othersPayment := apptest.PaySuccessfully(t, f.a, other)["id"].(string)

	amount := func(n int64) *int64 { return &n }
	reqs := []refunds.Request{
		{PaymentID: f.paymentID, In: refunds.Input{Amount: amount(20000)}},
		{PaymentID: second},
		{PaymentID: f.paymentID, In: refunds.Input{Amount: amount(30000)}},
		{PaymentID: f.paymentID, In: refunds.Input{Amount: amount(1)}},
		{PaymentID: f.paymentID},
		{PaymentID: failed, In: refunds.Input{Amount: amount(100)}},
		{PaymentID: othersPayment, In: refunds.Input{Amount: amount(100)}},
		{PaymentID: "pay_AAAAAAAAAAAAAAAA", In: refunds.Input{Amount: amount(100)}},
		{PaymentID: "pay_\x00", In: refunds.Input{Amount: amount(100)}},
	}
	got, err := f.a.Refunds.CreateBatch(ctx, merchants.TestMerchantID, reqs)
	require.NoError(t, err)
	require.Len(t, got, len(reqs))

	made := []int64{20000, 50000, 30000}
	var createdAt time.Time
	for i, want := range made {
		require.NoError(t, got[i].Err, "%d", i)
		r := got[i].Refund
		require.Equal(t, reqs[i].PaymentID, r.PaymentID)
		require.Equal(t, want, r.Amount, "%d", i)
		require.Equal(t, refunds.StatusPending, r.Status)
		require.True(t, createdAt.IsZero() || createdAt.Equal(time.Time(r.CreatedAt)), "one transaction")
		createdAt = time.Time(r.CreatedAt)

		// As it is stored, but for its processing, which may have begun.
		_, shown := apptest.Call(t, f.a, http.MethodGet, "/api/v1/refunds/"+r.ID, "", h)
		raw, err := json.Marshal(r)
		require.NoError(t, err)
		var answered map[string]any
		require.NoError(t, json.Unmarshal(raw, &answered))
		for _, k := range []string{"id", "payment_id", "merchant_id", "amount", "reason", "created_at"} {
			require.Equal(t, shown[k], answered[k], "%d: %s", i, k)
		}
		var jobs, events int
		require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM river_job WHERE kind = 'process_refund' AND args->>'refund_id' = $1),
			(SELECT count(*) FROM webhook_logs WHERE event = 'refund.created'
			 AND convert_from(payload, 'UTF8')::jsonb->'data'->'refund'->>'id' = $1)`, r.ID).Scan(&jobs, &events))
		require.Equal(t, 1, jobs, "%d: its job", i)
		require.Equal(t, 1, events, "%d: its event", i)
	}
	wantErrs := []struct {
		code        web.Code
		field, desc string
	}{
		{web.CodeBadRequest, "amount", "Refund amount exceeds available amount"},
		{web.CodeBadRequest, "", "Payment has no amount left to refund"},
		{web.CodeBadRequest, "", "Payment not in refundable state"},
		{web.CodeNotFound, "", "Payment not found"},
		{web.CodeNotFound, "", "Payment not found"},
		{web.CodeNotFound, "", "Payment not found"},
	}
	for j, want := range wantErrs {
		i := len(made) + j
		var apiErr *web.Error
		require.True(t, errors.As(got[i].Err, &apiErr), "%d: %v", i, got[i].Err)
		require.Equal(t, want.code, apiErr.Code, "%d", i)
		require.Equal(t, want.field, apiErr.Field, "%d", i)
		require.Equal(t, want.desc, apiErr.Description, "%d", i)
	}

	var count int
	require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT count(*) FROM refunds`).Scan(&count))
	require.Equal(t, len(made), count)
	require.EqualValues(t, 50000, refundedOf(t, f, f.paymentID))
}

// Refunds asked for while a batch runs make the next batch together, keyed
// or not: one transaction for all. A keyed request the batch cannot make a
// refund of runs alone, which answers why and remembers it; a repeat of a
// key in the batch answers as the first.
func TestRefundsAreCreatedInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t, func(c *app.Config) { c.RequestTimeout = time.Minute }, apptest.NoSpareBatches)
	const n = 8
	// 0 refunds a payment of its own, in a batch that holds its payment's
	// lock and waits to insert; 1–7 refund the fixture's. 2–5 have keys,
	// and 6 repeats 5; 7 asks for more than the payment's amount. 1–7 queue
	// in one batch, in no set order.
	paths := make([]string, n)
	for i := range paths {
		paths[i] = "/api/v1/payments/" + f.paymentID + "/refunds"
	}
	paths[0] = "/api/v1/payments/" + apptest.PaySuccessfully(t, f.a, f.h)["id"].(string) + "/refunds"
	keys := []string{"", "", "k2", "k3", "k4", "k5", "k5", "k7"}
	bodies := []string{amountBody(1000), amountBody(1000), amountBody(1000), amountBody(1000), amountBody(1000),
		amountBody(1000), amountBody(1000), amountBody(50001)}
	withKey := func(i int) http.Header {
		if keys[i] == "" {
			return f.h
		}
		return apptest.With(f.h, idempotency.Header, keys[i])
	}

	lock, waiting := apptest.HoldInserts(t, f.a, "refunds")
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	post := func(i int) {
		wg.Go(func() { recs[i] = apptest.Do(t, f.a.Echo, http.MethodPost, paths[i], bodies[i], withKey(i)) })
	}
	apptest.QueueBehindABatch(t, n, post, waiting, f.a.Refunds.QueuedCreations)
	require.NoError(t, lock.Rollback(ctx))
	wg.Wait()

	ids := make([]string, 6)
	for i := range ids {
		require.Equal(t, http.StatusCreated, recs[i].Code, "%d: %s", i, recs[i].Body)
		var r map[string]any
		require.NoError(t, json.Unmarshal(recs[i].Body.Bytes(), &r))
		ids[i] = r["id"].(string)
	}
	require.Equal(t, []int{1, 5}, apptest.Batches(t, f.a, "refunds", ids), "those queued in one transaction, keyed or not")

	require.Equal(t, http.StatusCreated, recs[6].Code)
	require.Equal(t, recs[5].Body.String(), recs[6].Body.String(), "a repeat in the batch answers the first")
	require.NotEqual(t, idempotency.IsReplay(recs[5].Header()), idempotency.IsReplay(recs[6].Header()),
		"whichever came second is a replay")
	require.Equal(t, http.StatusBadRequest, recs[7].Code, "%s", recs[7].Body)
	require.JSONEq(t, `{"error":{"code":"BAD_REQUEST_ERROR","description":"Refund amount exceeds available amount","field":"amount"}}`,
		recs[7].Body.String())

	// Each key remembers its answer, written with the refund.
	for _, i := range []int{2, 3, 4, 5, 7} {
		again := apptest.Do(t, f.a.Echo, http.MethodPost, paths[i], bodies[i], withKey(i))
		require.True(t, idempotency.IsReplay(again.Header()), "%d", i)
		require.Equal(t, recs[i].Code, again.Code)
		require.Equal(t, recs[i].Body.String(), again.Body.String())
	}
	var count, jobs int
	require.NoError(t, f.a.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM refunds),
		(SELECT count(*) FROM river_job WHERE kind = 'process_refund')`).Scan(&count, &jobs))
	require.Equal(t, 6, count)
	require.Equal(t, 6, jobs)
}

// refundedOf is what the payment's pending and processed refunds take.
func refundedOf(t *testing.T, f fixture, paymentID string) int64 {
	t.Helper()
	var sum int64
	require.NoError(t, f.a.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(amount), 0) FROM refunds
		WHERE payment_id = $1 AND status IN ('pending', 'processed')`, paymentID).Scan(&sum))
	return sum
}

// A refund queued behind a batch that waits for a payment held elsewhere
// is not held up until that batch's deadline: a spare batch takes it once
// it has waited payments.StallAfter, while the payment is still held.
func TestARefundIsNotHeldUpByAStalledBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	other := apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)
	held, err := f.a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer held.Rollback(ctx) //nolint:errcheck // committed below
	_, err = payments.GetForUpdateTx(ctx, held, merchants.TestMerchantID, f.paymentID)
	require.NoError(t, err)

	stalled := make(chan error, 1)
	go func() {
		_, _, err := f.a.Refunds.Create(ctx, merchants.TestMerchantID, f.paymentID, refunds.Input{}, nil)
		stalled <- err
	}()
	require.Eventually(t, apptest.LockWaits(t, f.a, 1), 10*time.Second, 5*time.Millisecond, "the batch waits for the payment")

	// Without a deadline the stalled batch would hold it for createTimeout
	// (10 s); this request gives up well before.
	const spares = `paygate_spare_batches_total{kind="refunds"}`
	before := apptest.Metric(t, f.a, spares)
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, ok, err := f.a.Refunds.Create(bounded, merchants.TestMerchantID, other, refunds.Input{}, nil)
	require.NoError(t, err, "the refund waited behind the stalled batch")
	require.True(t, ok)
	require.Equal(t, other, r.PaymentID)
	select {
	case err := <-stalled:
		t.Fatalf("the stalled batch ended (%v) while the payment was held", err)
	default:
	}
	require.GreaterOrEqual(t, apptest.Metric(t, f.a, spares), before+1, "the spare counted")

	require.NoError(t, held.Commit(ctx))
	require.NoError(t, <-stalled)
	require.EqualValues(t, 50000, refundedOf(t, f, f.paymentID))
}

// A batch waits for a payment another transaction holds, and then counts
// the refund that transaction made: the limit holds across transactions,
// whether the batch locks that payment alone or with others.
func TestABatchWaitsForAPaymentHeldElsewhere(t *testing.T) {
	t.Parallel()
	for _, others := range []int{0, 1} {
		t.Run(fmt.Sprintf("%d other payments", others), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t)
			amount := func(n int64) *int64 { return &n }
			held, err := f.a.Pool.Begin(ctx)
			require.NoError(t, err)
			defer held.Rollback(ctx) //nolint:errcheck // committed below
			first, err := f.a.Refunds.CreateTx(ctx, held, merchants.TestMerchantID, f.paymentID, refunds.Input{Amount: amount(30000)})
			require.NoError(t, err)

			reqs := []refunds.Request{
				{PaymentID: f.paymentID, In: refunds.Input{Amount: amount(30000)}},
				{PaymentID: f.paymentID, In: refunds.Input{Amount: amount(20000)}},
			}
			for range others {
				other := apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)
				reqs = append(reqs, refunds.Request{PaymentID: other, In: refunds.Input{Amount: amount(100)}})
			}
			done := make(chan []refunds.Created)
			go func() {
				got, err := f.a.Refunds.CreateBatch(ctx, merchants.TestMerchantID, reqs)
				assert.NoError(t, err)
				done <- got
			}()
			require.Eventually(t, apptest.LockWaits(t, f.a, 1), 10*time.Second, 5*time.Millisecond, "the batch waits for the payment")
			require.NoError(t, held.Commit(ctx))
			got := <-done
			var apiErr *web.Error
			require.True(t, errors.As(got[0].Err, &apiErr), "%v", got[0].Err)
			require.Equal(t, "Refund amount exceeds available amount", apiErr.Description)
			for _, c := range got[1:] {
				require.NoError(t, c.Err)
			}
			require.EqualValues(t, 20000, got[1].Refund.Amount)
			require.NotEqual(t, first.ID, got[1].Refund.ID)
			require.EqualValues(t, 50000, refundedOf(t, f, f.paymentID))
		})
	}
}
