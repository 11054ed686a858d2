package payments_test

import (
	"context"
	"errors"
	"fmt"
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
	"paygate/db/dbtest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/payments"
	"paygate/webhooks"
)

// batchApp is a gateway whose payments stay pending until a test decides
// them, and whose merchant's endpoint takes every event. Its first delivery
// attempts are River's, so that each event's job stays to be counted (the
// process would otherwise claim it: webhooks/first.go).
func batchApp(t *testing.T) *app.App {
	a := apptest.New(t, pendingForever)
	a.Webhooks.StopFirstAttempts(context.Background())
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	status, _ := call(t, a, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+hook.URL+`"}`, apptest.TestMerchant())
	require.Equal(t, http.StatusOK, status)
	return a
}

// newPayments creates n pending payments, each on its own order.
func newPayments(t *testing.T, a *app.App, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = pay(t, a, apptest.TestMerchant())["id"].(string)
	}
	return ids
}

// decided is what the database holds of a payment's decision.
type decided struct {
	Status, Order string
	At            bool     // its decided_at is set
	Events        []string // its decision events (payment.success, payment.failed)
	Jobs          int      // first delivery jobs of those events
}

func decisionOf(t *testing.T, a *app.App, id string) decided {
	var d decided
	var orderID string
	require.NoError(t, a.Pool.QueryRow(context.Background(), `
		SELECT p.status, p.order_id, p.decided_at IS NOT NULL,
		       coalesce((SELECT array_agg(l.event ORDER BY l.id) FROM webhook_logs l
		                 WHERE l.merchant_id = p.merchant_id AND l.event <> 'payment.created'
		                   AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'payment'->>'id' = p.id), '{}'),
		       (SELECT count(*) FROM webhook_logs l JOIN river_job j ON j.args @> jsonb_build_object('log_id', l.id, 'run', 0)
		        WHERE l.merchant_id = p.merchant_id AND l.event <> 'payment.created'
		          AND j.kind = 'deliver_webhook' AND j.unique_key IS NULL
		          AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'payment'->>'id' = p.id)
		FROM payments p WHERE p.id = $1 AND p.merchant_id = $2`, id, merchants.TestMerchantID).
		Scan(&d.Status, &orderID, &d.At, &d.Events, &d.Jobs))
	o, err := a.Payments.GetOrder(context.Background(), merchants.TestMerchantID, orderID)
	require.NoError(t, err)
	d.Order = o.Status
	return d
}

var (
	succeeded = decided{Status: "success", Order: "paid", At: true, Events: []string{"payment.success"}, Jobs: 1}
	failed    = decided{Status: "failed", Order: "created", At: true, Events: []string{"payment.failed"}, Jobs: 1}
	untouched = decided{Status: "pending", Order: "created", Events: []string{}}
)

// One batch records many decisions, each once with one event and one
// delivery job. A payment decided before the batch is left as it was, and
// a payment named twice in the batch is decided by its first answer, once.
func TestDecisionBatch(t *testing.T) {
	t.Parallel()
	a := batchApp(t)
	ctx := context.Background()
	w := &payments.Worker{Service: a.Payments}
	ids := newPayments(t, a, 12)
	decide(t, a, ids[0], false) // decided before the batch

	answers := []payments.Answer{{MerchantID: merchants.TestMerchantID, PaymentID: ids[0], OK: true}}
	for i, id := range ids[1:] {
		answers = append(answers, payments.Answer{MerchantID: merchants.TestMerchantID, PaymentID: id, OK: i%2 == 0})
	}
	// The duplicates: a job run again while its first run records.
	answers = append(answers,
		payments.Answer{MerchantID: merchants.TestMerchantID, PaymentID: ids[1], OK: false},
		payments.Answer{MerchantID: merchants.TestMerchantID, PaymentID: ids[2], OK: false})
	changed, err := w.RecordBatch(ctx, answers)
	require.NoError(t, err)

	want := []bool{false}
	for range ids[1:] {
		want = append(want, true)
	}
	require.Equal(t, append(want, false, false), changed)
	require.Equal(t, failed, decisionOf(t, a, ids[0]), "decided before: its one event, no other")
	for i, id := range ids[1:] {
		if i%2 == 0 {
			require.Equal(t, succeeded, decisionOf(t, a, id), "payment %d", i+1)
		} else {
			require.Equal(t, failed, decisionOf(t, a, id), "payment %d", i+1)
		}
	}

	// The same batch again (every job run again) changes nothing.
	changed, err = w.RecordBatch(ctx, answers)
	require.NoError(t, err)
	require.Equal(t, make([]bool, len(answers)), changed)
	require.Equal(t, succeeded, decisionOf(t, a, ids[1]))
	require.Equal(t, failed, decisionOf(t, a, ids[2]))
}

