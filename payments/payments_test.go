package payments_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/merchants"
)

func TestPaymentLifecycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		success     bool
		status      string
		orderStatus string
		errCode     any
		errDesc     any
	}{
		{true, "success", "paid", nil, nil},
		{false, "failed", "created", "PAYMENT_FAILED", "Payment processing failed"},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			t.Parallel()
			a := apptest.New(t, func(c *app.Config) { c.TestPaymentSuccess = tt.success })
			h := apptest.TestMerchant()
			orderID := createOrder(t, a, h, 50000)

			status, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
			require.Equal(t, http.StatusCreated, status, "%v", p)
			require.ElementsMatch(t, []string{"id", "order_id", "merchant_id", "amount", "currency", "method", "vpa",
				"status", "captured", "amount_refunded", "error_code", "error_description", "created_at", "updated_at"}, keysOf(p))
			require.Regexp(t, `^pay_[A-Za-z0-9]{16}$`, p["id"])
			require.Equal(t, orderID, p["order_id"])
			require.Equal(t, merchants.TestMerchantID.String(), p["merchant_id"])
			require.EqualValues(t, 50000, p["amount"])
			require.Equal(t, "INR", p["currency"])
			require.Equal(t, "upi", p["method"])
			require.Equal(t, "user@paytm", p["vpa"])
			require.Equal(t, "pending", p["status"])
			require.Equal(t, false, p["captured"])
			require.EqualValues(t, 0, p["amount_refunded"])
			require.Nil(t, p["error_code"])
			require.Nil(t, p["error_description"])

			final := waitFinal(t, a, h, p["id"].(string))
			require.Equal(t, tt.status, final["status"])
			require.Equal(t, tt.errCode, final["error_code"])
			require.Equal(t, tt.errDesc, final["error_description"])
			require.Equal(t, p["created_at"], final["created_at"])

			_, order := call(t, a, http.MethodGet, "/api/v1/orders/"+orderID, "", h)
			require.Equal(t, tt.orderStatus, order["status"])
		})
	}
}

