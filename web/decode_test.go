package web_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/web"
)

// body has the shapes of the gateway's request bodies: a plain string, a
// pointer, a map of notes, a nested object and an array.
type body struct {
	Receipt *string        `json:"receipt"`
	Notes   map[string]any `json:"notes"`
	Card    *struct {
		HolderName string `json:"holder_name"`
	} `json:"card"`
	Events []string `json:"events"`
	URL    *string  `json:"webhook_url"`
	Amount *int64   `json:"amount"`
}

func TestDecodeRefusesWhatJSONWouldReplace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, field string
	}{
		{"invalid UTF-8 in receipt", "{\"receipt\":\"a\xffb\"}", "receipt"},
		{"truncated sequence", "{\"receipt\":\"\xe2\x82\"}", "receipt"},
		{"overlong encoding", "{\"receipt\":\"\xc0\xaf\"}", "receipt"},
		{"UTF-16 surrogate as UTF-8 bytes", "{\"receipt\":\"\xed\xa0\x80\"}", "receipt"},
		{"escaped NUL", `{"receipt":"a\u0000b"}`, "receipt"},
		{"lone high surrogate", `{"receipt":"\ud800"}`, "receipt"},
		{"high surrogate then letter", `{"receipt":"\ud800x"}`, "receipt"},
		{"lone low surrogate", `{"receipt":"\uDC00"}`, "receipt"},
		{"note value", "{\"notes\":{\"k\":\"\xff\"}}", "notes"},
		{"note key", "{\"notes\":{\"\xff\":\"v\"}}", "notes"},
		{"note key with NUL", `{"notes":{"a\u0000":"v"}}`, "notes"},
		{"nested field", "{\"card\":{\"holder_name\":\"J\xffD\"}}", "card.holder_name"},
		{"field name case-insensitive", "{\"Card\":{\"HOLDER_NAME\":\"\xff\"}}", "card.holder_name"},
		{"array element", "{\"events\":[\"payment.success\",\"\xfe\"]}", "events"},
		{"webhook url", "{\"webhook_url\":\"https://x.example/\xff\"}", "webhook_url"},
		{"unknown field", "{\"extra\":\"\xff\"}", "extra"},
		{"unknown field deep", "{\"extra\":{\"x\":[\"\xff\"]}}", "extra"},
		{"key of the body", "{\"\xff\":1}", ""},
		{"after other values", "{\"amount\":100,\"notes\":{\"a\":\"ok\",\"b\":[1,{\"c\":null}]},\"receipt\":\"\\u0000\"}", "receipt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var v body
			err := web.Decode([]byte(tt.raw), &v)
			var e *web.Error
			require.True(t, errors.As(err, &e), "%v", err)
			require.Equal(t, web.CodeBadRequest, e.Code)
			require.Equal(t, http.StatusBadRequest, e.HTTPStatus())
			require.Equal(t, tt.field, e.Field)
			require.Contains(t, e.Description, "valid UTF-8")
		})
	}
}

