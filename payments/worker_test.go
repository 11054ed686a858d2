package payments_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/payments"
	"paygate/webhooks"
)

type event struct {
	name    string
	payment payments.Payment
}

// recording returns a copy of the app's service whose Emit records events.
func recording(t *testing.T, a *app.App) (*payments.Service, *[]event) {
	var events []event
	svc := payments.Service{Pool: a.Payments.Pool, Delay: a.Payments.Delay}
	svc.Emit = func(_ context.Context, tx pgx.Tx, many []webhooks.Event) error {
		require.NotNil(t, tx)
		for _, e := range many {
			p := e.Data.(map[string]any)["payment"].(payments.Payment)
			require.Equal(t, e.MerchantID, p.MerchantID)
			events = append(events, event{e.Name, p})
		}
		return nil
	}
	return &svc, &events
}

// The payment, its job and its event commit together or not at all.
func TestPaymentAndJobCommitTogether(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	ctx := context.Background()
	orderID := createOrder(t, a, apptest.TestMerchant(), 50000)
	svc, events := recording(t, a)

	count := func(q db.Querier, id string) (payments, jobs int) {
		require.NoError(t, q.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments WHERE id = $1),
			(SELECT count(*) FROM river_job WHERE kind = 'process_payment' AND queue = 'payments' AND args->>'payment_id' = $1)`,
			id).Scan(&payments, &jobs))
		return payments, jobs
	}

	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	p, err := svc.CreatePaymentTx(ctx, tx, merchants.TestMerchantID,
		payments.PaymentInput{OrderID: orderID, Method: payments.MethodUPI, VPA: "user@paytm"})
	require.NoError(t, err)
	pays, jobs := count(tx, p.ID)
	require.Equal(t, 1, pays)
	require.Equal(t, 1, jobs)
	require.Equal(t, []event{{webhooks.EventPaymentCreated, p}}, *events)
	require.NoError(t, tx.Rollback(ctx))

	pays, jobs = count(a.Pool, p.ID)
	require.Equal(t, 0, pays)
	require.Equal(t, 0, jobs)
}

// DecideTx decides once: a second decision changes nothing and records no
// event. A failed payment frees its order for another, whose success pays it.
func TestDecideTx(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	ctx := context.Background()
	svc, events := recording(t, a)
	orderID := createOrder(t, a, h, 50000)
	newPayment := func() string {
		status, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
		require.Equal(t, http.StatusCreated, status, "%v", p)
		return p["id"].(string)
	}
	decideTx := func(id string, ok bool) bool {
		tx, err := a.Pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		changed, err := svc.DecideTx(ctx, tx, merchants.TestMerchantID, id, ok)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		return changed
	}
	statusOf := func(path string) string {
		_, body := call(t, a, http.MethodGet, path, "", h)
		return body["status"].(string)
	}

	first := newPayment()
	require.True(t, decideTx(first, false))
	require.False(t, decideTx(first, true))
	require.Equal(t, "failed", statusOf("/api/v1/payments/"+first))
	require.Equal(t, "created", statusOf("/api/v1/orders/"+orderID))

	second := newPayment()
	require.True(t, decideTx(second, true))
	require.False(t, decideTx(second, false))
	require.Equal(t, "success", statusOf("/api/v1/payments/"+second))
	require.Equal(t, "paid", statusOf("/api/v1/orders/"+orderID))

	var names []string
	for _, e := range *events {
		names = append(names, e.name+" "+e.payment.ID+" "+e.payment.Status)
	}
	require.Equal(t, []string{
		"payment.failed " + first + " failed",
		"payment.success " + second + " success",
	}, names)
}

// Running the job again after it completed changes nothing.
func TestWorkerRunTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	a := riverDecides(apptest.New(t))
	h := apptest.TestMerchant()
	ctx := context.Background()
	id := paySuccessfully(t, a, h)["id"].(string)

	rows := func() string {
		var s string
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT p::text || o::text FROM payments p JOIN orders o ON o.id = p.order_id
			WHERE p.id = $1`, id).Scan(&s))
		return s
	}
	before := rows()
	apptest.RerunJob(t, a, "process_payment", "payment_id", id)
	require.Equal(t, before, rows())
}