func TestCreatePaymentValidation(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()
	orderID := createOrder(t, a, h, 50000)

	now := time.Now().UTC()
	thisMonth := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	lastMonth := thisMonth.AddDate(0, -1, 0)
	month := func(t time.Time) string { return fmt.Sprintf("%02d", t.Month()) }
	year := func(t time.Time) string { return fmt.Sprint(t.Year()) }
	card := func(number string) string { return cardBody(orderID, number, "12", "2030", "123") }

	tests := []struct {
		name    string
		body    string
		status  int
		code    string // error code, or the card network of a 201
		field   string
		last4   string
		noOrder bool
	}{
		{name: "vpa", body: upiBody(orderID), status: 201},
		{name: "vpa with dots dashes underscores", body: fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"a.b-c_d@okicici"}`, orderID), status: 201},
		{name: "vpa without @", body: fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"userpaytm"}`, orderID), status: 400, code: "INVALID_VPA", field: "vpa"},
		{name: "vpa with dotted bank", body: fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"user@ok.bank"}`, orderID), status: 400, code: "INVALID_VPA", field: "vpa"},
		{name: "vpa with two @", body: fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"a@b@c"}`, orderID), status: 400, code: "INVALID_VPA", field: "vpa"},
		{name: "vpa missing", body: fmt.Sprintf(`{"order_id":%q,"method":"upi"}`, orderID), status: 400, code: "INVALID_VPA", field: "vpa"},

		{name: "luhn valid", body: card("4111111111111111"), status: 201, code: "visa", last4: "1111"},
		{name: "luhn valid with spaces", body: card("4111 1111 1111 1111"), status: 201, code: "visa", last4: "1111"},
		{name: "luhn valid with dashes", body: card("4111-1111-1111-1111"), status: 201, code: "visa", last4: "1111"},
		{name: "luhn invalid", body: card("4111111111111112"), status: 400, code: "INVALID_CARD", field: "card.number"},
		{name: "letters", body: card("4111abcd11111111"), status: 400, code: "INVALID_CARD", field: "card.number"},
		{name: "13 digits", body: card(cardNumber("4", 13)), status: 201, code: "visa"},
		{name: "19 digits", body: card(cardNumber("4", 19)), status: 201, code: "visa"},
		{name: "12 digits", body: card(cardNumber("4", 12)), status: 400, code: "INVALID_CARD", field: "card.number"},
		{name: "20 digits", body: card(cardNumber("4", 20)), status: 400, code: "INVALID_CARD", field: "card.number"},
		{name: "card missing", body: fmt.Sprintf(`{"order_id":%q,"method":"card"}`, orderID), status: 400, code: "INVALID_CARD", field: "card.number"},

		{name: "visa", body: card(cardNumber("4", 16)), status: 201, code: "visa"},
		{name: "mastercard 51", body: card(cardNumber("51", 16)), status: 201, code: "mastercard"},
		{name: "mastercard 55", body: card("5555555555554444"), status: 201, code: "mastercard", last4: "4444"},
		{name: "amex 34", body: card(cardNumber("34", 15)), status: 201, code: "amex"},
		{name: "amex 37", body: card("378282246310005"), status: 201, code: "amex", last4: "0005"},
		{name: "rupay 60", body: card(cardNumber("60", 16)), status: 201, code: "rupay"},
		{name: "rupay 65", body: card(cardNumber("65", 16)), status: 201, code: "rupay"},
		{name: "rupay 81", body: card(cardNumber("81", 16)), status: 201, code: "rupay"},
		{name: "rupay 89", body: card(cardNumber("89", 16)), status: 201, code: "rupay"},
		{name: "unknown 50", body: card(cardNumber("50", 16)), status: 201, code: "unknown"},
		{name: "unknown 9", body: card(cardNumber("9", 16)), status: 201, code: "unknown"},

		{name: "expired last month", body: cardBody(orderID, "4111111111111111", month(lastMonth), year(lastMonth), "123"), status: 400, code: "EXPIRED_CARD", field: "card.expiry_year"},
		{name: "expires this month", body: cardBody(orderID, "4111111111111111", month(thisMonth), year(thisMonth), "123"), status: 201, code: "visa"},
		{name: "two-digit year", body: cardBody(orderID, "4111111111111111", "1", fmt.Sprint(now.Year()%100+1), "123"), status: 201, code: "visa"},
		{name: "two-digit year in the past", body: cardBody(orderID, "4111111111111111", "12", fmt.Sprint(now.Year()%100-1), "123"), status: 400, code: "EXPIRED_CARD", field: "card.expiry_year"},
		{name: "month 13", body: cardBody(orderID, "4111111111111111", "13", "2030", "123"), status: 400, code: "EXPIRED_CARD", field: "card.expiry_month"},
		{name: "bad cvv", body: cardBody(orderID, "4111111111111111", "12", "2030", "12"), status: 400, code: "INVALID_CARD", field: "card.cvv"},

		{name: "bad method", body: fmt.Sprintf(`{"order_id":%q,"method":"netbanking"}`, orderID), status: 400, code: "BAD_REQUEST_ERROR", field: "method"},
		{name: "missing method", body: fmt.Sprintf(`{"order_id":%q,"vpa":"user@paytm"}`, orderID), status: 400, code: "BAD_REQUEST_ERROR", field: "method"},
		{name: "missing order_id", body: `{"method":"upi","vpa":"user@paytm"}`, status: 400, code: "BAD_REQUEST_ERROR", field: "order_id"},
		{name: "order_id not a string", body: `{"order_id":5,"method":"upi","vpa":"user@paytm"}`, status: 400, code: "BAD_REQUEST_ERROR", field: "order_id"},
		{name: "unknown order", body: upiBody("order_AAAAAAAAAAAAAAAA"), status: 404, code: "NOT_FOUND"},
		{name: "malformed order id", body: `{"order_id":"order_%00","method":"upi","vpa":"user@paytm"}`, status: 404, code: "NOT_FOUND"},
		{name: "order id with NUL", body: `{"order_id":"order_\u0000","method":"upi","vpa":"user@paytm"}`, status: 400, code: "BAD_REQUEST_ERROR", field: "order_id"},
		{name: "malformed JSON", body: `{"order_id":`, status: 400, code: "BAD_REQUEST_ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// An order takes one pending payment: each case pays its own.
			status, body := call(t, a, http.MethodPost, "/api/v1/payments",
				strings.ReplaceAll(tt.body, orderID, createOrder(t, a, h, 50000)), h)
			require.Equal(t, tt.status, status, "%v", body)
			if status != http.StatusCreated {
				code, field := errorOf(t, body)
				require.Equal(t, tt.code, code)
				require.Equal(t, tt.field, field)
				return
			}
			require.Equal(t, "pending", body["status"])
			require.EqualValues(t, 50000, body["amount"])
			if strings.Contains(tt.body, `"card"`) {
				require.Equal(t, tt.code, body["card_network"])
				require.Regexp(t, `^\d{4}$`, body["card_last4"])
				if tt.last4 != "" {
					require.Equal(t, tt.last4, body["card_last4"])
				}
				require.NotContains(t, body, "vpa")
			} else {
				require.NotContains(t, body, "card_network")
			}
		})
	}
}