func TestDecodeKeepsGoodText(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"receipt":"plain"}`,
		`{"receipt":"é – 日本 🙂"}`,
		`{"receipt":"\u00e9\u2013\ud83d\ude42"}`, // escaped, with a surrogate pair
		`{"receipt":"\\u0000 is text here"}`,     // an escaped backslash, not an escape
		`{"receipt":"\ufffd"}`,                   // U+FFFD sent on purpose is kept
		`{"notes":{"k":"\"quoted\\\""}}`,
	} {
		var v body
		require.NoError(t, web.Decode([]byte(raw), &v), raw)
	}
	var v body
	require.NoError(t, web.Decode([]byte(`{"receipt":"\ud83d\ude42"}`), &v))
	require.Equal(t, "🙂", *v.Receipt)
}

func TestDecodeRefusesNull(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"null", " null\n", "[]", "1", `"x"`} {
		var v body
		err := web.Decode([]byte(raw), &v)
		var e *web.Error
		require.True(t, errors.As(err, &e), "%q: %v", raw, err)
		require.Equal(t, "Request body must be a JSON object", e.Description, raw)
	}
}

func TestBindEmptyBodyIsAnObject(t *testing.T) {
	t.Parallel()
	c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(" ")), httptest.NewRecorder())
	var v body
	raw, err := web.Bind(c, &v)
	require.NoError(t, err)
	require.Equal(t, "{}", string(raw))
}

// FuzzDecode: whatever the bytes, Decode answers a client error or a value
// whose every string is valid UTF-8 without NUL, exactly as sent.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `{"receipt":"r1","amount":100}`, `{"notes":{"a":"b"}}`,
		"{\"receipt\":\"\xff\"}", `{"receipt":"\u0000"}`, `{"receipt":"\ud800"}`, `{"receipt":"\ud83d\ude42"}`,
		`{"card":{"holder_name":"Jane"}}`, `{"events":["*"]}`, `{"webhook_url":"https://a.example/h"}`,
		`{"notes":{"k":{"deep":["\udfff"]}}}`, `{"amount":"100"}`, `{"amount":1e400}`, `[`, `{"a":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v body
		err := web.Decode(raw, &v)
		if err != nil {
			var e *web.Error
			if !errors.As(err, &e) || e.HTTPStatus() >= 500 {
				t.Fatalf("not a client error: %v", err)
			}
			return
		}
		check := func(s string) {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("decoded %q from %q", s, raw)
			}
		}
		if v.Receipt != nil {
			check(*v.Receipt)
		}
		if v.URL != nil {
			check(*v.URL)
		}
		if v.Card != nil {
			check(v.Card.HolderName)
		}
		for _, e := range v.Events {
			check(e)
		}
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case string:
				check(x)
			case map[string]any:
				for k, v := range x {
					check(k)
					walk(v)
				}
			case []any:
				for _, v := range x {
					walk(v)
				}
			}
		}
		walk(v.Notes)
	})
}

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "req-123", "0f8fad5b-d9cb-469f-a165-70867728950e", strings.Repeat("x", 128), "a.b_c~d|e"} {
		require.True(t, web.ValidRequestID(id), id)
	}
	for _, id := range []string{"", strings.Repeat("x", 129), "a b", "a\nb", "a\x00", "é", "a\"b", "a,b", "<script>"} {
		require.False(t, web.ValidRequestID(id), id)
	}
}

func FuzzValidRequestID(f *testing.F) {
	for _, seed := range []string{"", "abc", "req-1", "a b", "\x00", strings.Repeat("y", 200), "日本"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !web.ValidRequestID(id) {
			return
		}
		if len(id) == 0 || len(id) > web.MaxRequestIDLength || !web.IsPrintableASCII(id) || strings.ContainsAny(id, " \",;\\()<>@:/[]?={}") {
			t.Fatalf("accepted %q", id)
		}
	})
}

// A key names a field only as the field is spelled (API.md: unknown fields
// are ignored), though encoding/json matches whatever the case: a key of
// another case is ignored, at any depth, and cannot override the field. The
// keys of notes are data, kept as sent.
func TestDecodeMatchesKeysExactly(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`{"AMOUNT": 5}`, `{}`},
		{`{"amount": 100, "Amount": 9999}`, `{"amount":100}`},
		{`{"Amount": 9999, "amount": 100}`, `{"amount":100}`},
		{`{"AMOUNT": "not a number"}`, `{}`},
		{`{"amount": 100, "\u0041mount": 9999}`, `{"amount":100}`},
		{"{\"receipt\": \"r\", \"Receipt\": \"R\", \"notes\": {\"Amount\": \"1\", \"NOTE\": \"é\"}}",
			`{"receipt":"r","notes":{"Amount":"1","NOTE":"é"}}`},
		{`{"card": {"Holder_Name": "X", "holder_name": "Y"}}`, `{"card":{"holder_name":"Y"}}`},
		{"{\"card\": {\"holder_name\": \"Y\"}, \"CARD\": {\"holder_name\": \"Z\"}}", `{"card":{"holder_name":"Y"}}`},
		{"{\"amount\": 100, \"amo\u212Ant\": 7}", `{"amount":100}`}, // no K in amount: unknown either way
		{"{\"receipt\": \"Ab\", \"events\": [\"PAYMENT.SUCCESS\"], \"webhook_url\": \"https://X.example/\"}",
			`{"receipt":"Ab","events":["PAYMENT.SUCCESS"],"webhook_url":"https://X.example/"}`},
	} {
		var got, want body
		require.NoError(t, web.Decode([]byte(tc.raw), &got), tc.raw)
		require.NoError(t, web.Decode([]byte(tc.want), &want))
		require.Equal(t, want, got, tc.raw)
	}
	var b body
	require.Error(t, web.Decode([]byte(`{"Amount": 1, "amount": 100} garbage`), &b), "malformed, as before")
	var kelvin struct {
		Kind string `json:"kind"`
	}
	require.NoError(t, web.Decode([]byte("{\"kind\": \"a\", \"\u212Aind\": \"b\"}"), &kelvin))
	require.Equal(t, "a", kelvin.Kind, "U+212A KELVIN SIGN folds to k in encoding/json")
}
