package app

import (
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"paygate/payments"
	"paygate/refunds"
	"paygate/webhooks"
)

// routes is every route of the gateway, on one screen.
func (a *App) routes(e *echo.Echo) {
	secret, optional, public := a.Auth.Secret, a.Auth.Optional, a.Auth.Publishable

	e.GET("/health", a.health)
	e.GET("/ready", a.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.Handler()))
	if a.role == RoleWorker {
		return // a worker serves only what operators probe (API.md, Operations)
	}
	e.GET("/api/v1/test/jobs/status", a.jobsStatus)
	e.GET("/api/v1/test/merchant", a.testMerchant, optional)

	pay := &payments.HTTP{Service: a.Payments, Keys: a.Idempotency}
	e.POST("/api/v1/orders", pay.CreateOrder, secret)
	e.GET("/api/v1/orders", pay.ListOrders, secret)
	e.GET("/api/v1/orders/:id", pay.GetOrder, secret)
	e.GET("/api/v1/orders/:id/public", pay.GetOrderPublic, public)
	e.POST("/api/v1/payments", pay.CreatePayment, secret)
	e.POST("/api/v1/payments/public", pay.CreatePaymentPublic, public)
	e.GET("/api/v1/payments", pay.ListPayments, secret)
	e.GET("/api/v1/payments/:id", pay.GetPayment, secret)
	e.GET("/api/v1/payments/:id/public", pay.GetPaymentPublic, public)
	e.POST("/api/v1/payments/:id/capture", pay.Capture, secret)

	refund := &refunds.HTTP{Service: a.Refunds, Keys: a.Idempotency}
	e.POST("/api/v1/payments/:id/refunds", refund.Create, secret)
	e.GET("/api/v1/payments/:id/refunds", refund.ListForPayment, secret)
	e.GET("/api/v1/refunds/:id", refund.Get, secret)

	hooks := webhooks.NewHandler(a.Webhooks, a.Idempotency)
	e.GET("/api/v1/webhooks/config", hooks.GetConfig, secret)
	e.PUT("/api/v1/webhooks/config", hooks.PutConfig, secret)
	e.POST("/api/v1/webhooks/regenerate-secret", hooks.RegenerateSecret, secret)
	e.POST("/api/v1/webhooks/test", hooks.Test, secret)
	e.GET("/api/v1/webhooks", hooks.List, secret)
	e.GET("/api/v1/webhooks/:id", hooks.Get, secret)
	e.POST("/api/v1/webhooks/:id/retry", hooks.Retry, secret)
}
