package db_test

import (
	"strings"
	"testing"

	"paygate/db"
)

// FuzzIsID: an id accepted without a query is exactly prefix + 16 of
// [A-Za-z0-9], so nothing else (NUL, invalid UTF-8, kilobytes) reaches SQL.
func FuzzIsID(f *testing.F) {
	for _, seed := range []string{"pay_AAAAAAAAAAAAAAAA", "order_Az09Az09Az09Az09", "rfnd_", "pay_AAAAAAAAAAAAAAA\x00", "pay_\xff", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, prefix := range []string{"order_", "pay_", "rfnd_"} {
			if !db.IsID(prefix, s) {
				continue
			}
			rest, ok := strings.CutPrefix(s, prefix)
			if !ok || len(rest) != 16 || strings.Trim(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
				t.Fatalf("IsID(%q, %q) accepted", prefix, s)
			}
		}
	})
}
