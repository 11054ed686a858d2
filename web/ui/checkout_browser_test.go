package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/payments"
)

type event struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func events(tb *tab) []event { return eval[[]event](tb, `window.paygateEvents`) }

// A merchant page on another origin embeds the SDK, opens the modal and the
// customer pays by UPI: onSuccess gets the payment id, which the API
// confirms as successful, and the modal closes.
func TestWidgetUPIPayment(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	h := apptest.TestMerchant()
	orderID := apptest.CreateOrder(t, g.app, h, 50000)
	shopURL := shop(t, g, testKey, orderID)
	tb := newTab(t)

	tb.do(chromedp.Navigate(shopURL), chromedp.Click(chromedp.CSS("#open")),
		chromedp.WaitVisible(chromedp.CSS(`#payment-gateway-modal[data-test-id="payment-modal"] > .modal-overlay > .modal-content > iframe[data-test-id="payment-iframe"] + button[data-test-id="close-modal-button"]`)))
	src := eval[string](tb, `document.querySelector('[data-test-id="payment-iframe"]').src`)
	require.Equal(t, fmt.Sprintf("%s/checkout?order_id=%s&key=%s&embedded=true&origin=%s", g.url, orderID, testKey, url.QueryEscape(shopURL)), src)

	in := tb.frame()
	require.Equal(t, "₹500.00", tb.text(byTest("order-amount"), in))
	require.Equal(t, orderID, tb.text(byTest("order-id"), in))
	require.Equal(t, "Test Merchant", tb.text("#merchant-name", in))
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+"[disabled]"), in),
		chromedp.SendKeys(chromedp.CSS(byTest("vpa-input")), "user@", in),
		chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+"[disabled]"), in),
		chromedp.SendKeys(chromedp.CSS(byTest("vpa-input")), "paytm", in),
		chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+":not([disabled])"), in),
		chromedp.Click(chromedp.CSS(byTest("pay-button")), in),
		chromedp.WaitVisible(chromedp.CSS(byTest("success-state")), in))
	paymentID := tb.text(byTest("payment-id"), in)
	require.Regexp(t, `^pay_[A-Za-z0-9]{16}$`, paymentID)

	tb.waitJS(`window.paygateEvents.length > 0`)
	require.Equal(t, []event{{Type: "success", Data: map[string]any{"paymentId": paymentID, "orderId": orderID, "amount": float64(50000)}}}, events(tb))
	status, p := apptest.Call(t, g.app, http.MethodGet, "/api/v1/payments/"+paymentID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, payments.StatusSuccess, p["status"])
	require.Equal(t, "user@paytm", p["vpa"])

	// Then the modal closes by itself, without onClose.
	tb.do(chromedp.WaitNotPresent(chromedp.CSS(byTest("payment-modal"))))
	require.Len(t, events(tb), 1)
}

// The close button and Escape call onClose and give focus back to the page;
// messages the merchant page posts itself (its own origin) are ignored.
func TestWidgetCloseEscapeAndForeignMessages(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	orderID := apptest.CreateOrder(t, g.app, apptest.TestMerchant(), 50000)
	tb := newTab(t)
	tb.do(chromedp.Navigate(shop(t, g, testKey, orderID)), chromedp.Focus(chromedp.CSS("#open")),
		chromedp.Click(chromedp.CSS("#open")))
	tb.frame()
	// The rest of the page is inert while the modal is open.
	require.True(t, eval[bool](tb, `document.querySelector('h1').inert && document.getElementById('open').inert`))

	// Forged messages of every documented shape, from the merchant page's
	// own origin. A marker message, delivered after them, shows they were
	// all dispatched.
	tb.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`
		postMessage({type: 'payment_success', data: {paymentId: 'pay_AAAAAAAAAAAAAAAA', orderId: %q, amount: 50000}}, '*');
		postMessage({type: 'payment_failed', data: {paymentId: 'pay_AAAAAAAAAAAAAAAA', orderId: %q, error: 'x'}}, '*');
		postMessage({type: 'close_modal'}, '*');
		postMessage('marker', '*');`, orderID, orderID)))
	tb.waitJS(`window.markerSeen === true`)
	require.Empty(t, events(tb))
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("payment-modal"))))

	// The close button.
	tb.do(chromedp.Click(chromedp.CSS(byTest("close-modal-button"))),
		chromedp.WaitNotPresent(chromedp.CSS(byTest("payment-modal"))))
	require.Equal(t, []event{{Type: "close"}}, events(tb))
	require.Equal(t, "open", eval[string](tb, `document.activeElement.id`), "focus returns to the button that opened the modal")
	require.False(t, eval[bool](tb, `document.getElementById('open').inert`))

	// Escape, with focus in the page's part of the modal.
	tb.do(chromedp.Click(chromedp.CSS("#open")))
	tb.frame()
	tb.do(chromedp.Focus(chromedp.CSS(byTest("close-modal-button"))), chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotPresent(chromedp.CSS(byTest("payment-modal"))))
	require.Equal(t, []event{{Type: "close"}, {Type: "close"}}, events(tb))

	// Escape inside the checkout frame: the page asks the SDK to close.
	tb.do(chromedp.Click(chromedp.CSS("#open")))
	in := tb.frame()
	tb.do(chromedp.Focus(chromedp.CSS(byTest("vpa-input")), in), chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotPresent(chromedp.CSS(byTest("payment-modal"))))
	require.Equal(t, []event{{Type: "close"}, {Type: "close"}, {Type: "close"}}, events(tb))
}

