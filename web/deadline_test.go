package web_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/web"
)

// API requests carry the request deadline; the profiler and River UI, which
// stream for as long as they were asked to, do not.
func TestDeadlineSparesOperatorStreams(t *testing.T) {
	t.Parallel()
	e := echo.New()
	e.HTTPErrorHandler = web.ErrorHandler(slog.New(slog.DiscardHandler))
	web.Middleware(e, slog.New(slog.DiscardHandler), time.Hour)
	hasDeadline := func(c echo.Context) error {
		_, ok := c.Request().Context().Deadline()
		return c.JSON(http.StatusOK, ok)
	}
	for _, p := range []string{"/api/v1/orders", "/debug/pprof/profile", "/debug/pprof/trace", "/riverui", "/riverui/*", "/riverui-x", "/debug/pprofx"} {
		e.GET(p, hasDeadline)
	}
	for path, want := range map[string]string{
		"/api/v1/orders":       "true",
		"/riverui-x":           "true",
		"/debug/pprofx":        "true",
		"/debug/pprof/profile": "false",
		"/debug/pprof/trace":   "false",
		"/riverui":             "false",
		"/riverui/api/jobs":    "false",
	} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.JSONEq(t, want, rec.Body.String(), path)
	}
}
