package payments

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"paygate/web"
)

// vpaRE is the VPA shape of API.md, compiled once: a handle of letters, digits,
// dots, underscores and dashes, one "@", and a bank of letters and digits only.
var vpaRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+@[a-zA-Z0-9]+$`)

// maxVPA bounds what a client can make us store (NPCI allows 255).
const maxVPA = 255

// ValidateVPA checks a UPI virtual payment address. It returns nil when vpa is
// valid, else an INVALID_VPA error blaming the field "vpa".
func ValidateVPA(vpa string) *web.Error {
	if vpa == "" {
		return web.FieldError(web.CodeInvalidVPA, "vpa", "vpa is required")
	}
	if len(vpa) > maxVPA {
		return web.FieldError(web.CodeInvalidVPA, "vpa", "vpa must be at most 255 characters")
	}
	if !vpaRE.MatchString(vpa) {
		return web.FieldError(web.CodeInvalidVPA, "vpa", "vpa must look like name@bank")
	}
	return nil
}

// CardInput is the card as the client sends it. It holds the full number and
// the CVV, so it must never be stored, logged or returned.
type CardInput struct {
	Number      string `json:"number"`
	ExpiryMonth string `json:"expiry_month"`
	ExpiryYear  string `json:"expiry_year"`
	CVV         string `json:"cvv"`
	HolderName  string `json:"holder_name"`
}

// Card is all that is ever kept of a card.
type Card struct {
	Network string
	Last4   string
}

// Card networks, from the number's prefix.
const (
	NetworkVisa       = "visa"
	NetworkMastercard = "mastercard"
	NetworkAmex       = "amex"
	NetworkRupay      = "rupay"
	NetworkUnknown    = "unknown"
)

const maxHolderName = 100

// maxExpiryYears is how far ahead an expiry year may be: cards are issued
// for a few years, so a later year is a typing error, not a card.
const maxExpiryYears = 50

// ValidateCard checks a card against API.md and returns its network and last
// four digits. Checks run in the order number, expiry, CVV, holder name, so
// the client sees the first problem only. now is the clock; the expiry is
// compared with its month in UTC.
//
// Error descriptions are fixed strings: they never echo the number or the CVV.
func ValidateCard(in CardInput, now time.Time) (Card, *web.Error) {
	number := strings.NewReplacer(" ", "", "-", "").Replace(in.Number)
	switch {
	case number == "":
		return Card{}, cardErr(web.CodeInvalidCard, "card.number", "card number is required")
	case !allDigits(number):
		return Card{}, cardErr(web.CodeInvalidCard, "card.number", "card number must contain only digits, spaces and dashes")
	case len(number) < 13 || len(number) > 19:
		return Card{}, cardErr(web.CodeInvalidCard, "card.number", "card number must have 13 to 19 digits")
	case !Luhn(number):
		return Card{}, cardErr(web.CodeInvalidCard, "card.number", "card number is not valid")
	}

	// A malformed expiry is EXPIRED_CARD too: API.md gives the whole expiry
	// rule that code.
	month, ok := parseMonth(in.ExpiryMonth)
	if !ok {
		return Card{}, cardErr(web.CodeExpiredCard, "card.expiry_month", "expiry_month must be a month from 1 to 12")
	}
	year, ok := parseYear(in.ExpiryYear)
	if !ok {
		return Card{}, cardErr(web.CodeExpiredCard, "card.expiry_year", "expiry_year must have 2 or 4 digits")
	}
	// A card is valid through the last day of its expiry month, so only a
	// month strictly before the current one is expired.
	now = now.UTC()
	if year < now.Year() || (year == now.Year() && month < int(now.Month())) {
		return Card{}, cardErr(web.CodeExpiredCard, "card.expiry_year", "card has expired")
	}
	if year > now.Year()+maxExpiryYears {
		return Card{}, cardErr(web.CodeExpiredCard, "card.expiry_year", "expiry_year must be within 50 years from now")
	}

	if n := len(in.CVV); n < 3 || n > 4 || !allDigits(in.CVV) {
		return Card{}, cardErr(web.CodeInvalidCard, "card.cvv", "cvv must have 3 or 4 digits")
	}

	if utf8.RuneCountInString(in.HolderName) > maxHolderName {
		return Card{}, cardErr(web.CodeBadRequest, "card.holder_name", "holder_name must be at most 100 characters")
	}
	if !printableText(in.HolderName) {
		return Card{}, cardErr(web.CodeBadRequest, "card.holder_name", "holder_name must be printable text (no control characters)")
	}

	return Card{Network: network(number), Last4: number[len(number)-4:]}, nil
}

// printableText reports whether s is valid UTF-8 of printable characters and
// plain spaces: no NUL, line break or other control or format character.
func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func cardErr(code web.Code, field, description string) *web.Error {
	return web.FieldError(code, field, description)
}

// Luhn reports whether digits, a string of ASCII digits only, passes the Luhn
// checksum. An empty string or any non-digit is false.
func Luhn(digits string) bool {
	if digits == "" {
		return false
	}
	sum := 0
	double := false // the rightmost digit is not doubled
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// network maps a validated number's prefix to its network, per API.md.
func network(number string) string {
	p1, p2 := number[0], number[:2]
	switch {
	case p1 == '4':
		return NetworkVisa
	case p2 >= "51" && p2 <= "55":
		return NetworkMastercard
	case p2 == "34" || p2 == "37":
		return NetworkAmex
	case p2 == "60" || p2 == "65" || (p2 >= "81" && p2 <= "89"):
		return NetworkRupay
	}
	return NetworkUnknown
}

// parseMonth accepts "1".."12" with an optional leading zero ("01").
func parseMonth(s string) (int, bool) {
	if len(s) < 1 || len(s) > 2 || !allDigits(s) {
		return 0, false
	}
	m := atoi(s)
	return m, m >= 1 && m <= 12
}

// parseYear accepts "YY", meaning 20YY, or "YYYY".
func parseYear(s string) (int, bool) {
	if !allDigits(s) {
		return 0, false
	}
	switch len(s) {
	case 2:
		return 2000 + atoi(s), true
	case 4:
		return atoi(s), true
	}
	return 0, false
}

// allDigits is ASCII-only on purpose: unicode.IsDigit would let through
// digits of other scripts that the rest of the code does not understand.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoi of at most 4 ASCII digits, checked by the caller; it cannot overflow.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
