package refunds

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"paygate/idempotency"
	"paygate/merchants"
	"paygate/web"
)

// HTTP serves the Refunds routes of API.md. A refund is created in a batch
// (Service.Create); a keyed request the batch does not create runs alone
// under Keys.Do, where validation runs, so that a business error is
// remembered under an Idempotency-Key like a success.
type HTTP struct {
	Service *Service
	Keys    *idempotency.Keys
}

func (h *HTTP) Create(c echo.Context) error {
	var in Input
	raw, err := web.Bind(c, &in)
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	batched := func(ctx context.Context, claim *idempotency.Claim) (int, any, bool, error) {
		r, ok, err := h.Service.Create(ctx, m.ID, c.Param("id"), in, claim)
		return http.StatusCreated, r, ok, err
	}
	return h.Keys.DoBatched(c, raw, batched, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		r, err := h.Service.CreateTx(ctx, tx, m.ID, c.Param("id"), in)
		return http.StatusCreated, r, err
	})
}

func (h *HTTP) Get(c echo.Context) error {
	r, err := h.Service.Get(c.Request().Context(), merchants.FromContext(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, r)
}

// ListForPayment lists the refunds of the payment in the path.
func (h *HTTP) ListForPayment(c echo.Context) error {
	page, err := web.ParsePage(c)
	if err != nil {
		return err
	}
	list, err := h.Service.ListForPayment(c.Request().Context(), merchants.FromContext(c).ID, c.Param("id"), page)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, list)
}
