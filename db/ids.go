package db

import "crypto/rand"

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewID returns prefix + 16 characters of [A-Za-z0-9] from crypto/rand
// (order_, pay_, rfnd_ ids: about 95 bits, unguessable).
func NewID(prefix string) string { return prefix + RandomAlnum(16) }

// RandomAlnum returns n characters of [A-Za-z0-9] from crypto/rand, each
// equally likely.
func RandomAlnum(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
		for _, b := range buf {
			// 62*4 = 248: rejecting 248..255 removes the modulo bias.
			if b < 248 && len(out) < n {
				out = append(out, alphabet[b%62])
			}
		}
	}
	return string(out)
}
