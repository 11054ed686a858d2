package payments

import (
	"context"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"paygate/db"
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
	// CheckoutMaxFailures is how many failed payments an order may have
	// before checkout takes no more on it (CHECKOUT_MAX_FAILED_PAYMENTS);
	// 0: no limit.
	CheckoutMaxFailures int
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
	return h.createPayment(c, func(p Payment) any { return p }, 0)
}

// CreatePaymentPublic is the checkout's variant: only the key is known, so
// the order must be the key's merchant's, and the answer is the public view.
// The key and the order's id are both on the merchant's page, so anyone can
// pay through it: an order that has failed CheckoutMaxFailures payments
// takes no more here (429 RATE_LIMITED), or whoever found it could test
// stolen cards on it one after another. The merchant's own route, with its
// secret, is not limited.
func (h *HTTP) CreatePaymentPublic(c echo.Context) error {
	return h.createPayment(c, func(p Payment) any { return p.Public() }, h.CheckoutMaxFailures)
}

func (h *HTTP) createPayment(c echo.Context, view func(Payment) any, maxFailures int) error {
	var in PaymentInput
	if _, err := web.Bind(c, &in); err != nil {
		return err
	}
	m := merchants.FromContext(c)
	batched := func(ctx context.Context, claim *idempotency.Claim) (int, any, bool, error) {
		if err := failuresBelow(ctx, h.Service.Pool, m.ID, in.OrderID, maxFailures); err != nil {
			if claim != nil {
				// Run alone (below), where a repeat replays its answer and
				// a refusal is remembered under its key.
				return 0, nil, false, nil
			}
			return 0, nil, false, err
		}
		p, ok, err := h.Service.CreatePayment(ctx, m.ID, in, claim, view)
		return http.StatusCreated, view(p), ok, err
	}
	return h.Keys.DoBatched(c, in.Fingerprint(), batched, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		if err := failuresBelow(ctx, tx, m.ID, in.OrderID, maxFailures); err != nil {
			return 0, nil, err
		}
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

// failuresBelow refuses a payment on an order that has max failed payments
// already (none with max 0). Counted before the payment's insert, which
// takes no second live payment of an order, so at most one attempt is
// counted late.
func failuresBelow(ctx context.Context, q db.Querier, merchantID uuid.UUID, orderID string, max int) error {
	if max == 0 {
		return nil
	}
	var failed int
	err := q.QueryRow(ctx, `SELECT count(*) FROM (SELECT FROM payments
		WHERE merchant_id = $1 AND order_id = $2 AND status = 'failed' LIMIT $3) f`, merchantID, orderID, max).Scan(&failed)
	if err != nil {
		return err
	}
	if failed >= max {
		return web.Errorf(web.CodeRateLimited, "This order has had %d failed payments, the most checkout takes; ask the merchant for a new order", max)
	}
	return nil
}
