package payments_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/payments"
)

// A batch's payments' INSERT takes a key's row seen claimed and not yet
// answered (status 0) for its own transaction's claim (idempotency.ClaimedHere),
// which holds as long as no such row commits. Should one ever commit (a
// writer that broke that rule, as this test does by hand), the batch fails
// rather than create a payment whose key it has not claimed, and so would
// not answer.
func TestABatchFailsOnAPaymentWhoseKeyItDidNotClaim(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	order := createOrder(t, a, apptest.TestMerchant(), 50000)
	_, err := a.Pool.Exec(ctx, `
		INSERT INTO idempotency_keys (merchant_id, route, key, request_hash, status_code, response_body, created_at, expires_at)
		VALUES ($1, 'POST /api/v1/payments', 'left-claimed', '\x00', 0, '', now(), now() + interval '1 day')`,
		merchants.TestMerchantID)
	require.NoError(t, err)
	err = db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		_, err := a.Payments.CreateManyTx(ctx, tx, merchants.TestMerchantID,
			[]payments.PaymentInput{{OrderID: order, Method: "upi", VPA: "a@b"}},
			apptest.Claim("POST /api/v1/payments", "left-claimed", time.Now()))
		return err
	})
	require.ErrorContains(t, err, "whose key the batch did not claim")
	var made int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE order_id = $1`, order).Scan(&made))
	require.Zero(t, made)
}

// A batch of creations inserts, in one transaction, the payments whose
// orders take them, each with its payment.created event and (decided by
// River here) its job, and skips the others without failing the batch: an
// order with a payment in progress, a paid one, another merchant's, an
// unknown one, and the second of two creations on one order.
func TestABatchOfCreationsInsertsWhatItsOrdersTake(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := batchApp(t)
	h := apptest.TestMerchant()
	_, other := apptest.NewMerchant(t, a, "batch-creations@example.com")

	paid := pay(t, a, h)
	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		_, err := a.Payments.DecideTx(ctx, tx, merchants.TestMerchantID, paid["id"].(string), true)
		return err
	}))
	inProgress := pay(t, a, h)
	free, twice := createOrder(t, a, h, 50000), createOrder(t, a, h, 70000)
	upi := func(order string) payments.PaymentInput {
		return payments.PaymentInput{OrderID: order, Method: "upi", VPA: "a@b"}
	}
	year := strconv.Itoa(time.Now().Year() + 1)
	card := payments.PaymentInput{OrderID: twice, Method: "card",
		Card: &payments.CardInput{Number: cardNumber("4", 16), ExpiryMonth: "12", ExpiryYear: year, CVV: "123"}}

	got, err := a.Payments.CreateBatch(ctx, merchants.TestMerchantID, []payments.PaymentInput{
		upi(free), card, upi(twice), upi(inProgress["order_id"].(string)), upi(paid["order_id"].(string)),
		upi(createOrder(t, a, other, 50000)), upi("order_0000000000000000"),
	})
	require.NoError(t, err)
	require.NotNil(t, got[0])
	require.True(t, (got[1] == nil) != (got[2] == nil), "one payment of the two on one order")
	require.Equal(t, []*payments.Payment{nil, nil, nil, nil}, got[3:])

	onTwice := got[1]
	if onTwice == nil {
		onTwice = got[2]
	}
	var createdAt time.Time
	for _, p := range []*payments.Payment{got[0], onTwice} {
		_, shown := call(t, a, http.MethodGet, "/api/v1/payments/"+p.ID, "", h)
		want, err := json.Marshal(p)
		require.NoError(t, err)
		require.JSONEq(t, string(want), mustJSON(t, shown), "answered as it is stored")
		require.Equal(t, "pending", p.Status)

		var at time.Time
		var events []string
		var created []byte
		require.NoError(t, a.Pool.QueryRow(ctx, `
			SELECT p.created_at, array_agg(l.event), min(convert_from(l.payload, 'UTF8'))::jsonb->'data'->'payment'
			FROM payments p JOIN webhook_logs l ON l.merchant_id = p.merchant_id
			     AND convert_from(l.payload, 'UTF8')::jsonb->'data'->'payment'->>'id' = p.id
			WHERE p.id = $1 GROUP BY p.created_at`, p.ID).Scan(&at, &events, &created))
		require.Equal(t, []string{"payment.created"}, events)
		require.JSONEq(t, string(want), string(created), "the event carries the payment")
		require.True(t, createdAt.IsZero() || createdAt.Equal(at), "one transaction")
		createdAt = at
		args, _ := decisionJobs(t, a, p.ID)
		require.Len(t, args, 1, "decided by River here: its job")
	}
	require.EqualValues(t, 50000, got[0].Amount, "the order's amount")
	require.EqualValues(t, 70000, onTwice.Amount)

	var count int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&count))
	require.Equal(t, 4, count, "the two before the batch, and its two")
}

// Payments created without an Idempotency-Key while a batch runs make the
// next batch together: one transaction for all. A request the batch does
// not create is answered as it would be alone.
func TestUnkeyedPaymentsAreCreatedInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 8
	a, h, orders := batchingApp(t, n)

	lock, waiting := apptest.HoldInserts(t, a, "payments")

	ids := make([]string, n)
	var wg sync.WaitGroup
	post := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orders[i]), h)
			if status == http.StatusCreated {
				ids[i] = body["id"].(string)
			}
		}()
	}
	apptest.QueueBehindABatch(t, n, post, waiting, a.Payments.QueuedCreations)
	require.NoError(t, lock.Rollback(ctx))
	wg.Wait()

	require.Equal(t, []int{1, n - 1}, apptest.Batches(t, a, "payments", ids), "every payment created; those queued in one transaction")

	status, refused := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orders[0]), h)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "Order already has a payment in progress; wait for its outcome",
		refused["error"].(map[string]any)["description"])
	status, refused = call(t, a, http.MethodPost, "/api/v1/payments", upiBody("order_0000000000000000"), h)
	require.Equal(t, http.StatusNotFound, status, "%v", refused)
}

// A payment queued behind a batch that waits for a row held elsewhere (its
// order's payment, inserted by a transaction still open) is not held up
// until that batch's deadline: a spare batch takes it once it has waited
// StallAfter, while the row is still held.
func TestAPaymentIsNotHeldUpByAStalledBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever, func(c *app.Config) { c.RequestTimeout = time.Minute })
	h := apptest.TestMerchant()
	stuck, free := createOrder(t, a, h, 50000), createOrder(t, a, h, 50000)
	held, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer held.Rollback(ctx) //nolint:errcheck // rolled back below
	_, err = a.Payments.CreatePaymentTx(ctx, held, merchants.TestMerchantID, payments.PaymentInput{OrderID: stuck, Method: "upi", VPA: "held@upi"})
	require.NoError(t, err)

	stalled := make(chan int, 1)
	go func() {
		status, _ := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(stuck), h)
		stalled <- status
	}()
	require.Eventually(t, apptest.LockWaits(t, a, 1), 10*time.Second, 5*time.Millisecond, "the batch waits for the order's payment")

	const spares = `paygate_spare_batches_total{kind="payments"}`
	before := apptest.Metric(t, a, spares)
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second) // the stalled batch's deadline is a minute away
	defer cancel()
	p, ok, err := a.Payments.CreatePayment(bounded, merchants.TestMerchantID,
		payments.PaymentInput{OrderID: free, Method: "upi", VPA: "free@upi"}, nil, nil)
	require.NoError(t, err, "the payment waited behind the stalled batch")
	require.True(t, ok)
	require.Equal(t, free, p.OrderID)
	select {
	case status := <-stalled:
		t.Fatalf("the stalled batch answered %d while the row was held", status)
	default:
	}
	require.GreaterOrEqual(t, apptest.Metric(t, a, spares), before+1, "the spare counted")

	require.NoError(t, held.Rollback(ctx))
	require.Equal(t, http.StatusCreated, <-stalled, "made once the row was free")
}

// CREATE_BATCHES batches run at once: with two, a second request starts a
// batch of its own while the first's waits, and a third waits for one of
// them to end.
func TestCreateBatchesRunAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever, func(c *app.Config) { c.RequestTimeout = time.Minute; c.CreateBatches = 2 }, apptest.NoSpareBatches)
	h := apptest.TestMerchant()
	orders := []string{createOrder(t, a, h, 50000), createOrder(t, a, h, 50000), createOrder(t, a, h, 50000)}
	lock, waiting := apptest.HoldInserts(t, a, "payments")

	ids := make([]string, len(orders))
	var wg sync.WaitGroup
	post := func(i int) {
		wg.Go(func() {
			status, body := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orders[i]), h)
			if status == http.StatusCreated {
				ids[i] = body["id"].(string)
			}
		})
	}
	post(0)
	require.Eventually(t, waiting(1), 10*time.Second, 5*time.Millisecond)
	post(1)
	require.Eventually(t, waiting(2), 10*time.Second, 5*time.Millisecond, "a second batch at once")
	post(2)
	require.Eventually(t, func() bool { return a.Payments.QueuedCreations() == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, lock.Rollback(ctx))
	wg.Wait()
	require.Equal(t, []int{1, 1, 1}, apptest.Batches(t, a, "payments", ids))
}

// The payments of a batch this process decides itself are each held and
// decided, without a job; the room taken for a creation the batch did not
// insert is freed. Should the batch's COMMIT go unanswered, its payments are
// given back as jobs.
func TestABatchOfCreationsIsDecidedHere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := riverDecidesNothing(apptest.New(t, waitingTen))
	h := apptest.TestMerchant()
	ins := func() []payments.PaymentInput {
		return []payments.PaymentInput{
			{OrderID: "order_0000000000000000", Method: "upi", VPA: "a@b"},
			{OrderID: createOrder(t, a, h, 50000), Method: "upi", VPA: "a@b"},
			{OrderID: createOrder(t, a, h, 60000), Method: "upi", VPA: "a@b"},
		}
	}

	got, err := a.Payments.CreateBatch(ctx, merchants.TestMerchantID, ins())
	require.NoError(t, err)
	require.Nil(t, got[0])
	require.NotContains(t, got[1:], (*payments.Payment)(nil))
	held, _ := a.Payments.FirstDecisions()
	require.Equal(t, 2, held, "the two inserted, not the third")
	for _, p := range got[1:] {
		args, _ := decisionJobs(t, a, p.ID)
		require.Empty(t, args)
	}
	a.Payments.DueLate() // due now, and past their deadline: given back, each as its own
	require.Eventually(t, func() bool { held, _ := a.Payments.FirstDecisions(); return held == 0 }, 10*time.Second, 5*time.Millisecond)
	for _, p := range got[1:] {
		args, _ := decisionJobs(t, a, p.ID)
		require.Len(t, args, 1, "the payment held is the one given back")
	}

	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	end := db.Track(tx)
	defer end(db.RolledBack) // a no-op once ended
	got, err = a.Payments.CreateManyTx(ctx, tx, merchants.TestMerchantID, ins())
	require.NoError(t, err)
	require.NotContains(t, got[1:], (*payments.Payment)(nil))
	require.NoError(t, tx.Commit(ctx)) // committed; the batch could not tell
	end(db.Unknown)
	held, _ = a.Payments.FirstDecisions()
	require.Zero(t, held)
	for _, p := range got[1:] {
		args, _ := decisionJobs(t, a, p.ID)
		require.Len(t, args, 1, "given back")
	}
}

// A creation whose request's deadline has passed when its batch begins is
// not made: its request was answered with an error. The others of the batch
// are.
func TestABatchLeavesOutTheCreationsOfRequestsPastTheirDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	late, onTime := createOrder(t, a, h, 50000), createOrder(t, a, h, 50000)
	got, err := a.Payments.CreateBatch(ctx, merchants.TestMerchantID, []payments.PaymentInput{
		{OrderID: late, Method: "upi", VPA: "a@b"}, {OrderID: onTime, Method: "upi", VPA: "a@b"},
	}, time.Now().Add(-time.Millisecond), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Nil(t, got[0])
	require.NotNil(t, got[1])
	_, list := call(t, a, http.MethodGet, "/api/v1/payments?order_id="+late, "", h)
	require.EqualValues(t, 0, list["total"])
}

// An order whose request's deadline has passed when its batch begins is not
// made, and its request gets an error, never an order; the others of the
// batch are made.
func TestABatchOfOrdersLeavesOutTheRequestsPastTheirDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t)
	amount := int64(1000)
	in := payments.OrderInput{Amount: &amount}
	got, err := a.Payments.CreateOrderBatch(ctx, merchants.TestMerchantID, []payments.OrderInput{in, in},
		[]time.Time{time.Now().Add(-time.Millisecond), time.Now().Add(time.Minute)})
	require.NoError(t, err)
	require.Nil(t, got[0])
	require.NotNil(t, got[1])
	require.EqualValues(t, 1000, got[1].Amount)

	late, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Millisecond))
	defer cancel()
	_, _, err = a.Payments.CreateOrder(late, merchants.TestMerchantID, in, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var orders int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders))
	require.Equal(t, 1, orders, "the on-time order alone")
}

// A batch ends by its requests' deadline: a request whose batch is still
// waiting then is answered 503, and its payment is not made after.
func TestABatchEndsByItsRequestsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever, func(c *app.Config) { c.RequestTimeout = 500 * time.Millisecond })
	h := apptest.TestMerchant()
	orderID := createOrder(t, a, h, 50000)
	lock, waiting := apptest.HoldInserts(t, a, "payments")

	status, body := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
	require.Equal(t, http.StatusServiceUnavailable, status, "%v", body)
	// Well before the batch's own bound (10 s), nothing waits to insert.
	require.Eventually(t, waiting(0), 5*time.Second, 5*time.Millisecond, "the batch ended with its request")
	require.NoError(t, lock.Rollback(ctx))
	_, list := call(t, a, http.MethodGet, "/api/v1/payments?order_id="+orderID, "", h)
	require.EqualValues(t, 0, list["total"])
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// Orders created while a batch runs make the next batch together: one
// INSERT and one commit for all, each answered its own order, notes and
// receipt included. Those with an Idempotency-Key have it claimed and
// their answer remembered in the batch's transaction.
func TestOrdersAreCreatedInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, func(c *app.Config) { c.RequestTimeout = time.Minute }, apptest.NoSpareBatches)
	h := apptest.TestMerchant()
	lock, waiting := apptest.HoldInserts(t, a, "orders")

	const n = 8
	keyed := func(i int) http.Header {
		if i%2 == 0 {
			return h
		}
		return apptest.With(h, idempotency.Header, fmt.Sprintf("order-%d", i))
	}
	bodyOf := func(i int) string {
		return fmt.Sprintf(`{"amount":%d,"receipt":"r%d","notes":{"i":"%d"}}`, 1000+i, i, i)
	}
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	post := func(i int) {
		wg.Go(func() { recs[i] = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", bodyOf(i), keyed(i)) })
	}
	apptest.QueueBehindABatch(t, n, post, waiting, a.Payments.QueuedOrders)
	require.NoError(t, lock.Rollback(ctx))
	wg.Wait()

	ids := make([]string, n)
	for i, rec := range recs {
		require.Equal(t, http.StatusCreated, rec.Code, "order %d: %s", i, rec.Body)
		var o map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &o))
		require.EqualValues(t, 1000+i, o["amount"], "each answered its own order")
		require.Equal(t, fmt.Sprintf("r%d", i), o["receipt"])
		require.Equal(t, map[string]any{"i": fmt.Sprint(i)}, o["notes"])
		_, got := call(t, a, http.MethodGet, "/api/v1/orders/"+o["id"].(string), "", h)
		require.Equal(t, o, got, "stored as answered")
		ids[i] = o["id"].(string)
		if i%2 == 1 {
			again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", bodyOf(i), keyed(i))
			require.True(t, idempotency.IsReplay(again.Header()), "order %d", i)
			require.Equal(t, rec.Body.String(), again.Body.String())
		}
	}
	require.Equal(t, []int{1, n - 1}, apptest.Batches(t, a, "orders", ids), "those queued in one transaction, keyed or not")
	var orders int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders))
	require.Equal(t, n, orders, "no order for a replay")
}

// A keyed order whose input is invalid is answered, and remembered, as it
// would be alone; a key in progress does not hold up the batch.
func TestKeyedOrdersRunAloneWhereTheBatchCannotAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t)
	a.Idempotency.LockTimeout = 100 * time.Millisecond
	h := apptest.TestMerchant()
	invalid := apptest.With(h, idempotency.Header, "invalid")
	first := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":1}`, invalid)
	require.Equal(t, http.StatusBadRequest, first.Code, "%s", first.Body)
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":1}`, invalid)
	require.True(t, idempotency.IsReplay(again.Header()))
	require.Equal(t, first.Body.String(), again.Body.String())

	apptest.Hold(t, a, apptest.Claim("POST /api/v1/orders", "held", time.Now()))
	amount := int64(1000)
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second) // far beyond the claim's wait
	defer cancel()
	got, err := a.Payments.CreateKeyedOrderBatch(bounded, merchants.TestMerchantID, []payments.OrderInput{{Amount: &amount}, {Amount: &amount}},
		[]*idempotency.Claim{{MerchantID: merchants.TestMerchantID, Route: "POST /api/v1/orders", Key: "held", Hash: []byte("x"), At: time.Now()}, nil})
	require.NoError(t, err)
	require.Nil(t, got[0], "run alone")
	require.NotNil(t, got[1], "created in the batch")
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":1000}`, apptest.With(h, idempotency.Header, "held"))
	require.Equal(t, http.StatusConflict, rec.Code, "%s", rec.Body)
}

