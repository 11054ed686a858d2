package app_test

import (
	"net/http"
	"net/http/httptest"
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

func TestAdminRoutesAbsentWithoutToken(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	for _, path := range []string{"/riverui/", "/riverui/api/features", "/debug/pprof/", "/debug/pprof/heap"} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, path, "", http.Header{"Authorization": {"Bearer anything"}})
		require.Equal(t, http.StatusNotFound, rec.Code, path)
		require.Equal(t, web.CodeNotFound, errorBody(t, rec.Body.Bytes()).Code)
	}
}
