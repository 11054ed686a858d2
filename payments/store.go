package payments

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/web"
)

const orderColumns = `id, merchant_id, amount, currency, receipt, notes, status, created_at, updated_at`

const paymentColumns = `id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4,
	status, captured, amount_refunded, error_code, error_description, created_at, updated_at`

func insertOrderTx(ctx context.Context, tx pgx.Tx, o Order) (Order, error) {
	return db.QueryOne[Order](ctx, tx, `
		INSERT INTO orders (id, merchant_id, amount, currency, receipt, notes, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+orderColumns,
		o.ID, o.MerchantID, o.Amount, o.Currency, o.Receipt, o.Notes, o.Status)
}

// getOrder returns a merchant's order, or NOT_FOUND.
func getOrder(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string) (Order, error) {
	if !db.IsID("order_", id) {
		return Order{}, web.NotFound("Order")
	}
	o, err := db.QueryOne[Order](ctx, q, `SELECT `+orderColumns+` FROM orders WHERE id = $1 AND merchant_id = $2`,
		id, merchantID)
	return o, notFound(err, "Order")
}

func listOrders(ctx context.Context, q db.Querier, merchantID uuid.UUID, page web.Page) (web.List[Order], error) {
	var total int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM orders WHERE merchant_id = $1`, merchantID).Scan(&total); err != nil {
		return web.List[Order]{}, err
	}
	rows, _ := q.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE merchant_id = $1
		ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`, merchantID, page.Limit, page.Offset)
	orders, err := pgx.CollectRows(rows, pgx.RowToStructByName[Order])
	return web.NewList(orders, total, page), err
}

// insertPaymentTx inserts p on its order, taking the amount and currency
// from the order in the same statement, with the payment's decision key:
// committed with the payment, so the worker only reads it before asking the
// acquirer. It matches no row (pgx.ErrNoRows) when the merchant has no such
// order or the order is paid.
func insertPaymentTx(ctx context.Context, tx pgx.Tx, p Payment) (Payment, error) {
	return db.QueryOne[Payment](ctx, tx, `
		INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4, status,
		                      decision_key)
		SELECT $1, o.id, o.merchant_id, o.amount, o.currency, $4, $5, $6, $7, $8, gen_random_uuid()
		FROM orders o WHERE o.id = $2 AND o.merchant_id = $3 AND o.status <> 'paid'
		RETURNING `+paymentColumns,
		p.ID, p.OrderID, p.MerchantID, p.Method, p.VPA, p.CardNetwork, p.CardLast4, p.Status)
}

func getPayment(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string, forUpdate bool) (Payment, error) {
	if !db.IsID("pay_", id) {
		return Payment{}, web.NotFound("Payment")
	}
	p, err := db.QueryOne[Payment](ctx, q, `SELECT `+paymentColumns+` FROM payments WHERE id = $1 AND merchant_id = $2`+
		lockClause(forUpdate), id, merchantID)
	return p, notFound(err, "Payment")
}

// GetForUpdateTx returns a merchant's payment and locks its row until tx
// ends, or answers NOT_FOUND. It is how refunds serialise on a payment.
func GetForUpdateTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string) (Payment, error) {
	return getPayment(ctx, tx, merchantID, id, true)
}

// AddRefundedTx adds a processed refund's amount to the payment's
// amount_refunded. The table's CHECK keeps it within the payment amount.
func AddRefundedTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string, amount int64) error {
	tag, err := tx.Exec(ctx, `UPDATE payments SET amount_refunded = amount_refunded + $3, updated_at = now()
		WHERE id = $1 AND merchant_id = $2`, id, merchantID, amount)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("add refunded amount: payment %s not found", id)
	}
	return err
}

func listPayments(ctx context.Context, q db.Querier, merchantID uuid.UUID, f PaymentFilter, page web.Page) (web.List[Payment], error) {
	where, args := `merchant_id = $1`, []any{merchantID}
	if f.Status != "" {
		args = append(args, f.Status)
		where += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if f.OrderID != "" {
		args = append(args, f.OrderID)
		where += fmt.Sprintf(` AND order_id = $%d`, len(args))
	}
	var total int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM payments WHERE `+where, args...).Scan(&total); err != nil {
		return web.List[Payment]{}, err
	}
	args = append(args, page.Limit, page.Offset)
	rows, _ := q.Query(ctx, fmt.Sprintf(`SELECT %s FROM payments WHERE %s
		ORDER BY created_at DESC, id DESC LIMIT $%d OFFSET $%d`, paymentColumns, where, len(args)-1, len(args)), args...)
	payments, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
	return web.NewList(payments, total, page), err
}

// decideTx moves a pending payment to status and, on success, its created
// order to paid, in one statement: the payment row, then the order row, as
// before in two. It matches no row (and returns pgx.ErrNoRows) when the
// payment was already decided. A statement's data-modifying CTE runs to
// completion whether or not its result is read.
func decideTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id, status string, errCode, errDescription *string) (Payment, error) {
	return db.QueryOne[Payment](ctx, tx, `
		WITH p AS (
		    UPDATE payments SET status = $3, error_code = $4, error_description = $5, updated_at = now()
		    WHERE id = $1 AND merchant_id = $2 AND status = 'pending'
		    RETURNING `+paymentColumns+`),
		paid AS (
		    UPDATE orders o SET status = 'paid', updated_at = now() FROM p
		    WHERE o.id = p.order_id AND o.merchant_id = $2 AND p.status = 'success' AND o.status = 'created')
		SELECT `+paymentColumns+` FROM p`, id, merchantID, status, errCode, errDescription)
}

// decisionRow is a payment with its decision key (NULL on a payment from
// before keys were created with the payment).
type decisionRow struct {
	Payment
	DecisionKey *uuid.UUID
}

// pendingDecision returns a payment with its decision key, or NOT_FOUND.
func pendingDecision(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string) (decisionRow, error) {
	if !db.IsID("pay_", id) {
		return decisionRow{}, web.NotFound("Payment")
	}
	r, err := db.QueryOne[decisionRow](ctx, q, `SELECT `+paymentColumns+`, decision_key FROM payments
		WHERE id = $1 AND merchant_id = $2`, id, merchantID)
	return r, notFound(err, "Payment")
}

// createDecisionKey creates and commits the key of a pending payment that
// has none (created before keys came with the payment). It matches no row
// (pgx.ErrNoRows) when the payment was decided meanwhile.
func createDecisionKey(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string) (decisionRow, error) {
	return db.QueryOne[decisionRow](ctx, q, `
		UPDATE payments SET decision_key = coalesce(decision_key, gen_random_uuid())
		WHERE id = $1 AND merchant_id = $2 AND status = 'pending'
		RETURNING `+paymentColumns+`, decision_key`, id, merchantID)
}

// captureTx marks a successful payment captured; the caller holds its lock.
func captureTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string) (Payment, error) {
	return db.QueryOne[Payment](ctx, tx, `
		UPDATE payments SET captured = true, updated_at = now()
		WHERE id = $1 AND merchant_id = $2 AND status = 'success' AND NOT captured
		RETURNING `+paymentColumns, id, merchantID)
}

// lockClause locks the selected row until the transaction ends.
func lockClause(forUpdate bool) string {
	if forUpdate {
		return ` FOR UPDATE`
	}
	return ""
}

// notFound turns "no row" into the client's NOT_FOUND.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return web.NotFound(what)
	}
	return err
}