// A batch of keyed orders claims and answers the keys it can, takes over
// an expired one, and leaves to run alone a request past its deadline (its
// key not claimed) and the repeat of a key in the batch.
func TestABatchOfKeyedOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t)
	claim := func(key string, at time.Time) *idempotency.Claim {
		return apptest.Claim("POST /api/v1/orders", key, at)
	}
	apptest.Remember(t, a, claim("expired", time.Now()))
	amount := int64(1000)
	in := payments.OrderInput{Amount: &amount}
	soon := time.Now().Add(time.Minute)
	got, err := a.Payments.CreateKeyedOrderBatch(ctx, merchants.TestMerchantID, []payments.OrderInput{in, in, in, in},
		[]*idempotency.Claim{claim("late", time.Now()), claim("k", time.Now()), claim("k", time.Now()), claim("expired", apptest.PastExpiry())},
		time.Now().Add(-time.Millisecond), soon, soon, soon)
	require.NoError(t, err)
	require.Nil(t, got[0], "past its deadline")
	require.NotNil(t, got[1])
	require.Nil(t, got[2], "the repeat runs alone, and replays")
	require.NotNil(t, got[3], "the expired key taken over")

	rows, err := a.Pool.Query(ctx, `SELECT key, convert_from(response_body, 'UTF8') FROM idempotency_keys ORDER BY key`)
	require.NoError(t, err)
	kept, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Key, Body string }])
	require.NoError(t, err)
	require.Len(t, kept, 2, "no claim for the late request")
	answered := map[string]*payments.Order{"k": got[1], "expired": got[3]}
	for _, k := range kept {
		require.Equal(t, mustJSON(t, answered[k.Key]), k.Body, "%s: its order answered", k.Key)
	}
}