// A batch that fails commits nothing: no payment is decided without its
// event and job, and the batch's jobs, run again, decide them all.
func TestFailedDecisionBatchRollsBack(t *testing.T) {
	t.Parallel()
	a := batchApp(t)
	ctx := context.Background()
	ids := newPayments(t, a, 4)
	var answers []payments.Answer
	for _, id := range ids {
		answers = append(answers, payments.Answer{MerchantID: merchants.TestMerchantID, PaymentID: id, OK: true})
	}

	// The failure comes after the payments, their orders and their logs
	// were written in the batch's transaction.
	boom := errors.New("boom")
	svc := payments.Service{Pool: a.Payments.Pool, Delay: a.Payments.Delay}
	var logs int
	svc.Emit = func(ctx context.Context, tx pgx.Tx, events []webhooks.Event) error {
		require.NoError(t, a.Payments.Emit(ctx, tx, events))
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM webhook_logs WHERE event = 'payment.success'`).Scan(&logs))
		return boom
	}
	_, err := (&payments.Worker{Service: &svc}).RecordBatch(ctx, answers)
	require.ErrorIs(t, err, boom)
	require.Equal(t, len(ids), logs, "the batch wrote its logs before it failed")
	for _, id := range ids {
		require.Equal(t, untouched, decisionOf(t, a, id))
	}

	changed, err := (&payments.Worker{Service: a.Payments}).RecordBatch(ctx, answers)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, true}, changed)
	for _, id := range ids {
		require.Equal(t, succeeded, decisionOf(t, a, id))
	}
}

// Workers that answer at the same time record through the batches: each
// payment is decided once, with one event and one job, and running every
// job again changes nothing.
func TestConcurrentDecisionsAreRecordedOnce(t *testing.T) {
	t.Parallel()
	a := batchApp(t)
	ids := newPayments(t, a, 40)
	// The acquirer answers once every payment has been asked, so that the
	// answers arrive together and make batches.
	var asked sync.WaitGroup
	asked.Add(len(ids))
	succeeds := map[string]bool{}
	for i, id := range ids {
		succeeds[id] = i%3 != 0
	}
	w := &payments.Worker{Service: a.Payments, Decide: func(_ context.Context, p payments.Payment, _ uuid.UUID) (bool, error) {
		asked.Done()
		asked.Wait()
		return succeeds[p.ID], nil
	}}
	work := func() {
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				job := &river.Job[payments.ProcessArgs]{
					JobRow: &rivertype.JobRow{ID: int64(i), Kind: payments.ProcessArgs{}.Kind(), Attempt: 1, MaxAttempts: 6},
					Args:   payments.ProcessArgs{PaymentID: id, MerchantID: merchants.TestMerchantID},
				}
				require.NoError(t, w.Work(context.Background(), job))
			})
		}
		wg.Wait()
	}
	check := func() {
		for _, id := range ids {
			want := failed
			if succeeds[id] {
				want = succeeded
			}
			require.Equal(t, want, decisionOf(t, a, id))
		}
	}
	work()
	check()
	work() // decided already: the acquirer is not asked again
	check()
}

// The batched statements of decisions and of the worker's reads are
// planned for each batch on the main pool, never prepared and cached on
// the connection (db.PlannedEachTime); once the payments have grown, the
// decisions run on connections of kept plans, whose plans look every row
// up by a unique key (db.KeptPlans).
func TestDecisionBatchPlans(t *testing.T) {
	t.Parallel()
	a, _, _, id := pendingPayment(t)
	decide := func(ctx context.Context, tx pgx.Tx) error {
		decided, err := a.Payments.DecideTx(ctx, tx, merchants.TestMerchantID, id, true)
		if err == nil && !decided {
			err = fmt.Errorf("%s not decided", id)
		}
		return err
	}
	dbtest.RunsUnprepared(t, a.Pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := decide(ctx, tx); err != nil {
			return err
		}
		return payments.PendingDecisions(ctx, tx, merchants.TestMerchantID, id)
	}, "UPDATE payments", "FROM payments") // the events' statement is prepared (TestCreationBatchPlans)
	require.Same(t, a.Pool, a.KeptPlans.Measured("payments"), "kept plans before the tables grew")
	a.KeptPlans.SetMinBytes(64 << 10)
	dbtest.Grow(t, a.Pool, merchants.TestMerchantID, 1000)
	dbtest.PlansByUniqueKeys(t, a.KeptPlans, []string{"payments"},
		[]string{"UPDATE payments SET status", "INSERT INTO webhook_logs"}, decide)
}

// The statements of a batch of creations (payments, orders, with keys and
// without) that look rows up in large tables (the orders; the keys, to
// take an expired one over or to answer them) are planned for each batch
// too on the main pool, and keep their plans once the tables have grown;
// the claim of new keys looks none up (its conflicts are found by the
// key's unique index), and those of its events and jobs join only the
// merchant: they travel in batches (the claim with BEGIN, the others with
// COMMIT), which pgx sends prepared.
func TestCreationBatchPlans(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	orderA, orderB, orderC := createOrder(t, a, h, 50000), createOrder(t, a, h, 50000), createOrder(t, a, h, 50000)
	orderD, orderE := createOrder(t, a, h, 50000), createOrder(t, a, h, 50000)
	claim := func(key string, at time.Time) *idempotency.Claim {
		return apptest.Claim("POST /api/v1/payments", key, at)
	}
	apptest.Remember(t, a, claim("expired", time.Now()), claim("answered", time.Now()))
	work := func(ctx context.Context, tx pgx.Tx) error {
		upi := func(order string) payments.PaymentInput {
			return payments.PaymentInput{OrderID: order, Method: "upi", VPA: "a@b"}
		}
		// The payments' INSERT travels with the keys' claim (on kept
		// plans) and leaves out, by itself, the creations whose keys the
		// claim does not claim: an answered key, the second of a key in
		// the batch (their orders are free). The expired key is taken
		// over after it, and its payment inserted then.
		got, err := a.Payments.CreateManyTx(ctx, tx, merchants.TestMerchantID,
			[]payments.PaymentInput{upi(orderA), upi("order_0000000000000000"), upi(orderB), upi(orderC), upi(orderD), upi(orderE)},
			claim("new", time.Now()), claim("dropped", time.Now()), claim("expired", apptest.PastExpiry()), nil,
			claim("answered", time.Now()), claim("new", time.Now()))
		if err != nil {
			return err
		}
		if got[0] == nil || got[1] != nil || got[2] == nil || got[3] == nil || got[4] != nil || got[5] != nil {
			return fmt.Errorf("made %v", got)
		}
		var onFree int
		if err := tx.QueryRow(ctx, `/* test */ SELECT count(*) FROM payments WHERE order_id IN ($1, $2)`, orderD, orderE).Scan(&onFree); err != nil {
			return err
		}
		if onFree != 0 {
			return fmt.Errorf("%d payments of keys not claimed", onFree)
		}
		var answered int
		if err := tx.QueryRow(ctx, `/* test */ SELECT count(*) FROM idempotency_keys WHERE response_body <> '{}'`).Scan(&answered); err != nil {
			return err
		}
		if answered != 2 {
			return fmt.Errorf("%d keys answered, not the new and the expired one", answered)
		}
		amount := int64(50000)
		in := []payments.OrderInput{{Amount: &amount, Currency: "INR"}}
		if _, err := payments.CreateOrdersTx(ctx, tx, merchants.TestMerchantID, in); err != nil {
			return err
		}
		_, err = payments.CreateOrdersTx(ctx, tx, merchants.TestMerchantID, in,
			apptest.Claim("POST /api/v1/orders", "order", time.Now()))
		return err
	}
	dbtest.RunsUnprepared(t, a.Pool, work, "FOR UPDATE OF k", "answered AS", "INSERT INTO payments", "INSERT INTO orders")
	a.KeptPlans.SetMinBytes(64 << 10)
	dbtest.Grow(t, a.Pool, merchants.TestMerchantID, 1000)
	dbtest.PlansByUniqueKeys(t, a.KeptPlans, []string{"payments", "orders", "idempotency_keys"},
		[]string{"INSERT INTO payments", "INSERT INTO orders", "INSERT INTO idempotency_keys", "FOR UPDATE OF k",
			"answered AS", "INSERT INTO webhook_logs"}, work)
}

// Payments and their decisions run on kept plans once their tables have
// grown, and not before; orders without keys, which read no table, from the
// first.
func TestBatchesRunOnKeptPlansOnceTheirTablesHaveGrown(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	kept := func() int64 { return a.KeptPlans.Kept().Stat().AcquireCount() }
	paid := func() {
		t.Helper()
		id := pay(t, a, h)["id"].(string)
		require.Eventually(t, func() bool { return decisionOf(t, a, id).Status == "success" }, 10*time.Second, 10*time.Millisecond)
	}
	a.KeptPlans.SetMinBytes(64 << 10)
	a.KeptPlans.Measured(dbtest.Grown...)
	before := kept()
	paid()
	require.Equal(t, before+1, kept(), "only the order's batch")

	dbtest.Grow(t, a.Pool, merchants.TestMerchantID, 1000)
	require.Same(t, a.KeptPlans.Kept(), a.KeptPlans.Measured(dbtest.Grown...))
	before = kept()
	paid()
	require.GreaterOrEqual(t, kept(), before+3, "the order's, the payment's and the decision's batches")

	// A keyed payment's batch claims and answers its key there (the answer
	// travels with the COMMIT), and its repeat replays the answer.
	order, keyed := createOrder(t, a, h, 50000), apptest.With(h, idempotency.Header, "on-kept-plans")
	before = kept()
	status, first := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(order), keyed)
	require.Equal(t, http.StatusCreated, status, "%v", first)
	require.Greater(t, kept(), before, "the keyed payment's batch")
	status, again := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(order), keyed)
	require.Equal(t, http.StatusCreated, status, "%v", again)
	require.Equal(t, first, again)
	var remembered int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT status_code FROM idempotency_keys WHERE key = 'on-kept-plans'`).Scan(&remembered))
	require.Equal(t, http.StatusCreated, remembered)
}

