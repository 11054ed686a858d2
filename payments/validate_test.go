package payments

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"paygate/web"
)

// now is fixed so expiry tests do not rot: November 2026, UTC.
var now = time.Date(2026, time.November, 25, 10, 0, 0, 0, time.UTC)

// goodCard is a valid card; each test case changes one field of a copy.
func goodCard() CardInput {
	return CardInput{Number: "4111111111111111", ExpiryMonth: "12", ExpiryYear: "2030", CVV: "123", HolderName: "Jane Doe"}
}

func TestValidateVPA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		vpa   string
		valid bool
	}{
		{"user@paytm", true},
		{"a.b-c_d@okicici", true},
		{"USER123@HDFC0", true},
		{"userpaytm", false},
		{"user@pay@tm", false},
		{"", false},
		{"us er@paytm", false},
		{"user@pay tm", false},
		{" user@paytm", false},
		{"user@paytm\n", false},
		{"user@ok.bank", false},
		{"user@ok-bank", false},
		{"@paytm", false},
		{"user@", false},
		{"üser@paytm", false},
		{"user@pаytm", false}, // Cyrillic а
		{"user\x00@paytm", false},
		{"user@paytm\x00", false},
		{strings.Repeat("u", 250) + "@bank", true},
		{strings.Repeat("u", 251) + "@bank", false},
		{"u@" + strings.Repeat("b", 300), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.40q", tt.vpa), func(t *testing.T) {
			t.Parallel()
			err := ValidateVPA(tt.vpa)
			if tt.valid {
				require.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			require.Equal(t, web.CodeInvalidVPA, err.Code)
			require.Equal(t, "vpa", err.Field)
			require.NotEmpty(t, err.Description)
		})
	}
}

func TestLuhn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		digits string
		want   bool
	}{
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"79927398713", true},
		{"79927398710", false},
		{"0", true},
		{"", false},
		{"4111 1111 1111 1111", false}, // Luhn takes digits only
		{"abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.digits, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Luhn(tt.digits))
		})
	}
}

func TestValidateCardNetwork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		number  string
		network string
		last4   string
	}{
		{"4111111111111111", NetworkVisa, "1111"},
		{"4222222222222", NetworkVisa, "2222"},          // 13 digits
		{"4111111111111111110", NetworkVisa, "1110"},    // 19 digits
		{"5555555555554444", NetworkMastercard, "4444"}, // 55
		{"5105105105105100", NetworkMastercard, "5100"}, // 51
		{"378282246310005", NetworkAmex, "0005"},        // 37
		{"341111111111111", NetworkAmex, "1111"},        // 34
		{"6080000000000000", NetworkRupay, "0000"},      // 60
		{"6521500000000006", NetworkRupay, "0006"},      // 65
		{"8170000000000007", NetworkRupay, "0007"},      // 81-89
		{"8900000000000004", NetworkRupay, "0004"},      // 89
		{"30569309025904", NetworkUnknown, "5904"},      // 30, not 34/37
		{"8000000000000003", NetworkUnknown, "0003"},    // 80, just below rupay
		{"5085000000000007", NetworkUnknown, "0007"},    // 50, just below mastercard
		{"4111 1111 1111 1111", NetworkVisa, "1111"},    // spaces stripped
		{"4111-1111-1111-1111", NetworkVisa, "1111"},    // dashes stripped
		{" 4111-1111 1111-1111 ", NetworkVisa, "1111"},  // both, and at the ends
	}
	for _, tt := range tests {
		t.Run(tt.number, func(t *testing.T) {
			t.Parallel()
			in := goodCard()
			in.Number = tt.number
			card, err := ValidateCard(in, now)
			require.Nil(t, err)
			require.Equal(t, Card{Network: tt.network, Last4: tt.last4}, card)
		})
	}
}

func TestValidateCardErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*CardInput)
		code   web.Code
		field  string
	}{
		{"empty number", func(c *CardInput) { c.Number = "" }, web.CodeInvalidCard, "card.number"},
		{"only separators", func(c *CardInput) { c.Number = " - " }, web.CodeInvalidCard, "card.number"},
		{"bad luhn", func(c *CardInput) { c.Number = "4111111111111112" }, web.CodeInvalidCard, "card.number"},
		{"12 digits luhn-valid", func(c *CardInput) { c.Number = "411111111117" }, web.CodeInvalidCard, "card.number"},
		{"20 digits luhn-valid", func(c *CardInput) { c.Number = "41111111111111111115" }, web.CodeInvalidCard, "card.number"},
		{"letters", func(c *CardInput) { c.Number = "4111x11111111111" }, web.CodeInvalidCard, "card.number"},
		{"dot separator", func(c *CardInput) { c.Number = "4111.1111.1111.1111" }, web.CodeInvalidCard, "card.number"},
		{"unicode digits", func(c *CardInput) { c.Number = "٤١١١١١١١١١١١١١١١" }, web.CodeInvalidCard, "card.number"},
		{"number checked before expiry", func(c *CardInput) { c.Number = "1"; c.ExpiryMonth = "13" }, web.CodeInvalidCard, "card.number"},

		{"month 13", func(c *CardInput) { c.ExpiryMonth = "13" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month 0", func(c *CardInput) { c.ExpiryMonth = "0" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month 00", func(c *CardInput) { c.ExpiryMonth = "00" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month ab", func(c *CardInput) { c.ExpiryMonth = "ab" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month empty", func(c *CardInput) { c.ExpiryMonth = "" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month 012", func(c *CardInput) { c.ExpiryMonth = "012" }, web.CodeExpiredCard, "card.expiry_month"},
		{"month negative", func(c *CardInput) { c.ExpiryMonth = "-1" }, web.CodeExpiredCard, "card.expiry_month"},
		{"year 3 digits", func(c *CardInput) { c.ExpiryYear = "203" }, web.CodeExpiredCard, "card.expiry_year"},
		{"year empty", func(c *CardInput) { c.ExpiryYear = "" }, web.CodeExpiredCard, "card.expiry_year"},
		{"year letters", func(c *CardInput) { c.ExpiryYear = "20ab" }, web.CodeExpiredCard, "card.expiry_year"},
		{"last month", func(c *CardInput) { c.ExpiryMonth = "10"; c.ExpiryYear = "2026" }, web.CodeExpiredCard, "card.expiry_year"},
		{"last year", func(c *CardInput) { c.ExpiryMonth = "12"; c.ExpiryYear = "2025" }, web.CodeExpiredCard, "card.expiry_year"},
		{"two-digit past year", func(c *CardInput) { c.ExpiryMonth = "12"; c.ExpiryYear = "25" }, web.CodeExpiredCard, "card.expiry_year"},
		{"expiry checked before cvv", func(c *CardInput) { c.ExpiryYear = "2020"; c.CVV = "" }, web.CodeExpiredCard, "card.expiry_year"},

		{"cvv empty", func(c *CardInput) { c.CVV = "" }, web.CodeInvalidCard, "card.cvv"},
		{"cvv 2 digits", func(c *CardInput) { c.CVV = "12" }, web.CodeInvalidCard, "card.cvv"},
		{"cvv 5 digits", func(c *CardInput) { c.CVV = "12345" }, web.CodeInvalidCard, "card.cvv"},
		{"cvv letters", func(c *CardInput) { c.CVV = "12a" }, web.CodeInvalidCard, "card.cvv"},
		{"cvv space", func(c *CardInput) { c.CVV = "12 3" }, web.CodeInvalidCard, "card.cvv"},

		{"year past the range", func(c *CardInput) { c.ExpiryYear = "2077" }, web.CodeExpiredCard, "card.expiry_year"},
		{"year 9999", func(c *CardInput) { c.ExpiryYear = "9999" }, web.CodeExpiredCard, "card.expiry_year"},
		{"two-digit year 99", func(c *CardInput) { c.ExpiryYear = "99" }, web.CodeExpiredCard, "card.expiry_year"},

		{"holder 101 chars", func(c *CardInput) { c.HolderName = strings.Repeat("a", 101) }, web.CodeBadRequest, "card.holder_name"},
		{"holder with NUL", func(c *CardInput) { c.HolderName = "Jane\x00Doe" }, web.CodeBadRequest, "card.holder_name"},
		{"holder with line break", func(c *CardInput) { c.HolderName = "Jane\nDoe" }, web.CodeBadRequest, "card.holder_name"},
		{"holder with tab", func(c *CardInput) { c.HolderName = "Jane\tDoe" }, web.CodeBadRequest, "card.holder_name"},
		{"holder with DEL", func(c *CardInput) { c.HolderName = "Jane\x7f" }, web.CodeBadRequest, "card.holder_name"},
		{"holder with C1 control", func(c *CardInput) { c.HolderName = "Jane\u0085" }, web.CodeBadRequest, "card.holder_name"},
		{"holder with bidi override", func(c *CardInput) { c.HolderName = "Jane\u202e" }, web.CodeBadRequest, "card.holder_name"},
		{"holder invalid UTF-8", func(c *CardInput) { c.HolderName = "Jane\xff" }, web.CodeBadRequest, "card.holder_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := goodCard()
			tt.change(&in)
			card, err := ValidateCard(in, now)
			require.NotNil(t, err)
			require.Equal(t, tt.code, err.Code, err.Error())
			require.Equal(t, tt.field, err.Field, err.Error())
			require.NotEmpty(t, err.Description)
			require.Equal(t, Card{}, card)
			// The description must not leak the number or the CVV.
			require.NotContains(t, err.Description, "4111")
			if in.CVV != "" {
				require.NotContains(t, err.Description, in.CVV)
			}
		})
	}
}

func TestValidateCardValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*CardInput)
	}{
		{"this month", func(c *CardInput) { c.ExpiryMonth = "11"; c.ExpiryYear = "2026" }},
		{"this month two-digit year", func(c *CardInput) { c.ExpiryMonth = "11"; c.ExpiryYear = "26" }},
		{"next month", func(c *CardInput) { c.ExpiryMonth = "12"; c.ExpiryYear = "2026" }},
		{"next year", func(c *CardInput) { c.ExpiryMonth = "1"; c.ExpiryYear = "2027" }},
		{"two-digit year 30", func(c *CardInput) { c.ExpiryMonth = "01"; c.ExpiryYear = "30" }},
		{"month with zero", func(c *CardInput) { c.ExpiryMonth = "09" }},
		{"month without zero", func(c *CardInput) { c.ExpiryMonth = "9" }},
		{"cvv 4 digits", func(c *CardInput) { c.CVV = "1234" }},
		{"cvv leading zero", func(c *CardInput) { c.CVV = "007" }},
		{"no holder", func(c *CardInput) { c.HolderName = "" }},
		{"holder 100 chars", func(c *CardInput) { c.HolderName = strings.Repeat("é", 100) }},
		{"holder with punctuation", func(c *CardInput) { c.HolderName = "J. O'Brien-Smith Jr" }},
		{"holder in another script", func(c *CardInput) { c.HolderName = "राज कुमार" }},
		{"year 50 years ahead", func(c *CardInput) { c.ExpiryYear = "2076" }},
		{"two-digit year 76", func(c *CardInput) { c.ExpiryYear = "76" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := goodCard()
			tt.change(&in)
			card, err := ValidateCard(in, now)
			require.Nil(t, err)
			require.Equal(t, Card{Network: NetworkVisa, Last4: "1111"}, card)
		})
	}
}

