package refunds_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/merchants"
)

func TestRefundLifecycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		amount int
		reason any
	}{
		{"full", `{"amount":50000}`, 50000, nil},
		{"partial with reason", `{"amount":25000,"reason":"Customer requested"}`, 25000, "Customer requested"},
		{"no amount is the whole", `{"reason":"Duplicate"}`, 50000, "Duplicate"},
		{"null amount is the whole", `{"amount":null}`, 50000, nil},
		{"empty body is the whole", ``, 50000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			status, r := f.refund(t, tt.body)
			require.Equal(t, http.StatusCreated, status, "%v", r)
			require.ElementsMatch(t, []string{"id", "payment_id", "merchant_id", "amount", "reason", "status",
				"created_at", "processed_at"}, slices.Collect(maps.Keys(r)))
			require.Regexp(t, `^rfnd_[A-Za-z0-9]{16}$`, r["id"])
			require.Equal(t, f.paymentID, r["payment_id"])
			require.Equal(t, merchants.TestMerchantID.String(), r["merchant_id"])
			require.EqualValues(t, tt.amount, r["amount"])
			require.Equal(t, tt.reason, r["reason"])
			require.Equal(t, "pending", r["status"])
			require.Nil(t, r["processed_at"])
			createdAt, err := time.Parse(time.RFC3339, r["created_at"].(string))
			require.NoError(t, err)

			done := waitProcessed(t, f, r["id"].(string))
			require.Equal(t, "processed", done["status"])
			processedAt, err := time.Parse(time.RFC3339, done["processed_at"].(string))
			require.NoError(t, err)
			require.False(t, processedAt.Before(createdAt))
			for _, k := range []string{"id", "payment_id", "merchant_id", "amount", "reason", "created_at"} {
				require.Equal(t, r[k], done[k], k)
			}

			_, p := apptest.Call(t, f.a, http.MethodGet, "/api/v1/payments/"+f.paymentID, "", f.h)
			require.EqualValues(t, tt.amount, p["amount_refunded"])
			require.Equal(t, "success", p["status"])
		})
	}
}

// Refunds add up to the payment amount and no further; pending refunds count.
func TestRefundLimit(t *testing.T) {
	t.Parallel()
	const exceeds = "Refund amount exceeds available amount"
	steps := []struct {
		body        string
		status      int
		amount      int // of a 201
		field       string
		description string
	}{
		{body: amountBody(50001), status: 400, field: "amount", description: exceeds},
		{body: amountBody(20000), status: 201, amount: 20000},
		{body: amountBody(20000), status: 201, amount: 20000},
		{body: amountBody(10001), status: 400, field: "amount", description: exceeds},
		{body: amountBody(9000), status: 201, amount: 9000},
		{body: `{}`, status: 201, amount: 1000}, // the rest
		{body: amountBody(1), status: 400, field: "amount", description: exceeds},
		{body: `{}`, status: 400, description: "Payment has no amount left to refund"},
	}
	f := setup(t)
	var ids []string
	for i, s := range steps {
		status, body := f.refund(t, s.body)
		require.Equal(t, s.status, status, "step %d: %v", i, body)
		if status == http.StatusCreated {
			require.EqualValues(t, s.amount, body["amount"], "step %d", i)
			ids = append(ids, body["id"].(string))
			continue
		}
		code, field := apptest.ErrorOf(t, body)
		require.Equal(t, "BAD_REQUEST_ERROR", code)
		require.Equal(t, s.field, field, "step %d", i)
		require.Equal(t, s.description, description(body), "step %d", i)
	}
	for _, id := range ids {
		waitProcessed(t, f, id)
	}
	_, p := apptest.Call(t, f.a, http.MethodGet, "/api/v1/payments/"+f.paymentID, "", f.h)
	require.EqualValues(t, 50000, p["amount_refunded"])
	// Processed refunds count as pending ones did.
	status, body := f.refund(t, amountBody(1))
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, exceeds, description(body))
}

