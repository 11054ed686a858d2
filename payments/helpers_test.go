package payments_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db/dbtest"
	"paygate/payments"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// call sends a request and decodes the JSON answer.
func call(t *testing.T, a *app.App, method, path, body string, h http.Header) (int, map[string]any) {
	t.Helper()
	rec := apptest.Do(t, a.Echo, method, path, body, h)
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "%s %s: %s", method, path, rec.Body.String())
	return rec.Code, out
}

// errorOf returns the code and field of an error answer.
func errorOf(t *testing.T, body map[string]any) (code, field string) {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	require.True(t, ok, "not an error envelope: %v", body)
	field, _ = e["field"].(string)
	return e["code"].(string), field
}

func createOrder(t *testing.T, a *app.App, h http.Header, amount int) string {
	t.Helper()
	status, o := call(t, a, http.MethodPost, "/api/v1/orders", fmt.Sprintf(`{"amount":%d}`, amount), h)
	require.Equal(t, http.StatusCreated, status, "%v", o)
	return o["id"].(string)
}

func upiBody(orderID string) string {
	return fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"user@paytm"}`, orderID)
}

func cardBody(orderID, number, month, year, cvv string) string {
	return fmt.Sprintf(`{"order_id":%q,"method":"card","card":{"number":%q,"expiry_month":%q,"expiry_year":%q,"cvv":%q,"holder_name":"Jane Doe"}}`,
		orderID, number, month, year, cvv)
}

// pay creates a UPI payment on a new order and returns the payment.
func pay(t *testing.T, a *app.App, h http.Header) map[string]any {
	t.Helper()
	status, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(createOrder(t, a, h, 50000)), h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	return p
}

// paySuccessfully pays a new order and waits until the payment succeeded.
func paySuccessfully(t *testing.T, a *app.App, h http.Header) map[string]any {
	t.Helper()
	p := waitFinal(t, a, h, pay(t, a, h)["id"].(string))
	require.Equal(t, payments.StatusSuccess, p["status"])
	return p
}

// waitFinal polls the payment until it leaves pending. The loop is bounded
// by a count, not a deadline assertion: it fails only if the payment never
// gets decided.
func waitFinal(t *testing.T, a *app.App, h http.Header, id string) map[string]any {
	t.Helper()
	for range 1000 {
		status, p := call(t, a, http.MethodGet, "/api/v1/payments/"+id, "", h)
		require.Equal(t, http.StatusOK, status, "%v", p)
		if p["status"] != payments.StatusPending {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("payment %s never left pending", id)
	return nil
}

// cardNumber is a Luhn-valid number of length digits starting with prefix.
func cardNumber(prefix string, length int) string {
	body := prefix + strings.Repeat("0", length-len(prefix)-1)
	for d := '0'; d <= '9'; d++ {
		if payments.Luhn(body + string(d)) {
			return body + string(d)
		}
	}
	panic("unreachable")
}

// keysOf returns the field names of a JSON object, in no order.
func keysOf(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// pendingForever keeps payments pending for the test's life, so a test can
// decide them itself.
func pendingForever(c *app.Config) { c.TestProcessingDelay = time.Hour }
