// Package payments holds orders and payments: validation, creation, the
// asynchronous decision (the ProcessPayment worker) and capture.
//
// Invariants:
//   - A payment row, its processing job (none when the creating process
//     decides it itself: first.go) and its payment.created event commit in
//     one transaction (with other requests' payments, and their
//     Idempotency-Keys, in a batch: create.go, as orders are); so do a
//     decision (a success makes its order paid) and the
//     payment.success/failed event. The worker records the decisions that
//     come at the same time in one transaction (a batch: all
//     of them or none; a failed batch is recorded again one answer at a
//     time, so only a failing one's job errs and runs again). River
//     completes the job after that commit, batched with others
//     (db/jobs.go).
//   - A payment leaves pending exactly once: the decision is a conditional
//     update (WHERE status = 'pending'), so a job run twice changes nothing.
//   - An order has at most one payment that is pending or successful, so it
//     is charged at most once: a partial unique index
//     (payments_one_live_per_order) refuses a second one, under any
//     concurrency. Creation does not lock the order.
//   - An order's status is not stored: it is paid exactly when it has a
//     successful payment, since that payment's decision (decided_at), so
//     the two can never disagree. This version writes an order's row only
//     at its creation; orders.status is stale and never read.
//   - A payment is decided once by the acquirer: its decision key is
//     committed before the acquirer is asked (with the payment itself; the
//     worker commits one for a payment created before that), and it is
//     asked again only under that key. After the last attempt an acquirer
//     that errs or hangs (DecideTimeout) fails the payment; a real
//     connector must void or look up by key first (Decide).
//   - No payment stays pending forever: one whose job left River without
//     deciding it, or whose creating process died before deciding it (or
//     giving it back as a job), is given a new job by Reconcile.
//   - A payment is captured at most once: capture locks the payment row.
//   - Of a card only the network and the last four digits are kept; the full
//     number and the CVV never reach the database, a log or a response.
//   - Every query is scoped by merchant_id: another merchant's object is
//     answered exactly like an unknown one.
package payments

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"paygate/db"
	"paygate/web"
)

// Payment statuses: pending → success | failed.
const (
	StatusPending = "pending"
	StatusSuccess = "success"
	StatusFailed  = "failed"
)

// Payment methods.
const (
	MethodUPI  = "upi"
	MethodCard = "card"
)

// What a failed payment says (API.md).
const (
	FailedCode        = "PAYMENT_FAILED"
	FailedDescription = "Payment processing failed"
)

// Payment is a payment as the API shows it; the webhook payloads carry the
// same object.
type Payment struct {
	ID               string    `json:"id"`
	OrderID          string    `json:"order_id"`
	MerchantID       uuid.UUID `json:"merchant_id"`
	Amount           int64     `json:"amount"`
	Currency         string    `json:"currency"`
	Method           string    `json:"method"`
	VPA              *string   `json:"vpa,omitempty"`
	CardNetwork      *string   `json:"card_network,omitempty"`
	CardLast4        *string   `json:"card_last4,omitempty"`
	Status           string    `json:"status"`
	Captured         bool      `json:"captured"`
	AmountRefunded   int64     `json:"amount_refunded"`
	ErrorCode        *string   `json:"error_code"`
	ErrorDescription *string   `json:"error_description"`
	CreatedAt        web.Time  `json:"created_at"`
	UpdatedAt        web.Time  `json:"updated_at"`
}

// PaymentPublic is what the checkout may see of a payment.
type PaymentPublic struct {
	ID               string  `json:"id"`
	OrderID          string  `json:"order_id"`
	Amount           int64   `json:"amount"`
	Currency         string  `json:"currency"`
	Method           string  `json:"method"`
	Status           string  `json:"status"`
	ErrorCode        *string `json:"error_code"`
	ErrorDescription *string `json:"error_description"`
}

func (p Payment) Public() PaymentPublic {
	return PaymentPublic{ID: p.ID, OrderID: p.OrderID, Amount: p.Amount, Currency: p.Currency, Method: p.Method,
		Status: p.Status, ErrorCode: p.ErrorCode, ErrorDescription: p.ErrorDescription}
}

// PaymentInput is the body of POST /api/v1/payments. Card holds the full
// number and CVV: it is validated and dropped, never stored.
type PaymentInput struct {
	OrderID string     `json:"order_id"`
	Method  string     `json:"method"`
	VPA     string     `json:"vpa"`
	Card    *CardInput `json:"card"`
}

// Fingerprint is what an Idempotency-Key remembers of a payment request, in
// place of its body: the body with the card number reduced to its length and
// last four digits and the CVV left out. An unkeyed hash over the raw body
// would hold the card: with the BIN and last four known, a few hundred
// million guesses recover the number and CVV from it.
func (in PaymentInput) Fingerprint() []byte {
	v := in
	if in.Card != nil {
		card := *in.Card
		digits := strings.NewReplacer(" ", "", "-", "").Replace(card.Number)
		card.Number = fmt.Sprintf("len=%d last4=%s", len(digits), digits[max(0, len(digits)-4):])
		card.CVV = ""
		v.Card = &card
	}
	b, _ := web.Marshal(v) // strings and a pointer to strings: cannot fail
	return b
}

// payment validates the input and returns the method details of the payment
// it describes (order, amount and ids come later).
func (in PaymentInput) payment(now time.Time) (Payment, *web.Error) {
	if in.OrderID == "" {
		return Payment{}, web.BadField("order_id", "order_id is required")
	}
	p := Payment{OrderID: in.OrderID, Method: in.Method, Status: StatusPending}
	switch in.Method {
	case MethodUPI:
		if err := ValidateVPA(in.VPA); err != nil {
			return Payment{}, err
		}
		p.VPA = &in.VPA
	case MethodCard:
		var card CardInput
		if in.Card != nil {
			card = *in.Card
		}
		c, err := ValidateCard(card, now)
		if err != nil {
			return Payment{}, err
		}
		p.CardNetwork, p.CardLast4 = &c.Network, &c.Last4
	default:
		return Payment{}, web.BadField("method", "method must be upi or card")
	}
	return p, nil
}

// decision is what deciding a pending payment writes.
func decision(ok bool) (status string, errCode, errDescription *string) {
	if ok {
		return StatusSuccess, nil, nil
	}
	code, desc := FailedCode, FailedDescription
	return StatusFailed, &code, &desc
}

// checkCapture says whether p can be captured for amount (nil: the whole).
func (p Payment) checkCapture(amount *int64) *web.Error {
	if p.Status != StatusSuccess || p.Captured {
		return web.Errorf(web.CodeBadRequest, "Payment not in capturable state")
	}
	if amount != nil && *amount != p.Amount {
		return web.BadField("amount", "amount must equal the payment amount")
	}
	return nil
}

// PaymentFilter narrows a payment list; empty fields do not filter.
type PaymentFilter struct {
	Status  string
	OrderID string
}

func (f PaymentFilter) validate() *web.Error {
	switch f.Status {
	case "", StatusPending, StatusSuccess, StatusFailed:
	default:
		return web.BadField("status", "status must be pending, success or failed")
	}
	if f.OrderID != "" && !db.IsID("order_", f.OrderID) {
		return web.BadField("order_id", "order_id is not an order id")
	}
	return nil
}
