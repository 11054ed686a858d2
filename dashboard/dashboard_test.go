package dashboard_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/dashboard"
	"paygate/db/dbtest"
	"paygate/merchants"
	"paygate/webhooks"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// The dashboard's own origin, as the browser sends it.
const origin = "http://example.com"

func signInBody(key, secret string) string {
	return `{"api_key":"` + key + `","api_secret":"` + secret + `"}`
}

// signIn signs in and returns the session cookie as a request header.
func signIn(t *testing.T, a *app.App, key, secret string) http.Header {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/dashboard/api/session", signInBody(key, secret), http.Header{"Origin": {origin}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	return http.Header{"Cookie": {cookies[0].Name + "=" + cookies[0].Value}, "Origin": {origin}}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	for _, c := range []struct{ name, body string }{
		{"wrong secret", signInBody(merchants.TestMerchantKey, "secret_wrong")},
		{"unknown key", signInBody("key_nope", merchants.TestMerchantSecret)},
		{"empty", `{}`},
	} {
		rec := apptest.Do(t, a.Echo, http.MethodPost, "/dashboard/api/session", c.body, http.Header{"Origin": {origin}})
		require.Equal(t, http.StatusUnauthorized, rec.Code, c.name)
		code, _ := apptest.ErrorOf(t, decode(t, rec))
		require.Equal(t, "UNAUTHORIZED", code, c.name)
		require.Empty(t, rec.Result().Cookies(), c.name)
	}

	rec := apptest.Do(t, a.Echo, http.MethodPost, "/dashboard/api/session",
		signInBody(merchants.TestMerchantKey, merchants.TestMerchantSecret), http.Header{"Origin": {origin}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.NotContains(t, rec.Body.String(), merchants.TestMerchantSecret)
	ck := rec.Result().Cookies()[0]
	require.Equal(t, dashboard.CookieName, ck.Name)
	require.Equal(t, "/dashboard", ck.Path)
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.False(t, ck.Secure, "plain HTTP")
	require.InDelta(t, dashboard.SessionTTL.Seconds(), float64(ck.MaxAge), 5)
	require.WithinDuration(t, time.Now().Add(dashboard.SessionTTL), ck.Expires, 5*time.Second)

	// Only the token's hash is stored.
	var stored []byte
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT token_hash FROM dashboard_sessions`).Scan(&stored))
	sum := sha256.Sum256([]byte(ck.Value))
	require.Equal(t, sum[:], stored)

	// Over HTTPS, as a TLS proxy on the loopback reports it, the cookie is
	// Secure. (Echo trusts X-Forwarded-Proto only from such a peer.)
	srv := httptest.NewServer(a.Echo)
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/dashboard/api/session",
		strings.NewReader(signInBody(merchants.TestMerchantKey, merchants.TestMerchantSecret)))
	require.NoError(t, err)
	req.Header = http.Header{"Origin": {"https://" + req.Host}, "X-Forwarded-Proto": {"https"}, "Content-Type": {"application/json"}}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.True(t, res.Cookies()[0].Secure)
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	session := signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)

	status, me := apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, merchants.TestMerchantKey, me["api_key"])
	require.Equal(t, merchants.TestMerchantName, me["name"])
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, me["created_at"], "RFC 3339, UTC, whole seconds, as every timestamp")

	for name, h := range map[string]http.Header{
		"no cookie":    nil,
		"forged token": {"Cookie": {dashboard.CookieName + "=forged"}},
		"API secret":   apptest.TestMerchant(), // the API's credentials are not a session
	} {
		status, body := apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", h)
		require.Equal(t, http.StatusUnauthorized, status, name)
		code, _ := apptest.ErrorOf(t, body)
		require.Equal(t, "UNAUTHORIZED", code, name)
	}

	// Sign-out ends the session on the server and clears the cookie.
	rec := apptest.Do(t, a.Echo, http.MethodDelete, "/dashboard/api/session", "", session)
	require.Equal(t, http.StatusNoContent, rec.Code)
	ck := rec.Result().Cookies()[0]
	require.Equal(t, dashboard.CookieName, ck.Name)
	require.Empty(t, ck.Value)
	require.Negative(t, ck.MaxAge)
	status, _ = apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", session)
	require.Equal(t, http.StatusUnauthorized, status)

	// A sign-out whose row cannot be deleted still clears the cookie, and
	// says that it failed.
	session = signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	_, err := a.Pool.Exec(context.Background(), `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused'; END$$;
		CREATE TRIGGER refuse BEFORE DELETE ON dashboard_sessions FOR EACH ROW EXECUTE FUNCTION refuse()`)
	require.NoError(t, err)
	rec = apptest.Do(t, a.Echo, http.MethodDelete, "/dashboard/api/session", "", session)
	require.GreaterOrEqual(t, rec.Code, 500)
	require.Len(t, rec.Result().Cookies(), 1)
	ck = rec.Result().Cookies()[0]
	require.Equal(t, dashboard.CookieName, ck.Name)
	require.Empty(t, ck.Value)
	require.Negative(t, ck.MaxAge)
	_, err = a.Pool.Exec(context.Background(), `DROP TRIGGER refuse ON dashboard_sessions`)
	require.NoError(t, err)

	// An expired session is no session.
	session = signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	_, err = a.Pool.Exec(context.Background(), `UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	status, _ = apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", session)
	require.Equal(t, http.StatusUnauthorized, status)
	// Signing in again prunes it.
	signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	var expired int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions WHERE expires_at <= now()`).Scan(&expired))
	require.Zero(t, expired)
}

// A state-changing request must come from the dashboard's own origin.
func TestSameOrigin(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	session := signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	p := apptest.PaySuccessfully(t, a, apptest.TestMerchant())
	refunds := "/dashboard/api/payments/" + p["id"].(string) + "/refunds"

	for name, o := range map[string][]string{"no origin": nil, "another site": {"https://evil.example"}, "null": {"null"}} {
		h := session.Clone()
		h["Origin"] = o
		for _, r := range []struct{ method, path, body string }{
			{http.MethodPost, refunds, `{"amount":100}`},
			{http.MethodPut, "/dashboard/api/webhooks/config", `{"webhook_url":""}`},
			{http.MethodPost, "/dashboard/api/webhooks/regenerate-secret", ``},
			{http.MethodDelete, "/dashboard/api/session", ``},
			{http.MethodPost, "/dashboard/api/session", signInBody(merchants.TestMerchantKey, merchants.TestMerchantSecret)},
		} {
			rec := apptest.Do(t, a.Echo, r.method, r.path, r.body, h)
			require.Equal(t, http.StatusForbidden, rec.Code, "%s: %s %s", name, r.method, r.path)
			code, _ := apptest.ErrorOf(t, decode(t, rec))
			require.Equal(t, "BAD_REQUEST_ERROR", code)
		}
	}
	var n int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM refunds`).Scan(&n))
	require.Zero(t, n, "nothing was refunded")

	// Reads need no Origin; the same request from the dashboard's origin works.
	h := session.Clone()
	h.Del("Origin")
	status, _ := apptest.Call(t, a, http.MethodGet, refunds, "", h)
	require.Equal(t, http.StatusOK, status)
	status, r := apptest.Call(t, a, http.MethodPost, refunds, `{"amount":100}`, session)
	require.Equal(t, http.StatusCreated, status, "%v", r)
}