func TestCapture(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()

	// Payments in each state, decided here rather than by the worker.
	decided := func(ok bool) string {
		p := pay(t, a, h)
		decide(t, a, p["id"].(string), ok)
		return p["id"].(string)
	}
	pending := pay(t, a, h)["id"].(string)
	failed := decided(false)
	whole, exact, wrong, twice := decided(true), decided(true), decided(true), decided(true)

	capture := func(id, body string) (int, map[string]any) {
		return call(t, a, http.MethodPost, "/api/v1/payments/"+id+"/capture", body, h)
	}
	status, p := capture(twice, "")
	require.Equal(t, http.StatusOK, status, "%v", p)

	tests := []struct {
		name   string
		id     string
		body   string
		status int
		field  string
	}{
		{"whole amount", whole, "", 200, ""},
		{"exact amount", exact, `{"amount":50000}`, 200, ""},
		{"other amount", wrong, `{"amount":25000}`, 400, "amount"},
		{"amount not an integer", wrong, `{"amount":"50000"}`, 400, "amount"},
		{"pending", pending, "", 400, ""},
		{"failed", failed, "", 400, ""},
		{"already captured", twice, "", 400, ""},
		{"unknown", "pay_AAAAAAAAAAAAAAAA", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := capture(tt.id, tt.body)
			require.Equal(t, tt.status, status, "%v", body)
			if status == http.StatusOK {
				require.Equal(t, true, body["captured"])
				require.Equal(t, "success", body["status"])
				return
			}
			code, field := errorOf(t, body)
			require.Equal(t, tt.field, field)
			switch {
			case status == http.StatusNotFound:
				require.Equal(t, "NOT_FOUND", code)
			case field == "":
				require.Equal(t, "BAD_REQUEST_ERROR", code)
				require.Equal(t, "Payment not in capturable state", body["error"].(map[string]any)["description"])
			}
		})
	}
	_, p = call(t, a, http.MethodGet, "/api/v1/payments/"+wrong, "", h)
	require.Equal(t, false, p["captured"])
}

// Two captures at once: exactly one wins, whatever the interleaving.
func TestCaptureRace(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	for range 5 {
		id := paySuccessfully(t, a, h)["id"].(string)

		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i := range statuses {
			wg.Go(func() {
				rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/"+id+"/capture", "", h)
				statuses[i] = rec.Code
			})
		}
		wg.Wait()
		require.ElementsMatch(t, []int{http.StatusOK, http.StatusBadRequest}, statuses)
	}
}

