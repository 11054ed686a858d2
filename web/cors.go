package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// PublicCORS opens the publishable routes (/api/v1/orders/{id}/public,
// /api/v1/payments/public, /api/v1/payments/{id}/public) to pages of any
// origin, so a merchant may call them from its own checkout. They take only
// the publishable key, which is meant to sit in web pages, and never a
// cookie, so answering every origin with "*" leaks nothing. Secret-key routes
// never get these headers: a browser page must never hold a secret.
var PublicCORS = middleware.CORSWithConfig(middleware.CORSConfig{
	AllowOrigins:  []string{"*"},
	AllowMethods:  []string{http.MethodGet, http.MethodPost},
	AllowHeaders:  []string{"X-Api-Key", echo.HeaderContentType, "Idempotency-Key"},
	ExposeHeaders: []string{echo.HeaderXRequestID, "Idempotent-Replayed"},
	MaxAge:        600,
})

// Preflight is the handler the OPTIONS routes of the publishable paths are
// registered with. PublicCORS answers every OPTIONS request before it, so it
// only gives those routes a handler of the right meaning.
func Preflight(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