// A delayed payment is decided no earlier than its delay, by a job that
// snoozed without using attempts.
func TestWorkerWaitsForDecideAt(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	a := riverDecides(apptest.New(t, func(c *app.Config) { c.TestProcessingDelay = delay }))
	h := apptest.TestMerchant()
	ctx := context.Background()
	id := pay(t, a, h)["id"].(string)
	require.Equal(t, "success", waitFinal(t, a, h, id)["status"])

	// The job's DecideAt is the delay after the request's clock reading,
	// taken just before its transaction began (created_at); the decision
	// came no earlier than DecideAt.
	var delayed, early bool
	var attempt int
	require.NoError(t, a.Pool.QueryRow(ctx, `
		SELECT (j.args->>'decide_at')::timestamptz - p.created_at > $2::interval / 2,
		       p.decided_at < (j.args->>'decide_at')::timestamptz, j.attempt
		FROM payments p JOIN river_job j ON j.kind = 'process_payment' AND j.args->>'payment_id' = p.id
		WHERE p.id = $1`, id, delay).Scan(&delayed, &early, &attempt))
	require.True(t, delayed, "the job's DecideAt is not the delay after the payment's creation")
	require.False(t, early, "decided before DecideAt")
	require.Equal(t, 1, attempt)
}

// Of a card only the network and last four digits reach the database: not
// the number, not the CVV, in any table (API.md).
func TestCardNumberAndCVVNeverStored(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.With(apptest.TestMerchant(), "Idempotency-Key", "card-payment")
	ctx := context.Background()
	const number, spaced, cvv = "5555555555554444", "5555 5555 5555 4444", "987"

	status, p := call(t, a, http.MethodPost, "/api/v1/payments", cardBody(createOrder(t, a, h, 50000), spaced, "12", "2030", cvv), h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	require.Equal(t, "success", waitFinal(t, a, h, p["id"].(string))["status"])
	// A refused card is remembered under its key too.
	status, _ = call(t, a, http.MethodPost, "/api/v1/payments/public", cardBody(createOrder(t, a, h, 50000), number, "01", "2020", cvv),
		apptest.With(http.Header{"X-Api-Key": {merchants.TestMerchantKey}}, "Idempotency-Key", "expired-card"))
	require.Equal(t, http.StatusBadRequest, status)

	// Every column of every table as text; bytea as its bytes (escape
	// encoding), so that stored JSON bodies are searched too.
	rows, err := a.Pool.Query(ctx, `
		SELECT table_name, string_agg(CASE WHEN data_type = 'bytea' THEN format('encode(%I, ''escape'')', column_name)
		                                   ELSE format('%I::text', column_name) END, ', ')
		FROM information_schema.columns WHERE table_schema = 'public' GROUP BY table_name`)
	require.NoError(t, err)
	queries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var table, cols string
		err := r.Scan(&table, &cols)
		return fmt.Sprintf(`SELECT coalesce(string_agg(concat_ws(' ', %s), E'\n'), '') FROM %s`, cols, pgx.Identifier{table}.Sanitize()), err
	})
	require.NoError(t, err)
	require.Contains(t, strings.Join(queries, "\n"), `FROM "payments"`)
	var dump strings.Builder
	for _, q := range queries {
		var s string
		require.NoError(t, a.Pool.QueryRow(ctx, q).Scan(&s), q)
		dump.WriteString(s + "\n")
	}
	all := dump.String()
	require.Contains(t, all, `"card_last4":"4444"`, "the dump must include the remembered responses")
	require.Contains(t, all, "mastercard")
	for _, secret := range []string{number, spaced, `"` + cvv + `"`, "cvv", "CVV"} {
		require.NotContains(t, all, secret)
	}
}

// The queue status counts the payment jobs once they are done.
func TestJobsStatusCountsCompletedPayments(t *testing.T) {
	t.Parallel()
	a := riverDecides(apptest.New(t))
	h := apptest.TestMerchant()
	for range 3 {
		paySuccessfully(t, a, h)
	}
	var body map[string]any
	for i := 0; ; i++ {
		var status int
		status, body = call(t, a, http.MethodGet, "/api/v1/test/jobs/status", "", nil)
		require.Equal(t, http.StatusOK, status)
		// River marks jobs completed shortly after their work (batched).
		if body["worker_status"] == "running" && body["completed"].(float64) >= 3 {
			break
		}
		require.Less(t, i, 500, "no worker heartbeat: %v", body)
		time.Sleep(10 * time.Millisecond)
	}
	require.ElementsMatch(t, []string{"pending", "processing", "completed", "failed", "worker_status"}, keysOf(body))
	require.GreaterOrEqual(t, body["completed"], float64(3))
	require.EqualValues(t, 0, body["failed"])
}

