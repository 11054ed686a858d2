package merchants

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidCredential(t *testing.T) {
	t.Parallel()
	for _, s := range []string{TestMerchantKey, TestMerchantSecret, "key_" + strings.Repeat("A", 24), strings.Repeat("s", 128)} {
		if !ValidCredential(s) {
			t.Errorf("refused %q", s)
		}
	}
	for _, s := range []string{"", "key\x00", "key\xff", "\xc3\x28", "a b", "key\n", "key\x7f", "clé", strings.Repeat("s", 129)} {
		if ValidCredential(s) {
			t.Errorf("accepted %q", s)
		}
	}
}

// FuzzValidCredential: what may reach the database as a key or secret is
// short, valid UTF-8 without NUL or any control character.
func FuzzValidCredential(f *testing.F) {
	for _, seed := range []string{TestMerchantKey, TestMerchantSecret, "", "\x00", "\xff", "k y", strings.Repeat("k", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidCredential(s) {
			return
		}
		if len(s) == 0 || len(s) > maxCredential || !utf8.ValidString(s) {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r <= ' ' || r >= 0x7f {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