func TestListPayments(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.TestMerchant()

	orderA, orderB := createOrder(t, a, h, 1000), createOrder(t, a, h, 2000)
	// Oldest first: A failed, A failed, A success, B failed, B pending (an
	// order takes a new payment only once the one before has failed).
	var ids []string
	for i, orderID := range []string{orderA, orderA, orderA, orderB, orderB} {
		_, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
		ids = append(ids, p["id"].(string))
		if i < 4 {
			decide(t, a, ids[i], i == 2)
		}
	}
	_, other := apptest.NewMerchant(t, a, "payments-list@example.com")
	pay(t, a, other)

	tests := []struct {
		query string
		total int
		ids   []string
	}{
		{"", 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"?limit=2", 5, []string{ids[4], ids[3]}},
		{"?limit=2&offset=2", 5, []string{ids[2], ids[1]}},
		{"?limit=2&offset=4", 5, []string{ids[0]}},
		{"?offset=5", 5, []string{}},
		{"?status=pending", 1, []string{ids[4]}},
		{"?status=success", 1, []string{ids[2]}},
		{"?status=failed", 3, []string{ids[3], ids[1], ids[0]}},
		{"?order_id=" + orderA, 3, []string{ids[2], ids[1], ids[0]}},
		{"?order_id=" + orderB + "&limit=1", 2, []string{ids[4]}},
		{"?order_id=" + orderB + "&status=failed", 1, []string{ids[3]}},
		{"?order_id=" + orderB + "&status=success", 0, []string{}},
		{"?order_id=order_AAAAAAAAAAAAAAAA", 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			status, body := call(t, a, http.MethodGet, "/api/v1/payments"+tt.query, "", h)
			require.Equal(t, http.StatusOK, status, "%v", body)
			require.EqualValues(t, tt.total, body["total"])
			require.Equal(t, tt.ids, idsOf(body))
		})
	}

	for query, field := range map[string]string{
		"?status=captured": "status", "?status=PENDING": "status", "?order_id=nope": "order_id",
		"?limit=0": "limit", "?limit=101": "limit", "?offset=-1": "offset",
	} {
		status, body := call(t, a, http.MethodGet, "/api/v1/payments"+query, "", h)
		require.Equal(t, http.StatusBadRequest, status, query)
		code, f := errorOf(t, body)
		require.Equal(t, "BAD_REQUEST_ERROR", code)
		require.Equal(t, field, f, query)
	}
}

// Another merchant's objects answer exactly like unknown ones.
func TestOtherMerchantSeesNotFound(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	p := paySuccessfully(t, a, h)
	orderID, payID := p["order_id"].(string), p["id"].(string)

	_, other := apptest.NewMerchant(t, a, "other@example.com")
	otherKey := http.Header{"X-Api-Key": other["X-Api-Key"]}
	unknownOrder, unknownPay := "order_AAAAAAAAAAAAAAAA", "pay_AAAAAAAAAAAAAAAA"
	tests := []struct {
		method, path, body string
		h                  http.Header
		unknown            string // the same request on an unknown id
	}{
		{"GET", "/api/v1/orders/" + orderID, "", other, "/api/v1/orders/" + unknownOrder},
		{"GET", "/api/v1/orders/" + orderID + "/public", "", otherKey, "/api/v1/orders/" + unknownOrder + "/public"},
		{"GET", "/api/v1/payments/" + payID, "", other, "/api/v1/payments/" + unknownPay},
		{"GET", "/api/v1/payments/" + payID + "/public", "", otherKey, "/api/v1/payments/" + unknownPay + "/public"},
		{"POST", "/api/v1/payments/" + payID + "/capture", "", other, "/api/v1/payments/" + unknownPay + "/capture"},
		{"POST", "/api/v1/payments", upiBody(orderID), other, ""},
		{"POST", "/api/v1/payments/public", upiBody(orderID), otherKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			rec := apptest.Do(t, a.Echo, tt.method, tt.path, tt.body, tt.h)
			require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), `"code":"NOT_FOUND"`)
			unknown, body := tt.unknown, tt.body
			if unknown == "" {
				unknown, body = tt.path, strings.Replace(tt.body, orderID, unknownOrder, 1)
			}
			same := apptest.Do(t, a.Echo, tt.method, unknown, body, tt.h)
			require.Equal(t, same.Body.String(), rec.Body.String())
		})
	}

	// Lists are the merchant's own.
	for _, path := range []string{"/api/v1/orders", "/api/v1/payments", "/api/v1/payments?order_id=" + orderID} {
		_, body := call(t, a, http.MethodGet, path, "", other)
		require.EqualValues(t, 0, body["total"], path)
	}
	// Nothing changed on the first merchant's side.
	_, got := call(t, a, http.MethodGet, "/api/v1/payments/"+payID, "", h)
	require.Equal(t, false, got["captured"])
	_, list := call(t, a, http.MethodGet, "/api/v1/payments?order_id="+orderID, "", h)
	require.EqualValues(t, 1, list["total"])
}