// The pay button stays disabled until the form is valid, and a customer is
// never left with a grey button and no reason: the hint under it says what
// is missing, and moving on from an empty field shows that field's message.
func TestCheckoutSaysWhyPayIsDisabled(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	orderID := apptest.CreateOrder(t, g.app, apptest.TestMerchant(), 50000)
	tb := newTab(t)
	tb.do(chromedp.Navigate(fmt.Sprintf("%s/checkout?order_id=%s&key=%s", g.url, orderID, testKey)),
		chromedp.WaitVisible(chromedp.CSS(byTest("upi-form"))))
	disabled := func() bool { return eval[bool](tb, `document.querySelector('[data-test-id="pay-button"]').disabled`) }
	hint := func() string { return tb.text(byTest("pay-hint")) }

	// Untouched: grey button, and the reason under it.
	require.True(t, disabled())
	require.Equal(t, "To pay, enter your UPI ID.", hint())
	// Leaving the (focused) empty UPI ID for the other method's tab is no
	// mistake: no message when the customer comes back.
	require.True(t, eval[bool](tb, `document.activeElement === document.querySelector('[data-test-id="vpa-input"]')`))
	tb.do(chromedp.Click(chromedp.CSS(byTest("method-card"))), chromedp.WaitVisible(chromedp.CSS(byTest("card-form"))),
		chromedp.Click(chromedp.CSS(byTest("method-upi"))), chromedp.WaitVisible(chromedp.CSS(byTest("upi-form"))))
	require.Equal(t, "", eval[string](tb, `document.querySelector('#vpa-error').textContent`))
	tb.do(chromedp.SendKeys(chromedp.CSS(byTest("vpa-input")), "user@"))
	require.Equal(t, "To pay, check your UPI ID.", hint())
	tb.do(chromedp.SendKeys(chromedp.CSS(byTest("vpa-input")), "paytm"),
		chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+":not([disabled])")))
	require.Zero(t, eval[int](tb, `document.querySelector('[data-test-id="pay-hint"]').offsetHeight`), "no hint once it can pay")

	// Card: leaving the empty number for the expiry shows the number's message.
	tb.do(chromedp.Click(chromedp.CSS(byTest("method-card"))), chromedp.WaitVisible(chromedp.CSS(byTest("card-form"))))
	require.True(t, disabled())
	require.Equal(t, "To pay, enter the card number, the expiry date and the CVV.", hint())
	require.Equal(t, "", eval[string](tb, `document.querySelector('#card-number-error').textContent`), "nothing shown before the customer acts")
	tb.do(chromedp.Focus(chromedp.CSS(byTest("card-number-input"))), chromedp.Focus(chromedp.CSS(byTest("expiry-input"))))
	require.Equal(t, "Enter your card number", tb.text("#card-number-error"))
	tb.do(chromedp.Focus(chromedp.CSS(byTest("cvv-input"))))
	require.Equal(t, "Enter the expiry date as MM/YY", tb.text("#expiry-error"))
	tb.do(chromedp.SendKeys(chromedp.CSS(byTest("card-number-input")), "4111 1111"),
		chromedp.SendKeys(chromedp.CSS(byTest("expiry-input")), "1230"))
	require.Equal(t, "To pay, enter the CVV, and check the card number.", hint())
	tb.do(chromedp.SendKeys(chromedp.CSS(byTest("card-number-input")), "1111 1111"),
		chromedp.SendKeys(chromedp.CSS(byTest("cvv-input")), "123"),
		chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+":not([disabled])")))
	require.Equal(t, "", eval[string](tb, `document.querySelector('[data-test-id="pay-hint"]').textContent`))
}

