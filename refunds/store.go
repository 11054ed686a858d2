package refunds

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/web"
)

const refundColumns = `id, payment_id, merchant_id, amount, reason, status, created_at, processed_at`

// insertRefundsTx inserts rs and, in the same statement, their processing
// jobs (jobs, at the same indexes), and returns them as stored.
func insertRefundsTx(ctx context.Context, tx pgx.Tx, rs []Refund, jobs []river.InsertManyParams) ([]Refund, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	job, err := db.JobRowsOf(jobs...)
	if err != nil {
		return nil, err
	}
	n := len(rs)
	ids, paymentIDs, merchantIDs := make([]string, n), make([]string, n), make([]uuid.UUID, n)
	amounts, reasons := make([]int64, n), make([]*string, n)
	for i, r := range rs {
		ids[i], paymentIDs[i], merchantIDs[i], amounts[i], reasons[i] = r.ID, r.PaymentID, r.MerchantID, r.Amount, r.Reason
	}
	rows, _ := tx.Query(ctx, `
		WITH r AS (
			INSERT INTO refunds (id, payment_id, merchant_id, amount, reason, status)
			SELECT c.id, c.payment_id, c.merchant_id, c.amount, c.reason, 'pending'
			FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[], $5::text[])
			     AS c(id, payment_id, merchant_id, amount, reason)
			RETURNING `+refundColumns+`
		), job AS (
			`+db.InsertJobsFrom(job.Unnest(6))+`
		)
		SELECT `+refundColumns+` FROM r`,
		append([]any{db.PlannedEachTime, ids, paymentIDs, merchantIDs, amounts, reasons}, job.Params()...)...)
	made, err := pgx.CollectRows(rows, pgx.RowToStructByName[Refund])
	if err == nil && len(made) != n {
		err = fmt.Errorf("refunds: %d inserted of %d", len(made), n)
	}
	if err != nil {
		return nil, err
	}
	return made, db.NotifyInsertAtCommit(ctx, tx, job.Queues...)
}

// refundedManyTx is what the refunds of each payment named by merchantIDs
// and ids take from it (those without a refund are left out): pending ones
// count, since they will be processed. The caller holds the payments' row
// locks, so no refund is added while the sums are used.
func refundedManyTx(ctx context.Context, tx pgx.Tx, merchantIDs []uuid.UUID, ids []string) (map[paymentKey]int64, error) {
	rows, _ := tx.Query(ctx, `
		SELECT r.merchant_id, r.payment_id, sum(r.amount)::bigint
		FROM unnest($1::text[], $2::uuid[]) AS k(id, merchant_id)
		JOIN refunds r ON r.payment_id = k.id AND r.merchant_id = k.merchant_id AND r.status IN ('pending', 'processed')
		GROUP BY r.merchant_id, r.payment_id`, db.PlannedEachTime, ids, merchantIDs)
	sums := make(map[paymentKey]int64, len(ids))
	var k paymentKey
	var sum int64
	_, err := pgx.ForEachRow(rows, []any{&k.merchantID, &k.id, &sum}, func() error {
		sums[k] = sum
		return nil
	})
	return sums, err
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

// refundKey names a merchant's refund: a request of the worker's batches.
type refundKey struct {
	MerchantID uuid.UUID
	ID         string
}

// processManyTx moves each refund of keys that is still pending to
// processed and adds the amounts of those it moved to their payments'
// amount_refunded, in one statement, and returns the refunds it moved. A
// refund already processed (or unknown) is left alone and not returned.
// keys must not name a refund twice, and should come sorted by id: the plan
// then locks the refunds in that order when it looks each up by its index.
//
// The payments are updated once each, by the sum of their refunds in the
// batch, so two refunds of one payment add up. It is part of the same
// statement, so it touches the payments table from refunds: only
// amount_refunded and updated_at, scoped by merchant_id. It weakens no
// limit: the refund limit is enforced when a refund is created, under its
// payment's row lock (createManyTx; refundedManyTx counts pending refunds
// as processed ones), so moving refunds from pending to processed never takes
// a payment's refunds over its amount; the CHECK (amount_refunded BETWEEN 0
// AND amount) on payments backs it, and a violation fails the batch. The
// payments are locked in payment id order (the aggregate's, bytewise:
// COLLATE "C", whatever the database's collation), in every batch alike,
// as a batch of creations locks them (payments.LockManyTx); should a plan
// lock them otherwise, PostgreSQL ends a deadlock with another batch by
// failing one, which is then run one request at a time (db.Batcher).
func processManyTx(ctx context.Context, tx pgx.Tx, keys []refundKey) ([]Refund, error) {
	ids, merchantIDs := make([]string, len(keys)), make([]uuid.UUID, len(keys))
	for i, k := range keys {
		ids[i], merchantIDs[i] = k.ID, k.MerchantID
	}
	// The unnested columns are named apart from the refunds', so that the
	// RETURNING list is the table's columns. A statement's data-modifying
	// CTE runs to completion whether or not its result is read; its count
	// is read to check that every refund's payment was updated.
	rows, _ := tx.Query(ctx, `
		WITH r AS (
		    UPDATE refunds SET status = 'processed', processed_at = now()
		    FROM unnest($1::text[], $2::uuid[]) AS k(k_id, k_merchant_id)
		    WHERE id = k.k_id AND merchant_id = k.k_merchant_id AND status = 'pending'
		    RETURNING `+refundColumns+`),
		p AS (
		    UPDATE payments p SET amount_refunded = p.amount_refunded + s.total, updated_at = now()
		    FROM (SELECT payment_id, merchant_id, sum(amount)::bigint AS total FROM r
		          GROUP BY payment_id, merchant_id ORDER BY payment_id COLLATE "C", merchant_id) s
		    WHERE p.id = s.payment_id AND p.merchant_id = s.merchant_id
		    RETURNING p.id)
		SELECT `+refundColumns+`, (SELECT count(*) FROM p) AS payments FROM r ORDER BY id`, db.PlannedEachTime, ids, merchantIDs)
	processed, err := pgx.CollectRows(rows, pgx.RowToStructByName[processedRow])
	if err != nil {
		return nil, err
	}
	out := make([]Refund, len(processed))
	type payment struct {
		merchantID uuid.UUID
		id         string
	}
	paid := make(map[payment]bool, len(processed))
	for i, r := range processed {
		out[i] = r.Refund
		paid[payment{r.MerchantID, r.PaymentID}] = true
	}
	// The foreign key makes every refund's payment exist: a difference is
	// a bug, and fails the batch rather than counting a refund nowhere.
	if len(processed) > 0 && processed[0].Payments != int64(len(paid)) {
		return nil, fmt.Errorf("process refunds: %d payments updated for refunds of %d", processed[0].Payments, len(paid))
	}
	return out, nil
}

// processedRow is a refund processManyTx moved, with the number of payments
// the statement updated.
type processedRow struct {
	Refund
	Payments int64
}
