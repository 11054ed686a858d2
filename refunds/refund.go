// Package refunds holds refunds of successful payments: creation under the
// payment's limit, and the asynchronous processing (the ProcessRefund
// worker).
//
// Invariants:
//   - The sum of a payment's pending and processed refunds never exceeds the
//     payment amount, under any concurrency: a refund is created under the
//     payment's row lock (payments.LockManyTx), after summing the existing
//     refunds in SQL in the same transaction, in a statement that begins
//     once the lock is granted; the refunds a batch creates of one payment
//     are taken from what it has left one after the other (create.go).
//     Processing only moves a refund that already counts from pending to
//     processed and into the payment's amount_refunded, which the payments
//     table keeps within the payment amount (CHECK).
//   - A refund row, its processing job and its refund.created event commit
//     in one transaction, or none does; the refunds created at the same
//     time share that transaction (create.go); so do processing, the payment's amount_refunded
//     and the refund.processed event. Refunds are processed in batches
//     (Worker): the refunds the workers process at the same time commit in
//     one transaction, each with its amount and its event, or none does (a
//     failed batch is processed again one refund at a time, so one bad
//     refund fails only its own job). River completes the job after that
//     commit, batched with others (db/jobs.go).
//   - A refund is processed exactly once: processing is a conditional update
//     (WHERE status = 'pending'), so a job run twice changes nothing, and
//     amount_refunded only ever counts processed refunds.
//   - Every query is scoped by merchant_id: another merchant's payment or
//     refund is answered exactly like an unknown one.
package refunds

import (
	"unicode/utf8"

	"github.com/google/uuid"

	"paygate/web"
)

// Refund statuses: pending → processed.
const (
	StatusPending   = "pending"
	StatusProcessed = "processed"
)

// maxReason is Razorpay's limit on a refund's free-form text.
const maxReason = 255

// Refund is a refund as the API shows it; the webhook payloads carry the
// same object.
type Refund struct {
	ID          string    `json:"id"`
	PaymentID   string    `json:"payment_id"`
	MerchantID  uuid.UUID `json:"merchant_id"`
	Amount      int64     `json:"amount"`
	Reason      *string   `json:"reason"`
	Status      string    `json:"status"`
	CreatedAt   web.Time  `json:"created_at"`
	ProcessedAt *web.Time `json:"processed_at"`
}

// Input is the body of POST /api/v1/payments/{id}/refunds. A missing (or
// null) amount refunds whatever is still available, as Razorpay does.
type Input struct {
	Amount *int64  `json:"amount"`
	Reason *string `json:"reason"`
}

// validate checks what can be checked without the payment.
func (in Input) validate() *web.Error {
	if in.Amount != nil && *in.Amount <= 0 {
		return web.BadField("amount", "amount must be a positive integer")
	}
	if in.Reason != nil && (utf8.RuneCountInString(*in.Reason) > maxReason || web.HasNUL(*in.Reason)) {
		return web.BadField("reason", "reason must be at most 255 characters, without NUL")
	}
	return nil
}

// amount is the amount to refund when available is still refundable.
func (in Input) amount(available int64) (int64, *web.Error) {
	switch {
	case in.Amount == nil && available == 0:
		return 0, web.Errorf(web.CodeBadRequest, "Payment has no amount left to refund")
	case in.Amount == nil:
		return available, nil
	case *in.Amount > available:
		return 0, web.BadField("amount", "Refund amount exceeds available amount")
	}
	return *in.Amount, nil
}