// The dashboard's routes are the API's handlers behind the session: one
// merchant sees and changes only its own objects, with the API's errors.
func TestDashboardRoutesAreScoped(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	mine := apptest.PaySuccessfully(t, a, apptest.TestMerchant())
	other, otherHeader := apptest.NewMerchant(t, a, "other@example.com")
	theirs := apptest.PaySuccessfully(t, a, otherHeader)
	session := signIn(t, a, other.APIKey, other.APISecret)

	status, list := apptest.Call(t, a, http.MethodGet, "/dashboard/api/payments", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []string{theirs["id"].(string)}, apptest.IDsOf(list))
	status, _ = apptest.Call(t, a, http.MethodGet, "/dashboard/api/payments/"+mine["id"].(string), "", session)
	require.Equal(t, http.StatusNotFound, status)
	status, body := apptest.Call(t, a, http.MethodPost, "/dashboard/api/payments/"+mine["id"].(string)+"/refunds", `{"amount":100}`, session)
	require.Equal(t, http.StatusNotFound, status, "%v", body)
	status, body = apptest.Call(t, a, http.MethodPost, "/dashboard/api/payments/"+theirs["id"].(string)+"/refunds", `{"amount":60000}`, session)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "Refund amount exceeds available amount", body["error"].(map[string]any)["description"])

	status, stats := apptest.Call(t, a, http.MethodGet, "/dashboard/api/stats", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(1), stats["total_transactions"])
	status, cfg := apptest.Call(t, a, http.MethodGet, "/dashboard/api/webhooks/config", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, other.WebhookSecret, cfg["webhook_secret"])
}

