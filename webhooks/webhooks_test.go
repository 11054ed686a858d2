package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/merchants"
	"paygate/webhooks"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// fast is a scaled-down schedule, so a whole run takes a moment.
var fast = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond}

// slow is a schedule whose retries never come during a test.
var slow = []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour}

// setup starts a gateway with the given retry schedule (nil: the default)
// whose test merchant delivers to a fresh receiver.
func setup(t *testing.T, schedule []time.Duration, respond func(n int, w http.ResponseWriter)) (*app.App, http.Header, *receiver) {
	t.Helper()
	a := apptest.New(t, func(c *app.Config) { c.WebhookSchedule = schedule })
	h := apptest.TestMerchant()
	r := newReceiver(t, respond)
	configure(t, a, h, r.URL)
	return a, h, r
}

// received is one request that reached the merchant's endpoint.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is the merchant's endpoint. respond answers the n-th request
// (1-based); nil answers 200.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	respond func(n int, w http.ResponseWriter)
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *receiver {
	r := &receiver{respond: respond}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{at: time.Now(), header: req.Header.Clone(), body: body})
		n, respond := len(r.got), r.respond
		r.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		respond(n, w)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *receiver) setRespond(f func(n int, w http.ResponseWriter)) {
	r.mu.Lock()
	r.respond = f
	r.mu.Unlock()
}

// failing answers 500 with a body that names the request.
func failing(n int, w http.ResponseWriter) {
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, "boom %d", n)
}

// eventually polls cond, at most 30 s: long enough for a loaded machine,
// and never an assertion about how long something took.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(body, &v), string(body))
	return v
}

type logView struct {
	ID             uuid.UUID       `json:"id"`
	Event          string          `json:"event"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	CreatedAt      *string         `json:"created_at"`
	LastAttemptAt  *string         `json:"last_attempt_at"`
	NextRetryAt    *string         `json:"next_retry_at"`
	ResponseCode   *int            `json:"response_code"`
	Payload        json.RawMessage `json:"payload"`
	AttemptHistory []struct {
		AttemptedAt  string  `json:"attempted_at"`
		ResponseCode *int    `json:"response_code"`
		ResponseBody string  `json:"response_body"`
		Error        *string `json:"error"`
		DurationMS   int64   `json:"duration_ms"`
	} `json:"attempt_history"`
}

type listView struct {
	Data   []logView `json:"data"`
	Total  int       `json:"total"`
	Limit  int       `json:"limit"`
	Offset int       `json:"offset"`
}

// configure points the merchant's webhooks at url (all events unless given).
func configure(t *testing.T, a *app.App, h http.Header, url string, events ...string) {
	t.Helper()
	in := map[string]any{"webhook_url": url}
	if len(events) > 0 {
		in["events"] = events
	}
	b, _ := json.Marshal(in)
	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", string(b), h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

func emit(t *testing.T, a *app.App, merchantID uuid.UUID, event string, data any) {
	t.Helper()
	require.NoError(t, db.WithTx(context.Background(), a.Pool, func(tx pgx.Tx) error {
		return emitTx(context.Background(), a, tx, merchantID, event, data)
	}))
}

// emitTx records an event and its delivery's job, as a state change's
// transaction does.
func emitTx(ctx context.Context, a *app.App, tx pgx.Tx, merchantID uuid.UUID, event string, data any) error {
	return a.Webhooks.EmitTx(ctx, tx, []webhooks.Event{{MerchantID: merchantID, Name: event, Data: data}})
}

func list(t *testing.T, a *app.App, h http.Header, query string) listView {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks"+query, "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	return decode[listView](t, rec.Body.Bytes())
}

// latest is the id of the merchant's newest log.
func latest(t *testing.T, a *app.App, h http.Header) uuid.UUID {
	t.Helper()
	l := list(t, a, h, "?limit=1")
	require.NotEmpty(t, l.Data)
	return l.Data[0].ID
}

func get(t *testing.T, a *app.App, h http.Header, id uuid.UUID) logView {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks/"+id.String(), "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	return decode[logView](t, rec.Body.Bytes())
}

func waitStatus(t *testing.T, a *app.App, h http.Header, id uuid.UUID, status string) logView {
	t.Helper()
	var v logView
	eventually(t, "log "+id.String()+" to be "+status, func() bool {
		v = get(t, a, h, id)
		return v.Status == status
	})
	return v
}

func sendTest(t *testing.T, a *app.App, h http.Header) uuid.UUID {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/test", "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	v := decode[struct {
		Scheduled bool      `json:"scheduled"`
		WebhookID uuid.UUID `json:"webhook_id"`
	}](t, rec.Body.Bytes())
	require.True(t, v.Scheduled)
	return v.WebhookID
}

func retry(t *testing.T, a *app.App, h http.Header, id uuid.UUID) {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/"+id.String()+"/retry", "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, fmt.Sprintf(`{"id":%q,"status":"pending","message":"Webhook retry scheduled"}`, id), rec.Body.String())
}

func count(t *testing.T, a *app.App, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, a.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func jobsFor(t *testing.T, a *app.App, id uuid.UUID) int {
	return count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook' AND args->>'log_id' = $1`, id.String())
}

