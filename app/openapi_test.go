package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"paygate/app/apptest"
	"paygate/docs"
)

// The document is served as JSON and YAML, and is the embedded file.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/openapi.yaml", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, string(docs.OpenAPIYAML), rec.Body.String())

	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	var fromJSON, fromYAML any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &fromJSON))
	require.NoError(t, yaml.Unmarshal(docs.OpenAPIYAML, &fromYAML))
	want, err := json.Marshal(fromYAML)
	require.NoError(t, err)
	require.JSONEq(t, string(want), rec.Body.String())
	require.Equal(t, "3.1.0", fromJSON.(map[string]any)["openapi"])
}

// Both credential schemes, the replay header, a 405 and HEAD, all checked
// against the document by apptest.Do.
func TestAPIAnswersMatchTheDocument(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	basic := http.Header{}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(h.Get("X-Api-Key"), h.Get("X-Api-Secret"))
	basic.Set("Authorization", req.Header.Get("Authorization"))

	orderID := apptest.CreateOrder(t, a, basic, 50000)
	keyed := apptest.With(h, "Idempotency-Key", "doc-check-1")
	first := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", apptest.UPIBody(orderID), keyed)
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	again := apptest.Do(t, a.Echo, http.MethodPost, "/api/v1/payments", apptest.UPIBody(orderID), keyed)
	require.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))

	for _, tc := range []struct {
		method, path string
		header       http.Header
		status       int
	}{
		{http.MethodGet, "/api/v1/orders/" + orderID, basic, 200},
		{http.MethodGet, "/api/v1/orders/" + orderID, h, 200},
		{http.MethodGet, "/api/v1/orders/" + orderID, nil, 401},
		{http.MethodGet, "/api/v1/orders/" + orderID + "/public", apptest.With(nil, "X-Api-Key", h.Get("X-Api-Key")), 200},
		{http.MethodDelete, "/api/v1/orders", h, 405},
		{http.MethodPatch, "/api/v1/payments/" + orderID, h, 405},
		{http.MethodGet, "/api/v1/no-such-thing", h, 404},
		{http.MethodPost, "/api/v1/orders", apptest.With(h, "Idempotency-Key", strings.Repeat("k", 256)), 400},
	} {
		rec := apptest.Do(t, a.Echo, tc.method, tc.path, "", tc.header)
		require.Equal(t, tc.status, rec.Code, "%s %s: %s", tc.method, tc.path, rec.Body.String())
	}
}

// HEAD answers wherever GET does, with the GET's status and no body.
func TestHeadOnEveryGet(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	orderID := apptest.CreateOrder(t, a, h, 50000)
	// /health is 200 once the worker has beaten, and so is its HEAD.
	waitFor(t, func() bool { return apptest.Do(t, a.Echo, http.MethodGet, "/health", "", nil).Code == http.StatusOK })
	require.Equal(t, http.StatusOK, apptest.Do(t, a.Echo, http.MethodHead, "/health", "", nil).Code)
	for _, tc := range []struct {
		path   string
		header http.Header
	}{
		{"/health", nil},
		{"/metrics", nil},
		{"/api/v1/openapi.json", nil},
		{"/api/v1/test/jobs/status", nil},
		{"/api/v1/orders", h},
		{"/api/v1/orders/" + orderID, h},
		{"/api/v1/orders/" + orderID, nil},
		{"/api/v1/orders/order_0000000000000000", h},
		{"/api/v1/webhooks/config", h},
	} {
		get := apptest.Do(t, a.Echo, http.MethodGet, tc.path, "", tc.header)
		head := apptest.Do(t, a.Echo, http.MethodHead, tc.path, "", tc.header)
		require.NotEqual(t, http.StatusMethodNotAllowed, head.Code, tc.path)
		if tc.path != "/health" { // health may change between the two calls
			require.Equal(t, get.Code, head.Code, tc.path)
		}
		require.Equal(t, get.Header().Get("Content-Type"), head.Header().Get("Content-Type"), tc.path)
		require.Zero(t, head.Body.Len(), tc.path)
	}
	// HEAD where only POST exists is still 405.
	require.Equal(t, http.StatusMethodNotAllowed, apptest.Do(t, a.Echo, http.MethodHead, "/api/v1/payments/pay_0000000000000000/capture", "", h).Code)
}

// The validator itself fails on drift: an answer the document does not allow
// is reported. Each case is a made-up exchange.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	t.Parallel()
	h := apptest.TestMerchant()
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		answer                   string
	}{
		{"wrong field type", "GET", "/api/v1/orders/order_0000000000000000", "", h, 200, `{"id":5}`},
		{"undocumented status", "GET", "/api/v1/orders/order_0000000000000000", "", h, 418, `{"error":{"code":"NOT_FOUND","description":"x"}}`},
		{"undocumented route answering", "GET", "/api/v1/secret-admin", "", h, 200, `{}`},
		{"405 without the envelope", "DELETE", "/api/v1/orders", "", h, 405, `{"message":"nope"}`},
		{"forbidden request succeeding", "POST", "/api/v1/orders", `{"amount":5}`, h, 201, `{}`},
		{"missing credentials succeeding", "GET", "/api/v1/orders", "", nil, 200, `{"data":[],"total":0,"limit":10,"offset":0}`},
		{"bad replay header", "POST", "/api/v1/orders", `{"amount":500}`, apptest.With(h, "Idempotency-Key", "k"), 201, ""},
		{"HEAD with a body", "HEAD", "/health", "", nil, 200, `{"status":"healthy"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", "application/json")
			if tc.name == "bad replay header" {
				rec.Header().Set("Idempotent-Replayed", "yes")
				tc.answer = fmt.Sprintf(`{"id":"order_0000000000000000","merchant_id":"%s","amount":500,"currency":"INR","receipt":null,"notes":{},"status":"created","created_at":"2026-11-25T10:31:00Z","updated_at":"2026-11-25T10:31:00Z"}`,
					"550e8400-e29b-41d4-a716-446655440000")
			}
			rec.WriteHeader(tc.status)
			rec.Body.WriteString(tc.answer)
			spy := &spyTB{TB: t}
			apptest.CheckOpenAPI(spy, req, tc.body, rec)
			require.NotEmpty(t, spy.errors, "the validator accepted it")
		})
	}
}

// spyTB records reported errors instead of failing the test.
type spyTB struct {
	testing.TB
	errors []string
}

func (s *spyTB) Errorf(format string, args ...any) {
	s.errors = append(s.errors, fmt.Sprintf(format, args...))
}
func (s *spyTB) Helper() {}
