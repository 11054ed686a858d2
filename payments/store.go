package payments

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/web"
)

// ordersWithStatus is orders (o) with each order's status and updated_at as
// the API shows them (the package's invariants). An order paid by the
// previous version has its success's decided_at empty, and was marked paid
// in its own row at that moment: that row's updated_at is then the paid
// time (its payment's may have moved since, with a capture or a refund).
const ordersWithStatus = `SELECT o.id, o.merchant_id, o.amount, o.currency, o.receipt, o.notes,
		CASE WHEN paid.paid THEN 'paid' ELSE 'created' END AS status, o.created_at,
		coalesce(paid.decided_at, o.updated_at) AS updated_at
	FROM orders o LEFT JOIN LATERAL (
		SELECT true AS paid, p.decided_at FROM payments p
		WHERE p.order_id = o.id AND p.merchant_id = o.merchant_id AND p.status = 'success') paid ON true`

const paymentColumns = `id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4,
	status, captured, amount_refunded, error_code, error_description, created_at, updated_at`

func insertOrderTx(ctx context.Context, tx pgx.Tx, o Order) (Order, error) {
	return db.QueryOne[Order](ctx, tx, `
		INSERT INTO orders (id, merchant_id, amount, currency, receipt, notes, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		RETURNING id, merchant_id, amount, currency, receipt, notes, status, created_at, updated_at`,
		o.ID, o.MerchantID, o.Amount, o.Currency, o.Receipt, o.Notes, o.Status)
}

// getOrder returns a merchant's order, or NOT_FOUND.
func getOrder(ctx context.Context, q db.Querier, merchantID uuid.UUID, id string) (Order, error) {
	if !db.IsID("order_", id) {
		return Order{}, web.NotFound("Order")
	}
	o, err := db.QueryOne[Order](ctx, q, ordersWithStatus+` WHERE o.id = $1 AND o.merchant_id = $2`, id, merchantID)
	return o, notFound(err, "Order")
}

func listOrders(ctx context.Context, q db.Querier, merchantID uuid.UUID, page web.Page) (web.List[Order], error) {
	var total int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM orders WHERE merchant_id = $1`, merchantID).Scan(&total); err != nil {
		return web.List[Order]{}, err
	}
	rows, _ := q.Query(ctx, ordersWithStatus+` WHERE o.merchant_id = $1
		ORDER BY o.created_at DESC, o.id DESC LIMIT $2 OFFSET $3`, merchantID, page.Limit, page.Offset)
	orders, err := pgx.CollectRows(rows, pgx.RowToStructByName[Order])
	return web.NewList(orders, total, page), err
}

// insertPaymentTx inserts p on its order, taking the amount and currency
// from the order in the same statement, with the payment's decision key
// (key): committed with the payment, so the worker only reads it before
// asking the acquirer. The same statement inserts the payment's decision
// job (job: one row, or none when the process decides it itself), which
// thus exists exactly when the payment does. It matches no
// row (pgx.ErrNoRows) when the merchant has no such order or the order is
// paid (has a successful payment).
func insertPaymentTx(ctx context.Context, tx pgx.Tx, p Payment, key uuid.UUID, job db.JobRows) (Payment, error) {
	return db.QueryOne[Payment](ctx, tx, `
		WITH p AS (
			INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4, status,
			                      decision_key)
			SELECT $1, o.id, o.merchant_id, o.amount, o.currency, $4, $5, $6, $7, $8, $9
			FROM orders o WHERE o.id = $2 AND o.merchant_id = $3 AND NOT EXISTS (
				SELECT 1 FROM payments s WHERE s.order_id = o.id AND s.merchant_id = o.merchant_id AND s.status = 'success')
			RETURNING `+paymentColumns+`
		), job AS (
			`+db.InsertJobsFrom(job.Unnest(10)+` WHERE EXISTS (SELECT 1 FROM p)`)+`
		)
		SELECT `+paymentColumns+` FROM p`,
		append([]any{p.ID, p.OrderID, p.MerchantID, p.Method, p.VPA, p.CardNetwork, p.CardLast4, p.Status, key}, job.Params()...)...)
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
// ends, or answers NOT_FOUND. It is how a capture serialises with refunds
// and other captures of its payment.
func GetForUpdateTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string) (Payment, error) {
	return getPayment(ctx, tx, merchantID, id, true)
}

// LockManyTx returns those of the payments named by merchantIDs and ids
// (at the same index) that exist, in one statement, and locks their rows
// until tx ends, in id order, bytewise (COLLATE "C", whatever the
// database's collation, as decision batches sort them in Go and refund
// processing batches in SQL): two transactions that lock payments they
// share wait in one order, never in a cycle. It is how refunds serialise
// on their payments. One payment is locked with a plain statement (not
// planned each time), which a keyed request's pipelined transaction sends
// with its key's claim.
func LockManyTx(ctx context.Context, tx pgx.Tx, merchantIDs []uuid.UUID, ids []string) ([]Payment, error) {
	if len(ids) == 1 {
		p, err := GetForUpdateTx(ctx, tx, merchantIDs[0], ids[0])
		var apiErr *web.Error
		if errors.As(err, &apiErr) && apiErr.Code == web.CodeNotFound {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []Payment{p}, nil
	}
	rows, _ := tx.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE (id, merchant_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))
		ORDER BY id COLLATE "C" FOR UPDATE`, db.PlanMode(tx), ids, merchantIDs)
	return pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
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

