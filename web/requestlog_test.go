package web_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/web"
)

// A read that succeeded is logged at debug only, a change that succeeded
// (a merchant may quote its request id) at info; a refused request at info
// and a failed one at error, each with its request id, route and status. A
// probe's 503 is the answer it asked for, at warn.
func TestRequestLogLevels(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
		e := echo.New()
		e.HTTPErrorHandler = web.ErrorHandler(logger)
		web.Middleware(e, logger, time.Minute)
		e.GET("/ok", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
		e.POST("/created", func(c echo.Context) error { return c.NoContent(http.StatusCreated) })
		e.GET("/refused", func(echo.Context) error { return web.BadField("x", "x is wrong") })
		e.GET("/failed", func(echo.Context) error { return web.Errorf(web.CodeInternal, "boom") })
		for _, probe := range []string{"/health", "/ready"} {
			e.GET(probe, func(c echo.Context) error { return c.NoContent(http.StatusServiceUnavailable) })
		}

		got := map[string]string{}
		for _, path := range []string{"/ok", "/created", "/refused", "/failed", "/health", "/ready"} {
			buf.Reset()
			rec := httptest.NewRecorder()
			method := http.MethodGet
			if path == "/created" {
				method = http.MethodPost
			}
			e.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
				var entry map[string]any
				if len(line) == 0 || json.Unmarshal(line, &entry) != nil || entry["msg"] != "request" {
					continue
				}
				require.Equal(t, path, entry["route"])
				require.Equal(t, float64(rec.Code), entry["status"])
				require.Equal(t, rec.Header().Get(echo.HeaderXRequestID), entry["request_id"])
				got[path] = entry["level"].(string)
			}
		}
		want := map[string]string{"/created": "INFO", "/refused": "INFO", "/failed": "ERROR", "/health": "WARN", "/ready": "WARN"}
		if level == slog.LevelDebug {
			want["/ok"] = "DEBUG"
		}
		require.Equal(t, want, got, "logged at %s", level)
	}
}
