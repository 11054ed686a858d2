package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/web"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// setup starts the app with a widgets table and a POST /test/widgets route
// that creates one widget per request through Keys.Do, the way every
// creating route does. gate, when set, holds the work until it is closed.
type bundle struct {
	a    *app.App
	gate chan struct{}
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{a: apptest.New(t)}
	_, err := b.a.Pool.Exec(context.Background(),
		`CREATE TABLE widgets (id bigserial PRIMARY KEY, merchant_id uuid NOT NULL, name text NOT NULL)`)
	require.NoError(t, err)
	b.a.Echo.POST("/test/widgets", func(c echo.Context) error {
		var req struct {
			Name  string `json:"name"`
			Fail  string `json:"fail"`
			Later string `json:"later"` // a second widget sent with the COMMIT: "ok", or "fail" to fail it
			// The INSERT is sent on its own, in the simple protocol,
			// which begins the transaction in its own round trip.
			Simple bool `json:"simple"`
		}
		raw, err := web.Bind(c, &req)
		if err != nil {
			return err
		}
		m := merchants.FromContext(c)
		return b.a.Idempotency.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
			if req.Fail == "early" { // before any statement
				return 0, nil, web.BadField("name", "name is refused at once")
			}
			args := []any{m.ID, req.Name}
			if req.Simple {
				args = append([]any{pgx.QueryExecModeSimpleProtocol}, args...)
			}
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, $2) RETURNING id`,
				args...).Scan(&id); err != nil {
				return 0, nil, err
			}
			switch req.Later {
			case "ok":
				if err := db.ExecAtCommit(ctx, tx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, $2)`, m.ID, req.Name+" later"); err != nil {
					return 0, nil, err
				}
			case "fail":
				if err := db.ExecAtCommit(ctx, tx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, NULL)`, m.ID); err != nil {
					return 0, nil, err
				}
			}
			if b.gate != nil {
				<-b.gate
			}
			switch req.Fail {
			case "validation": // after a write, which must be undone
				return 0, nil, web.BadField("name", "name is not acceptable")
			case "statement": // after a statement that failed, as a unique index refuses a row
				if _, err := tx.Exec(ctx, `SELECT 1 / 0`); err == nil {
					return 0, nil, errors.New("1 / 0 did not fail")
				}
				return 0, nil, web.BadField("name", "name is taken")
			case "crash":
				return 0, nil, errors.New("lost the connection")
			}
			return http.StatusCreated, map[string]any{"id": id, "name": req.Name, "note": "<b>&"}, nil
		})
	}, b.a.Auth.Secret)
	return b
}

func (b *bundle) post(t *testing.T, body, key string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	if hdr == nil {
		hdr = apptest.TestMerchant()
	}
	if key != "" {
		hdr = apptest.With(hdr, idempotency.Header, key)
	}
	return apptest.Do(t, b.a.Echo, http.MethodPost, "/test/widgets", body, hdr)
}

func (b *bundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.a.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (b *bundle) widgets(t *testing.T) int { return b.count(t, `SELECT count(*) FROM widgets`) }
func (b *bundle) keys(t *testing.T) int    { return b.count(t, `SELECT count(*) FROM idempotency_keys`) }

func TestReplayIsByteForByte(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.post(t, `{"name":"a"}`, "k-1", nil)
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	require.Empty(t, first.Header().Get(idempotency.ReplayedHeader))
	require.Contains(t, first.Body.String(), `"<b>&"`, "not HTML-escaped")

	// Same request, re-encoded with other white space and key order: replayed.
	for _, body := range []string{`{"name":"a"}`, ` { "name" : "a" } `} {
		again := b.post(t, body, "k-1", nil)
		require.Equal(t, http.StatusCreated, again.Code)
		require.Equal(t, first.Body.Bytes(), again.Body.Bytes())
		require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
		require.Equal(t, echo.MIMEApplicationJSON, again.Header().Get("Content-Type"))
	}
	// The sf-string form names the same key.
	quoted := b.post(t, `{"name":"a"}`, `"k-1"`, nil)
	require.Equal(t, first.Body.Bytes(), quoted.Body.Bytes())
	require.Equal(t, 1, b.widgets(t))

	// Without a key every request is new.
	b.post(t, `{"name":"a"}`, "", nil)
	require.Equal(t, 2, b.widgets(t))
}

func TestChangedBodyIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a"}`, "k", nil).Code)
	rec := b.post(t, `{"name":"b"}`, "k", nil)
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	require.JSONEq(t, `{"error":{"code":"IDEMPOTENCY_KEY_REUSED","field":"Idempotency-Key",
		"description":"This Idempotency-Key was already used with a different request body"}}`, rec.Body.String())
	require.Equal(t, 1, b.widgets(t))
}

func TestConcurrentRepeatsCreateOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 50
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { recs[i] = b.post(t, `{"name":"race"}`, "same-key", nil) })
	}
	wg.Wait()
	var created []byte
	for _, rec := range recs {
		switch rec.Code {
		case http.StatusCreated:
			if created == nil {
				created = rec.Body.Bytes()
			}
			require.Equal(t, created, rec.Body.Bytes())
		case http.StatusConflict:
			require.Contains(t, rec.Body.String(), "IDEMPOTENCY_CONFLICT")
		default:
			t.Fatalf("unexpected answer %d: %s", rec.Code, rec.Body.String())
		}
	}
	require.NotNil(t, created)
	require.Equal(t, 1, b.widgets(t))
}

func TestInFlightRepeatAnswers409(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.a.Idempotency.LockTimeout = 100 * time.Millisecond
	b.gate = make(chan struct{})
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- b.post(t, `{"name":"slow"}`, "busy", nil) }()
	// Wait until the first request holds the key.
	for b.count(t, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'widgets'`) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	rec := b.post(t, `{"name":"slow"}`, "busy", nil)
	require.Equal(t, http.StatusConflict, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "IDEMPOTENCY_CONFLICT")
	close(b.gate)
	first := <-done
	require.Equal(t, http.StatusCreated, first.Code)
	b.gate = nil
	again := b.post(t, `{"name":"slow"}`, "busy", nil)
	require.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, 1, b.widgets(t))
}

func TestKeysAreScopedByMerchantAndRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, other := apptest.NewMerchant(t, b.a, "scope@example.com")
	one := b.post(t, `{"name":"a"}`, "shared", nil)
	two := b.post(t, `{"name":"a"}`, "shared", other)
	require.Equal(t, http.StatusCreated, one.Code)
	require.Equal(t, http.StatusCreated, two.Code)
	require.Empty(t, two.Header().Get(idempotency.ReplayedHeader))
	require.NotEqual(t, one.Body.String(), two.Body.String())
	require.Equal(t, 2, b.widgets(t))
	require.Equal(t, 2, b.keys(t))
}

func TestKeysExpireAfter24Hours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now()
	b.a.Idempotency.Now = func() time.Time { return start }
	first := b.post(t, `{"name":"a"}`, "old", nil)

	b.a.Idempotency.Now = func() time.Time { return start.Add(23 * time.Hour) }
	require.Equal(t, first.Body.Bytes(), b.post(t, `{"name":"a"}`, "old", nil).Body.Bytes())
	require.Equal(t, 1, b.widgets(t))

	b.a.Idempotency.Now = func() time.Time { return start.Add(24*time.Hour + time.Second) }
	fresh := b.post(t, `{"name":"b"}`, "old", nil) // even a different body: the key is forgotten
	require.Equal(t, http.StatusCreated, fresh.Code)
	require.Empty(t, fresh.Header().Get(idempotency.ReplayedHeader))
	require.Equal(t, 2, b.widgets(t))

	// The prune job deletes what expired.
	b.post(t, `{"name":"c"}`, "other", nil) // created at start+24h
	b.a.Idempotency.Now = func() time.Time { return start.Add(47 * time.Hour) }
	w := &idempotency.PruneWorker{Keys: b.a.Idempotency}
	require.NoError(t, w.Work(context.Background(), &river.Job[idempotency.PruneArgs]{}))
	require.Equal(t, 2, b.keys(t))
	b.a.Idempotency.Now = func() time.Time { return start.Add(49 * time.Hour) }
	require.NoError(t, w.Work(context.Background(), &river.Job[idempotency.PruneArgs]{}))
	require.Equal(t, 0, b.keys(t))
}

// A refusal is remembered, whether the work had written something (undone)
// or sent nothing at all (the key is then claimed on its own).
func TestValidationFailureIsRemembered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.post(t, `{"name":"a","fail":"validation"}`, "v", nil)
	require.Equal(t, http.StatusBadRequest, first.Code)
	require.JSONEq(t, `{"error":{"code":"BAD_REQUEST_ERROR","description":"name is not acceptable","field":"name"}}`, first.Body.String())
	require.Equal(t, 0, b.widgets(t), "the failed request's writes are undone")
	again := b.post(t, `{"name":"a","fail":"validation"}`, "v", nil)
	require.Equal(t, http.StatusBadRequest, again.Code)
	require.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))

	early := b.post(t, `{"name":"a","fail":"early"}`, "e", nil)
	require.Equal(t, http.StatusBadRequest, early.Code)
	require.Empty(t, early.Header().Get(idempotency.ReplayedHeader))
	again = b.post(t, `{"name":"a","fail":"early"}`, "e", nil)
	require.Equal(t, early.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
	require.Equal(t, http.StatusUnprocessableEntity, b.post(t, `{"name":"b","fail":"early"}`, "e", nil).Code)
	require.Equal(t, 2, b.keys(t))
}

// A refusal after a statement that failed (the transaction aborted) is
// remembered too, on a connection that has never written an answer
// before: the answer's statement is prepared after the work is undone.
func TestARefusalAfterAFailedStatementIsRemembered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.post(t, `{"name":"a","fail":"statement"}`, "s", nil)
	require.Equal(t, http.StatusBadRequest, first.Code, "%s", first.Body)
	require.Equal(t, 0, b.widgets(t))
	again := b.post(t, `{"name":"a","fail":"statement"}`, "s", nil)
	require.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
}

// What a request sends with its COMMIT (db.ExecAtCommit) commits with its
// answer; it is undone with the work of a refused request, whose answer is
// still remembered; and when it fails, nothing of the request is kept.
func TestStatementsSentWithTheCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, key := range []string{"", "k1"} {
		require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a","later":"ok"}`, key, nil).Code)
	}
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM widgets WHERE name = 'a later'`))
	require.Equal(t, 4, b.widgets(t))

	refused := b.post(t, `{"name":"b","later":"ok","fail":"validation"}`, "k2", nil)
	require.Equal(t, http.StatusBadRequest, refused.Code)
	require.Equal(t, 4, b.widgets(t), "the refused request's statements were not sent")
	require.Equal(t, refused.Body.Bytes(), b.post(t, `{"name":"b","later":"ok","fail":"validation"}`, "k2", nil).Body.Bytes())

	// Refused, with a statement queued that would have failed: the refusal
	// is answered and remembered, the statement never sent.
	refusedToo := b.post(t, `{"name":"d","later":"fail","fail":"validation"}`, "k4", nil)
	require.Equal(t, http.StatusBadRequest, refusedToo.Code, refusedToo.Body.String())
	require.Equal(t, refusedToo.Body.Bytes(), b.post(t, `{"name":"d","later":"fail","fail":"validation"}`, "k4", nil).Body.Bytes())

	keys := b.keys(t)
	for _, key := range []string{"", "k3"} {
		rec := b.post(t, `{"name":"c","later":"fail"}`, key, nil)
		require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	}
	require.Equal(t, 4, b.widgets(t), "nothing of a request whose last statement failed was kept")
	require.Equal(t, keys, b.keys(t), "nor its key")
	require.Equal(t, http.StatusCreated, b.post(t, `{"name":"c"}`, "k3", nil).Code, "the key is free again")
}

// A request that fails unexpectedly rolls back with its key: the retry runs
// afresh instead of finding a key stuck forever.
func TestRolledBackRequestLeavesNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := b.post(t, `{"name":"a","fail":"crash"}`, "c", nil)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, 0, b.keys(t))
	require.Equal(t, 0, b.widgets(t))
	// Malformed JSON is rejected before any work and not remembered either.
	require.Equal(t, http.StatusBadRequest, b.post(t, `{"name":`, "c", nil).Code)
	require.Equal(t, 0, b.keys(t))
	ok := b.post(t, `{"name":"a"}`, "c", nil)
	require.Equal(t, http.StatusCreated, ok.Code)
	require.Empty(t, ok.Header().Get(idempotency.ReplayedHeader))
}

func TestMalformedKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, key := range map[string]string{
		"empty quoted": `""`,
		"too long":     strings.Repeat("k", 256),
		"control char": "abc\x01def",
		"non-ascii":    "clé",
		"tab":          "a\tb",
	} {
		rec := b.post(t, `{"name":"a"}`, key, nil)
		require.Equal(t, http.StatusBadRequest, rec.Code, name)
		e := struct {
			Error web.Error `json:"error"`
		}{}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), name)
		require.Equal(t, "Idempotency-Key", e.Error.Field, name)
	}
	require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a"}`, strings.Repeat("k", 255), nil).Code)
	require.Equal(t, 1, b.widgets(t))
}