func hexHMAC(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestDeliveryIsSignedAndRotationSignsWithBoth(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	m, h := apptest.NewMerchant(t, a, "signed@example.com")
	r := newReceiver(t, nil)
	configure(t, a, h, r.URL)
	verifies := func(secret string, got received) error {
		wh, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err)
		return wh.Verify(got.body, got.header)
	}

	id := sendTest(t, a, h)
	eventually(t, "the first delivery", func() bool { return len(r.requests()) == 1 })
	got := r.requests()[0]
	require.NoError(t, verifies(m.WebhookSecret, got))
	require.Equal(t, hexHMAC(m.WebhookSecret, got.body), got.header.Get("X-Webhook-Signature"))
	require.Equal(t, id.String(), got.header.Get("webhook-id"))
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	body := decode[map[string]any](t, got.body)
	require.Equal(t, webhooks.EventTest, body["event"])
	require.InDelta(t, float64(time.Now().Unix()), body["timestamp"], 60)
	waitStatus(t, a, h, id, webhooks.StatusSuccess)

	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/regenerate-secret", "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	fresh := decode[map[string]string](t, rec.Body.Bytes())["webhook_secret"]
	require.True(t, strings.HasPrefix(fresh, "whsec_"), fresh)
	require.NotEqual(t, m.WebhookSecret, fresh)

	sendTest(t, a, h)
	eventually(t, "the delivery during the rotation", func() bool { return len(r.requests()) == 2 })
	got = r.requests()[1]
	require.Len(t, strings.Fields(got.header.Get("webhook-signature")), 2)
	require.NoError(t, verifies(fresh, got), "the new secret verifies")
	require.NoError(t, verifies(m.WebhookSecret, got), "the previous secret still verifies")
	require.Equal(t, hexHMAC(fresh, got.body), got.header.Get("X-Webhook-Signature"))

	// Once the overlap is over, only the new secret signs.
	_, err := a.Pool.Exec(context.Background(),
		`UPDATE merchants SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1`, m.ID)
	require.NoError(t, err)
	sendTest(t, a, h)
	eventually(t, "the delivery after the rotation", func() bool { return len(r.requests()) == 3 })
	got = r.requests()[2]
	require.Len(t, strings.Fields(got.header.Get("webhook-signature")), 1)
	require.NoError(t, verifies(fresh, got))
	require.ErrorIs(t, verifies(m.WebhookSecret, got), standardwebhooks.ErrNoMatchingSignature)
}