// Payments created with an Idempotency-Key while a batch runs make the next
// batch together with the others: their keys are claimed, and their answers
// remembered, in the batch's transaction. A request the batch does not
// create (a repeat of a key in the batch, an order already taken) is
// answered as it would be alone, and that answer is remembered.
func TestKeyedPaymentsAreCreatedInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 8
	a, h, orders := batchingApp(t, n)
	// Requests 2–5 have keys, and 6 repeats 5; 7 is on request 0's order.
	// 1–7 queue in one batch, in no set order.
	keys := []string{"", "", "k2", "k3", "k4", "k5", "k5", "k7"}
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = upiBody(orders[i])
	}
	bodies[6], bodies[7] = bodies[5], upiBody(orders[0])
	withKey := func(i int) http.Header {
		if keys[i] == "" {
			return h
		}
		return apptest.With(h, idempotency.Header, keys[i])
	}

	lock, waiting := apptest.HoldInserts(t, a, "payments")
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	post := func(i int) {
		wg.Go(func() { recs[i] = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", bodies[i], withKey(i)) })
	}
	apptest.QueueBehindABatch(t, n, post, waiting, a.Payments.QueuedCreations)
	require.NoError(t, lock.Rollback(ctx))
	wg.Wait()

	ids := make([]string, 6)
	for i := range 6 {
		require.Equal(t, http.StatusCreated, recs[i].Code, "%d: %s", i, recs[i].Body)
		var p map[string]any
		require.NoError(t, json.Unmarshal(recs[i].Body.Bytes(), &p))
		ids[i] = p["id"].(string)
	}
	require.Equal(t, []int{1, 5}, apptest.Batches(t, a, "payments", ids), "those queued in one transaction, keyed or not")

	require.Equal(t, http.StatusCreated, recs[6].Code)
	require.Equal(t, recs[5].Body.String(), recs[6].Body.String(), "a repeat in the batch answers the first")
	require.NotEqual(t, idempotency.IsReplay(recs[5].Header()), idempotency.IsReplay(recs[6].Header()),
		"whichever came second is a replay")
	require.Equal(t, http.StatusBadRequest, recs[7].Code, "%s", recs[7].Body)
	require.Contains(t, recs[7].Body.String(), "Order already has a payment in progress")

	// Each key remembers its answer, written with the payment.
	for _, i := range []int{2, 3, 4, 5, 7} {
		again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", bodies[i], withKey(i))
		require.True(t, idempotency.IsReplay(again.Header()), "%d", i)
		require.Equal(t, recs[i].Code, again.Code)
		require.Equal(t, recs[i].Body.String(), again.Body.String())
	}
	var count int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&count))
	require.Equal(t, 6, count)
}

