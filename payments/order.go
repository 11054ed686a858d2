package payments

import (
	"regexp"
	"unicode/utf8"

	"github.com/google/uuid"

	"paygate/web"
)

// Order statuses: created → paid when a payment on it succeeds.
const (
	OrderCreated = "created"
	OrderPaid    = "paid"
)

// Limits on an order's free-form fields. API.md fixes the receipt length and
// the number of notes; the note key and value lengths are ours (Razorpay's).
const (
	maxReceipt   = 40
	maxNotes     = 15
	maxNoteKey   = 256
	maxNoteValue = 256
	minAmount    = 100
	// maxAmount is the largest integer that JavaScript, and JSON parsers
	// that read numbers as doubles, hold exactly (2^53 − 1): the checkout
	// widget and the dashboard show amounts, and a merchant's client would
	// read a larger one rounded. It also keeps a merchant's sums far from
	// PostgreSQL's bigint.
	maxAmount = 1<<53 - 1
)

// Order is an amount a merchant expects to be paid, as the API shows it.
type Order struct {
	ID         string            `json:"id"`
	MerchantID uuid.UUID         `json:"merchant_id"`
	Amount     int64             `json:"amount"`
	Currency   string            `json:"currency"`
	Receipt    *string           `json:"receipt"`
	Notes      map[string]string `json:"notes"`
	Status     string            `json:"status"`
	CreatedAt  web.Time          `json:"created_at"`
	UpdatedAt  web.Time          `json:"updated_at"`
}

// OrderPublic is what the checkout may see of an order.
type OrderPublic struct {
	ID           string `json:"id"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"currency"`
	Status       string `json:"status"`
	MerchantName string `json:"merchant_name"`
}

func (o Order) Public(merchantName string) OrderPublic {
	return OrderPublic{ID: o.ID, Amount: o.Amount, Currency: o.Currency, Status: o.Status, MerchantName: merchantName}
}

// OrderInput is the body of POST /api/v1/orders. Notes are decoded loosely
// so that a non-string value is reported as such, not as a type mismatch.
type OrderInput struct {
	Amount   *int64         `json:"amount"`
	Currency string         `json:"currency"`
	Receipt  *string        `json:"receipt"`
	Notes    map[string]any `json:"notes"`
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// order validates the input and returns the order it describes (no id or
// times yet). Checks run field by field, so the client sees the first problem.
func (in OrderInput) order() (Order, *web.Error) {
	o := Order{Currency: "INR", Receipt: in.Receipt, Notes: make(map[string]string, len(in.Notes)), Status: OrderCreated}
	switch {
	case in.Amount == nil:
		return Order{}, web.BadField("amount", "amount is required")
	case *in.Amount < minAmount:
		return Order{}, web.BadField("amount", "amount must be an integer of at least 100")
	case *in.Amount > maxAmount:
		return Order{}, web.BadField("amount", "amount must be an integer of at most 9007199254740991")
	}
	o.Amount = *in.Amount
	if in.Currency != "" {
		if !currencyRE.MatchString(in.Currency) {
			return Order{}, web.BadField("currency", "currency must be 3 upper-case letters, e.g. INR")
		}
		o.Currency = in.Currency
	}
	if in.Receipt != nil && (utf8.RuneCountInString(*in.Receipt) > maxReceipt || web.HasNUL(*in.Receipt)) {
		return Order{}, web.BadField("receipt", "receipt must be at most 40 characters, without NUL")
	}
	if len(in.Notes) > maxNotes {
		return Order{}, web.BadField("notes", "notes must have at most 15 entries")
	}
	for k, v := range in.Notes {
		s, ok := v.(string)
		switch {
		case k == "" || utf8.RuneCountInString(k) > maxNoteKey || web.HasNUL(k):
			return Order{}, web.BadField("notes", "notes keys must be 1 to 256 characters, without NUL")
		case !ok:
			return Order{}, web.BadField("notes", "notes values must be strings")
		case utf8.RuneCountInString(s) > maxNoteValue || web.HasNUL(s):
			return Order{}, web.BadField("notes", "notes values must be at most 256 characters, without NUL")
		}
		o.Notes[k] = s
	}
	return o, nil
}
