package ui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/merchants"
	"paygate/webhooks"
)

// receiver is the merchant's webhook endpoint: it counts deliveries by
// webhook-id.
type receiver struct {
	url string
	mu  sync.Mutex
	got map[string]int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.got[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hook"
	return r
}

func (r *receiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// awaitCount waits (boundedly) until the receiver got id n times.
func (r *receiver) awaitCount(t *testing.T, id string, n int) {
	t.Helper()
	for i := 0; r.count(id) < n; i++ {
		require.Less(t, i, 1000, "webhook %s reached the receiver %d times, want %d", id, r.count(id), n)
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, n, r.count(id))
}

// signIn signs in as the test merchant on the dashboard's form.
func signIn(tb *tab, g gateway, secret string) {
	tb.t.Helper()
	signInAs(tb, g, merchants.TestMerchantKey, secret)
}

// signInAs signs in with key and secret on the dashboard's form.
func signInAs(tb *tab, g gateway, key, secret string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(g.url+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))),
		chromedp.SendKeys(chromedp.CSS(byTest("login-key-input")), key),
		chromedp.SendKeys(chromedp.CSS(byTest("login-secret-input")), secret),
		chromedp.Click(chromedp.CSS(byTest("login-button"))))
}

// A new merchant, with no payments and no deliveries, still gets every
// element docs/API.md lists: the stats, and the tables with their empty
// state inside.
func TestDashboardEmptyMerchant(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	m, _ := apptest.NewMerchant(t, g.app, "fresh@example.com")
	tb := newTab(t)
	signInAs(tb, g, m.APIKey, m.APISecret)
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("dashboard"))))
	require.Equal(t, m.APIKey, tb.text(byTest("api-key")))
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("stats-container"))))
	require.Equal(t, "0", tb.text(byTest("total-transactions")))
	require.Equal(t, "₹0.00", tb.text(byTest("total-amount")))
	require.Equal(t, "—", tb.text(byTest("success-rate")))
	count := func(id string) int {
		return eval[int](tb, fmt.Sprintf(`document.querySelectorAll(%q).length`, byTest(id)))
	}
	// Home's recent payments.
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("transactions-table"))))
	require.Zero(t, count("transaction-row"))
	require.Contains(t, tb.text(byTest("transactions-table")), "No payments yet")

	tb.do(chromedp.Navigate(g.url+"/dashboard/transactions"), chromedp.WaitVisible(chromedp.CSS(byTest("transactions-table"))))
	require.Zero(t, count("transaction-row"))
	require.Contains(t, tb.text(byTest("transactions-table")), "No payments yet")
	// A filter with no match keeps the table too.
	tb.do(chromedp.SetValue(chromedp.CSS(byTest("status-filter")), "failed"))
	tb.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-test-id="status-filter"]').dispatchEvent(new Event('change'))`))
	tb.waitJS(`document.querySelector('[data-test-id="transactions-table"]')?.textContent.includes('No failed payments')`)

	tb.do(chromedp.Navigate(g.url+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS(byTest("webhook-logs-table"))))
	require.Zero(t, count("webhook-log-item"))
	require.Contains(t, tb.text(byTest("webhook-logs-table")), "No deliveries yet")
	require.Equal(t, "", eval[string](tb, `document.querySelector('[data-test-id="webhook-url-input"]').value`))
}

