package app

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/labstack/echo/v4"
	"riverqueue.com/riverui"

	"paygate/web"
)

// adminRoutes mounts River UI at /riverui/ and Go's profiler at
// /debug/pprof/, only when ADMIN_TOKEN is set, both behind it. Without the
// token they do not exist (404). River UI lists jobs with their arguments
// hidden (they hold ids only: card data never enters a job).
func (a *App) adminRoutes(e *echo.Echo) error {
	token := a.Config.AdminToken
	if token == "" {
		return nil
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints:                riverui.NewEndpoints(a.River, nil),
		JobListHideArgsByDefault: true,
		Logger:                   riverLogger(a.Logger),
		Prefix:                   "/riverui",
	})
	if err != nil {
		return fmt.Errorf("river ui: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := ui.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("river ui: %w", err)
	}
	a.stopAdmin = cancel

	guard := adminAuth(token)
	admin := e.Group("", guard)
	admin.Any("/riverui", echo.WrapHandler(ui))
	admin.Any("/riverui/*", echo.WrapHandler(ui))
	admin.GET("/debug/pprof/", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	admin.GET("/debug/pprof/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)))
	admin.GET("/debug/pprof/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	admin.Any("/debug/pprof/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	admin.GET("/debug/pprof/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	// The named profiles (heap, goroutine, allocs, block, mutex, threadcreate).
	admin.GET("/debug/pprof/:name", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	return nil
}

// adminAuth lets through "Authorization: Bearer <token>" or HTTP Basic with
// user admin and the token as password; anything else is 401 with the
// envelope and a Basic challenge, so a browser asks for it.
func adminAuth(token string) echo.MiddlewareFunc {
	same := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(token)) == 1 }
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(got) {
				return next(c)
			}
			if user, pass, ok := r.BasicAuth(); ok && user == "admin" && same(pass) {
				return next(c)
			}
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="paygate admin", charset="UTF-8"`)
			return web.Errorf(web.CodeUnauthorized, "Admin routes need ADMIN_TOKEN (Bearer, or Basic with user admin)")
		}
	}
}
