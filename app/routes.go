package app

import (
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"paygate/webhooks"
)

// routes is every route of the gateway, on one screen.
func (a *App) routes(e *echo.Echo) {
	secret, optional := a.Auth.Secret, a.Auth.Optional

	e.GET("/health", a.health)
	e.GET("/metrics", echo.WrapHandler(promhttp.Handler()))
	e.GET("/api/v1/test/jobs/status", a.jobsStatus)
	e.GET("/api/v1/test/merchant", a.testMerchant, optional)

	hooks := webhooks.NewHandler(a.Webhooks, a.Idempotency)
	e.GET("/api/v1/webhooks/config", hooks.GetConfig, secret)
	e.PUT("/api/v1/webhooks/config", hooks.PutConfig, secret)
	e.POST("/api/v1/webhooks/regenerate-secret", hooks.RegenerateSecret, secret)
	e.POST("/api/v1/webhooks/test", hooks.Test, secret)
	e.GET("/api/v1/webhooks", hooks.List, secret)
	e.GET("/api/v1/webhooks/:id", hooks.Get, secret)
	e.POST("/api/v1/webhooks/:id/retry", hooks.Retry, secret)
}