// The dashboard, from sign-in to sign-out: a wrong secret is refused, the
// payment is in the table, a refund is made from its page, its webhook log
// is listed and retried from the page, and the retry reaches the receiver.
func TestDashboard(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	h := apptest.TestMerchant()
	hook := newReceiver(t)
	status, _ := apptest.Call(t, g.app, http.MethodPut, "/api/v1/webhooks/config",
		fmt.Sprintf(`{"webhook_url":%q,"events":["payment.success"]}`, hook.url), h)
	require.Equal(t, http.StatusOK, status)
	p := apptest.PaySuccessfully(t, g.app, h)
	paymentID := p["id"].(string)
	log := apptest.Await(t, g.app, h, "/api/v1/webhooks?event=payment.success", func(l map[string]any) bool {
		data := l["data"].([]any)
		return len(data) == 1 && data[0].(map[string]any)["status"] == webhooks.StatusSuccess
	})["data"].([]any)[0].(map[string]any)
	logID := log["id"].(string)
	hook.awaitCount(t, logID, 1)

	tb := newTab(t)
	// A wrong secret is refused on the form.
	signIn(tb, g, "secret_wrong")
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("login-error"))))
	require.Contains(t, tb.text(byTest("login-error")), "do not match")
	require.Empty(t, eval[string](tb, `document.querySelector('[data-test-id="login-secret-input"]').value`))

	// The right one signs in; the session cookie is out of the page's reach.
	signIn(tb, g, merchants.TestMerchantSecret)
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("dashboard"))))
	require.Equal(t, merchants.TestMerchantKey, tb.text(byTest("api-key")))
	require.NotContains(t, tb.text(byTest("api-secret")), merchants.TestMerchantSecret)
	require.Equal(t, "1", tb.text(byTest("total-transactions")))
	require.Equal(t, "₹500.00", tb.text(byTest("total-amount")))
	require.Equal(t, "100%", tb.text(byTest("success-rate")))
	require.Equal(t, "", eval[string](tb, `document.cookie`))
	require.Equal(t, 14, eval[int](tb, `document.querySelectorAll('.chart-svg .bar').length`))

	// The payment in the transactions table.
	row := fmt.Sprintf(`[data-test-id="transaction-row"][data-payment-id=%q]`, paymentID)
	tb.do(chromedp.Navigate(g.url+"/dashboard/transactions"), chromedp.WaitVisible(chromedp.CSS(row)))
	for id, want := range map[string]string{"payment-id": paymentID, "order-id": p["order_id"].(string),
		"amount": "₹500.00", "method": "upi", "status": "success"} {
		require.Equal(t, want, tb.text(row+" "+byTest(id)), id)
	}
	require.NotEmpty(t, tb.text(row+" "+byTest("created-at")))

	// A partial refund from its page, then one the API refuses.
	tb.do(chromedp.Click(chromedp.CSS(row+" a"+byTest("payment-id"))), chromedp.WaitVisible(chromedp.CSS(byTest("refund-form"))),
		chromedp.SetValue(chromedp.CSS(byTest("refund-amount-input")), "100.50"),
		chromedp.SendKeys(chromedp.CSS(byTest("refund-reason-input")), "Damaged box"),
		chromedp.Click(chromedp.CSS(byTest("refund-button"))),
		chromedp.WaitVisible(chromedp.CSS(byTest("refund-row"))))
	status, refunds := apptest.Call(t, g.app, http.MethodGet, "/api/v1/payments/"+paymentID+"/refunds", "", h)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, refunds["data"], 1)
	refund := refunds["data"].([]any)[0].(map[string]any)
	require.Equal(t, float64(10050), refund["amount"])
	require.Equal(t, "Damaged box", refund["reason"])
	require.Equal(t, refund["id"], tb.text(byTest("refund-id")))
	tb.do(chromedp.SetValue(chromedp.CSS(byTest("refund-amount-input")), "450.00"),
		chromedp.Click(chromedp.CSS(byTest("refund-button"))),
		chromedp.WaitVisible(chromedp.CSS(byTest("refund-message")+".notice-error")))
	require.Equal(t, "Refund amount exceeds available amount", tb.text(byTest("refund-message")))

	// The payment's webhook log, its attempts, and a retry that reaches the receiver.
	logRow := fmt.Sprintf(`[data-test-id="webhook-log-item"][data-webhook-id=%q]`, logID)
	tb.do(chromedp.Navigate(g.url+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS(logRow)))
	require.Equal(t, hook.url, eval[string](tb, `document.querySelector('[data-test-id="webhook-url-input"]').value`))
	require.Equal(t, merchants.TestMerchantWebhookSecret, tb.text(byTest("webhook-secret")))
	for id, want := range map[string]string{"webhook-event": "payment.success", "webhook-status": "success",
		"webhook-attempts": "1", "webhook-response-code": "200"} {
		require.Equal(t, want, tb.text(logRow+" "+byTest(id)), id)
	}
	require.NotEmpty(t, tb.text(logRow+" "+byTest("webhook-last-attempt")))
	tb.do(chromedp.Click(chromedp.CSS(logRow+" "+byTest("webhook-details-button"))),
		chromedp.WaitVisible(chromedp.CSS(byTest("webhook-attempt"))))
	tb.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-test-id="retry-webhook-button"][data-webhook-id=%q]`, logID))))
	hook.awaitCount(t, logID, 2)

	// A sign-out that gets no answer (offline) leaves the browser signed in,
	// and says so, instead of showing the form over a live session.
	eval[bool](tb, `window.onlineFetch = window.fetch; window.fetch = () => Promise.reject(new TypeError('offline')); true`)
	tb.do(chromedp.Click(chromedp.CSS(byTest("logout-button"))))
	tb.waitJS(`document.querySelector('.account [role="alert"]:not([hidden])')`)
	require.Contains(t, tb.text(`.account [role="alert"]`), "Sign-out failed")
	require.False(t, eval[bool](tb, `!!document.querySelector('[data-test-id="login-form"]')`))
	eval[bool](tb, `window.fetch = window.onlineFetch; true`)

	// Sign out ends the session on the server too.
	tb.do(chromedp.Click(chromedp.CSS(byTest("logout-button"))), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))))
	require.Equal(t, 401, eval[int](tb, `fetch('/dashboard/api/me').then((r) => r.status)`, chromedp.EvalAwaitPromise))
	tb.do(chromedp.Navigate(g.url+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))))
}
