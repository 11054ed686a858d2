package payments_test

import (
	"context"
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

// The shared request helpers, under the short names these tests use.
var (
	call            = apptest.Call
	errorOf         = apptest.ErrorOf
	createOrder     = apptest.CreateOrder
	upiBody         = apptest.UPIBody
	pay             = apptest.Pay
	paySuccessfully = apptest.PaySuccessfully
	waitFinal       = apptest.WaitPayment
	idsOf           = apptest.IDsOf
)

func cardBody(orderID, number, month, year, cvv string) string {
	return fmt.Sprintf(`{"order_id":%q,"method":"card","card":{"number":%q,"expiry_month":%q,"expiry_year":%q,"cvv":%q,"holder_name":"Jane Doe"}}`,
		orderID, number, month, year, cvv)
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

// riverDecides leaves the app's payments to River's worker, so that each
// has its job (the process would otherwise decide the payments it creates
// itself: first.go).
func riverDecides(a *app.App) *app.App {
	a.Payments.StopFirstDecisions(context.Background())
	return a
}

// riverDecidesNothing stops the app's River client from working jobs, so
// that a test can look at the jobs given back before they run.
func riverDecidesNothing(a *app.App) *app.App {
	if err := a.River.Stop(context.Background()); err != nil {
		panic(err)
	}
	return a
}

// pendingForever keeps payments pending for the test's life, so a test can
// decide them itself.
func pendingForever(c *app.Config) { c.TestProcessingDelay = time.Hour }

// pendingPayment starts an app whose payments stay pending, and makes one
// on a new order of the test merchant (whose headers are h).
func pendingPayment(t *testing.T) (a *app.App, h http.Header, orderID, paymentID string) {
	t.Helper()
	a, h = apptest.New(t, pendingForever), apptest.TestMerchant()
	orderID = createOrder(t, a, h, 50000)
	status, p := call(t, a, http.MethodPost, "/api/v1/payments", upiBody(orderID), h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	return a, h, orderID, p["id"].(string)
}
