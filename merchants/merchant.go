// Package merchants holds merchants, their API credentials and the
// authentication middleware.
//
// Invariants: an API secret is shown once, at creation, and stored only as
// its SHA-256; credentials are compared in constant time; a request is bound
// to exactly one merchant, and every other package scopes its queries by that
// merchant's id.
package merchants

import (
	"crypto/sha256"

	"github.com/google/uuid"

	"paygate/web"
)

// Merchant is the authenticated identity of a request. It is cached, so it
// holds only what does not change under a request: configuration such as the
// webhook endpoint is read by its owner where it is used.
type Merchant struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	APIKey    string    `json:"api_key"`
	CreatedAt web.Time  `json:"created_at"`
}

// The seeded test merchant of API.md.
var (
	TestMerchantID            = uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	TestMerchantName          = "Test Merchant"
	TestMerchantEmail         = "test@example.com"
	TestMerchantKey           = "key_test_abc123"
	TestMerchantSecret        = "secret_test_xyz789"
	TestMerchantWebhookSecret = "whsec_test_abc123"
)

// HashSecret is what is stored of an API secret (api_secret_hash).
func HashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }
