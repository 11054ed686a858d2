package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/web"
)

// logBuffer is a concurrency-safe sink for the server's JSON log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLoggedApp starts a gateway whose log (debug level, JSON) goes to the
// returned buffer.
func newLoggedApp(t *testing.T, mutate ...func(*app.Config)) (*app.App, *logBuffer) {
	t.Helper()
	cfg := apptest.Config(t)
	for _, m := range mutate {
		m(&cfg)
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(context.Background(), cfg, app.RoleAll, logger)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(context.Background()) })
	require.NoError(t, a.Start(context.Background()))
	return a, logs
}

// requireEnvelope fails unless body is exactly the error envelope.
func requireEnvelope(t *testing.T, body []byte, msgAndArgs ...any) web.Error {
	t.Helper()
	var env struct {
		Error *web.Error `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&env), append([]any{"body %q"}, body)...)
	require.NotNil(t, env.Error, msgAndArgs...)
	require.NotEmpty(t, env.Error.Code, msgAndArgs...)
	require.NotEmpty(t, env.Error.Description, msgAndArgs...)
	return *env.Error
}

// The hostile card: what the log must never hold.
const (
	hostileCard = "4111111111111111"
	hostileCVV  = "7391"
)

// TestHostileInputOnEveryWriteRoute sends hostile bodies and headers to every
// POST and PUT route of the real app: each answers 4xx with the envelope,
// never a 5xx or a panic, and the log of it all holds no secret, card number
// or CVV.
func TestHostileInputOnEveryWriteRoute(t *testing.T) {
	t.Parallel()
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(receiver.Close)
	a, logs := newLoggedApp(t)
	h := apptest.TestMerchant()
	other, otherH := apptest.NewMerchant(t, a, "hostile@other.test")

	// A webhook endpoint, a captured-able payment and a webhook log to aim at.
	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", fmt.Sprintf(`{"webhook_url":%q}`, receiver.URL), h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	pay := apptest.PaySuccessfully(t, a, h)
	payID := pay["id"].(string)
	orderID := apptest.CreateOrder(t, a, h, 50000)
	var logID string
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_logs LIMIT 1`).Scan(&logID))

	type route struct {
		method, path string
		header       http.Header
		valid        string   // a body the route accepts
		keyed        bool     // runs under Idempotency-Key
		groups       []string // the body groups below that are hostile to this route
	}
	card := func(number, month, year, cvv, holder string) string {
		b, _ := json.Marshal(map[string]any{"order_id": orderID, "method": "card", "card": map[string]string{
			"number": number, "expiry_month": month, "expiry_year": year, "cvv": cvv, "holder_name": holder}})
		return string(b)
	}
	routes := []route{
		{http.MethodPost, "/api/v1/orders", h, `{"amount":50000,"receipt":"r","notes":{"a":"b"}}`, true, []string{"amount", "order"}},
		{http.MethodPost, "/api/v1/payments", h, card(hostileCard, "12", "2030", hostileCVV, "Jane"), true, []string{"payment"}},
		{http.MethodPost, "/api/v1/payments/public", http.Header{"X-Api-Key": {merchants.TestMerchantKey}},
			apptest.UPIBody(apptest.CreateOrder(t, a, h, 50000)), true, []string{"payment"}},
		{http.MethodPost, "/api/v1/payments/" + payID + "/capture", h, `{"amount":50000}`, true, []string{"amount"}},
		{http.MethodPost, "/api/v1/payments/" + payID + "/refunds", h, `{"amount":100,"reason":"r"}`, true, []string{"amount", "refund"}},
		{http.MethodPut, "/api/v1/webhooks/config", h, fmt.Sprintf(`{"webhook_url":%q,"events":["*"]}`, receiver.URL), false, []string{"webhook"}},
		{http.MethodPost, "/api/v1/webhooks/regenerate-secret", h, `{}`, false, nil},
		{http.MethodPost, "/api/v1/webhooks/test", h, `{}`, true, nil},
		{http.MethodPost, "/api/v1/webhooks/" + logID + "/retry", h, `{}`, true, nil},
	}

	bad := "\xff\xfe"
	bodies := map[string][]string{
		// Hostile to every route: not a JSON object, malformed, too large, or
		// a string (known field or not) that is not valid UTF-8 or holds NUL.
		"all": {
			"null", " null ", "[]", "[null]", "1", `"text"`, "true", "{", "}", "{]", `{"a":1}{"b":2}`, `{"a":1}x`,
			"\xef\xbb\xbf{}", "{\x00}", "\x00", bad, strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
			`{"s":"` + strings.Repeat("a", web.MaxBodyBytes) + `"}`,
			`{"amount":50000,"receipt":"` + bad + `"}`, `{"amount":50000,"receipt":"\u0000"}`,
			`{"amount":50000,"receipt":"\ud800"}`, `{"amount":50000,"receipt":"\udc00\ud800"}`,
			`{"amount":50000,"currency":"I` + bad + `"}`,
			`{"amount":50000,"notes":{"k":"` + bad + `"}}`, `{"amount":50000,"notes":{"` + bad + `":"v"}}`,
			`{"amount":50000,"notes":{"k\u0000":"v"}}`, `{"unknown":{"deep":["\u0000"]}}`,
			fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"user@paytm%s"}`, orderID, bad),
			fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"user\u0000@paytm"}`, orderID),
			fmt.Sprintf(`{"order_id":%q,"method":"u%spi"}`, orderID, bad),
			`{"order_id":"order_` + bad + `","method":"upi","vpa":"user@paytm"}`,
			`{"order_id":"\u0000","method":"upi","vpa":"user@paytm"}`,
			card(hostileCard, "12", "2030", hostileCVV, "Jane\u0000Doe"),
			strings.Replace(card(hostileCard, "12", "2030", hostileCVV, "Jane"), "Jane", "Ja"+bad, 1),
			strings.Replace(card(hostileCard, "12", "2030", hostileCVV, "Jane"), hostileCVV, "73\\u00009", 1),
			`{"amount":100,"reason":"` + bad + `"}`, `{"amount":100,"reason":"\u0000"}`,
			`{"webhook_url":"https://x.example/` + bad + `"}`, `{"webhook_url":"https://x.example/\u0000"}`,
			`{"webhook_url":"https://x.example/","events":["` + bad + `"]}`, `{"webhook_url":"https://x.example/","events":["\u0000"]}`,
		},
		"amount": {
			`{"amount":1e400}`, `{"amount":-1}`, `{"amount":0}`, `{"amount":9223372036854775808}`, `{"amount":1.5}`,
			`{"amount":"100"}`, `{"amount":[100]}`, `{"amount":{"$gt":0}}`, `{"amount":null,"amount":"x"}`,
			`{"amount":` + strings.Repeat(`{"x":`, 5000) + `1` + strings.Repeat("}", 5000) + `}`,
		},
		"order": {
			`{"amount":50000,"notes":{"k":{"deep":"v"}}}`, `{"amount":50000,"notes":"notes"}`, `{"amount":50000,"notes":[1]}`,
			`{"amount":50000,"receipt":"` + strings.Repeat("r", 41) + `"}`, `{"amount":50000,"currency":"inr"}`,
		},
		"payment": {
			fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":%q}`, orderID, strings.Repeat("u", 300)+"@bank"),
			fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":%q}`, orderID, "a@"+strings.Repeat("b", 300)),
			card(hostileCard, "12", "2030", hostileCVV, "Jane\nDoe"),
			card(hostileCard, "12", "2030", hostileCVV, "Jane\u202eDoe"),
			card(hostileCard, "12", "2030", hostileCVV, strings.Repeat("J", 101)),
			card(hostileCard, "12", "9999", hostileCVV, "Jane"),
			card(hostileCard, "12", "0000", hostileCVV, "Jane"),
			card(hostileCard, "13", "2030", hostileCVV, "Jane"),
			card(hostileCard, "12", "2030", hostileCVV+"9", "Jane"),
			card(hostileCard+"0", "12", "2030", hostileCVV, "Jane"),
			card("4111-1111-1111-111\u0661", "12", "2030", hostileCVV, "Jane"),
			fmt.Sprintf(`{"order_id":%q,"method":"card","card":"%s"}`, orderID, hostileCard),
			fmt.Sprintf(`{"order_id":%q,"method":"card","card":[%q]}`, orderID, hostileCard),
		},
		"refund": {`{"amount":100,"reason":` + fmt.Sprintf("%q", strings.Repeat("r", 256)) + `}`, `{"reason":5}`},
		"webhook": {
			`{"webhook_url":"https://x.example/a b"}`, `{"webhook_url":"https://x.example/\u0007"}`,
			`{"webhook_url":"https://x.example/\u00e9"}`, `{"webhook_url":"/relative/path"}`,
			`{"webhook_url":"javascript:alert(1)"}`, `{"webhook_url":"file:///etc/passwd"}`,
			`{"webhook_url":"https://user:pw@x.example/"}`, `{"webhook_url":5}`, `{"webhook_url":"https://[::1"}`,
			`{"webhook_url":"https://x.example/","events":[1]}`, `{"webhook_url":"https://x.example/","events":[]}`,
			`{"webhook_url":"https://x.example/","enabled":"yes"}`, `{"events":["*"]}`,
		},
	}

	for _, r := range routes {
		// The valid body works, so that the refusals below are about what
		// makes them hostile.
		rec := apptest.Do(t, a.Echo, r.method, r.path, r.valid, r.header)
		require.Less(t, rec.Code, 300, "%s %s valid body: %s", r.method, r.path, rec.Body.String())

		for group, list := range bodies {
			hostile := group == "all" || slices.Contains(r.groups, group)
			for i, body := range list {
				rec := apptest.Do(t, a.Echo, r.method, r.path, body, r.header)
				if hostile {
					requireClientError(t, rec, "%s %s %s body #%d %.80q", r.method, r.path, group, i, body)
				} else {
					// Another route's body: its fields are unknown here, so
					// it may succeed; it must never fail on the server.
					require.Less(t, rec.Code, 500, "%s %s %s body #%d: %s", r.method, r.path, group, i, rec.Body.String())
				}
			}
		}
		// null and non-object bodies are never taken for {}.
		for _, body := range []string{"null", "[]", "0"} {
			rec := apptest.Do(t, a.Echo, r.method, r.path, body, r.header)
			require.Equal(t, http.StatusBadRequest, rec.Code, "%s %s %s", r.method, r.path, body)
		}

		// Credentials of every wrong shape: 401 with the envelope.
		for i, hdr := range hostileCredentials(r.header) {
			rec := apptest.Do(t, a.Echo, r.method, r.path, r.valid, hdr)
			require.Equal(t, http.StatusUnauthorized, rec.Code, "%s %s credentials #%d: %s", r.method, r.path, i, rec.Body.String())
			requireEnvelope(t, rec.Body.Bytes())
		}

		// Idempotency-Key of every wrong shape: 400 naming the header.
		if r.keyed || r.path == "/api/v1/webhooks/regenerate-secret" {
			for _, key := range [][]string{{""}, {strings.Repeat("k", 256)}, {"k\x01"}, {"k\x00"}, {"clé"}, {"k\xff"}, {"a", "b"}} {
				hdr := r.header.Clone()
				hdr["Idempotency-Key"] = key
				rec := apptest.Do(t, a.Echo, r.method, r.path, r.valid, hdr)
				require.Equal(t, http.StatusBadRequest, rec.Code, "%s %s key %q: %s", r.method, r.path, key, rec.Body.String())
				require.Equal(t, "Idempotency-Key", requireEnvelope(t, rec.Body.Bytes()).Field)
			}
		}

		// A hostile X-Request-Id is replaced, never echoed or logged.
		for _, id := range []string{strings.Repeat("r", 64<<10), "a\nb", "a\x00b", "id with spaces", "\xff"} {
			hdr := apptest.With(r.header, "X-Request-Id", id)
			rec := apptest.Do(t, a.Echo, r.method, r.path, "null", hdr)
			require.Equal(t, http.StatusBadRequest, rec.Code)
			got := rec.Header().Get("X-Request-Id")
			require.NotEqual(t, id, got)
			require.True(t, web.ValidRequestID(got), "%q", got)
		}
	}
	// A well-formed client request id is kept.
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", apptest.With(h, "X-Request-Id", "client-req.42"))
	require.Equal(t, "client-req.42", rec.Header().Get("X-Request-Id"))

	// Nothing leaks: the log of all of the above.
	var whsec string
	require.NoError(t, a.Pool.QueryRow(context.Background(),
		`SELECT webhook_secret FROM merchants WHERE id = $1`, merchants.TestMerchantID).Scan(&whsec))
	requireNoSecretsInLog(t, logs.String(), merchants.TestMerchantSecret, other.APISecret, other.WebhookSecret,
		merchants.TestMerchantWebhookSecret, whsec, otherH.Get("X-Api-Secret"))
}

// requireClientError fails unless rec is a 4xx with the error envelope.
func requireClientError(t *testing.T, rec *httptest.ResponseRecorder, msgAndArgs ...any) {
	t.Helper()
	require.GreaterOrEqual(t, rec.Code, 400, append(msgAndArgs, rec.Body.String())...)
	require.Less(t, rec.Code, 500, append(msgAndArgs, rec.Body.String())...)
	requireEnvelope(t, rec.Body.Bytes(), msgAndArgs...)
}

// hostileCredentials are wrong credentials of every shape, derived from the
// route's good ones.
func hostileCredentials(good http.Header) []http.Header {
	basic := func(user, pass string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
	}
	key, secret := good.Get("X-Api-Key"), good.Get("X-Api-Secret")
	out := []http.Header{
		{},
		{"X-Api-Key": {key + "\xff"}, "X-Api-Secret": {secret}},
		{"X-Api-Key": {"key_\x00"}, "X-Api-Secret": {"s"}},
		{"X-Api-Key": {"\xc3\x28"}, "X-Api-Secret": {"s"}},
		{"X-Api-Key": {"key with space"}, "X-Api-Secret": {"s"}},
		{"X-Api-Key": {"key\x7f"}, "X-Api-Secret": {"s"}},
		{"X-Api-Key": {strings.Repeat("k", 10000)}, "X-Api-Secret": {"s"}},
		{"X-Api-Key": {"key_does_not_exist"}, "X-Api-Secret": {"s"}},
		{"Authorization": {"Basic !!!"}},
		{"Authorization": {"Bearer " + key}},
		basic("\xff", "\x00"),
		basic("key\x00", "s"),
		basic("key_\xe2\x82", "s"),
		basic("nobody", "nothing"),
	}
	if secret != "" {
		out = append(out,
			http.Header{"X-Api-Key": {key}, "X-Api-Secret": {secret + "\x00"}},
			http.Header{"X-Api-Key": {key}, "X-Api-Secret": {"\xff" + secret}},
			http.Header{"X-Api-Key": {key}, "X-Api-Secret": {secret + "\n"}},
			http.Header{"X-Api-Key": {key}},
			basic(key, secret+"\xff"),
		)
	}
	return out
}

