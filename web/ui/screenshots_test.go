package ui_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/merchants"
)

// TestScreenshots saves the checkout and every dashboard page at a laptop
// and a phone size into $PAYGATE_SCREENSHOTS, for a person to look at
// (`make screenshots`). Without the variable it is skipped.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("PAYGATE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set PAYGATE_SCREENSHOTS to a folder to save the screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	g := newGateway(t)
	h := apptest.TestMerchant()
	hook := newReceiver(t)
	status, _ := apptest.Call(t, g.app, http.MethodPut, "/api/v1/webhooks/config", fmt.Sprintf(`{"webhook_url":%q}`, hook.url), h)
	require.Equal(t, http.StatusOK, status)
	for _, amount := range []int{50000, 129900, 24900, 349900, 9900} {
		apptest.Call(t, g.app, http.MethodPost, "/api/v1/payments", apptest.UPIBody(apptest.CreateOrder(t, g.app, h, amount)), h)
	}
	paid := apptest.PaySuccessfully(t, g.app, h)
	status, _ = apptest.Call(t, g.app, http.MethodPost, "/api/v1/payments/"+paid["id"].(string)+"/refunds", `{"amount":10000,"reason":"Damaged box"}`, h)
	require.Equal(t, http.StatusCreated, status)
	orderID := apptest.CreateOrder(t, g.app, h, 149900)
	checkout := fmt.Sprintf("%s/checkout?order_id=%s&key=%s", g.url, orderID, testKey)
	fresh, _ := apptest.NewMerchant(t, g.app, "new@example.com")

	tb := newTab(t)
	sizes := []struct {
		name          string
		width, height int64
	}{{"laptop", 1280, 800}, {"phone", 390, 844}}
	shoot := func(name string, size int) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // let a chart or a transition settle: a picture, not an assertion
		tb.do(chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		file := filepath.Join(dir, fmt.Sprintf("%s-%s.png", name, sizes[size].name))
		require.NoError(t, os.WriteFile(file, png, 0o644))
		t.Logf("saved %s", file)
	}
	for i, s := range sizes {
		view := chromedp.EmulateViewport(s.width, s.height)
		tb.do(view, chromedp.Navigate(checkout), chromedp.WaitVisible(chromedp.CSS(byTest("upi-form"))))
		shoot("checkout-upi", i)
		tb.do(chromedp.Click(chromedp.CSS(byTest("method-card"))),
			chromedp.SendKeys(chromedp.CSS(byTest("card-number-input")), "4111111111111111"),
			chromedp.SendKeys(chromedp.CSS(byTest("expiry-input")), "0"),
			chromedp.Blur(chromedp.CSS(byTest("expiry-input"))))
		shoot("checkout-card", i)
		tb.do(view, chromedp.Navigate(shop(t, g, testKey, orderID)), chromedp.Click(chromedp.CSS("#open")))
		tb.frame()
		shoot("checkout-modal", i)
		tb.do(view, chromedp.Navigate(fmt.Sprintf("%s/checkout?order_id=%s&key=%s", g.url, paid["order_id"], testKey)),
			chromedp.WaitVisible(chromedp.CSS(byTest("error-state"))))
		shoot("checkout-already-paid", i)

		tb.do(view, chromedp.Navigate(g.url+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))))
		shoot("dashboard-sign-in", i)
		signIn(tb, g, merchants.TestMerchantSecret)
		tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("stats-container"))))
		shoot("dashboard-home", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/transactions"), chromedp.WaitVisible(chromedp.CSS(byTest("transactions-table"))))
		shoot("dashboard-transactions", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/transactions/"+paid["id"].(string)), chromedp.WaitVisible(chromedp.CSS(byTest("refunds-table"))))
		shoot("dashboard-payment", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS(byTest("webhook-logs-table"))),
			chromedp.Click(chromedp.CSS(byTest("webhook-details-button"))), chromedp.WaitVisible(chromedp.CSS(byTest("webhook-attempt"))))
		shoot("dashboard-webhooks", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/docs"), chromedp.WaitVisible(chromedp.CSS(byTest("api-docs"))))
		shoot("dashboard-docs", i)
		tb.do(chromedp.Click(chromedp.CSS(byTest("logout-button"))), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))))

		// A new merchant: no payments, no deliveries.
		signInAs(tb, g, fresh.APIKey, fresh.APISecret)
		tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("transactions-table"))))
		shoot("dashboard-empty-home", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/transactions"), chromedp.WaitVisible(chromedp.CSS(byTest("transactions-table"))))
		shoot("dashboard-empty-transactions", i)
		tb.do(chromedp.Navigate(g.url+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS(byTest("webhook-logs-table"))))
		shoot("dashboard-empty-webhooks", i)
		tb.do(chromedp.Click(chromedp.CSS(byTest("logout-button"))), chromedp.WaitVisible(chromedp.CSS(byTest("login-form"))))
	}
}