// On kept plans a batch's transaction (db.InTx, db.WithPipelinedTx) sends
// BEGIN with its first statement and its last writes with COMMIT: a batch
// of payments takes two round trips with keys (BEGIN + the keys' claim +
// the payments; the keys' answers, the events, the decision jobs + COMMIT)
// and without, and a batch of decisions two (BEGIN + the decisions; the
// events + COMMIT).
func TestBatchRoundTripsOnKeptPlans(t *testing.T) {
	t.Parallel()
	a := riverDecides(apptest.New(t, pendingForever)) // decision jobs, inserted with the payments
	h := apptest.TestMerchant()
	ctx := context.Background()
	kept, trips := dbtest.TracedPool(t, a.Config.DatabaseURL, true)
	counted := func(work func(tx pgx.Tx) error) int32 {
		t.Helper()
		trips.N.Store(0)
		_, err := db.InTx(kept, func(_ context.Context, tx pgx.Tx, _ []int) ([]int, error) { return nil, work(tx) })(ctx, nil)
		require.NoError(t, err)
		return trips.N.Load()
	}
	keys := 0
	var made []string
	create := func(keyed bool) func(pgx.Tx) error {
		return func(tx pgx.Tx) error {
			ins := []payments.PaymentInput{
				{OrderID: createOrder(t, a, h, 50000), Method: "upi", VPA: "a@b"},
				{OrderID: createOrder(t, a, h, 50000), Method: "upi", VPA: "a@b"},
			}
			var claims []*idempotency.Claim
			if keyed {
				keys++
				claims = []*idempotency.Claim{apptest.Claim("POST /api/v1/payments", fmt.Sprint("trips-", keys), time.Now()), nil}
			}
			got, err := a.Payments.CreateManyTx(ctx, tx, merchants.TestMerchantID, ins, claims...)
			for _, p := range got {
				if p == nil {
					return fmt.Errorf("made %v", got)
				}
				made = append(made, p.ID)
			}
			return err
		}
	}
	decide := func(tx pgx.Tx) error {
		id := made[0]
		made = made[1:]
		decided, err := a.Payments.DecideTx(ctx, tx, merchants.TestMerchantID, id, true)
		if err == nil && !decided {
			err = fmt.Errorf("%s not decided", id)
		}
		return err
	}
	for _, work := range []func(pgx.Tx) error{create(true), create(false), decide, decide} {
		counted(work) // prepares the statements
	}
	require.Equal(t, int32(2), counted(create(true)), "BEGIN + lock timeout + claim + reset + payments; answers + events + jobs + COMMIT")
	require.Equal(t, int32(2), counted(create(false)), "BEGIN + payments; events + jobs + COMMIT")
	require.Equal(t, int32(2), counted(decide), "BEGIN + decisions; events + COMMIT")
	var jobs, answered int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = $1`, payments.ProcessArgs{}.Kind()).Scan(&jobs))
	require.Equal(t, 8, jobs)
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key LIKE 'trips-%' AND status_code = 201`).Scan(&answered))
	require.Equal(t, 2, answered)
}