// requireNoSecretsInLog fails when the log holds a secret, the hostile card
// number or its CVV. The log is JSON lines; a CVV is short, so it is looked
// for as a whole value or after a "cvv" key rather than as a substring of
// every number.
func requireNoSecretsInLog(t *testing.T, log string, secrets ...string) {
	t.Helper()
	require.NotEmpty(t, log)
	for i, s := range append(secrets, hostileCard, "4111 1111 1111 1111", "4111-1111-1111-1111") {
		require.NotEmpty(t, s)
		require.False(t, strings.Contains(log, s), "secret #%d is in the log", i)
	}
	for line := range strings.Lines(log) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case string:
				require.NotEqual(t, hostileCVV, v, line)
			case map[string]any:
				for k, x := range v {
					require.NotEqual(t, "cvv", strings.ToLower(k), line)
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(rec)
	}
}

// A panic in a handler is answered 500 INTERNAL_ERROR with the envelope and
// logged with the request id; the server goes on answering.
func TestPanicInHandlerIsRecovered(t *testing.T) {
	t.Parallel()
	a, logs := newLoggedApp(t)
	a.Echo.GET("/test/panic", func(echo.Context) error { panic("handler bug") })
	a.Echo.POST("/test/panic-nil", func(c echo.Context) error {
		var m map[string]int
		m["x"]++ // a runtime error, not a string
		return nil
	})
	for _, path := range []string{"/test/panic", "/test/panic-nil"} {
		method := http.MethodGet
		if path == "/test/panic-nil" {
			method = http.MethodPost
		}
		rec := apptest.Do(t, a.Echo, method, path, "", http.Header{"X-Request-Id": {"req-panic-" + method}})
		require.Equal(t, http.StatusInternalServerError, rec.Code)
		e := requireEnvelope(t, rec.Body.Bytes())
		require.Equal(t, web.CodeInternal, e.Code)
		require.Equal(t, "An unexpected error occurred", e.Description)
		require.Equal(t, "req-panic-"+method, rec.Header().Get("X-Request-Id"))
		require.Contains(t, logs.String(), `"msg":"panic in handler"`)
		require.Regexp(t, `"msg":"panic in handler".*"request_id":"req-panic-`+method+`"`, logs.String())
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", apptest.TestMerchant())
	require.Equal(t, http.StatusOK, rec.Code)

	// A callback after a commit that panics is raised again once the
	// others ran: the log shows the stack where it began.
	a.Echo.POST("/test/panic-after-commit", func(c echo.Context) error {
		return db.WithTx(c.Request().Context(), a.Pool, func(tx pgx.Tx) error {
			db.AfterCommit(tx, func() { callbackThatPanics() })
			return nil
		})
	})
	rec = apptest.Do(t, a.Echo, http.MethodPost, "/test/panic-after-commit", "", nil)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Regexp(t, `"msg":"panic in handler".*"panic":"after the commit".*callbackThatPanics`, logs.String())
}

func callbackThatPanics() { panic("after the commit") }

// Credentials that cannot be a key or secret answer 401 before any
// database work: here the database is gone, so touching it would answer
// 503 or 500.
func TestMalformedCredentialsNeverReachTheDatabase(t *testing.T) {
	t.Parallel()
	a, err := app.New(context.Background(), apptest.Config(t), app.RoleAPI, apptest.Logger())
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(context.Background()) })
	a.Pool.Close()
	a.KeptPlans.Close()
	for i, hdr := range hostileCredentials(apptest.TestMerchant()) {
		if hdr.Get("X-Api-Key") == "key_does_not_exist" || strings.Contains(hdr.Get("Authorization"), base64.StdEncoding.EncodeToString([]byte("nobody:nothing"))) {
			continue // well-formed: these do need the database
		}
		for _, r := range [][2]string{{http.MethodGet, "/api/v1/orders"}, {http.MethodPost, "/api/v1/payments/public"}, {http.MethodGet, "/api/v1/test/merchant"}} {
			if r[1] == "/api/v1/payments/public" && merchants.ValidCredential(publishableKey(hdr)) {
				continue // the publishable route reads the key only, and this one is well-formed
			}
			if r[1] == "/api/v1/test/merchant" && len(hdr) == 0 {
				continue // anonymous is allowed there
			}
			rec := apptest.Do(t, a.Echo, r[0], r[1], "{}", hdr)
			require.Equal(t, http.StatusUnauthorized, rec.Code, "#%d %s %s %v: %s", i, r[0], r[1], hdr, rec.Body.String())
			require.Equal(t, web.CodeUnauthorized, requireEnvelope(t, rec.Body.Bytes()).Code)
		}
	}
}