// A card payment on the hosted page, with validation as the customer types.
func TestHostedCheckoutCard(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	h := apptest.TestMerchant()
	orderID := apptest.CreateOrder(t, g.app, h, 123456)
	tb := newTab(t)
	tb.do(chromedp.Navigate(fmt.Sprintf("%s/checkout?order_id=%s&key=%s", g.url, orderID, testKey)),
		chromedp.WaitVisible(chromedp.CSS(byTest("upi-form"))))
	require.Equal(t, "₹1,234.56", tb.text(byTest("order-amount")))

	card := func(sel, keys string) chromedp.Action[chromedp.Void] {
		return chromedp.SendKeys(chromedp.CSS(byTest(sel)), keys)
	}
	tb.do(chromedp.Click(chromedp.CSS(byTest("method-card"))), chromedp.WaitVisible(chromedp.CSS(byTest("card-form"))))
	require.Zero(t, eval[int](tb, `document.querySelectorAll('[data-test-id="upi-form"]').length`), "one form, one pay button")

	// A number that fails Luhn is refused as soon as it is complete.
	tb.do(card("card-number-input", "4111111111111112"))
	require.Equal(t, "4111 1111 1111 1112", eval[string](tb, `document.querySelector('[data-test-id="card-number-input"]').value`))
	require.Equal(t, "Visa", tb.text("#card-network"))
	require.Equal(t, "This card number is not valid", tb.text("#card-number-error"))
	tb.do(clear(byTest("card-number-input")), card("card-number-input", "5555555555554444"))
	require.Equal(t, "Mastercard", tb.text("#card-network"))
	require.Equal(t, "", eval[string](tb, `document.querySelector('#card-number-error').textContent`))

	// An expiry in the past, then a good one.
	tb.do(card("expiry-input", "1220"))
	require.Equal(t, "12/20", eval[string](tb, `document.querySelector('[data-test-id="expiry-input"]').value`))
	require.Equal(t, "This card has expired", tb.text("#expiry-error"))
	tb.do(clear(byTest("expiry-input")), card("expiry-input", "12/30"),
		card("cvv-input", "12"))
	require.True(t, eval[bool](tb, `document.querySelector('[data-test-id="pay-button"]').disabled`), "a CVV of two digits is not enough")
	tb.do(card("cvv-input", "3"), card("cardholder-name-input", "Jane Doe"),
		chromedp.WaitVisible(chromedp.CSS(byTest("pay-button")+":not([disabled])")),
		chromedp.Click(chromedp.CSS(byTest("pay-button"))),
		chromedp.WaitVisible(chromedp.CSS(byTest("success-state"))))
	paymentID := tb.text(byTest("payment-id"))
	require.Equal(t, "Payment successful", tb.text(byTest("success-message")))

	status, p := apptest.Call(t, g.app, http.MethodGet, "/api/v1/payments/"+paymentID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, payments.StatusSuccess, p["status"])
	require.Equal(t, "mastercard", p["card_network"])
	require.Equal(t, "4444", p["card_last4"])
	require.Equal(t, orderID, p["order_id"])
}