// answer is the acquirer's answer for one payment, to record.
type answer struct {
	MerchantID uuid.UUID
	PaymentID  string
	OK         bool
}

func (a answer) key() paymentKey { return paymentKey{MerchantID: a.MerchantID, ID: a.PaymentID} }

// decideManyTx moves each payment of ds that is still pending to its
// decision's status, in one statement, and returns the payments it moved,
// each once. A success makes its order paid (ordersWithStatus): the order's
// row is not written. A payment already decided is left alone and not
// returned. ds must not name a payment twice (a payment is returned once
// whatever its rows in ds) and should come sorted by PaymentID: the plan
// then locks the payments in that order, the same in every batch, when it
// looks each up by its index (as on a large table).
func decideManyTx(ctx context.Context, tx pgx.Tx, ds []answer) ([]Payment, error) {
	ids, merchantIDs := make([]string, len(ds)), make([]uuid.UUID, len(ds))
	statuses, codes, descs := make([]string, len(ds)), make([]*string, len(ds)), make([]*string, len(ds))
	for i, d := range ds {
		ids[i], merchantIDs[i] = d.PaymentID, d.MerchantID
		statuses[i], codes[i], descs[i] = decision(d.OK)
	}
	// The unnested columns are named apart from the payments', so that the
	// RETURNING list is the table's columns. The status a payment must still
	// have is a parameter: a plan kept (db.KeptPlans) that saw it written out
	// could read every pending payment, through their partial index, for
	// each batch.
	rows, _ := tx.Query(ctx, `
		UPDATE payments SET status = d.d_status, error_code = d.d_code, error_description = d.d_desc,
		                    updated_at = now(), decided_at = now()
		FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[])
		     AS d(d_id, d_merchant_id, d_status, d_code, d_desc)
		WHERE id = d.d_id AND merchant_id = d.d_merchant_id AND status = $6
		RETURNING `+paymentColumns, db.PlanMode(tx), ids, merchantIDs, statuses, codes, descs, StatusPending)
	return pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
}

// decisionRow is a payment with its decision key (NULL on a payment from
// before keys were created with the payment).
type decisionRow struct {
	Payment
	DecisionKey *uuid.UUID
}

// paymentKey names a merchant's payment.
type paymentKey struct {
	MerchantID uuid.UUID
	ID         string
}

func (k paymentKey) compare(o paymentKey) int {
	return cmp.Or(strings.Compare(k.ID, o.ID), slices.Compare(k.MerchantID[:], o.MerchantID[:]))
}

// pendingDecisions returns, in one statement, those of the payments that
// exist, each with its decision key, in no order.
func pendingDecisions(ctx context.Context, q db.Querier, keys []paymentKey) ([]decisionRow, error) {
	ids, merchantIDs := make([]string, len(keys)), make([]uuid.UUID, len(keys))
	for i, k := range keys {
		ids[i], merchantIDs[i] = k.ID, k.MerchantID
	}
	rows, _ := q.Query(ctx, `SELECT `+paymentColumns+`, decision_key FROM payments
		WHERE (id, merchant_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))`, db.PlanMode(q), ids, merchantIDs)
	return pgx.CollectRows(rows, pgx.RowToStructByName[decisionRow])
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
