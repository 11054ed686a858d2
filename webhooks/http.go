package webhooks

import (
	"context"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"paygate/idempotency"
	"paygate/merchants"
	"paygate/web"
)

// Handler answers the /api/v1/webhooks routes. The POSTs that change
// something run under Idempotency-Key.
type Handler struct {
	svc  *Service
	keys *idempotency.Keys
}

func NewHandler(svc *Service, keys *idempotency.Keys) *Handler {
	return &Handler{svc: svc, keys: keys}
}

// GetConfig: GET /api/v1/webhooks/config.
func (h *Handler) GetConfig(c echo.Context) error {
	ep, err := h.svc.Endpoint(c.Request().Context(), merchants.FromContext(c).ID)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, ep)
}

// PutConfig: PUT /api/v1/webhooks/config.
func (h *Handler) PutConfig(c echo.Context) error {
	var in ConfigInput
	if _, err := web.Bind(c, &in); err != nil {
		return err
	}
	ep, err := h.svc.SetConfig(c.Request().Context(), merchants.FromContext(c).ID, in)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, ep)
}

// RegenerateSecret: POST /api/v1/webhooks/regenerate-secret. It refuses an
// Idempotency-Key: a remembered answer would keep the new secret in clear in
// the idempotency table for a day. Without a key, Keys.Do runs it in one
// transaction and remembers nothing.
func (h *Handler) RegenerateSecret(c echo.Context) error {
	if len(c.Request().Header.Values(idempotency.Header)) > 0 {
		return web.BadField(idempotency.Header, "Idempotency-Key is not accepted on regenerate-secret: "+
			"its answer holds the new secret, which is never stored; read the current one with GET /api/v1/webhooks/config")
	}
	raw, err := web.Bind(c, &struct{}{})
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	return h.keys.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		secret, err := h.svc.RegenerateSecretTx(ctx, tx, m.ID)
		return http.StatusOK, map[string]string{"webhook_secret": secret}, err
	})
}

// Test: POST /api/v1/webhooks/test.
func (h *Handler) Test(c echo.Context) error {
	raw, err := web.Bind(c, &struct{}{})
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	return h.keys.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		id, err := h.svc.SendTestTx(ctx, tx, m.ID)
		return http.StatusOK, map[string]any{"scheduled": true, "webhook_id": id}, err
	})
}

// List: GET /api/v1/webhooks?limit=&offset=&status=&event=.
func (h *Handler) List(c echo.Context) error {
	page, err := web.ParsePage(c)
	if err != nil {
		return err
	}
	f := ListFilter{Page: page, Status: c.QueryParam("status"), Event: c.QueryParam("event")}
	logs, total, err := h.svc.List(c.Request().Context(), merchants.FromContext(c).ID, f)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, web.NewList(logs, total, page))
}

// Get: GET /api/v1/webhooks/{id}.
func (h *Handler) Get(c echo.Context) error {
	id, err := logID(c)
	if err != nil {
		return err
	}
	d, err := h.svc.Get(c.Request().Context(), merchants.FromContext(c).ID, id)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, d)
}

// Retry: POST /api/v1/webhooks/{id}/retry.
func (h *Handler) Retry(c echo.Context) error {
	id, err := logID(c)
	if err != nil {
		return err
	}
	raw, err := web.Bind(c, &struct{}{})
	if err != nil {
		return err
	}
	m := merchants.FromContext(c)
	return h.keys.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		err := h.svc.RetryTx(ctx, tx, m.ID, id)
		return http.StatusOK, map[string]any{"id": id, "status": StatusPending, "message": "Webhook retry scheduled"}, err
	})
}

// logID reads the {id} of a route; a malformed id is unknown like any other.
func logID(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, web.NotFound("Webhook")
	}
	return id, nil
}