// A key held by a request in progress does not hold up its batch: the
// batch's requests without a key are created, and those with one run
// alone, where the held key's waits for its holder (and answers 409 when
// that outlasts the lock timeout).
func TestAKeyInProgressDoesNotHoldUpItsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever)
	a.Idempotency.LockTimeout = 100 * time.Millisecond
	h := apptest.TestMerchant()
	claim := func(key string) *idempotency.Claim { return apptest.Claim("POST /api/v1/payments", key, time.Now()) }
	apptest.Hold(t, a, claim("held"))

	in := func() payments.PaymentInput {
		return payments.PaymentInput{OrderID: createOrder(t, a, h, 50000), Method: "upi", VPA: "a@b"}
	}
	ins := []payments.PaymentInput{in(), in(), in()}
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second) // far beyond the claim's wait
	defer cancel()
	got, err := a.Payments.CreateKeyedBatch(bounded, merchants.TestMerchantID, ins,
		[]*idempotency.Claim{claim("held"), nil, claim("free")})
	require.NoError(t, err)
	require.Nil(t, got[0], "run alone")
	require.NotNil(t, got[1], "created in the batch")
	require.Nil(t, got[2], "run alone")
	var keys int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key = 'free'`).Scan(&keys))
	require.Zero(t, keys, "the batch that claimed it was rolled back")

	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", upiBody(ins[0].OrderID), apptest.With(h, idempotency.Header, "held"))
	require.Equal(t, http.StatusConflict, rec.Code, "%s", rec.Body)
}

// A batch remembers a key's answer as the route answers it (the checkout's
// public view), and takes over a key whose answer has expired.
func TestABatchRemembersTheRoutesViewAndTakesOverExpiredKeys(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	public := http.Header{"X-Api-Key": {merchants.TestMerchantKey}, idempotency.Header: {"checkout-1"}}
	body := upiBody(createOrder(t, a, h, 50000))
	first := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, public)
	require.Equal(t, http.StatusCreated, first.Code, "%s", first.Body)
	var view map[string]any
	require.NoError(t, json.Unmarshal(first.Body.Bytes(), &view))
	_, full := call(t, a, http.MethodGet, "/api/v1/payments/"+view["id"].(string), "", h)
	require.Less(t, len(view), len(full), "the public view")
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, public)
	require.True(t, idempotency.IsReplay(again.Header()))
	require.Equal(t, first.Body.String(), again.Body.String())

	keyed := apptest.With(h, idempotency.Header, "k")
	before := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", upiBody(createOrder(t, a, h, 50000)), keyed)
	require.Equal(t, http.StatusCreated, before.Code)
	a.Idempotency.Now = func() time.Time { return time.Now().Add(idempotency.TTL + time.Minute) }
	afterBody := upiBody(createOrder(t, a, h, 60000))
	after := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", afterBody, keyed)
	require.Equal(t, http.StatusCreated, after.Code, "%s", after.Body)
	require.False(t, idempotency.IsReplay(after.Header()), "expired: a new request")
	require.NotEqual(t, before.Body.String(), after.Body.String())
	again = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", afterBody, keyed)
	require.True(t, idempotency.IsReplay(again.Header()))
	require.Equal(t, after.Body.String(), again.Body.String(), "the key remembers the new request's answer")
	replayed := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", upiBody("order_0000000000000000"), keyed)
	require.Equal(t, http.StatusUnprocessableEntity, replayed.Code, "the key is the new request's now")
}

// batchingApp starts an app whose payments stay pending, with n orders of
// the test merchant (whose headers are h) to pay. Its first request waits
// for the others to queue behind it: longer than a request may last on a
// loaded machine.
func batchingApp(t *testing.T, n int) (a *app.App, h http.Header, orders []string) {
	t.Helper()
	a = apptest.New(t, pendingForever, func(c *app.Config) { c.RequestTimeout = time.Minute }, apptest.NoSpareBatches)
	h = apptest.TestMerchant()
	orders = make([]string, n)
	for i := range orders {
		orders[i] = createOrder(t, a, h, 50000)
	}
	return a, h, orders
}

// Checkout takes at most CHECKOUT_MAX_FAILED_PAYMENTS failed payments on an
// order (its key and the order's id are public: a card tester's tool
// otherwise); then 429, remembered under a key like any refusal, while a
// repeat of an earlier key still replays its payment, and the merchant's own
// route still pays.
func TestCheckoutTakesAFewFailedPaymentsAnOrder(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.TestPaymentSuccess = false; c.CheckoutMaxFailures = 2 })
	h := apptest.TestMerchant()
	public := http.Header{"X-Api-Key": {merchants.TestMerchantKey}}
	keyed := func(key string) http.Header {
		if key == "" {
			return public
		}
		return apptest.With(public, idempotency.Header, key)
	}
	orderID := createOrder(t, a, h, 50000)
	body := upiBody(orderID)
	var firstKeyed string
	for i, key := range []string{"", "chk-2"} {
		rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, keyed(key))
		require.Equal(t, http.StatusCreated, rec.Code, "attempt %d: %s", i+1, rec.Body)
		var p map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		require.Equal(t, payments.StatusFailed, waitFinal(t, a, h, p["id"].(string))["status"])
		if key != "" {
			firstKeyed = rec.Body.String()
		}
	}

	for _, key := range []string{"", "chk-3"} {
		rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, keyed(key))
		require.Equal(t, http.StatusTooManyRequests, rec.Code, "%s", rec.Body)
		var e map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
		code, _ := errorOf(t, e)
		require.Equal(t, "RATE_LIMITED", code)
		require.Contains(t, e["error"].(map[string]any)["description"], "2 failed payments")
	}
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, keyed("chk-3"))
	require.Equal(t, http.StatusTooManyRequests, again.Code)
	require.True(t, idempotency.IsReplay(again.Header()), "remembered under its key")
	again = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", body, keyed("chk-2"))
	require.Equal(t, http.StatusCreated, again.Code, "an earlier key replays its payment")
	require.Equal(t, firstKeyed, again.Body.String())

	// Another order of the merchant is not held up; its own route pays.
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", upiBody(createOrder(t, a, h, 50000)), public)
	require.Equal(t, http.StatusCreated, rec.Code, "%s", rec.Body)
	status, p := call(t, a, http.MethodPost, "/api/v1/payments", body, h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
}