// With payments set to fail, the checkout shows the error state and calls
// onFailure; "Try again" creates a new payment on the same order, until the
// order has had CHECKOUT_MAX_FAILED_PAYMENTS: then the refusal is final, and
// offers no retry.
func TestWidgetFailedPaymentAndRetry(t *testing.T) {
	t.Parallel()
	g := newGateway(t, func(c *app.Config) { c.TestPaymentSuccess = false; c.CheckoutMaxFailures = 2 })
	h := apptest.TestMerchant()
	orderID := apptest.CreateOrder(t, g.app, h, 50000)
	tb := newTab(t)
	tb.do(chromedp.Navigate(shop(t, g, testKey, orderID)), chromedp.Click(chromedp.CSS("#open")))
	in := tb.frame()
	tb.do(chromedp.SendKeys(chromedp.CSS(byTest("vpa-input")), "user@paytm", in),
		chromedp.Click(chromedp.CSS(byTest("pay-button")), in),
		chromedp.WaitVisible(chromedp.CSS(byTest("error-state")), in))
	require.Equal(t, payments.FailedDescription, tb.text(byTest("error-message"), in))
	tb.waitJS(`window.paygateEvents.length === 1`)
	first := events(tb)[0]
	require.Equal(t, "failure", first.Type)
	require.Equal(t, orderID, first.Data["orderId"])
	require.Equal(t, payments.FailedDescription, first.Data["error"])
	firstID := first.Data["paymentId"].(string)

	tb.do(chromedp.Click(chromedp.CSS(byTest("retry-button")), in))
	tb.waitJS(`window.paygateEvents.length === 2`)
	second := events(tb)[1]
	require.Equal(t, "failure", second.Type)
	require.NotEqual(t, firstID, second.Data["paymentId"], "a retry is a new payment")
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("error-state")), in), chromedp.WaitVisible(chromedp.CSS(byTest("payment-modal"))))

	status, list := apptest.Call(t, g.app, http.MethodGet, "/api/v1/payments?order_id="+orderID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.ElementsMatch(t, []string{firstID, second.Data["paymentId"].(string)}, apptest.IDsOf(list))

	tb.do(chromedp.Click(chromedp.CSS(byTest("retry-button")), in))
	// The frame's document is another origin's: its text is read through
	// the frame, until the refusal has replaced the failure's.
	for !strings.Contains(tb.text(byTest("error-message"), in), "2 failed payments") {
		time.Sleep(20 * time.Millisecond)
	}
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("error-state")), in),
		chromedp.WaitNotVisible(chromedp.CSS(byTest("retry-button")), in))
	status, list = apptest.Call(t, g.app, http.MethodGet, "/api/v1/payments?order_id="+orderID, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, apptest.IDsOf(list), 2, "the refused attempt made no payment")
}

// An order that cannot be paid shows why, never a blank page.
func TestHostedCheckoutOrderErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	h := apptest.TestMerchant()
	paid := apptest.PaySuccessfully(t, g.app, h)["order_id"].(string)
	_, other := apptest.NewMerchant(t, g.app, "other@example.com")
	othersOrder := apptest.CreateOrder(t, g.app, other, 50000)
	tb := newTab(t)
	for _, c := range []struct{ name, query, title string }{
		{"unknown", "order_id=order_AAAAAAAAAAAAAAAA&key=" + testKey, "Order not found"},
		{"other merchant's", "order_id=" + othersOrder + "&key=" + testKey, "Order not found"},
		{"paid", "order_id=" + paid + "&key=" + testKey, "Already paid"},
		{"bad key", "order_id=" + othersOrder + "&key=key_nope", "Checkout unavailable"},
		{"no order", "key=" + testKey, "Incomplete checkout link"},
	} {
		tb.do(chromedp.Navigate(g.url+"/checkout?"+c.query), chromedp.WaitVisible(chromedp.CSS(byTest("error-state"))))
		require.Equal(t, c.title, tb.text("#error-title"), c.name)
		require.NotEmpty(t, tb.text(byTest("error-message")), c.name)
		require.False(t, eval[bool](tb, `!!document.querySelector('[data-test-id="pay-button"]').offsetParent`), "%s: nothing to pay", c.name)
	}
}

// A failing browser test leaves a screenshot and the console log on disk.
func TestFailureArtifacts(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	tb := newTab(t)
	tb.do(chromedp.Navigate(g.url+"/checkout"), chromedp.WaitVisible(chromedp.CSS(byTest("error-state"))),
		chromedp.Evaluate[chromedp.Void](`console.log('artifact check 42')`))
	tb.waitJS(`true`)
	dir := t.TempDir()
	for i := 0; ; i++ { // the console event arrives asynchronously
		require.NoError(t, tb.saveArtifacts(dir))
		log, err := os.ReadFile(filepath.Join(dir, "console.log"))
		require.NoError(t, err)
		if strings.Contains(string(log), "artifact check 42") {
			break
		}
		require.Less(t, i, 100, "console.log lacks the page's message: %s", log)
		time.Sleep(20 * time.Millisecond)
	}
	shot, err := os.ReadFile(filepath.Join(dir, "screenshot.png"))
	require.NoError(t, err)
	require.Equal(t, "\x89PNG", string(shot[:4]))
}