// The checkout's routes need only the publishable key and show only the
// public fields.
func TestPublicRoutes(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.TestPaymentSuccess = false })
	h := apptest.TestMerchant()
	key := http.Header{"X-Api-Key": {merchants.TestMerchantKey}}
	orderID := createOrder(t, a, h, 50000)

	status, o := call(t, a, http.MethodGet, "/api/v1/orders/"+orderID+"/public", "", key)
	require.Equal(t, http.StatusOK, status, "%v", o)
	require.Equal(t, map[string]any{"id": orderID, "amount": float64(50000), "currency": "INR", "status": "created",
		"merchant_name": merchants.TestMerchantName}, o)

	status, p := call(t, a, http.MethodPost, "/api/v1/payments/public",
		cardBody(orderID, "4111111111111111", "12", "2030", "123"), key)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	publicFields := []string{"id", "order_id", "amount", "currency", "method", "status", "error_code", "error_description"}
	require.ElementsMatch(t, publicFields, keysOf(p))
	require.Equal(t, "pending", p["status"])
	require.Equal(t, "card", p["method"])

	payID := p["id"].(string)
	waitFinal(t, a, h, payID)
	status, p = call(t, a, http.MethodGet, "/api/v1/payments/"+payID+"/public", "", key)
	require.Equal(t, http.StatusOK, status, "%v", p)
	require.ElementsMatch(t, publicFields, keysOf(p))
	require.Equal(t, "failed", p["status"])
	require.Equal(t, "PAYMENT_FAILED", p["error_code"])

	// Validation is the same as on the authenticated route.
	status, p = call(t, a, http.MethodPost, "/api/v1/payments/public", fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"bad"}`, orderID), key)
	require.Equal(t, http.StatusBadRequest, status)
	code, field := errorOf(t, p)
	require.Equal(t, "INVALID_VPA", code)
	require.Equal(t, "vpa", field)

	// The key alone opens nothing else; the public routes need the key.
	for _, r := range []struct {
		method, path string
		h            http.Header
	}{
		{"GET", "/api/v1/orders/" + orderID, key},
		{"GET", "/api/v1/payments/" + payID, key},
		{"GET", "/api/v1/payments", key},
		{"POST", "/api/v1/payments", key},
		{"GET", "/api/v1/orders/" + orderID + "/public", nil},
		{"POST", "/api/v1/payments/public", nil},
		{"GET", "/api/v1/payments/" + payID + "/public", http.Header{"X-Api-Key": {"key_nope"}}},
	} {
		rec := apptest.Do(t, a.Echo, r.method, r.path, upiBody(orderID), r.h)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "%s %s", r.method, r.path)
	}
}

func TestSecondPaymentOnPaidOrderRejected(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	p := paySuccessfully(t, a, h)

	for _, path := range []string{"/api/v1/payments", "/api/v1/payments/public"} {
		status, body := call(t, a, http.MethodPost, path, upiBody(p["order_id"].(string)), h)
		require.Equal(t, http.StatusBadRequest, status, "%v", body)
		code, _ := errorOf(t, body)
		require.Equal(t, "BAD_REQUEST_ERROR", code)
	}
	_, list := call(t, a, http.MethodGet, "/api/v1/payments?order_id="+p["order_id"].(string), "", h)
	require.EqualValues(t, 1, list["total"])
}

// A repeated Idempotency-Key replays the payment: no second payment, no
// second job.
func TestCreatePaymentIdempotent(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, pendingForever)
	h := apptest.With(apptest.TestMerchant(), "Idempotency-Key", "pay-once")
	body := upiBody(createOrder(t, a, h, 50000))

	first := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", body, h)
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", body, h)
	require.Equal(t, http.StatusCreated, again.Code)
	require.Equal(t, first.Body.String(), again.Body.String())
	require.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))

	var payments, jobs int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM payments), (SELECT count(*) FROM river_job WHERE kind = 'process_payment')`).Scan(&payments, &jobs))
	require.Equal(t, 1, payments)
	require.Equal(t, 1, jobs)
}

// decide decides a pending payment of the test merchant in its own
// transaction, as the worker would.
func decide(t *testing.T, a *app.App, id string, ok bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	changed, err := a.Payments.DecideTx(ctx, tx, merchants.TestMerchantID, id, ok)
	require.NoError(t, err)
	require.True(t, changed)
	require.NoError(t, tx.Commit(ctx))
}
