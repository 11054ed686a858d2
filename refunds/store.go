package refunds

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/web"
)

const refundColumns = `id, payment_id, merchant_id, amount, reason, status, created_at, processed_at`

func insertRefundTx(ctx context.Context, tx pgx.Tx, r Refund) (Refund, error) {
	return db.QueryOne[Refund](ctx, tx, `
		INSERT INTO refunds (id, payment_id, merchant_id, amount, reason, status)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+refundColumns,
		r.ID, r.PaymentID, r.MerchantID, r.Amount, r.Reason, r.Status)
}

// refundedTx is what a payment's refunds take from it: pending ones count,
// since they will be processed. The caller holds the payment's row lock, so
// no refund is added while the sum is used.
func refundedTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, paymentID string) (int64, error) {
	var sum int64
	err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount), 0)::bigint FROM refunds
		WHERE payment_id = $1 AND merchant_id = $2 AND status IN ('pending', 'processed')`,
		paymentID, merchantID).Scan(&sum)
	return sum, err
}

func getRefund(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string) (Refund, error) {
	if !db.IsID("rfnd_", id) {
		return Refund{}, web.NotFound("Refund")
	}
	r, err := db.QueryOne[Refund](ctx, q, `SELECT `+refundColumns+` FROM refunds WHERE id = $1 AND merchant_id = $2`,
		id, merchantID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Refund{}, web.NotFound("Refund")
	}
	return r, err
}

func listRefunds(ctx context.Context, q db.Querier, merchantID uuid.UUID, paymentID string, page web.Page) (web.List[Refund], error) {
	var total int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM refunds WHERE payment_id = $1 AND merchant_id = $2`,
		paymentID, merchantID).Scan(&total); err != nil {
		return web.List[Refund]{}, err
	}
	rows, _ := q.Query(ctx, `SELECT `+refundColumns+` FROM refunds WHERE payment_id = $1 AND merchant_id = $2
		ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4`, paymentID, merchantID, page.Limit, page.Offset)
	refunds, err := pgx.CollectRows(rows, pgx.RowToStructByName[Refund])
	return web.NewList(refunds, total, page), err
}

// processTx moves a pending refund to processed. It matches no row (and
// returns pgx.ErrNoRows) when the refund was already processed.
func processTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string) (Refund, error) {
	return db.QueryOne[Refund](ctx, tx, `
		UPDATE refunds SET status = 'processed', processed_at = now()
		WHERE id = $1 AND merchant_id = $2 AND status = 'pending'
		RETURNING `+refundColumns, id, merchantID)
}
