package payments_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
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
	"paygate/refunds"
)

// While a payment of an order is pending, or once one succeeded, another
// payment of it is refused on order_id, however many arrive at once; a
// failed payment frees the order.
func TestOnePendingPaymentPerOrder(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	orderID := createOrder(t, a, h, 50000)

	codes := make([]int, 20)
	bodies := make([]map[string]any, len(codes))
	var wg sync.WaitGroup
	for i := range codes {
		path := "/api/v1/payments"
		if i%2 == 1 {
			path = "/api/v1/payments/public"
		}
		wg.Go(func() { codes[i], bodies[i] = call(t, a, http.MethodPost, path, upiBody(orderID), h) })
	}
	wg.Wait()
	var created string
	for i, code := range codes {
		if code == http.StatusCreated {
			require.Empty(t, created, "a second payment was accepted")
			created = bodies[i]["id"].(string)
			continue
		}
		require.Equal(t, http.StatusBadRequest, code, "%v", bodies[i])
		c, field := errorOf(t, bodies[i])
		require.Equal(t, "BAD_REQUEST_ERROR", c)
		require.Equal(t, "order_id", field)
	}
	require.NotEmpty(t, created)

	decide(t, a, created, false)
	status, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	decide(t, a, p["id"].(string), true)
	status, body := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
	require.Equal(t, http.StatusBadRequest, status, "%v", body)
	_, field := errorOf(t, body)
	require.Equal(t, "order_id", field)
}

// acquirer stands in for a real acquirer (outside the process): answer
// decides its n-th call (1-based).
type acquirer struct {
	mu     sync.Mutex
	keys   []uuid.UUID
	stored []uuid.UUID // the payment's decision_key as committed when asked
	answer func(n int) (bool, error)
	pool   func() db.Querier
}

func (q *acquirer) decide(ctx context.Context, p payments.Payment, key uuid.UUID) (bool, error) {
	var stored uuid.UUID
	if err := q.pool().QueryRow(ctx, `SELECT decision_key FROM payments WHERE id = $1`, p.ID).Scan(&stored); err != nil {
		return false, err
	}
	q.mu.Lock()
	q.keys, q.stored = append(q.keys, key), append(q.stored, stored)
	n := len(q.keys)
	q.mu.Unlock()
	return q.answer(n)
}

func (q *acquirer) calls() (keys, stored []uuid.UUID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]uuid.UUID(nil), q.keys...), append([]uuid.UUID(nil), q.stored...)
}

// withAcquirer starts the app with q as its acquirer and a fast retry.
func withAcquirer(t *testing.T, q *acquirer) *app.App {
	var a *app.App
	q.pool = func() db.Querier { return a.Pool }
	a = apptest.New(t, func(c *app.Config) {
		c.Acquirer = q.decide
		c.PaymentRetry = []time.Duration{time.Millisecond}
	})
	return a
}

// The decision key is committed before the acquirer is asked, and a retry
// asks under the same key.
func TestDecisionKeyCommittedFirstAndReused(t *testing.T) {
	t.Parallel()
	q := &acquirer{answer: func(n int) (bool, error) {
		if n == 1 {
			return false, errors.New("acquirer timed out")
		}
		return true, nil
	}}
	a := withAcquirer(t, q)
	h := apptest.TestMerchant()

	p := paySuccessfully(t, a, h)
	keys, stored := q.calls()
	require.Len(t, keys, 2)
	require.NotEqual(t, uuid.Nil, keys[0])
	require.Equal(t, keys[0], keys[1], "a retry asks under the same key")
	require.Equal(t, keys, stored, "the key was committed before asking")
	var key uuid.UUID
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT decision_key FROM payments WHERE id = $1`, p["id"]).Scan(&key))
	require.Equal(t, keys[0], key)
}

// An acquirer that errs on every attempt fails the payment after the last
// one, with its payment.failed event, instead of leaving it pending.
func TestLastAttemptFailsThePayment(t *testing.T) {
	t.Parallel()
	q := &acquirer{answer: func(int) (bool, error) { return false, errors.New("acquirer down") }}
	a := withAcquirer(t, q)
	h := apptest.TestMerchant()
	ctx := context.Background()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(hook.Close)
	status, _ := call(t, a, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+hook.URL+`"}`, h)
	require.Equal(t, http.StatusOK, status)

	p := waitFinal(t, a, h, pay(t, a, h)["id"].(string))
	require.Equal(t, payments.StatusFailed, p["status"])
	require.Equal(t, payments.FailedCode, p["error_code"])
	keys, _ := q.calls()
	require.Len(t, keys, 6, "asked once per attempt")

	// River completes the job shortly after its work commits (batched,
	// db/jobs.go): wait for that, bounded.
	var job string
	for i := 0; job != "completed"; i++ {
		require.Less(t, i, 1000, "the job did not complete: %s", job)
		if i > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE kind = 'process_payment' AND args->>'payment_id' = $1`,
			p["id"]).Scan(&job))
	}
	var failedEvents int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM webhook_logs WHERE event = 'payment.failed' AND convert_from(payload, 'UTF8')::jsonb->'data'->'payment'->>'id' = $1`,
		p["id"]).Scan(&failedEvents))
	require.Equal(t, 1, failedEvents)
}