func TestFailsTwiceThenDeliversTheSameBytes(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, fast, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			failing(n, w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentSuccess,
		map[string]any{"payment": map[string]any{"id": "pay_1", "amount": 50000, "notes": "<b>&"}})
	id := latest(t, a, h)

	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	got := r.requests()
	require.Len(t, got, 3)
	require.Equal(t, 3, v.Attempts)
	require.Equal(t, http.StatusNoContent, *v.ResponseCode)
	require.Nil(t, v.NextRetryAt)
	require.NotNil(t, v.LastAttemptAt)

	var stored []byte
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT payload FROM webhook_logs WHERE id = $1`, id).Scan(&stored))
	for i, g := range got {
		require.Equal(t, stored, g.body, "attempt %d sends the stored bytes", i+1)
		require.Equal(t, id.String(), g.header.Get("webhook-id"))
		require.Equal(t, hexHMAC(merchants.TestMerchantWebhookSecret, g.body), g.header.Get("X-Webhook-Signature"))
	}
	require.Contains(t, string(stored), `"notes":"<b>&"`)
	require.NotContains(t, string(stored), `\u003c`)
	require.True(t, strings.HasPrefix(string(stored), `{"event":"payment.success","timestamp":`), string(stored))
	require.JSONEq(t, string(stored), string(v.Payload))

	// The waits follow the schedule, counted from the start of the attempt
	// before (the receiver's clock would count the first request's transit
	// too): at least 100 ms, then at least 200 ms.
	hist := history(t, a, id)
	require.Len(t, hist, 3)
	require.GreaterOrEqual(t, hist[1].AttemptedAt.Sub(hist[0].AttemptedAt), fast[0])
	require.GreaterOrEqual(t, hist[2].AttemptedAt.Sub(hist[1].AttemptedAt), fast[1])

	require.Len(t, v.AttemptHistory, 3)
	for i, want := range []int{500, 500, 204} {
		require.Equal(t, want, *v.AttemptHistory[i].ResponseCode)
	}
	require.Equal(t, "boom 1", v.AttemptHistory[0].ResponseBody)
	require.Equal(t, "endpoint answered HTTP 500", *v.AttemptHistory[1].Error)
	require.Nil(t, v.AttemptHistory[2].Error)
}

func TestFiveFailuresEndFailedAndManualRetryDelivers(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, fast, failing)
	id := sendTest(t, a, h)

	v := waitStatus(t, a, h, id, webhooks.StatusFailed)
	require.Equal(t, 5, v.Attempts)
	require.Nil(t, v.NextRetryAt)
	require.Equal(t, 500, *v.ResponseCode)
	require.Len(t, v.AttemptHistory, 5)
	require.Len(t, r.requests(), 5)

	r.setRespond(nil)
	retry(t, a, h, id)
	v = waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 1, v.Attempts, "a retry starts the schedule again")
	require.Len(t, v.AttemptHistory, 6)
	require.Len(t, r.requests(), 6)
	require.Equal(t, r.requests()[0].body, r.requests()[5].body)
}

func TestRetryDoubleClickSchedulesOneDelivery(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}, failing)
	id := sendTest(t, a, h)
	waitStatus(t, a, h, id, webhooks.StatusFailed)

	// The retried delivery is held at the endpoint until both clicks are
	// answered, so the second click finds it running.
	release := make(chan struct{})
	r.setRespond(func(_ int, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	path := "/api/v1/webhooks/" + id.String() + "/retry"
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() { codes[i] = apptest.Do(t, a.Echo, http.MethodPost, path, "", h).Code })
	}
	wg.Wait()
	close(release)
	require.Equal(t, []int{http.StatusOK, http.StatusOK}, codes)

	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 1, v.Attempts)
	require.Equal(t, 1, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid, 'run', 1)`, id),
		"one job for the retried run")
	require.Len(t, r.requests(), 6)
}