// Defaults: a gateway started without TEST_MODE neither seeds nor serves
// the test merchant, and refuses its public credentials even on a database
// where an earlier test-mode run left it.
func TestDefaultsHaveNoTestMerchant(t *testing.T) {
	t.Parallel()
	cfg, err := app.LoadConfig(func(string) string { return "" })
	require.NoError(t, err)
	require.False(t, cfg.TestMode)
	a := apptest.New(t, func(c *app.Config) { c.TestMode = false })
	var n int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM merchants WHERE api_key = $1`,
		merchants.TestMerchantKey).Scan(&n))
	require.Zero(t, n, "not seeded")

	require.NoError(t, merchants.SeedTestMerchant(context.Background(), a.Pool)) // as an earlier test-mode run did
	for _, hdr := range []http.Header{apptest.TestMerchant(),
		{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(merchants.TestMerchantKey+":"+merchants.TestMerchantSecret))}}} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", hdr)
		require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
		rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":50000}`, hdr)
		require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders/order_AAAAAAAAAAAAAAAA/public", "",
		http.Header{"X-Api-Key": {merchants.TestMerchantKey}})
	require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/merchant", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	require.Equal(t, web.CodeNotFound, requireEnvelope(t, rec.Body.Bytes()).Code)
}

// A keyed regenerate-secret is refused, so the idempotency table never
// holds a webhook secret; an unkeyed one answers the secret and stores
// nothing there.
func TestRegenerateSecretIsNeverRemembered(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/regenerate-secret", "", apptest.With(h, "Idempotency-Key", "rotate-1"))
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Equal(t, "Idempotency-Key", requireEnvelope(t, rec.Body.Bytes()).Field)
	require.NotContains(t, rec.Body.String(), "whsec_")

	var secrets []string
	for range 2 {
		status, body := apptest.Call(t, a, http.MethodPost, "/api/v1/webhooks/regenerate-secret", "", h)
		require.Equal(t, http.StatusOK, status)
		secrets = append(secrets, body["webhook_secret"].(string))
	}
	require.NotEqual(t, secrets[0], secrets[1])
	// Other keyed routes are remembered as before.
	rec = apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/orders", `{"amount":50000}`, apptest.With(h, "Idempotency-Key", "order-1"))
	require.Equal(t, http.StatusCreated, rec.Code)

	var rows, withSecret int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `
		SELECT count(*), count(*) FILTER (WHERE position('whsec_' in convert_from(response_body, 'UTF8')) > 0
		                                  OR route LIKE '%regenerate-secret%')
		FROM idempotency_keys`).Scan(&rows, &withSecret))
	require.Equal(t, 1, rows, "the order's key only")
	require.Zero(t, withSecret)
}

