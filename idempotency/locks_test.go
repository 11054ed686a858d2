package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/idempotency"
)

// holdPayment locks a payment's row, as a capture or refund in flight does,
// until the returned function is called.
func holdPayment(t *testing.T, a *app.App, id string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) }) // a no-op once released
	_, err = tx.Exec(ctx, `SELECT 1 FROM payments WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	return func() { require.NoError(t, tx.Commit(ctx)) }
}

// refundInBackground posts a refund of the payment and waits until it is
// blocked on a row lock.
func refundInBackground(t *testing.T, a *app.App, paymentID string, h http.Header) <-chan *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		done <- apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/"+paymentID+"/refunds", `{"amount":100}`, h)
	}()
	for i := 0; ; i++ {
		var waiting int
		require.NoError(t, a.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting))
		if waiting > 0 {
			return done
		}
		require.Less(t, i, 1000, "the refund never waited on the payment's lock")
		time.Sleep(10 * time.Millisecond)
	}
}

// The key's lock timeout bounds only the claim of the key: a keyed refund
// that waits on the payment's row lock for longer still succeeds.
func TestKeyedRequestMayWaitPastTheKeyLockTimeout(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	a.Idempotency.LockTimeout = 200 * time.Millisecond
	h := apptest.TestMerchant()
	p := apptest.PaySuccessfully(t, a, h)["id"].(string)

	release := holdPayment(t, a, p)
	done := refundInBackground(t, a, p, apptest.With(h, idempotency.Header, "slow-refund"))
	time.Sleep(4 * a.Idempotency.LockTimeout) // waiting, well past the key's lock timeout
	release()
	rec := <-done
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
}

// A lock timeout the operator configured is answered 503 (retry), never
// 500, with or without a key, and nothing is remembered under the key.
func TestLockTimeoutIsServiceUnavailable(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	h := apptest.TestMerchant()
	p := apptest.PaySuccessfully(t, a, h)["id"].(string)
	var dbName string
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName))
	_, err := a.Pool.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s SET lock_timeout = '100ms'`, pgx.Identifier{dbName}.Sanitize()))
	require.NoError(t, err)
	a.Pool.Reset() // new connections take the setting

	for _, hdr := range []http.Header{h, apptest.With(h, idempotency.Header, "timed-out")} {
		release := holdPayment(t, a, p)
		rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/"+p+"/refunds", `{"amount":100}`, hdr)
		release()
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), `"code":"SERVICE_UNAVAILABLE"`)
	}
	// The key was not remembered: the same request goes through now.
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/"+p+"/refunds", `{"amount":100}`,
		apptest.With(h, idempotency.Header, "timed-out"))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.False(t, idempotency.IsReplay(rec.Header()))
}