func TestEventsOnlyForConfiguredSubscribedEndpoints(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	r := newReceiver(t, nil)
	data := map[string]any{"payment": map[string]any{"id": "pay_1"}}
	logs := func() int { return count(t, a, `SELECT count(*) FROM webhook_logs`) }
	jobs := func() int { return count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`) }

	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentSuccess, data)
	require.Zero(t, logs(), "no URL configured")

	configure(t, a, h, r.URL, webhooks.EventPaymentSuccess, webhooks.EventRefundProcessed)
	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentFailed, data)
	require.Zero(t, logs(), "not subscribed")
	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentSuccess, data)
	require.Equal(t, 1, logs())
	// Delivered before delivery is disabled: an attempt made after that
	// would fail and schedule a second. Its job is then completed, or gone
	// (claimed by this process's first attempt): no other job follows.
	waitStatus(t, a, h, latest(t, a, h), webhooks.StatusSuccess)
	delivered := jobs()
	require.LessOrEqual(t, delivered, 1)

	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config",
		fmt.Sprintf(`{"webhook_url":%q,"enabled":false}`, r.URL), h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentSuccess, data)
	require.Equal(t, 1, logs(), "delivery disabled")

	configure(t, a, h, "")
	emit(t, a, merchants.TestMerchantID, webhooks.EventPaymentSuccess, data)
	require.Equal(t, 1, logs(), "URL removed")
	require.Equal(t, delivered, jobs())

	require.Error(t, db.WithTx(context.Background(), a.Pool, func(tx pgx.Tx) error {
		return emitTx(context.Background(), a, tx, merchants.TestMerchantID, "payment.unknown", data)
	}), "an unknown event is a programming error")
}

func TestEventRolledBackWithItsTransactionLeavesNothing(t *testing.T) {
	t.Parallel()
	a, _, _ := setup(t, nil, nil)
	ctx := context.Background()

	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, emitTx(ctx, a, tx, merchants.TestMerchantID, webhooks.EventPaymentSuccess, map[string]any{"payment": map[string]any{"id": "pay_1"}}))
	require.NoError(t, tx.Rollback(ctx))

	require.Zero(t, count(t, a, `SELECT count(*) FROM webhook_logs`))
	require.Zero(t, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`))
}

func TestTestEventNeedsAURL(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	rec := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/webhooks/test", "", apptest.TestMerchant())
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), `"code":"BAD_REQUEST_ERROR"`)
	require.Contains(t, rec.Body.String(), "No webhook URL is configured")
	require.Zero(t, count(t, a, `SELECT count(*) FROM webhook_logs`))
}

func TestConfigRefusesPrivateURLs(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.WebhookAllowPrivateNetworks = false })
	// IP literals only: nothing is resolved, nothing is dialled.
	for _, url := range []string{"http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://127.0.0.1:8080/", "http://[::1]/"} {
		rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", fmt.Sprintf(`{"webhook_url":%q}`, url), apptest.TestMerchant())
		require.Equal(t, http.StatusBadRequest, rec.Code, url)
		e := decode[map[string]map[string]string](t, rec.Body.Bytes())["error"]
		require.Equal(t, "BAD_REQUEST_ERROR", e["code"])
		require.Equal(t, "webhook_url", e["field"])
		require.Contains(t, e["description"], "private, loopback, link-local or reserved address", url)
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks/config", "", apptest.TestMerchant())
	require.Contains(t, rec.Body.String(), `"webhook_url":""`, "nothing was saved")
}