// A job whose payment or refund does not exist is cancelled at once rather
// than retried.
func TestMissingPaymentOrRefundCancelsItsJob(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	pay, err := a.River.Insert(ctx, payments.ProcessArgs{PaymentID: db.NewID("pay_"), MerchantID: merchants.TestMerchantID}, nil)
	require.NoError(t, err)
	refund, err := a.River.Insert(ctx, refunds.ProcessArgs{RefundID: db.NewID("rfnd_"), MerchantID: merchants.TestMerchantID}, nil)
	require.NoError(t, err)
	for _, id := range []int64{pay.Job.ID, refund.Job.ID} {
		for i := 0; ; i++ {
			var state string
			var attempt int
			require.NoError(t, a.Pool.QueryRow(ctx, `SELECT state::text, attempt FROM river_job WHERE id = $1`, id).Scan(&state, &attempt))
			if state == "cancelled" {
				require.Equal(t, 1, attempt)
				break
			}
			require.Less(t, i, 1000, "job %d is %s after %d attempts", id, state, attempt)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Like an acquirer that deduplicates, the simulator answers a decision key
// the same way every time.
func TestSimulatorAnswersAKeyOnce(t *testing.T) {
	t.Parallel()
	s := payments.Simulator{UPISuccessRate: 0.5, CardSuccessRate: 0.5}
	p := payments.Payment{Method: payments.MethodUPI}
	seen := map[bool]int{}
	for range 200 {
		key := uuid.New()
		first, err := s.Decide(context.Background(), p, key)
		require.NoError(t, err)
		for range 3 {
			again, _ := s.Decide(context.Background(), p, key)
			require.Equal(t, first, again)
		}
		seen[first]++
	}
	require.Positive(t, seen[true])
	require.Positive(t, seen[false])
}

// A pending payment whose job left River some other way (discarded,
// cancelled, deleted) is given a new one by the reconciler and decided.
func TestReconcilerResumesAPaymentThatLostItsJob(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	ctx := context.Background()
	id := pay(t, a, h)["id"].(string)

	n, err := a.Payments.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "a payment with a live job is left alone")

	_, err = a.Pool.Exec(ctx, `DELETE FROM river_job WHERE kind = 'process_payment' AND args->>'payment_id' = $1`, id)
	require.NoError(t, err)
	n, err = a.Payments.Reconcile(ctx, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "a payment younger than the bound is left alone")

	n, err = a.Payments.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, payments.StatusSuccess, waitFinal(t, a, h, id)["status"])
	n, err = a.Payments.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
}

// An acquirer that hangs is given up on before the job's own deadline: on
// the last attempt the payment fails, even when the job's context ran out
// too (River's job timeout); on an earlier attempt the job errs and is
// asked again later. Only a cancelled job (stopping) gives the attempt back.
func TestHangingAcquirerOnTheLastAttemptFailsThePayment(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	hang := func(ctx context.Context, _ payments.Payment, _ uuid.UUID) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}
	w := &payments.Worker{Service: a.Payments, Decide: hang, DecideTimeout: 20 * time.Millisecond}
	run := func(t *testing.T, id string, attempt int, jobCtx context.Context) error {
		job := &river.Job[payments.ProcessArgs]{
			JobRow: &rivertype.JobRow{ID: 1, Kind: payments.ProcessArgs{}.Kind(), Attempt: attempt, MaxAttempts: 6},
			Args:   payments.ProcessArgs{PaymentID: id, MerchantID: merchants.TestMerchantID},
		}
		return w.Work(jobCtx, job)
	}
	status := func(id string) string {
		var s string
		require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT status FROM payments WHERE id = $1`, id).Scan(&s))
		return s
	}

	id := pay(t, a, h)["id"].(string)
	require.ErrorIs(t, run(t, id, 5, context.Background()), context.DeadlineExceeded)
	require.Equal(t, payments.StatusPending, status(id), "an earlier attempt is retried")

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, run(t, id, 6, cancelled), context.Canceled)
	require.Equal(t, payments.StatusPending, status(id), "a stopping job gives the attempt back")

	require.NoError(t, run(t, id, 6, context.Background()))
	require.Equal(t, payments.StatusFailed, status(id))

	// The job's own deadline (River's job timeout) comes while the acquirer
	// hangs.
	id = pay(t, a, h)["id"].(string)
	expired := &deadlineCtx{Context: context.Background(), done: make(chan struct{})}
	w.DecideTimeout = time.Hour
	w.Decide = func(ctx context.Context, p payments.Payment, key uuid.UUID) (bool, error) {
		close(expired.done)
		return hang(ctx, p, key)
	}
	require.NoError(t, run(t, id, 6, expired))
	require.Equal(t, payments.StatusFailed, status(id))
}

// deadlineCtx is a job context whose deadline passes when done is closed.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// A payment asked for while the order's pending payment is being decided
// waits for that decision and is refused on order_id: creation takes no
// lock on the order, so a worker that marks the order's row paid after the
// payment (the previous version's, still running during a rolling deploy;
// this version's writes no order) does not wait on it in turn (a deadlock,
// answered 503).
func TestPaymentCreatedWhileTheOrdersPaymentIsDecided(t *testing.T) {
	t.Parallel()
	a, h, orderID, id := pendingPayment(t)
	ctx := context.Background()

	// The previous version's decision, in its batch's order: the payment first...
	w, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer w.Rollback(ctx) //nolint:errcheck
	_, err = w.Exec(ctx, `UPDATE payments SET status = 'success', updated_at = now() WHERE id = $1`, id)
	require.NoError(t, err)

	type answer struct {
		code int
		body map[string]any
	}
	created := make(chan answer, 1)
	go func() {
		code, body := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
		created <- answer{code, body}
	}()
	// ...which the new payment's insert waits for...
	for i := 0; ; i++ {
		var waiting int
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
			  AND query LIKE '%INSERT INTO payments%'`).Scan(&waiting))
		if waiting > 0 {
			break
		}
		require.Less(t, i, 1000, "the new payment never waited on the decision")
		time.Sleep(10 * time.Millisecond)
	}
	// ...then the order.
	_, err = w.Exec(ctx, `UPDATE orders SET status = 'paid', updated_at = now() WHERE id = $1`, orderID)
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx))

	got := <-created
	require.Equal(t, http.StatusBadRequest, got.code, "%v", got.body)
	_, field := errorOf(t, got.body)
	require.Equal(t, "order_id", field)
}

