package refunds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db/dbtest"
	"paygate/refunds"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// fixture is a gateway whose test merchant has a successful payment of 50000.
type fixture struct {
	a         *app.App
	h         http.Header
	paymentID string
}

func setup(t *testing.T, mutate ...func(*app.Config)) fixture {
	t.Helper()
	a := apptest.New(t, mutate...)
	h := apptest.TestMerchant()
	return fixture{a: a, h: h, paymentID: apptest.PaySuccessfully(t, a, h)["id"].(string)}
}

// refund asks for a refund of the fixture's payment.
func (f fixture) refund(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	return apptest.Call(t, f.a, http.MethodPost, "/api/v1/payments/"+f.paymentID+"/refunds", body, f.h)
}

// amountBody is a refund request for amount.
func amountBody(amount int) string { return fmt.Sprintf(`{"amount":%d}`, amount) }

// waitProcessed polls the refund until it is processed.
func waitProcessed(t *testing.T, f fixture, id string) map[string]any {
	t.Helper()
	return apptest.Await(t, f.a, f.h, "/api/v1/refunds/"+id, func(r map[string]any) bool { return r["status"] != refunds.StatusPending })
}

// description is the description of an error answer.
func description(body map[string]any) any { return body["error"].(map[string]any)["description"] }

// receiver is the merchant's webhook endpoint: it answers 200 and keeps the
// bodies.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

// riverDelivers leaves the fixture's first delivery attempts to River, so
// that each event's job stays to be counted (the process would otherwise
// claim it: webhooks/first.go).
func riverDelivers(f fixture) { f.a.Webhooks.StopFirstAttempts(context.Background()) }

// receive points the test merchant's webhooks, for the given events, at a
// new receiver.
func receive(t *testing.T, f fixture, events ...string) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	config, err := json.Marshal(map[string]any{"webhook_url": r.URL, "events": events})
	require.NoError(t, err)
	status, body := apptest.Call(t, f.a, http.MethodPut, "/api/v1/webhooks/config", string(config), f.h)
	require.Equal(t, http.StatusOK, status, "%v", body)
	return r
}

// wait returns the first n bodies received, polling a bounded number of
// times.
func (r *receiver) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	for range 1500 {
		r.mu.Lock()
		got := append([][]byte(nil), r.bodies...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("received fewer than %d webhooks", n)
	return nil
}
