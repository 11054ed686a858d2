package app

import (
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is every route of the gateway, on one screen.
func (a *App) routes(e *echo.Echo) {
	secret, optional := a.Auth.Secret, a.Auth.Optional

	e.GET("/health", a.health)
	e.GET("/metrics", echo.WrapHandler(promhttp.Handler()))
	e.GET("/api/v1/test/jobs/status", a.jobsStatus)
	e.GET("/api/v1/test/merchant", a.testMerchant, optional)

	_ = secret
}