// A new payment's decision key commits with it, and is the key asked. A
// pending payment from before keys came with the payment (its key NULL)
// gets one committed before the acquirer is asked, reused on a retry.
func TestLegacyPaymentWithoutKeyGetsOneBeforeAsking(t *testing.T) {
	t.Parallel()
	q := &acquirer{answer: func(n int) (bool, error) {
		if n == 1 {
			return false, errors.New("acquirer timed out")
		}
		return true, nil
	}}
	a := riverDecides(withAcquirer(t, q)) // a payment made by a version before the key
	h := apptest.TestMerchant()
	ctx := context.Background()

	var created, legacy payments.Payment
	var key *uuid.UUID
	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) (err error) {
		in := payments.PaymentInput{OrderID: createOrder(t, a, h, 50000), Method: payments.MethodUPI, VPA: "user@paytm"}
		if created, err = a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, in); err != nil {
			return err
		}
		if err = tx.QueryRow(ctx, `SELECT decision_key FROM payments WHERE id = $1`, created.ID).Scan(&key); err != nil {
			return err
		}
		in.OrderID = createOrder(t, a, h, 50000)
		if legacy, err = a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID, in); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE payments SET decision_key = NULL WHERE id = $1`, legacy.ID)
		return err
	}))
	require.NotNil(t, key, "the key commits with the payment")
	require.Equal(t, payments.StatusSuccess, waitFinal(t, a, h, created.ID)["status"])
	require.Equal(t, payments.StatusSuccess, waitFinal(t, a, h, legacy.ID)["status"])

	var legacyKey *uuid.UUID
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT decision_key FROM payments WHERE id = $1`, legacy.ID).Scan(&legacyKey))
	require.NotNil(t, legacyKey)
	keys, stored := q.calls()
	require.Equal(t, keys, stored, "every key was committed before asking")
	require.Len(t, keys, 3, "one payment asked twice, the other once")
	require.Positive(t, countKey(keys, *key))
	require.Positive(t, countKey(keys, *legacyKey))
	require.Equal(t, len(keys), countKey(keys, *key)+countKey(keys, *legacyKey), "a retry asks under the same key")
}

func countKey(keys []uuid.UUID, k uuid.UUID) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}
