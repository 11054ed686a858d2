package db

import (
	"crypto/rand"
	"strings"
)

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

// IsID reports whether s has the shape of an id NewID(prefix) makes. A
// string of another shape cannot name anything, so it is answered without a
// query (and cannot carry a NUL, which PostgreSQL text refuses, into one).
func IsID(prefix, s string) bool {
	if len(s) != len(prefix)+16 || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
