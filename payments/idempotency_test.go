package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/idempotency"
	"paygate/payments"
)

// Fifty identical payment requests at once under one key: one payment, one
// job, one payment.created event; every answer the same 201 or a 409.
func TestConcurrentPaymentsUnderOneKey(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer receiver.Close()
	status, _ := call(t, a, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+receiver.URL+`"}`, apptest.TestMerchant())
	require.Equal(t, http.StatusOK, status)

	h := apptest.With(apptest.TestMerchant(), idempotency.Header, "fifty")
	body := upiBody(createOrder(t, a, apptest.TestMerchant(), 50000))
	const n = 50
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { recs[i] = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", body, h) })
	}
	wg.Wait()
	var created []byte
	for _, rec := range recs {
		switch rec.Code {
		case http.StatusCreated:
			if created == nil {
				created = rec.Body.Bytes()
			}
			require.Equal(t, created, rec.Body.Bytes())
		case http.StatusConflict:
			require.Contains(t, rec.Body.String(), "IDEMPOTENCY_CONFLICT")
		default:
			t.Fatalf("unexpected %d: %s", rec.Code, rec.Body.String())
		}
	}
	require.NotNil(t, created)
	var pays, jobs, events int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM payments), (SELECT count(*) FROM river_job WHERE kind = 'process_payment'),
		(SELECT count(*) FROM webhook_logs WHERE event = 'payment.created')`).Scan(&pays, &jobs, &events))
	require.Equal(t, [3]int{1, 1, 1}, [3]int{pays, jobs, events})

	// The same key with another body is refused and creates nothing.
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments",
		upiBody(createOrder(t, a, apptest.TestMerchant(), 50000)), h)
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	require.Contains(t, rec.Body.String(), "IDEMPOTENCY_KEY_REUSED")
}

// What a key remembers of a card payment is a hash of the request without
// the card secrets, so the stored hash cannot be searched for the card.
func TestCardRequestHashHoldsNoCard(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.With(apptest.TestMerchant(), idempotency.Header, "card")
	body := cardBody(createOrder(t, a, apptest.TestMerchant(), 50000), "4111 1111 1111 1111", "12", "2030", "123")
	first := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", body, h)
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())

	var stored []byte
	require.NoError(t, a.Pool.QueryRow(context.Background(),
		`SELECT request_hash FROM idempotency_keys WHERE key = 'card'`).Scan(&stored))
	require.NotEqual(t, idempotency.RequestHash([]byte(body)), stored, "the raw body, card included, must not be hashed")
	var in payments.PaymentInput
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	fp := in.Fingerprint()
	require.Equal(t, idempotency.RequestHash(fp), stored)
	require.False(t, bytes.Contains(fp, []byte("4111111111111111")))
	require.False(t, bytes.Contains(fp, []byte("123\"")))
	require.Contains(t, string(fp), "last4=1111")

	// The same request replays; another card under the key is refused.
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", body, h)
	require.Equal(t, first.Body.String(), again.Body.String())
	other := bytes.Replace([]byte(body), []byte("4111 1111 1111 1111"), []byte("5555555555554444"), 1)
	require.Equal(t, http.StatusUnprocessableEntity, apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", string(other), h).Code)
}

// Many keys, each sent many times at once, with requests without a key on
// the same orders, all racing through the batches: one payment per order;
// every answer under a key is its first answer (the same bytes) or a 409;
// every key remembers the payment its order took.
func TestManyKeysRepeatedAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	const keys, repeats = 12, 8
	orders := make([]string, keys)
	for i := range orders {
		orders[i] = createOrder(t, a, h, 50000)
	}
	recs := make([][]*httptest.ResponseRecorder, keys)
	var wg sync.WaitGroup
	for k := range keys {
		recs[k] = make([]*httptest.ResponseRecorder, repeats)
		keyed := apptest.With(h, idempotency.Header, fmt.Sprintf("many-%d", k))
		for r := range repeats {
			wg.Go(func() {
				recs[k][r] = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", upiBody(orders[k]), keyed)
			})
		}
		wg.Go(func() { apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", upiBody(orders[k]), h) })
	}
	wg.Wait()

	for k := range keys {
		var first string
		for _, rec := range recs[k] {
			switch rec.Code {
			case http.StatusConflict:
				require.Contains(t, rec.Body.String(), "IDEMPOTENCY_CONFLICT")
				continue
			case http.StatusCreated, http.StatusBadRequest: // its order taken by the request without a key
			default:
				t.Fatalf("key %d: %d %s", k, rec.Code, rec.Body)
			}
			if first == "" {
				first = rec.Body.String()
			}
			require.Equal(t, first, rec.Body.String(), "key %d: one answer", k)
		}
		require.NotEmpty(t, first, "key %d answered", k)
		var status int
		var remembered string
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT status_code, convert_from(response_body, 'UTF8') FROM idempotency_keys
			WHERE key = $1`, fmt.Sprintf("many-%d", k)).Scan(&status, &remembered))
		require.Equal(t, first, remembered, "key %d", k)
	}
	var pays, perOrder int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*), max(n) FROM (
		SELECT count(*) AS n FROM payments GROUP BY order_id) AS o`).Scan(&pays, &perOrder))
	require.Equal(t, [2]int{keys, 1}, [2]int{pays, perOrder}, "one payment per order")
}
