package payments

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"paygate/idempotency"
	"paygate/merchants"
	"paygate/web"
)

// HTTP serves the Orders and Payments routes of API.md. Validation runs
// inside Keys.Do, so that a business error is remembered under an
// Idempotency-Key like a success.
type HTTP struct {
	Service *Service
	Keys    *idempotency.Keys
}

func (h *HTTP) CreateOrder(c echo.Context) error {
	var in OrderInput
	raw, err := web.Bind(c, &in)
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	batched := func(ctx context.Context, claim *idempotency.Claim) (int, any, bool, error) {
		o, ok, err := h.Service.CreateOrder(ctx, m.ID, in, claim)
		return http.StatusCreated, o, ok, err
	}
	return h.Keys.DoBatched(c, raw, batched, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		o, err := h.Service.CreateOrderTx(ctx, tx, m.ID, in)
		return http.StatusCreated, o, err
	})
}

func (h *HTTP) GetOrder(c echo.Context) error {
	o, err := h.Service.GetOrder(c.Request().Context(), merchants.FromContext(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, o)
}

// GetOrderPublic is the checkout's view: the key's merchant's order only.
func (h *HTTP) GetOrderPublic(c echo.Context) error {
	m := merchants.FromContext(c)
	o, err := h.Service.GetOrder(c.Request().Context(), m.ID, c.Param("id"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, o.Public(m.Name))
}

func (h *HTTP) ListOrders(c echo.Context) error {
	page, err := web.ParsePage(c)
	if err != nil {
		return err
	}
	list, err := h.Service.ListOrders(c.Request().Context(), merchants.FromContext(c).ID, page)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, list)
}

func (h *HTTP) CreatePayment(c echo.Context) error {
	return h.createPayment(c, func(p Payment) any { return p })
}

// CreatePaymentPublic is the checkout's variant: only the key is known, so
// the order must be the key's merchant's, and the answer is the public view.
func (h *HTTP) CreatePaymentPublic(c echo.Context) error {
	return h.createPayment(c, func(p Payment) any { return p.Public() })
}

func (h *HTTP) createPayment(c echo.Context, view func(Payment) any) error {
	var in PaymentInput
	if _, err := web.Bind(c, &in); err != nil {
		return err
	}
	m := merchants.FromContext(c)
	batched := func(ctx context.Context, claim *idempotency.Claim) (int, any, bool, error) {
		p, ok, err := h.Service.CreatePayment(ctx, m.ID, in, claim, view)
		return http.StatusCreated, view(p), ok, err
	}
	return h.Keys.DoBatched(c, in.Fingerprint(), batched, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		p, err := h.Service.CreatePaymentTx(ctx, tx, m.ID, in)
		return http.StatusCreated, view(p), err
	})
}

func (h *HTTP) GetPayment(c echo.Context) error {
	return h.getPayment(c, func(p Payment) any { return p })
}

func (h *HTTP) GetPaymentPublic(c echo.Context) error {
	return h.getPayment(c, func(p Payment) any { return p.Public() })
}

func (h *HTTP) getPayment(c echo.Context, view func(Payment) any) error {
	p, err := h.Service.GetPayment(c.Request().Context(), merchants.FromContext(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, view(p))
}

func (h *HTTP) ListPayments(c echo.Context) error {
	page, err := web.ParsePage(c)
	if err != nil {
		return err
	}
	f := PaymentFilter{Status: c.QueryParam("status"), OrderID: c.QueryParam("order_id")}
	list, err := h.Service.ListPayments(c.Request().Context(), merchants.FromContext(c).ID, f, page)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, list)
}

// Capture takes an optional {"amount"}, which must be the payment's amount.
func (h *HTTP) Capture(c echo.Context) error {
	var in struct {
		Amount *int64 `json:"amount"`
	}
	raw, err := web.Bind(c, &in)
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	return h.Keys.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		p, err := h.Service.CaptureTx(ctx, tx, m.ID, c.Param("id"), in.Amount)
		return http.StatusOK, p, err
	})
}
