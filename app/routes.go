package app

import (
	"github.com/labstack/echo/v4"

	"paygate/dashboard"
	"paygate/payments"
	"paygate/refunds"
	"paygate/web"
	"paygate/web/ui"
	"paygate/webhooks"
)

// routes is every route of the gateway, on one screen.
func (a *App) routes(e *echo.Echo) {
	secret, optional, public := a.Auth.Secret, a.Auth.Optional, a.Auth.Publishable

	e.GET("/health", a.health)
	e.GET("/ready", a.ready)
	e.GET("/metrics", a.metricsHandler())
	if a.role == RoleWorker {
		return // a worker serves only what operators probe (API.md, Operations)
	}
	e.GET("/api/v1/test/jobs/status", a.jobsStatus)
	e.GET("/api/v1/test/merchant", a.testMerchant, optional)
	e.GET("/api/v1/openapi.json", openAPIJSON)
	e.GET("/api/v1/openapi.yaml", openAPIYAML)

	pay := &payments.HTTP{Service: a.Payments, Keys: a.Idempotency, CheckoutMaxFailures: a.Config.CheckoutMaxFailures}
	e.POST("/api/v1/orders", pay.CreateOrder, secret)
	e.GET("/api/v1/orders", pay.ListOrders, secret)
	e.GET("/api/v1/orders/:id", pay.GetOrder, secret)
	e.GET("/api/v1/orders/:id/public", pay.GetOrderPublic, web.PublicCORS, public)
	e.POST("/api/v1/payments", pay.CreatePayment, secret)
	e.POST("/api/v1/payments/public", pay.CreatePaymentPublic, web.PublicCORS, public)
	e.GET("/api/v1/payments", pay.ListPayments, secret)
	e.GET("/api/v1/payments/:id", pay.GetPayment, secret)
	e.GET("/api/v1/payments/:id/public", pay.GetPaymentPublic, web.PublicCORS, public)
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

	// The browser half. The publishable routes answer CORS preflights; the
	// dashboard's JSON is the API's own handlers behind its session cookie.
	for _, p := range []string{"/api/v1/orders/:id/public", "/api/v1/payments/public", "/api/v1/payments/:id/public"} {
		e.OPTIONS(p, web.Preflight, web.PublicCORS)
	}
	e.GET("/checkout.js", ui.SDK)
	e.GET("/web/checkout.js", ui.SDK)
	e.GET("/checkout", ui.Checkout)
	e.GET("/assets/*", ui.Asset)
	for _, p := range []string{"/dashboard", "/dashboard/", "/dashboard/transactions", "/dashboard/transactions/:id", "/dashboard/webhooks", "/dashboard/docs"} {
		e.GET(p, ui.Dashboard)
	}
	dash := &dashboard.Dashboard{Pool: a.Pool, Auth: a.Auth}
	signedIn := []echo.MiddlewareFunc{dashboard.NoStore, dashboard.SameOrigin, dash.Require}
	e.POST("/dashboard/api/session", dash.SignIn, dashboard.NoStore, dashboard.SameOrigin)
	e.DELETE("/dashboard/api/session", dash.SignOut, dashboard.NoStore, dashboard.SameOrigin)
	e.GET("/dashboard/api/me", dash.Me, signedIn...)
	e.GET("/dashboard/api/stats", dash.Stats, signedIn...)
	e.GET("/dashboard/api/docs", dash.Docs, signedIn...)
	e.GET("/dashboard/api/payments", pay.ListPayments, signedIn...)
	e.GET("/dashboard/api/payments/:id", pay.GetPayment, signedIn...)
	e.GET("/dashboard/api/payments/:id/refunds", refund.ListForPayment, signedIn...)
	e.POST("/dashboard/api/payments/:id/refunds", refund.Create, signedIn...)
	e.GET("/dashboard/api/webhooks/config", hooks.GetConfig, signedIn...)
	e.PUT("/dashboard/api/webhooks/config", hooks.PutConfig, signedIn...)
	e.POST("/dashboard/api/webhooks/regenerate-secret", hooks.RegenerateSecret, signedIn...)
	e.POST("/dashboard/api/webhooks/test", hooks.Test, signedIn...)
	e.GET("/dashboard/api/webhooks", hooks.List, signedIn...)
	e.GET("/dashboard/api/webhooks/:id", hooks.Get, signedIn...)
	e.POST("/dashboard/api/webhooks/:id/retry", hooks.Retry, signedIn...)
}