func TestConfig(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()

	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks/config", "", h)
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"webhook_url":"","webhook_secret":"whsec_test_abc123","events":["*"],"enabled":true}`, rec.Body.String())

	tests := []struct {
		name, body string
		status     int
		field      string // of the error
		want       string // the answer, when 200
	}{
		{"events default to all", `{"webhook_url":"https://example.com/hook"}`, 200, "",
			`{"webhook_url":"https://example.com/hook","webhook_secret":"whsec_test_abc123","events":["*"],"enabled":true}`},
		{"chosen events, duplicates dropped", `{"webhook_url":"https://example.com/h","events":["payment.success","refund.processed","payment.success"]}`, 200, "",
			`{"webhook_url":"https://example.com/h","webhook_secret":"whsec_test_abc123","events":["payment.success","refund.processed"],"enabled":true}`},
		{"star swallows the rest", `{"webhook_url":"https://example.com/h","events":["payment.success","*"]}`, 200, "",
			`{"webhook_url":"https://example.com/h","webhook_secret":"whsec_test_abc123","events":["*"],"enabled":true}`},
		{"empty URL disables", `{"webhook_url":""}`, 200, "",
			`{"webhook_url":"","webhook_secret":"whsec_test_abc123","events":["*"],"enabled":true}`},
		{"disabled", `{"webhook_url":"https://example.com/h","enabled":false}`, 200, "",
			`{"webhook_url":"https://example.com/h","webhook_secret":"whsec_test_abc123","events":["*"],"enabled":false}`},
		{"URL missing", `{"events":["*"]}`, 400, "webhook_url", ""},
		{"URL not a string", `{"webhook_url":42}`, 400, "webhook_url", ""},
		{"not a URL", `{"webhook_url":"not a url"}`, 400, "webhook_url", ""},
		{"wrong scheme", `{"webhook_url":"ftp://example.com/h"}`, 400, "webhook_url", ""},
		{"no host", `{"webhook_url":"http:///h"}`, 400, "webhook_url", ""},
		{"credentials in URL", `{"webhook_url":"https://u:p@example.com/h"}`, 400, "webhook_url", ""},
		{"bad port", `{"webhook_url":"https://example.com:99999/h"}`, 400, "webhook_url", ""},
		{"unknown event", `{"webhook_url":"https://example.com/h","events":["payment.succes"]}`, 400, "events", ""},
		{"no events", `{"webhook_url":"https://example.com/h","events":[]}`, 400, "events", ""},
		{"events not a list", `{"webhook_url":"https://example.com/h","events":"payment.success"}`, 400, "events", ""},
		{"malformed JSON", `{"webhook_url":`, 400, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", tc.body, h)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.status == http.StatusOK {
				require.JSONEq(t, tc.want, rec.Body.String())
				get := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks/config", "", h)
				require.JSONEq(t, tc.want, get.Body.String(), "saved")
				return
			}
			e := decode[map[string]map[string]string](t, rec.Body.Bytes())["error"]
			require.Equal(t, "BAD_REQUEST_ERROR", e["code"])
			require.Equal(t, tc.field, e["field"], e["description"])
		})
	}
}

func TestLogsAreIsolatedPerMerchant(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	mine := apptest.TestMerchant()
	_, theirs := apptest.NewMerchant(t, a, "other@example.com")
	r := newReceiver(t, nil)
	configure(t, a, mine, r.URL)
	configure(t, a, theirs, r.URL)
	id := sendTest(t, a, mine)

	require.Equal(t, 1, list(t, a, mine, "").Total)
	require.Equal(t, 0, list(t, a, theirs, "").Total)
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/webhooks/" + id.String()},
		{http.MethodPost, "/api/v1/webhooks/" + id.String() + "/retry"},
		{http.MethodGet, "/api/v1/webhooks/" + uuid.NewString()},
		{http.MethodGet, "/api/v1/webhooks/not-a-uuid"},
	} {
		rec := apptest.Do(t, a.Echo, req.method, req.path, "", theirs)
		require.Equal(t, http.StatusNotFound, rec.Code, req.path)
		require.Contains(t, rec.Body.String(), `"code":"NOT_FOUND"`)
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks", "", nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}

func TestListNewestFirstWithFiltersAndPages(t *testing.T) {
	t.Parallel()
	a, h, _ := setup(t, nil, nil)
	events := []string{webhooks.EventPaymentCreated, webhooks.EventPaymentSuccess, webhooks.EventRefundCreated}
	for _, e := range events {
		emit(t, a, merchants.TestMerchantID, e, map[string]any{"n": e})
	}

	all := list(t, a, h, "")
	require.Equal(t, 3, all.Total)
	require.Equal(t, 10, all.Limit)
	require.Equal(t, 0, all.Offset)
	require.Len(t, all.Data, 3)
	for i, l := range all.Data {
		require.Equal(t, events[2-i], l.Event, "newest first")
		require.NotNil(t, l.CreatedAt)
		require.Nil(t, l.Payload, "the list has no payloads")
	}

	page := list(t, a, h, "?limit=1&offset=1")
	require.Equal(t, 3, page.Total)
	require.Len(t, page.Data, 1)
	require.Equal(t, events[1], page.Data[0].Event)

	only := list(t, a, h, "?event=refund.created")
	require.Equal(t, 1, only.Total)
	require.Equal(t, webhooks.EventRefundCreated, only.Data[0].Event)

	eventually(t, "all three delivered", func() bool { return list(t, a, h, "?status=success").Total == 3 })
	require.Equal(t, 0, list(t, a, h, "?status=failed").Total)
	require.Equal(t, `[]`, string(mustMarshal(t, list(t, a, h, "?offset=5").Data)))

	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?offset=-1", "?status=done", "?event=payment.unknown"} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/webhooks"+q, "", h)
		require.Equal(t, http.StatusBadRequest, rec.Code, q)
		require.Contains(t, rec.Body.String(), `"field":"`, q)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
