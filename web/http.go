// Package web holds what every handler shares: the error vocabulary and the
// one place it becomes an HTTP answer, JSON decoding with precise messages,
// request ids, the request log line, panic recovery, and the embedded
// browser assets.
//
// Invariants: every error leaves as the envelope
// {"error":{"code","description","field"}}; nothing unexpected is shown to
// the client (it is logged with the request id instead); response JSON is
// compact and not HTML-escaped, so stored and replayed bytes are identical;
// a request string that is not valid UTF-8 or holds NUL is refused, never
// repaired; a client's request id is used only when it is a short token.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// MaxBodyBytes is the largest request body accepted (API.md: 64 KiB).
const MaxBodyBytes = 64 << 10

// merchantIDKey is where authentication leaves the merchant id for the
// request log line.
const merchantIDKey = "paygate.merchant_id"

// SetMerchantID records the authenticated merchant for the request log.
func SetMerchantID(c echo.Context, id string) { c.Set(merchantIDKey, id) }

// Marshal encodes v as compact JSON without HTML escaping and without a
// trailing newline. Everything we send goes through it, so that a stored
// response or webhook body is byte-identical when replayed.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// JSON answers v with status.
func JSON(c echo.Context, status int, v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	return c.Blob(status, echo.MIMEApplicationJSON, b)
}

// Bind reads the request body into v and returns the raw bytes. An empty body
// decodes as {} so that optional-body routes need no special case. Errors
// name the field at fault where there is one.
func Bind(c echo.Context, v any) ([]byte, error) {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, tooLarge()
		}
		return nil, Errorf(CodeBadRequest, "Could not read the request body")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	if err := Decode(raw, v); err != nil {
		return nil, err
	}
	return raw, nil
}

// Decode unmarshals a JSON object into v with client-facing errors. A
// string that is not valid UTF-8 or holds NUL is refused naming its field:
// it is never stored with U+FFFD in place of what the client sent.
func Decode(raw []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		// json.Unmarshal would leave v untouched, as if {} had been sent.
		return Errorf(CodeBadRequest, "Request body must be a JSON object")
	}
	err := decodeExact(raw, v)
	if err == nil {
		if e := checkText(raw, reflect.TypeOf(v)); e != nil {
			return e
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return Errorf(CodeBadRequest, "Request body must be a JSON object")
		}
		return BadField(typeErr.Field, fmt.Sprintf("%s must be %s", typeErr.Field, kindName(typeErr.Type)))
	}
	return Errorf(CodeBadRequest, "Malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// HasNUL reports whether s holds U+0000, which JSON can carry but
// PostgreSQL text and jsonb cannot: such input is refused as invalid.
func HasNUL(s string) bool { return strings.ContainsRune(s, 0) }

func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "of another type"
}

func tooLarge() *Error {
	return &Error{Code: CodeBadRequest, Status: http.StatusRequestEntityTooLarge,
		Description: fmt.Sprintf("Request body exceeds the limit of %d KiB", MaxBodyBytes>>10)}
}

// IsUnavailable reports whether an error means the database is unreachable;
// the app sets it (web does not import db).
var IsUnavailable = func(error) bool { return false }

// ErrorHandler is echo's error handler: the one place where an error becomes
// an HTTP answer.
func ErrorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := toAPIError(err)
		if e.Code == CodeInternal || e.Code == CodeUnavailable {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"method", c.Request().Method, "route", c.Path(), "error", err.Error())
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(e.HTTPStatus())
		} else {
			werr = JSON(c, e.HTTPStatus(), map[string]*Error{"error": e})
		}
		if werr != nil {
			logger.Error("write error response", "error", werr)
		}
	}
}

