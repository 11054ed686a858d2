package app

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/labstack/echo/v4"
	"riverqueue.com/riverui"

	"paygate/web"
)

// adminRoutes mounts River UI at /riverui/ and Go's profiler at
// /debug/pprof/, only when ADMIN_TOKEN is set, both behind it. Without the
// token, and on a worker, they do not exist (404). River UI lists jobs with
// their arguments hidden (they hold ids only: card data never enters a job).
func (a *App) adminRoutes(e *echo.Echo) error {
	token := a.Config.AdminToken
	if token == "" || a.role == RoleWorker {
		// A worker serves only /health, /ready and /metrics (API.md,
		// Operations); River UI runs on an api or all process.
		return nil
	}
	// Go's mutex profile (/debug/pprof/mutex) stays empty unless the
	// runtime samples contention: where ADMIN_TOKEN mounts the profiler,
	// the process records one contended lock in mutexProfileFraction for
	// its whole life, a stack each (the profile scales the counts back up),
	// so an operator and the bench's -profile see where paygate's
	// goroutines wait on each other's locks. The setting is the process's,
	// not the App's: a process without the token never samples.
	runtime.SetMutexProfileFraction(mutexProfileFraction)
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

	// The guard goes on each route, not on a group: an echo group with
	// middleware also claims every unmatched path under its prefix, and
	// with an empty prefix that turns every unknown route and wrong method
	// of the whole API into this 401.
	guard := adminAuth(token)
	riverUI := echo.WrapHandler(ui)
	e.Any("/riverui", riverUI, guard)
	e.Any("/riverui/*", riverUI, guard)
	e.GET("/debug/pprof/", echo.WrapHandler(http.HandlerFunc(pprof.Index)), guard)
	e.GET("/debug/pprof/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)), guard)
	e.GET("/debug/pprof/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)), guard)
	e.Any("/debug/pprof/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)), guard)
	e.GET("/debug/pprof/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)), guard)
	// The named profiles (heap, goroutine, allocs, block, mutex, threadcreate).
	e.GET("/debug/pprof/:name", echo.WrapHandler(http.HandlerFunc(pprof.Index)), guard)
	return nil
}

// mutexProfileFraction: one contended lock in 10 is recorded where the
// profiler is mounted, a stack walk each. Only contended unlocks are sampled:
// a lock nobody waits for costs nothing more. At 64 clients paygate's
// locks are contended some hundreds of times a second; one in 100 left a
// 4-second profile a dozen samples, too few to tell where the waits are.
const mutexProfileFraction = 10

// adminAuth lets through "Authorization: Bearer <token>" or HTTP Basic with
// user admin and the token as password; anything else is 401 with the
// envelope and a Basic challenge, so a browser asks for it. A browser
// remembers Basic credentials and sends them with any page's request,
// another site's form included: a request that changes something (River
// UI's cancel, retry and delete) from another site's page is refused (403),
// as the dashboard's are (dashboard.SameOrigin; crossOrigin).
func adminAuth(token string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			user, pass, basic := r.BasicAuth()
			if bearer(r, token) || basic && user == "admin" && subtle.ConstantTimeCompare([]byte(pass), []byte(token)) == 1 {
				if crossOrigin.Check(r) != nil {
					return &web.Error{Code: web.CodeBadRequest, Status: http.StatusForbidden,
						Description: "Request refused: it came from another site's page"}
				}
				return next(c)
			}
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="paygate admin", charset="UTF-8"`)
			return web.Errorf(web.CodeUnauthorized, "Admin routes need ADMIN_TOKEN (Bearer, or Basic with user admin)")
		}
	}
}

// crossOrigin refuses a browser's changes sent from a page of another
// origin: by Sec-Fetch-Site, or by Origin where a browser sends no
// Sec-Fetch-Site. A request with neither is no browser's.
var crossOrigin = http.NewCrossOriginProtection()