func TestStats(t *testing.T) {
	t.Parallel()
	// Payments stay pending (the decision is an hour away); the test decides
	// them itself, so it can have both outcomes in one gateway.
	a := apptest.New(t, func(c *app.Config) { c.TestProcessingDelay = time.Hour })
	h := apptest.TestMerchant()
	session := signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	status, empty := apptest.Call(t, a, http.MethodGet, "/dashboard/api/stats", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(0), empty["total_transactions"])
	require.Nil(t, empty["success_rate"], "nothing decided yet")
	require.Equal(t, []any{}, empty["collected"])
	require.Len(t, empty["daily"], dashboard.ChartDays)

	decide := func(id, status string) {
		t.Helper()
		var code any
		if status == "failed" {
			code = "PAYMENT_FAILED"
		}
		_, err := a.Pool.Exec(context.Background(), `UPDATE payments SET status = $2, error_code = $3,
			error_description = CASE WHEN $3::text IS NULL THEN NULL ELSE 'Payment processing failed' END WHERE id = $1`, id, status, code)
		require.NoError(t, err)
	}
	decide(apptest.Pay(t, a, h)["id"].(string), "success")
	decide(apptest.Pay(t, a, h)["id"].(string), "success")
	decide(apptest.Pay(t, a, h)["id"].(string), "failed")
	apptest.Pay(t, a, h) // pending: counted, but not in the rate
	// Another merchant's payment counts for nobody else.
	_, other := apptest.NewMerchant(t, a, "other@example.com")
	decide(apptest.Pay(t, a, other)["id"].(string), "success")

	status, s := apptest.Call(t, a, http.MethodGet, "/dashboard/api/stats", "", session)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(4), s["total_transactions"])
	require.InDelta(t, 2.0/3.0, s["success_rate"], 1e-9)
	require.Equal(t, []any{map[string]any{"currency": "INR", "amount": float64(100000)}}, s["collected"])
	days := s["daily"].([]any)
	require.Len(t, days, dashboard.ChartDays)
	today := days[len(days)-1].(map[string]any)
	require.Equal(t, time.Now().UTC().Format("2006-01-02"), today["date"])
	require.Equal(t, map[string]any{"date": today["date"], "payments": float64(4), "succeeded": float64(2),
		"failed": float64(1), "amount": float64(100000)}, today)
	for _, d := range days[:len(days)-1] {
		require.Equal(t, float64(0), d.(map[string]any)["payments"])
	}

	// Sums past a bigint (amounts from before the API's 2^53 − 1 bound)
	// stop at its largest value rather than fail the page.
	big, bigH := apptest.NewMerchant(t, a, "big@example.com")
	for range 2 {
		id := apptest.Pay(t, a, bigH)["id"].(string)
		decide(id, "success")
		_, err := a.Pool.Exec(context.Background(), `UPDATE payments SET amount = 8000000000000000000 WHERE id = $1`, id)
		require.NoError(t, err)
	}
	status, s = apptest.Call(t, a, http.MethodGet, "/dashboard/api/stats", "", signIn(t, a, big.APIKey, big.APISecret))
	require.Equal(t, http.StatusOK, status, "%v", s)
	require.Equal(t, []any{map[string]any{"currency": "INR", "amount": float64(9223372036854775807)}}, s["collected"])
	days = s["daily"].([]any)
	require.Equal(t, float64(9223372036854775807), days[len(days)-1].(map[string]any)["amount"])
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), "%d %s", rec.Code, rec.Body.String())
	return v
}

// Every answer of the dashboard's JSON, success or error, tells the browser
// and any cache not to keep it: it carries the webhook secret.
func TestDashboardAPIIsNotStored(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	session := signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	p := apptest.PaySuccessfully(t, a, apptest.TestMerchant())
	var n int
	for _, r := range a.Echo.Routes() {
		if !strings.HasPrefix(r.Path, "/dashboard/api/") || r.Method == echo.RouteNotFound {
			continue
		}
		path := strings.ReplaceAll(r.Path, ":id", p["id"].(string))
		for _, h := range []http.Header{session, nil} {
			rec := apptest.Do(t, a.Echo, r.Method, path, "", h)
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"), "%s %s (%d)", r.Method, path, rec.Code)
		}
		n++
	}
	require.GreaterOrEqual(t, n, 15, "the dashboard's routes were found")
	// The webhook secret itself, on the route the page reads (a new
	// session: the loop signed out).
	session = signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/dashboard/api/webhooks/config", "", session)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "whsec_")
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
}

