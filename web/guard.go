package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v4"
)

// MaxRequestIDLength bounds a client-supplied X-Request-Id: it is echoed in
// the answer and written to every log line of the request.
const MaxRequestIDLength = 128

// requestID keeps a client's X-Request-Id only when it is a short token
// (1 to 128 characters of RFC 9110 tchar); any other is replaced by a
// generated one, so that a client cannot make the gateway log or echo
// kilobytes, control characters or line breaks.
func requestID(generate echo.MiddlewareFunc) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		h := generate(next)
		return func(c echo.Context) error {
			header := c.Request().Header
			if ids := header.Values(echo.HeaderXRequestID); len(ids) > 0 && (len(ids) > 1 || !ValidRequestID(ids[0])) {
				header.Del(echo.HeaderXRequestID)
			}
			return h(c)
		}
	}
}

// ValidRequestID reports whether id may be used as a request id as sent.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isTChar(id[i]) {
			return false
		}
	}
	return true
}

// isTChar is RFC 9110's token character.
func isTChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// recoverPanic turns a panic in a handler into a 500 INTERNAL_ERROR with
// the envelope, logged with the request id and the stack, so that a bug
// costs one request, not the connection and the trace. http.ErrAbortHandler
// is re-raised: it is net/http's way to abort a response on purpose.
func recoverPanic(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				if e, ok := r.(error); ok && errors.Is(e, http.ErrAbortHandler) {
					panic(r)
				}
				stack := debug.Stack()
				if s, ok := r.(interface{ PanicStack() []byte }); ok {
					stack = s.PanicStack() // raised again elsewhere (db.CallbackPanic): where it began
				}
				logger.ErrorContext(c.Request().Context(), "panic in handler",
					"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
					"method", c.Request().Method, "route", c.Path(),
					"panic", fmt.Sprint(r), "stack", string(stack))
				err = Errorf(CodeInternal, "An unexpected error occurred")
			}()
			return next(c)
		}
	}
}