// Lists refuse an offset past MaxOffset, naming the field.
func TestListOffsetIsBounded(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	p := apptest.Pay(t, a, h)
	for _, path := range []string{"/api/v1/orders", "/api/v1/payments", "/api/v1/webhooks", "/api/v1/payments/" + p["id"].(string) + "/refunds"} {
		status, body := apptest.Call(t, a, http.MethodGet, path+"?offset=1000000", "", h)
		require.Equal(t, http.StatusOK, status, "%s %v", path, body)
		for _, off := range []string{"1000001", "99999999999999999999", "-1"} {
			status, body = apptest.Call(t, a, http.MethodGet, path+"?offset="+off, "", h)
			require.Equal(t, http.StatusBadRequest, status, "%s %v", path, body)
			_, field := apptest.ErrorOf(t, body)
			require.Equal(t, "offset", field)
		}
	}
}

// publishableKey is the key the publishable routes read from hdr.
func publishableKey(hdr http.Header) string {
	if k := hdr.Get("X-Api-Key"); k != "" {
		return k
	}
	req := &http.Request{Header: hdr}
	k, _, _ := req.BasicAuth()
	return k
}

// The HTTP server's bounds come from the environment, with defaults, and
// a zero timeout (which net/http reads as "none") is refused.
func TestHTTPServerBoundsConfig(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	cfg, err := app.LoadConfig(env(nil))
	require.NoError(t, err)
	srv := app.NewHTTPServer(cfg, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	require.Equal(t, 5*time.Second, srv.ReadHeaderTimeout)
	require.Equal(t, 15*time.Second, srv.ReadTimeout)
	require.Equal(t, 60*time.Second, srv.IdleTimeout)
	require.Positive(t, srv.MaxHeaderBytes)
	require.Positive(t, cfg.MaxConnections())
	require.LessOrEqual(t, cfg.MaxConnections(), 10_000)

	cfg, err = app.LoadConfig(env(map[string]string{"HTTP_READ_HEADER_TIMEOUT": "1000", "HTTP_READ_TIMEOUT": "2000",
		"HTTP_IDLE_TIMEOUT": "3000", "HTTP_MAX_CONNECTIONS": "50"}))
	require.NoError(t, err)
	srv = app.NewHTTPServer(cfg, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second},
		[]time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout})
	require.Equal(t, 50, cfg.MaxConnections())

	for _, name := range []string{"HTTP_READ_HEADER_TIMEOUT", "HTTP_READ_TIMEOUT", "HTTP_IDLE_TIMEOUT", "HTTP_MAX_CONNECTIONS"} {
		for _, v := range []string{"-1", "x", "0"} {
			if v == "0" && name == "HTTP_MAX_CONNECTIONS" {
				continue // 0 is the derived default
			}
			_, err := app.LoadConfig(env(map[string]string{name: v}))
			require.Error(t, err, "%s=%s", name, v)
			require.Contains(t, err.Error(), name)
		}
	}
}