// A session of the test merchant, left in the database by a test-mode run,
// signs nobody in once TEST_MODE is off; another merchant's session works.
func TestTestMerchantSessionOutsideTestMode(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.TestMode = false })
	ctx := context.Background()
	require.NoError(t, merchants.SeedTestMerchant(ctx, a.Pool)) // as an earlier test-mode run did
	token := "left-over-test-merchant-session"
	sum := sha256.Sum256([]byte(token))
	_, err := a.Pool.Exec(ctx, `INSERT INTO dashboard_sessions (token_hash, merchant_id, expires_at)
		VALUES ($1, $2, now() + interval '1 hour')`, sum[:], merchants.TestMerchantID)
	require.NoError(t, err)
	cookie := http.Header{"Cookie": {dashboard.CookieName + "=" + token}, "Origin": {origin}}
	for _, path := range []string{"/dashboard/api/me", "/dashboard/api/webhooks/config", "/dashboard/api/payments"} {
		status, body := apptest.Call(t, a, http.MethodGet, path, "", cookie)
		require.Equal(t, http.StatusUnauthorized, status, path)
		code, _ := apptest.ErrorOf(t, body)
		require.Equal(t, "UNAUTHORIZED", code, path)
	}
	// Nor can it sign in again.
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/dashboard/api/session",
		signInBody(merchants.TestMerchantKey, merchants.TestMerchantSecret), http.Header{"Origin": {origin}})
	require.Equal(t, http.StatusUnauthorized, rec.Code)

	other, _ := apptest.NewMerchant(t, a, "real@example.com")
	status, me := apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", signIn(t, a, other.APIKey, other.APISecret))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, other.APIKey, me["api_key"])
}

// X-Forwarded-Proto marks the session cookie Secure, and makes the docs
// say https, only when it comes from a loopback, link-local or private peer
// (a proxy beside paygate); from anyone else it is ignored. That is echo's
// Context.Scheme since v4.16 (no SchemeExtractor set): this pins it, as
// docs/API.md promises it.
func TestForwardedProtoTrustedFromNearbyPeersOnly(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	signInFrom := func(peer string) (*http.Cookie, http.Header) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/dashboard/api/session",
			strings.NewReader(signInBody(merchants.TestMerchantKey, merchants.TestMerchantSecret)))
		req.RemoteAddr = peer
		req.Header = http.Header{"Origin": {"https://" + req.Host}, "X-Forwarded-Proto": {"https"}, "Content-Type": {"application/json"}}
		rec := httptest.NewRecorder()
		a.Echo.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		ck := rec.Result().Cookies()[0]
		return ck, http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "X-Forwarded-Proto": {"https"}}
	}
	docsFrom := func(peer string, h http.Header) string {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/dashboard/api/docs", nil)
		req.RemoteAddr, req.Header = peer, h
		rec := httptest.NewRecorder()
		a.Echo.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		return rec.Body.String()
	}
	for peer, secure := range map[string]bool{
		"127.0.0.1:40000":   true,
		"[::1]:40000":       true,
		"10.1.2.3:40000":    true,
		"192.168.1.9:40000": true,
		"172.20.0.2:40000":  true,
		"[fd00::7]:40000":   true,
		"169.254.1.1:40000": true,
		"203.0.113.7:40000": false,
		"8.8.8.8:40000":     false,
		"[2001:db8::1]:443": false,
	} {
		ck, h := signInFrom(peer)
		require.Equal(t, secure, ck.Secure, peer)
		if secure {
			require.Contains(t, docsFrom(peer, h), "https://example.com/api/v1/orders", peer)
		} else {
			require.Contains(t, docsFrom(peer, h), "http://example.com/api/v1/orders", peer)
		}
	}
}

// A rotated API secret opens no dashboard session, even in a process whose
// cache still holds it (it trusts a verified key for up to a minute), and
// the rotation ends the sessions opened with it.
func TestRotatedSecretOpensNoSession(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	m, err := merchants.Create(ctx, a.Pool, "Acme", "ops@acme.test", webhooks.NewSecret)
	require.NoError(t, err)
	session := signIn(t, a, m.APIKey, m.APISecret) // the key is now in a.Auth's cache

	_, secret, err := merchants.RotateSecret(ctx, a.Pool, m.APIKey)
	require.NoError(t, err)
	status, _ := apptest.Call(t, a, http.MethodGet, "/dashboard/api/me", "", session)
	require.Equal(t, http.StatusUnauthorized, status, "the rotation ended it")
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/dashboard/api/session", signInBody(m.APIKey, m.APISecret), http.Header{"Origin": {origin}})
	require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	require.Empty(t, rec.Result().Cookies())
	signIn(t, a, m.APIKey, secret)
}
