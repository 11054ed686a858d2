package app_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/web"
)

func TestAdminRoutesNeedTheToken(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.AdminToken = "adm-secret" })
	basic := func(user, pass string) http.Header {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pass)
		return http.Header{"Authorization": r.Header["Authorization"]}
	}
	bearer := http.Header{"Authorization": {"Bearer adm-secret"}}
	for _, path := range []string{"/riverui/", "/riverui/api/features", "/debug/pprof/", "/debug/pprof/heap"} {
		for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, basic("root", "adm-secret"),
			basic("admin", "wrong"), apptest.TestMerchant()} {
			rec := apptest.Do(t, a.Echo, http.MethodGet, path, "", h)
			require.Equal(t, http.StatusUnauthorized, rec.Code, "%s %v", path, h)
			require.Equal(t, web.CodeUnauthorized, errorBody(t, rec.Body.Bytes()).Code)
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Basic")
		}
		for _, h := range []http.Header{bearer, basic("admin", "adm-secret")} {
			rec := apptest.Do(t, a.Echo, http.MethodGet, path, "", h)
			require.Equal(t, http.StatusOK, rec.Code, "%s: %.200s", path, rec.Body.String())
		}
	}
	// River UI is the real one, listing jobs with their arguments hidden.
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/riverui/", "", bearer)
	require.Contains(t, strings.ToLower(rec.Body.String()), "<html")
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/riverui/api/features", "", bearer)
	require.Contains(t, rec.Body.String(), `"job_list_hide_args_by_default":true`)
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/riverui/api/jobs?state=completed&limit=5", "", bearer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

// A browser sends the Basic credentials it remembers with another site's
// form too: River UI's changes from another site's page are refused, from
// its own page (or from no browser) they go through.
func TestAdminChangesRefusedFromAnotherSite(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.AdminToken = "adm-secret" })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth("admin", "adm-secret")
	cancel := func(extra ...string) *httptest.ResponseRecorder {
		h := http.Header{"Authorization": r.Header["Authorization"], "Content-Type": {"text/plain"}}
		for i := 0; i < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return apptest.Do(t, a.Echo, http.MethodPost, "/riverui/api/jobs/cancel", `{"job_ids":["1"]}`, h)
	}
	for _, hdr := range [][]string{{"Origin", "https://evil.example"}, {"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"}, {"Origin", "http://example.com", "Sec-Fetch-Site", "same-site"}} {
		rec := cancel(hdr...)
		require.Equal(t, http.StatusForbidden, rec.Code, "%v: %s", hdr, rec.Body.String())
		require.Equal(t, web.CodeBadRequest, errorBody(t, rec.Body.Bytes()).Code)
	}
	for _, hdr := range [][]string{nil, {"Origin", "http://example.com"}, {"Sec-Fetch-Site", "same-origin"},
		{"Sec-Fetch-Site", "same-origin", "Origin", "https://gw.example"}} { // a proxy that rewrites Host
		rec := cancel(hdr...)
		require.NotContains(t, []int{http.StatusForbidden, http.StatusUnauthorized}, rec.Code, "%v: %s", hdr, rec.Body.String())
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/riverui/api/features", "", http.Header{
		"Authorization": r.Header["Authorization"], "Origin": {"https://evil.example"}})
	require.Equal(t, http.StatusOK, rec.Code, "a read changes nothing")
}

func TestAdminRoutesAbsentWithoutToken(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	for _, path := range []string{"/riverui/", "/riverui/api/features", "/debug/pprof/", "/debug/pprof/heap"} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, path, "", http.Header{"Authorization": {"Bearer anything"}})
		require.Equal(t, http.StatusNotFound, rec.Code, path)
		require.Equal(t, web.CodeNotFound, errorBody(t, rec.Body.Bytes()).Code)
	}
}

// With ADMIN_TOKEN set, the rest of the gateway still answers its own
// envelopes: an unknown route is 404 and a wrong method 405, with no Basic
// prompt (the guard sits on the admin routes only).
func TestAdminTokenLeavesOtherRoutesAlone(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.AdminToken = "adm-secret" })
	for _, tc := range []struct {
		method, path string
		status       int
		code         web.Code
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, web.CodeNotFound},
		{http.MethodGet, "/", http.StatusNotFound, web.CodeNotFound},
		{http.MethodGet, "/debug/nope", http.StatusNotFound, web.CodeNotFound},
		{http.MethodDelete, "/api/v1/orders", http.StatusMethodNotAllowed, web.CodeBadRequest},
		{http.MethodPost, "/health", http.StatusMethodNotAllowed, web.CodeBadRequest},
		{http.MethodPost, "/debug/pprof/heap", http.StatusMethodNotAllowed, web.CodeBadRequest},
	} {
		rec := apptest.Do(t, a.Echo, tc.method, tc.path, "", nil)
		require.Equal(t, tc.status, rec.Code, "%s %s: %s", tc.method, tc.path, rec.Body.String())
		require.Equal(t, tc.code, errorBody(t, rec.Body.Bytes()).Code, "%s %s", tc.method, tc.path)
		require.Empty(t, rec.Header().Get("WWW-Authenticate"), "%s %s", tc.method, tc.path)
	}
	// The orders route itself still needs merchant credentials, not the admin token.
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", http.Header{"Authorization": {"Bearer adm-secret"}})
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Empty(t, rec.Header().Get("WWW-Authenticate"))
}

// A worker serves only /health, /ready and /metrics, even with ADMIN_TOKEN
// set; its unknown routes answer 404 without a Basic prompt.
func TestAdminRoutesNotOnWorker(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	cfg.AdminToken = "adm-secret"
	w, err := app.New(t.Context(), cfg, app.RoleWorker, apptest.Logger())
	require.NoError(t, err)
	defer w.Close(t.Context())
	bearer := http.Header{"Authorization": {"Bearer adm-secret"}}
	for _, path := range []string{"/riverui/", "/riverui", "/debug/pprof/", "/debug/pprof/heap", "/api/v1/orders", "/nope"} {
		for _, h := range []http.Header{nil, bearer} {
			rec := apptest.Do(t, w.Echo, http.MethodGet, path, "", h)
			require.Equal(t, http.StatusNotFound, rec.Code, "%s %v", path, h)
			require.Equal(t, web.CodeNotFound, errorBody(t, rec.Body.Bytes()).Code)
			require.Empty(t, rec.Header().Get("WWW-Authenticate"), path)
		}
	}
	rec := apptest.Do(t, w.Echo, http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
}

// Where ADMIN_TOKEN mounts the profiler, Go's mutex profile samples
// contention (one contended lock in 10), so /debug/pprof/mutex shows where
// goroutines wait on each other's locks instead of staying empty; a process
// without the token does not sample. Not parallel: the setting is the
// process's, and the other tests' apps with a token set it too (Go resumes
// the parallel tests only after this one).
func TestTheProfilerSamplesLockContention(t *testing.T) {
	previous := runtime.SetMutexProfileFraction(0)
	t.Cleanup(func() { runtime.SetMutexProfileFraction(previous) })
	apptest.New(t)
	require.Zero(t, runtime.SetMutexProfileFraction(-1), "no token: no sampling")

	a := apptest.New(t, func(c *app.Config) { c.AdminToken = "adm-secret" })
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/debug/pprof/mutex?debug=1", "", http.Header{"Authorization": {"Bearer adm-secret"}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "sampling period=10\n")
}