// The decision job and the payment.created delivery are inserted together
// in the payment's transaction, the delivery without a unique key (a new
// log has no other job); a merchant that does not subscribe gets the
// decision job alone.
func TestPaymentJobsInsertedTogether(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	ctx := context.Background()
	create := func(subscribed bool) (decisions, deliveries int) {
		orderID := createOrder(t, a, apptest.TestMerchant(), 50000)
		tx, err := a.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { require.NoError(t, tx.Rollback(ctx)) }()
		if subscribed {
			_, err = tx.Exec(ctx, `UPDATE merchants SET webhook_url = 'http://127.0.0.1:9/hook' WHERE id = $1`, merchants.TestMerchantID)
			require.NoError(t, err)
		}
		p, err := a.Payments.CreatePaymentTx(ctx, tx, merchants.TestMerchantID,
			payments.PaymentInput{OrderID: orderID, Method: payments.MethodUPI, VPA: "user@paytm"})
		require.NoError(t, err)
		require.NoError(t, tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM river_job WHERE kind = 'process_payment' AND args->>'payment_id' = $1),
			(SELECT count(*) FROM river_job j JOIN webhook_logs l ON j.args @> jsonb_build_object('log_id', l.id, 'run', 0)
			 WHERE j.kind = 'deliver_webhook' AND j.queue = 'webhooks' AND j.unique_key IS NULL
			   AND l.event = 'payment.created' AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'payment'->>'id' = $1)`, p.ID).
			Scan(&decisions, &deliveries))
		return decisions, deliveries
	}
	d, w := create(true)
	require.Equal(t, 1, d)
	require.Equal(t, 1, w)
	d, w = create(false)
	require.Equal(t, 1, d)
	require.Equal(t, 0, w)
}

// A decision writes nothing to its order's row (migration 00020): the order
// is paid by its successful payment, and shows the moment of that decision
// as its updated_at, which a later capture of the payment does not move.
// A second payment on it is refused as paid.
func TestOrderIsPaidByItsSuccessfulPayment(t *testing.T) {
	t.Parallel()
	a, h, orderID, id := pendingPayment(t)
	ctx := context.Background()
	// Moved an hour back, so that the order's own updated_at is not taken
	// for the payment's decision.
	_, err := a.Pool.Exec(ctx, `UPDATE orders SET updated_at = updated_at - interval '1 hour' WHERE id = $1`, orderID)
	require.NoError(t, err)
	status, o := call(t, a, http.MethodGet, "/api/v1/orders/"+orderID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "created", o["status"])

	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	// The backend's counts not yet reported, the earlier transactions' on
	// its connection included: the decision must add nothing to them.
	orderWrites := func() (n int) {
		require.NoError(t, tx.QueryRow(ctx, `SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables
			WHERE relid = 'orders'::regclass`).Scan(&n))
		return n
	}
	before := orderWrites()
	changed, err := a.Payments.DecideTx(ctx, tx, merchants.TestMerchantID, id, true)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, before, orderWrites(), "the decision wrote the order's row")
	require.NoError(t, tx.Commit(ctx))

	// Moved a day back, so that the payment's updated_at (now, and again at
	// its capture below) is not taken for its decision.
	var decidedAt time.Time
	require.NoError(t, a.Pool.QueryRow(ctx, `UPDATE payments SET decided_at = decided_at - interval '1 day'
		WHERE id = $1 RETURNING decided_at`, id).Scan(&decidedAt))
	paid := func() map[string]any {
		status, o := call(t, a, http.MethodGet, "/api/v1/orders/"+orderID, "", h)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "paid", o["status"])
		at, err := time.Parse(time.RFC3339Nano, o["updated_at"].(string))
		require.NoError(t, err)
		require.True(t, at.Equal(decidedAt.Truncate(time.Second)), "updated_at %v, decided at %v", at, decidedAt)
		return o
	}
	paid()
	status, list := call(t, a, http.MethodGet, "/api/v1/orders?limit=1", "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "paid", list["data"].([]any)[0].(map[string]any)["status"])

	status, captured := call(t, a, http.MethodPost, "/api/v1/payments/"+id+"/capture", "", h)
	require.Equal(t, http.StatusOK, status, "%v", captured)
	paid()

	status, refused := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
	require.Equal(t, http.StatusBadRequest, status)
	code, field := errorOf(t, refused)
	require.Equal(t, []string{"BAD_REQUEST_ERROR", "order_id", "Order has already been paid"},
		[]string{code, field, refused["error"].(map[string]any)["description"].(string)})
}

// An order paid by the previous version, which marked the order's own row
// paid and left its payment's decided_at empty, still shows paid at the
// moment its row says.
func TestOrderPaidByThePreviousVersion(t *testing.T) {
	t.Parallel()
	a, h, orderID, id := pendingPayment(t)
	ctx := context.Background()
	_, err := a.Pool.Exec(ctx, `UPDATE payments SET status = 'success', updated_at = now() WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = a.Pool.Exec(ctx, `UPDATE orders SET status = 'paid', updated_at = '2026-11-30T10:00:00Z' WHERE id = $1`, orderID)
	require.NoError(t, err)
	status, o := call(t, a, http.MethodGet, "/api/v1/orders/"+orderID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "paid", o["status"])
	require.Equal(t, "2026-11-30T10:00:00Z", o["updated_at"])
}
