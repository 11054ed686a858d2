package idempotency

import (
	"errors"
	"testing"

	"paygate/web"
)

// FuzzParseKey: a key is refused with a 400 naming the header, or is 1 to
// 255 printable ASCII characters; it never panics.
func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{"", "k", `"quoted"`, `""`, "a b", "k\x00", "k\x7f", "clé", "\xff", `"`} {
		f.Add(seed, false)
	}
	f.Add("k", true)
	f.Fuzz(func(t *testing.T, value string, twice bool) {
		values := []string{value}
		if twice {
			values = append(values, value)
		}
		key, present, err := parseKey(values)
		if !present {
			t.Fatal("a sent header is present")
		}
		if err != nil {
			var e *web.Error
			if !errors.As(err, &e) || e.HTTPStatus() != 400 || e.Field != Header {
				t.Fatalf("%q: %v", value, err)
			}
			return
		}
		if twice || key == "" || len(key) > 255 {
			t.Fatalf("accepted %q as %q", value, key)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("accepted %q", key)
			}
		}
	})
}
