package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
)

type delivery struct {
	header http.Header
	body   []byte
}

// receiver is the merchant's endpoint: it records every delivery.
type receiver struct {
	mu  sync.Mutex
	got []delivery
	srv *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{req.Header.Clone(), b})
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// waitEvents waits until n deliveries arrived and returns them.
func (r *receiver) waitEvents(t *testing.T, n int) []delivery {
	t.Helper()
	var out []delivery
	waitFor(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		out = append([]delivery(nil), r.got...)
		return len(out) >= n
	})
	return out
}

// The whole path a merchant integrates: an order, a payment processed by the
// worker, and its payment.created and payment.success webhooks, each
// verified by an off-the-shelf Standard Webhooks library and by the hex
// HMAC of the raw body.
func TestPaymentWebhooksEndToEnd(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.TestProcessingDelay = 50 * time.Millisecond })
	r := newReceiver(t)
	h := apptest.TestMerchant()

	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+r.srv.URL+`"}`, h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/regenerate-secret", "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var sec struct {
		Secret string `json:"webhook_secret"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &sec))

	rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":50000,"receipt":"r-1"}`, h)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var order struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &order))
	rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments",
		`{"order_id":"`+order.ID+`","method":"upi","vpa":"user@paytm"}`, h)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var payment struct{ ID, Status string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &payment))
	require.Equal(t, "pending", payment.Status)

	got := r.waitEvents(t, 2)
	wh, err := standardwebhooks.NewWebhook(sec.Secret)
	require.NoError(t, err)
	var events []string
	for _, d := range got {
		require.NoError(t, wh.Verify(d.body, d.header), "standard webhooks signature")
		mac := hmac.New(sha256.New, []byte(sec.Secret))
		mac.Write(d.body)
		require.Equal(t, hex.EncodeToString(mac.Sum(nil)), d.header.Get("X-Webhook-Signature"))
		var body struct {
			Event     string `json:"event"`
			Timestamp int64  `json:"timestamp"`
			Data      struct {
				Payment struct{ ID, OrderID, Status string } `json:"payment"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.body, &body))
		require.Equal(t, payment.ID, body.Data.Payment.ID)
		require.NotZero(t, body.Timestamp)
		events = append(events, body.Event+":"+body.Data.Payment.Status)
	}
	require.ElementsMatch(t, []string{"payment.created:pending", "payment.success:success"}, events)

	// The order is paid and the logs show both deliveries as successful.
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders/"+order.ID, "", h)
	require.Contains(t, rec.Body.String(), `"status":"paid"`)
	// (recorded just after the receiver answered, so poll).
	waitFor(t, func() bool {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks?status=success", "", h)
		return json.Valid(rec.Body.Bytes()) && strings.Contains(rec.Body.String(), `"total":2`)
	})
}
