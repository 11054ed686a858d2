package payments_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/merchants"
)

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()

	status, o := call(t, a, http.MethodPost, "/api/v1/orders",
		`{"amount":50000,"currency":"INR","receipt":"rcpt_1","notes":{"k":"v"}}`, h)
	require.Equal(t, http.StatusCreated, status, "%v", o)
	require.ElementsMatch(t, []string{"id", "merchant_id", "amount", "currency", "receipt", "notes", "status",
		"created_at", "updated_at"}, keysOf(o))
	require.Regexp(t, `^order_[A-Za-z0-9]{16}$`, o["id"])
	require.Equal(t, merchants.TestMerchantID.String(), o["merchant_id"])
	require.EqualValues(t, 50000, o["amount"])
	require.Equal(t, "INR", o["currency"])
	require.Equal(t, "rcpt_1", o["receipt"])
	require.Equal(t, map[string]any{"k": "v"}, o["notes"])
	require.Equal(t, "created", o["status"])
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, o["created_at"])

	status, got := call(t, a, http.MethodGet, "/api/v1/orders/"+o["id"].(string), "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, o, got)

	// Defaults: INR, no receipt, no notes.
	status, o = call(t, a, http.MethodPost, "/api/v1/orders", `{"amount":100}`, h)
	require.Equal(t, http.StatusCreated, status, "%v", o)
	require.Equal(t, "INR", o["currency"])
	require.Nil(t, o["receipt"])
	require.Equal(t, map[string]any{}, o["notes"])
}

func TestCreateOrderValidation(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()

	notes := func(n, keyLen, valueLen int) string {
		pairs := make([]string, n)
		for i := range pairs {
			pairs[i] = fmt.Sprintf(`"%02d%s":"%s"`, i, strings.Repeat("k", keyLen-2), strings.Repeat("v", valueLen))
		}
		return `{"amount":100,"notes":{` + strings.Join(pairs, ",") + `}}`
	}
	tests := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"minimum amount", `{"amount":100}`, 201, ""},
		{"other currency", `{"amount":100,"currency":"USD"}`, 201, ""},
		{"receipt of 40", `{"amount":100,"receipt":"` + strings.Repeat("r", 40) + `"}`, 201, ""},
		{"receipt of 40 runes", `{"amount":100,"receipt":"` + strings.Repeat("é", 40) + `"}`, 201, ""},
		{"15 notes of 256", notes(15, 256, 256), 201, ""},
		{"missing amount", `{}`, 400, "amount"},
		{"amount 99", `{"amount":99}`, 400, "amount"},
		{"largest amount", `{"amount":9007199254740991}`, 201, ""},
		{"amount over 2^53 - 1", `{"amount":9007199254740992}`, 400, "amount"},
		{"negative amount", `{"amount":-500}`, 400, "amount"},
		{"fractional amount", `{"amount":100.5}`, 400, "amount"},
		{"amount as string", `{"amount":"100"}`, 400, "amount"},
		{"lower-case currency", `{"amount":100,"currency":"inr"}`, 400, "currency"},
		{"long currency", `{"amount":100,"currency":"INRR"}`, 400, "currency"},
		{"currency not a string", `{"amount":100,"currency":1}`, 400, "currency"},
		{"receipt of 41", `{"amount":100,"receipt":"` + strings.Repeat("r", 41) + `"}`, 400, "receipt"},
		{"receipt with NUL", `{"amount":100,"receipt":"a\u0000b"}`, 400, "receipt"},
		{"16 notes", notes(16, 2, 2), 400, "notes"},
		{"note key of 257", notes(1, 257, 1), 400, "notes"},
		{"note value of 257", notes(1, 2, 257), 400, "notes"},
		{"note value not a string", `{"amount":100,"notes":{"k":1}}`, 400, "notes"},
		{"note value null", `{"amount":100,"notes":{"k":null}}`, 400, "notes"},
		{"empty note key", `{"amount":100,"notes":{"":"v"}}`, 400, "notes"},
		{"notes an array", `{"amount":100,"notes":["a"]}`, 400, "notes"},
		{"malformed JSON", `{"amount":`, 400, ""},
		{"not an object", `[1]`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := call(t, a, http.MethodPost, "/api/v1/orders", tt.body, h)
			require.Equal(t, tt.status, status, "%v", body)
			if tt.status == http.StatusCreated {
				return
			}
			code, field := errorOf(t, body)
			require.Equal(t, "BAD_REQUEST_ERROR", code)
			require.Equal(t, tt.field, field)
		})
	}
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	var ids []string // oldest first
	for range 5 {
		ids = append(ids, createOrder(t, a, h, 1000))
	}
	_, other := apptest.NewMerchant(t, a, "lists@example.com")
	createOrder(t, a, other, 1000)

	list := func(query string) (int, map[string]any) {
		return call(t, a, http.MethodGet, "/api/v1/orders"+query, "", h)
	}

	status, body := list("")
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 5, body["total"])
	require.EqualValues(t, 10, body["limit"])
	require.EqualValues(t, 0, body["offset"])
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, idsOf(body))

	_, body = list("?limit=2&offset=1")
	require.Equal(t, []string{ids[3], ids[2]}, idsOf(body))
	require.EqualValues(t, 5, body["total"])
	require.EqualValues(t, 2, body["limit"])
	require.EqualValues(t, 1, body["offset"])

	_, body = list("?offset=4&limit=100")
	require.Equal(t, []string{ids[0]}, idsOf(body))

	_, body = list("?offset=50")
	require.Equal(t, []any{}, body["data"])
	require.EqualValues(t, 5, body["total"])

	for query, field := range map[string]string{
		"?limit=0": "limit", "?limit=101": "limit", "?limit=x": "limit", "?limit=1.5": "limit",
		"?offset=-1": "offset", "?offset=x": "offset",
	} {
		status, body := list(query)
		require.Equal(t, http.StatusBadRequest, status, query)
		code, f := errorOf(t, body)
		require.Equal(t, "BAD_REQUEST_ERROR", code)
		require.Equal(t, field, f, query)
	}
}