// TestValidateCardNowInUTC: the current month is taken in UTC, whatever the
// location of now.
func TestValidateCardNowInUTC(t *testing.T) {
	t.Parallel()
	// 1 December 2026 04:00 in UTC+5:30 is still 30 November in UTC.
	ist := time.FixedZone("IST", 5*3600+1800)
	local := time.Date(2026, time.December, 1, 4, 0, 0, 0, ist)
	in := goodCard()
	in.ExpiryMonth, in.ExpiryYear = "11", "2026"
	_, err := ValidateCard(in, local)
	require.Nil(t, err)
}

func digitsOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func FuzzValidateCard(f *testing.F) {
	f.Add("4111111111111111", "12", "2030", "123", "Jane Doe")
	f.Add("4111-1111 1111-1111", "1", "30", "1234", "")
	f.Add("378282246310005", "13", "2030", "123", "")
	f.Add("30569309025904", "11", "2026", "12", "")
	f.Add("", "", "", "", "")
	f.Add("٤١١١", "٠١", "٢٠٣٠", "١٢٣", "\xff")
	f.Add("4111111111111111", "12", "9999", "123", "Jane\x00")
	f.Add("4111111111111111", "12", "2030", "123", "Jane\n\u202e")
	f.Fuzz(func(t *testing.T, number, month, year, cvv, holder string) {
		in := CardInput{Number: number, ExpiryMonth: month, ExpiryYear: year, CVV: cvv, HolderName: holder}
		card, err := ValidateCard(in, now)
		digits := digitsOf(number)
		if err != nil {
			require.Equal(t, Card{}, card)
			if len(digits) >= 13 {
				require.NotContains(t, err.Description, digits)
				require.NotContains(t, err.Error(), digits)
			}
			return
		}
		// Valid: the number was digits, spaces and dashes only.
		require.GreaterOrEqual(t, len(digits), 13)
		require.LessOrEqual(t, len(digits), 19)
		require.True(t, Luhn(digits))
		require.Equal(t, digits[len(digits)-4:], card.Last4)
		require.NotEmpty(t, card.Network)
		y, _ := parseYear(year)
		require.LessOrEqual(t, y, now.Year()+maxExpiryYears)
		require.True(t, utf8.ValidString(holder))
		for _, r := range holder {
			require.False(t, unicode.IsControl(r), "holder %q", holder)
		}
	})
}

func FuzzValidateVPA(f *testing.F) {
	f.Add("user@paytm")
	f.Add("a.b-c_d@okicici")
	f.Add("user@ok.bank")
	f.Add("a@b@c")
	f.Add("")
	f.Add("user\x00@paytm")
	f.Add(strings.Repeat("u", 300) + "@bank")
	f.Fuzz(func(t *testing.T, vpa string) {
		err := ValidateVPA(vpa)
		if err == nil {
			require.Equal(t, 1, strings.Count(vpa, "@"))
			require.LessOrEqual(t, len(vpa), maxVPA)
			require.True(t, web.IsPrintableASCII(vpa), "%q", vpa)
			return
		}
		require.Equal(t, web.CodeInvalidVPA, err.Code)
		require.Equal(t, "vpa", err.Field)
	})
}

// TestLengthCasesAreLuhnValid guards the too-short/too-long cases above: they
// must fail on length, not on the checksum.
func TestLengthCasesAreLuhnValid(t *testing.T) {
	t.Parallel()
	require.True(t, Luhn("411111111117"))
	require.True(t, Luhn("41111111111111111115"))
}
