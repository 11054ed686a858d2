package webhooks

import (
	"context"
	"net/url"
	"testing"
)

// FuzzCheckURL: an accepted webhook URL is an absolute http(s) URL of
// printable ASCII with a host and no credentials, at most maxURLLength long.
// Private addresses are allowed here so that nothing is resolved.
func FuzzCheckURL(f *testing.F) {
	for _, seed := range []string{
		"https://merchant.example/hooks?x=1", "http://127.0.0.1:8080/h", "https:///x", "javascript:alert(1)",
		"https://x.example/a b", "https://x.example/\x00", "https://x.example/\xff", "https://x.example/é",
		"https://u:p@x.example/", "https://x.example:99999/", "//x.example/", "HTTP://X.EXAMPLE", "https://[::1]/",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if CheckURL(context.Background(), raw, true) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || len(raw) > maxURLLength {
			t.Fatalf("accepted %q", raw)
		}
		for i := 0; i < len(raw); i++ {
			if raw[i] <= ' ' || raw[i] >= 0x7f {
				t.Fatalf("accepted %q", raw)
			}
		}
	})
}
