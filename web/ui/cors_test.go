package ui_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
)

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v), "%s", b)
	return v
}

// The publishable routes answer preflights and carry
// Access-Control-Allow-Origin, errors included, so a merchant's page can call
// them; secret-key routes never send CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	p := apptest.PaySuccessfully(t, a, h)
	order := apptest.CreateOrder(t, a, h, 50000)
	shop := http.Header{"Origin": {"https://shop.example"}}
	preflight := func(method string) http.Header {
		return apptest.With(shop, "Access-Control-Request-Method", method,
			"Access-Control-Request-Headers", "x-api-key, content-type, idempotency-key")
	}
	public := apptest.With(shop, "X-Api-Key", apptest.TestMerchant().Get("X-Api-Key"))

	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/orders/" + order + "/public"},
		{http.MethodPost, "/api/v1/payments/public"},
		{http.MethodGet, "/api/v1/payments/" + p["id"].(string) + "/public"},
	} {
		rec := apptest.Do(t, a.Echo, http.MethodOptions, c.path, "", preflight(c.method))
		require.Equal(t, http.StatusNoContent, rec.Code, c.path)
		require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"), c.path)
		require.Contains(t, rec.Header().Get("Access-Control-Allow-Methods"), c.method, c.path)
		for _, hdr := range []string{"X-Api-Key", "Content-Type", "Idempotency-Key"} {
			require.Contains(t, rec.Header().Get("Access-Control-Allow-Headers"), hdr, c.path)
		}
		require.NotContains(t, rec.Header().Get("Access-Control-Allow-Headers"), "X-Api-Secret")
		require.Empty(t, rec.Header().Get("Access-Control-Allow-Credentials"))
	}

	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders/"+order+"/public", "", public)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments/public", apptest.UPIBody(order), public)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	// An error is readable by the page too.
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/payments/pay_AAAAAAAAAAAAAAAA/public", "", public)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders/"+order+"/public", "", apptest.With(shop, "X-Api-Key", "key_nope"))
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))

	// Secret-key routes: no CORS header on a preflight or on the answer.
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/orders/" + order},
		{http.MethodPost, "/api/v1/orders"},
		{http.MethodPost, "/api/v1/payments"},
		{http.MethodGet, "/api/v1/payments/" + p["id"].(string)},
		{http.MethodPost, "/api/v1/payments/" + p["id"].(string) + "/refunds"},
		{http.MethodGet, "/api/v1/webhooks"},
	} {
		rec := apptest.Do(t, a.Echo, http.MethodOptions, c.path, "", preflight(c.method))
		require.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), "preflight %s %s", c.method, c.path)
		rec = apptest.Do(t, a.Echo, c.method, c.path, "", apptest.With(h, "Origin", "https://shop.example"))
		require.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), "%s %s", c.method, c.path)
	}
}
