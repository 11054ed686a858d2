package ui_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
)

// Pages run no inline script and say who may frame them; every file has an
// ETag that answers 304.
func TestPagesHeaders(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	for _, c := range []struct {
		path, frameAncestors string
	}{
		{"/checkout?order_id=order_AAAAAAAAAAAAAAAA&key=k", "frame-ancestors *"},
		{"/dashboard", "frame-ancestors 'none'"},
		{"/dashboard/", "frame-ancestors 'none'"},
		{"/dashboard/transactions", "frame-ancestors 'none'"},
		{"/dashboard/transactions/pay_AAAAAAAAAAAAAAAA", "frame-ancestors 'none'"},
		{"/dashboard/webhooks", "frame-ancestors 'none'"},
		{"/dashboard/docs", "frame-ancestors 'none'"},
	} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, c.path, "", nil)
		require.Equal(t, http.StatusOK, rec.Code, c.path)
		require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"), c.path)
		csp := rec.Header().Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", c.path)
		require.NotContains(t, csp, "unsafe-inline", c.path)
		require.NotContains(t, csp, "unsafe-eval", c.path)
		require.Contains(t, csp, c.frameAncestors, c.path)
		if strings.HasPrefix(c.path, "/dashboard") {
			require.Equal(t, "DENY", rec.Header().Get("X-Frame-Options"), c.path)
		} else {
			require.Empty(t, rec.Header().Get("X-Frame-Options"), "the checkout is made to be framed")
		}
		body := rec.Body.String()
		require.NotRegexp(t, `<script(\s[^>]*)?>\s*[^<\s]`, body, "%s: inline script", c.path)
		require.NotRegexp(t, `(?i)\son[a-z]+\s*=`, body, "%s: inline event handler", c.path)
		require.NotRegexp(t, `(?i)\sstyle\s*=`, body, "%s: inline style", c.path)
		requireETag(t, a.Echo, c.path, rec.Header().Get("ETag"))
	}
}

func TestSDKServedSmallAndCached(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	var etag string
	for _, path := range []string{"/checkout.js", "/web/checkout.js"} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, path, "", nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, "text/javascript; charset=utf-8", rec.Header().Get("Content-Type"))
		require.Contains(t, rec.Header().Get("Cache-Control"), "max-age=")
		require.Equal(t, "cross-origin", rec.Header().Get("Cross-Origin-Resource-Policy"))
		require.Less(t, rec.Body.Len(), 8<<10, "the SDK stays a few KiB")
		require.Contains(t, rec.Body.String(), "window.PaymentGateway")
		if etag == "" {
			etag = rec.Header().Get("ETag")
		}
		require.Equal(t, etag, rec.Header().Get("ETag"), "one file, one ETag")
		requireETag(t, a.Echo, path, etag)
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/assets/checkout-page.js", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	// The page posts to its parent only with the origin it was given.
	posts := regexp.MustCompile(`postMessage\(([^)]*)\)`).FindAllStringSubmatch(rec.Body.String(), -1)
	require.NotEmpty(t, posts)
	for _, p := range posts {
		require.Equal(t, "message, parentOrigin", p[1])
	}
	requireETag(t, a.Echo, "/assets/checkout-page.js", rec.Header().Get("ETag"))

	rec = apptest.Do(t, a.Echo, http.MethodGet, "/assets/nope.js", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code)
	code, _ := apptest.ErrorOf(t, decode(t, rec.Body.Bytes()))
	require.Equal(t, "NOT_FOUND", code)
}

func requireETag(t *testing.T, h http.Handler, path, etag string) {
	t.Helper()
	require.Regexp(t, regexp.MustCompile(`^"[0-9a-f]{24}"$`), etag, path)
	rec := apptest.Do(t, h, http.MethodGet, path, "", http.Header{"If-None-Match": {`"other", ` + etag}})
	require.Equal(t, http.StatusNotModified, rec.Code, path)
	require.Empty(t, rec.Body.Bytes(), path)
	rec = apptest.Do(t, h, http.MethodGet, path, "", http.Header{"If-None-Match": {`"other"`}})
	require.Equal(t, http.StatusOK, rec.Code, path)
}