// Twenty simultaneous refunds of half the amount, half of them with keys:
// exactly two are accepted, whatever the interleaving and the batches.
func TestConcurrentRefunds(t *testing.T) {
	t.Parallel()
	f := setup(t)
	type answer struct {
		status int
		body   string
	}
	answers := make([]answer, 20)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			h := f.h
			if i%2 == 1 {
				h = apptest.With(f.h, "Idempotency-Key", fmt.Sprintf("concurrent-%d", i))
			}
			rec := apptest.Do(t, f.a.Echo, http.MethodPost, "/api/v1/payments/"+f.paymentID+"/refunds", amountBody(25000), h)
			answers[i] = answer{rec.Code, rec.Body.String()}
		})
	}
	wg.Wait()
	accepted := 0
	for _, a := range answers {
		switch a.status {
		case http.StatusCreated:
			accepted++
		case http.StatusBadRequest:
			require.JSONEq(t, `{"error":{"code":"BAD_REQUEST_ERROR","description":"Refund amount exceeds available amount","field":"amount"}}`, a.body)
		default:
			t.Fatalf("unexpected answer %d %s", a.status, a.body)
		}
	}
	require.Equal(t, 2, accepted)

	var count, sum int64
	require.NoError(t, f.a.Pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(amount), 0) FROM refunds WHERE payment_id = $1`, f.paymentID).Scan(&count, &sum))
	require.EqualValues(t, 2, count)
	require.EqualValues(t, 50000, sum)
}

func TestRefundValidation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tests := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"amount 0", `{"amount":0}`, 400, "amount"},
		{"negative amount", `{"amount":-100}`, 400, "amount"},
		{"amount a string", `{"amount":"25000"}`, 400, "amount"},
		{"amount a fraction", `{"amount":100.5}`, 400, "amount"},
		{"amount a boolean", `{"amount":true}`, 400, "amount"},
		{"reason too long", fmt.Sprintf(`{"amount":100,"reason":%q}`, strings.Repeat("r", 256)), 400, "reason"},
		{"reason not a string", `{"amount":100,"reason":5}`, 400, "reason"},
		{"reason with NUL", `{"amount":100,"reason":"a\u0000b"}`, 400, "reason"},
		{"malformed JSON", `{"amount":`, 400, ""},
		{"not an object", `[100]`, 400, ""},
		{"reason of 255 characters", fmt.Sprintf(`{"amount":100,"reason":%q}`, strings.Repeat("é", 255)), 201, ""},
		{"empty reason", `{"amount":100,"reason":""}`, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := f.refund(t, tt.body)
			require.Equal(t, tt.status, status, "%v", body)
			if status == http.StatusCreated {
				return
			}
			code, field := apptest.ErrorOf(t, body)
			require.Equal(t, "BAD_REQUEST_ERROR", code)
			require.Equal(t, tt.field, field)
		})
	}
}

// Only a successful payment can be refunded; an unknown or another
// merchant's payment is not found.
func TestRefundRejected(t *testing.T) {
	t.Parallel()
	pendingForever := func(c *app.Config) { c.TestProcessingDelay = time.Hour }
	declined := func(c *app.Config) { c.TestPaymentSuccess = false }
	tests := []struct {
		name   string
		mutate func(*app.Config)
		want   string // the payment's status
	}{
		{"pending payment", pendingForever, "pending"},
		{"failed payment", declined, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := apptest.New(t, tt.mutate)
			h := apptest.TestMerchant()
			p := apptest.Pay(t, a, h)
			if tt.want != "pending" {
				p = apptest.WaitPayment(t, a, h, p["id"].(string))
			}
			require.Equal(t, tt.want, p["status"])
			status, body := apptest.Call(t, a, http.MethodPost, "/api/v1/payments/"+p["id"].(string)+"/refunds", amountBody(100), h)
			require.Equal(t, http.StatusBadRequest, status, "%v", body)
			require.Equal(t, map[string]any{"error": map[string]any{"code": "BAD_REQUEST_ERROR",
				"description": "Payment not in refundable state"}}, body)
		})
	}
}

// Another merchant's payments and refunds answer exactly like unknown ones,
// and nothing of the first merchant changes.
func TestOtherMerchantSeesNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t)
	status, r := f.refund(t, amountBody(100))
	require.Equal(t, http.StatusCreated, status, "%v", r)
	refundID := r["id"].(string)
	_, other := apptest.NewMerchant(t, f.a, "refunds-other@example.com")
	unknownPay, unknownRefund := "pay_AAAAAAAAAAAAAAAA", "rfnd_AAAAAAAAAAAAAAAA"

	tests := []struct {
		method, path, unknown, body string
	}{
		{"POST", "/api/v1/payments/" + f.paymentID + "/refunds", "/api/v1/payments/" + unknownPay + "/refunds", amountBody(100)},
		{"GET", "/api/v1/payments/" + f.paymentID + "/refunds", "/api/v1/payments/" + unknownPay + "/refunds", ""},
		{"GET", "/api/v1/refunds/" + refundID, "/api/v1/refunds/" + unknownRefund, ""},
		{"GET", "/api/v1/refunds/" + refundID, "/api/v1/refunds/not-an-id", ""},
		{"GET", "/api/v1/refunds/" + refundID, "/api/v1/refunds/" + f.paymentID, ""},
		{"POST", "/api/v1/payments/" + f.paymentID + "/refunds", "/api/v1/payments/pay_short/refunds", amountBody(100)},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.unknown, func(t *testing.T) {
			t.Parallel()
			rec := apptest.Do(t, f.a.Echo, tt.method, tt.path, tt.body, other)
			require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), `"code":"NOT_FOUND"`)
			same := apptest.Do(t, f.a.Echo, tt.method, tt.unknown, tt.body, other)
			require.Equal(t, same.Code, rec.Code)
			require.Equal(t, same.Body.String(), rec.Body.String())
		})
	}
	_, list := apptest.Call(t, f.a, http.MethodGet, "/api/v1/payments/"+f.paymentID+"/refunds", "", f.h)
	require.EqualValues(t, 1, list["total"])
}

func TestListRefunds(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var ids []string // oldest first
	for _, amount := range []int{100, 200, 300} {
		status, r := f.refund(t, amountBody(amount))
		require.Equal(t, http.StatusCreated, status, "%v", r)
		ids = append(ids, r["id"].(string))
	}
	otherPayment := apptest.PaySuccessfully(t, f.a, f.h)["id"].(string)

	tests := []struct {
		path  string
		total int
		ids   []string
	}{
		{"/api/v1/payments/" + f.paymentID + "/refunds", 3, []string{ids[2], ids[1], ids[0]}},
		{"/api/v1/payments/" + f.paymentID + "/refunds?limit=2", 3, []string{ids[2], ids[1]}},
		{"/api/v1/payments/" + f.paymentID + "/refunds?limit=2&offset=2", 3, []string{ids[0]}},
		{"/api/v1/payments/" + f.paymentID + "/refunds?offset=3", 3, []string{}},
		{"/api/v1/payments/" + otherPayment + "/refunds", 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			status, body := apptest.Call(t, f.a, http.MethodGet, tt.path, "", f.h)
			require.Equal(t, http.StatusOK, status, "%v", body)
			require.ElementsMatch(t, []string{"data", "total", "limit", "offset"}, slices.Collect(maps.Keys(body)))
			require.EqualValues(t, tt.total, body["total"])
			require.Equal(t, tt.ids, apptest.IDsOf(body))
		})
	}
	for query, field := range map[string]string{"?limit=0": "limit", "?limit=101": "limit", "?offset=-1": "offset"} {
		status, body := apptest.Call(t, f.a, http.MethodGet, "/api/v1/payments/"+f.paymentID+"/refunds"+query, "", f.h)
		require.Equal(t, http.StatusBadRequest, status, query)
		_, got := apptest.ErrorOf(t, body)
		require.Equal(t, field, got, query)
	}
}

// A repeated Idempotency-Key replays the refund: one refund, one job; the
// key with another body is refused.
func TestRefundIdempotent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	h := apptest.With(f.h, "Idempotency-Key", "refund-once")
	path := "/api/v1/payments/" + f.paymentID + "/refunds"

	first := apptest.Do(t, f.a.Echo, http.MethodPost, path, amountBody(30000), h)
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	again := apptest.Do(t, f.a.Echo, http.MethodPost, path, amountBody(30000), h)
	require.Equal(t, http.StatusCreated, again.Code)
	require.Equal(t, first.Body.String(), again.Body.String())
	require.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))

	other := apptest.Do(t, f.a.Echo, http.MethodPost, path, amountBody(100), h)
	require.Equal(t, http.StatusUnprocessableEntity, other.Code, other.Body.String())
	require.Contains(t, other.Body.String(), `"code":"IDEMPOTENCY_KEY_REUSED"`)

	var refunds, jobs int
	require.NoError(t, f.a.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM refunds), (SELECT count(*) FROM river_job WHERE kind = 'process_refund')`).Scan(&refunds, &jobs))
	require.Equal(t, 1, refunds)
	require.Equal(t, 1, jobs)
}
