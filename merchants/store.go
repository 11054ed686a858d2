package merchants

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"paygate/db"
)

// ErrEmailTaken means another merchant has the email.
var ErrEmailTaken = errors.New("a merchant with this email already exists")

// Created is a new merchant with its credentials; the secret exists only here.
type Created struct {
	Merchant
	APISecret     string
	WebhookSecret string
}

// Create adds a merchant with fresh credentials.
func Create(ctx context.Context, pool *pgxpool.Pool, name, email string, newWebhookSecret func() (string, error)) (Created, error) {
	name, email = strings.TrimSpace(name), strings.TrimSpace(email)
	if name == "" || len(name) > 200 {
		return Created{}, errors.New("name must be 1 to 200 characters")
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		return Created{}, fmt.Errorf("email %q is not a valid address", email)
	}
	whsec, err := newWebhookSecret()
	if err != nil {
		return Created{}, err
	}
	c := Created{
		Merchant:      Merchant{ID: uuid.New(), Name: name, Email: email, APIKey: "key_" + db.RandomAlnum(24)},
		APISecret:     "secret_" + db.RandomAlnum(40),
		WebhookSecret: whsec,
	}
	hash := HashSecret(c.APISecret)
	err = pool.QueryRow(ctx, `
		INSERT INTO merchants (id, name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
		c.ID, c.Name, c.Email, c.APIKey, hash[:], c.WebhookSecret).Scan(&c.CreatedAt)
	if db.IsUniqueViolation(err) {
		return Created{}, ErrEmailTaken
	}
	return c, err
}

// ErrNoSuchKey means no merchant has the API key.
var ErrNoSuchKey = errors.New("no merchant has this API key")

// RotateSecret gives the merchant with apiKey a new API secret, returned
// here only, and ends its dashboard sessions, in one transaction: the old
// secret is refused at once by a process that has not cached it, and within
// Auth's cacheTTL by one that has. The test merchant's credentials are
// fixed by API.md, so it has none to rotate.
func RotateSecret(ctx context.Context, pool *pgxpool.Pool, apiKey string) (Merchant, string, error) {
	if apiKey == TestMerchantKey {
		return Merchant{}, "", errors.New("the test merchant's credentials are fixed (API.md); create a merchant of your own")
	}
	secret := "secret_" + db.RandomAlnum(40)
	hash := HashSecret(secret)
	var m Merchant
	err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE merchants SET api_secret_hash = $2 WHERE api_key = $1
			RETURNING id, name, email, api_key, created_at`, apiKey, hash[:]).
			Scan(&m.ID, &m.Name, &m.Email, &m.APIKey, &m.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoSuchKey
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM dashboard_sessions WHERE merchant_id = $1`, m.ID)
		return err
	})
	return m, secret, err
}

// SeedTestMerchant inserts the test merchant of API.md unless it exists.
// Running it any number of times, from any number of processes, leaves one.
func SeedTestMerchant(ctx context.Context, pool *pgxpool.Pool) error {
	hash := HashSecret(TestMerchantSecret)
	_, err := pool.Exec(ctx, `
		INSERT INTO merchants (id, name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		TestMerchantID, TestMerchantName, TestMerchantEmail, TestMerchantKey, hash[:], TestMerchantWebhookSecret)
	return err
}

// byKey returns the merchant and secret hash for an API key.
func byKey(ctx context.Context, pool *pgxpool.Pool, key string) (Merchant, [32]byte, error) {
	var m Merchant
	var hash []byte
	err := pool.QueryRow(ctx, `
		SELECT id, name, email, api_key, created_at, api_secret_hash FROM merchants WHERE api_key = $1`, key).
		Scan(&m.ID, &m.Name, &m.Email, &m.APIKey, &m.CreatedAt, &hash)
	var h [32]byte
	copy(h[:], hash)
	return m, h, err
}

// Get returns a merchant by id.
func Get(ctx context.Context, pool *pgxpool.Pool, id uuid.UUID) (Merchant, error) {
	var m Merchant
	err := pool.QueryRow(ctx, `SELECT id, name, email, api_key, created_at FROM merchants WHERE id = $1`, id).
		Scan(&m.ID, &m.Name, &m.Email, &m.APIKey, &m.CreatedAt)
	return m, err
}