func toAPIError(err error) *Error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var httpErr *echo.HTTPError
	if errors.As(err, &httpErr) {
		switch httpErr.Code {
		case http.StatusNotFound:
			return Errorf(CodeNotFound, "Route not found")
		case http.StatusMethodNotAllowed:
			return &Error{Code: CodeBadRequest, Status: http.StatusMethodNotAllowed, Description: "Method not allowed for this route"}
		case http.StatusRequestEntityTooLarge:
			return tooLarge()
		case http.StatusUnauthorized:
			return Errorf(CodeUnauthorized, "Invalid API credentials")
		case http.StatusTooManyRequests:
			return Errorf(CodeRateLimited, "Too many requests")
		case http.StatusServiceUnavailable:
			return Errorf(CodeUnavailable, "Service temporarily unavailable")
		}
		if httpErr.Code >= 400 && httpErr.Code < 500 {
			return &Error{Code: CodeBadRequest, Status: httpErr.Code, Description: fmt.Sprint(httpErr.Message)}
		}
	}
	if IsUnavailable(err) {
		return Errorf(CodeUnavailable, "Database unavailable, try again shortly")
	}
	return Errorf(CodeInternal, "An unexpected error occurred")
}

// Middleware is the stack every request passes: a request id, a deadline so
// that a stuck database answers 503 instead of hanging, the body limit, one
// log line, and panic recovery inside it so that a panic is logged and
// answered like any other unexpected error.
func Middleware(e *echo.Echo, logger *slog.Logger, timeout time.Duration) {
	e.Use(requestID(middleware.RequestID()))
	e.Use(requestLog(logger))
	e.Use(recoverPanic(logger))
	e.Use(deadline(timeout))
	e.Use(bodyLimit)
}

// bodyLimit refuses bodies over MaxBodyBytes: at once when Content-Length
// says so, and while reading otherwise.
func bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > MaxBodyBytes {
			return tooLarge()
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, MaxBodyBytes)
		return next(c)
	}
}

// deadline bounds every API request by timeout. The operator's streams are
// not API calls and are left without one: a CPU profile or trace runs for
// the seconds it was asked for, and River UI's requests are its own.
func deadline(timeout time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if timeout <= 0 || operatorStream(c.Request().URL.Path) {
				return next(c)
			}
			ctx, cancel := context.WithTimeout(c.Request().Context(), timeout)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// operatorStream reports whether path is under /debug/pprof/ or /riverui,
// the admin routes (behind ADMIN_TOKEN) that may run longer than an API call.
func operatorStream(path string) bool {
	return strings.HasPrefix(path, "/debug/pprof/") || path == "/riverui" || strings.HasPrefix(path, "/riverui/")
}

// requestLevel is the level of a request's log line. A request that
// changed something (POST, PUT, PATCH, DELETE) is logged at info whatever
// its answer: a merchant quotes its X-Request-Id about a payment or a
// refund, and the operator must find it. A read that succeeded is logged
// at debug: reads are most requests (polling checkout pages, dashboards,
// health checks), one JSON line each was 4 % of paygate's CPU under load
// (make bench, pprof), and the metrics count and time them by route and
// status anyway. A refused read (4xx) stays at info, where a merchant's
// integration problem shows; a failure (5xx) is an error, except a probe's
// 503 (/health, /ready): that is the answer the probe asked for (the worker
// not yet beating, or the process draining at every deploy), logged at warn
// where its cause is. LOG_LEVEL=debug logs all.
func requestLevel(method, route string, status int) slog.Level {
	switch {
	case status == http.StatusServiceUnavailable && (route == "/health" || route == "/ready"):
		return slog.LevelWarn
	case status >= 500:
		return slog.LevelError
	case status >= 400:
		return slog.LevelInfo
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func requestLog(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				// Answer now so the logged status is the one the client got.
				c.Error(err)
			}
			status := c.Response().Status
			elapsed := time.Since(start)
			observe(c, status, elapsed)
			level := requestLevel(c.Request().Method, c.Path(), status)
			ctx := c.Request().Context()
			if !logger.Enabled(ctx, level) {
				return nil
			}
			attrs := []slog.Attr{
				slog.String("method", c.Request().Method),
				slog.String("route", c.Path()),
				slog.Int("status", status),
				slog.Int64("duration_us", elapsed.Microseconds()),
				slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			}
			if id, ok := c.Get(merchantIDKey).(string); ok {
				attrs = append(attrs, slog.String("merchant_id", id))
			}
			logger.LogAttrs(ctx, level, "request", attrs...)
			return nil
		}
	}
}
