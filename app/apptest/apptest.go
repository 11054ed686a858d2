// Package apptest runs the whole gateway against a fresh database for one
// test, and sends it requests the way a merchant would.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/db/dbtest"
	"paygate/merchants"
)

// Config is the test configuration: test mode on its own fresh database,
// no processing delay, fast polling.
func Config(t testing.TB) app.Config {
	t.Helper()
	cfg, err := app.LoadConfig(func(string) string { return "" })
	require.NoError(t, err)
	cfg.DatabaseURL = dbtest.New(t)
	cfg.TestMode = true
	cfg.TestProcessingDelay = 0
	cfg.WebhookAllowPrivateNetworks = true
	cfg.FetchPollInterval = 20 * time.Millisecond
	return cfg
}

// New starts a gateway (role all) and stops it when the test ends. mutate
// may change the configuration first.
func New(t testing.TB, mutate ...func(*app.Config)) *app.App {
	t.Helper()
	cfg := Config(t)
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := app.New(context.Background(), cfg, app.RoleAll, Logger())
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(context.Background()) })
	require.NoError(t, a.Start(context.Background()))
	return a
}

// Logger is quiet unless PAYGATE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("PAYGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestMerchant is the seeded merchant's key and secret as headers.
func TestMerchant() http.Header {
	return http.Header{"X-Api-Key": {merchants.TestMerchantKey}, "X-Api-Secret": {merchants.TestMerchantSecret}}
}

// Do sends one request to the app's handler and returns the recorded answer.
// A nil header sends no credentials.
func Do(t testing.TB, h http.Handler, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// With returns h plus the given header pairs.
func With(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// NewMerchant creates another merchant and returns its credentials as headers.
func NewMerchant(t testing.TB, a *app.App, email string) (merchants.Created, http.Header) {
	t.Helper()
	m, err := merchants.Create(context.Background(), a.Pool, "Other "+email, email,
		func() (string, error) { return "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=", nil })
	require.NoError(t, err)
	return m, http.Header{"X-Api-Key": {m.APIKey}, "X-Api-Secret": {m.APISecret}}
}
