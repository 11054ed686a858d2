package dashboard

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"paygate/merchants"
)

// createSession stores a session and prunes the merchant's expired ones, so
// the table holds no more than the sessions that can still be used. The
// session is made only while secretHash is still the merchant's API secret:
// the secret was checked through Auth's cache, which may hold a secret
// rotated since (merchants.RotateSecret), and a rotation that commits
// meanwhile waits for this row lock, or this statement for the rotation's,
// and then finds the hash changed. So no session outlives the rotation of
// the secret it was opened with; merchants.ErrUnauthorized when none is made.
func createSession(ctx context.Context, pool *pgxpool.Pool, hash [32]byte, merchantID uuid.UUID, secretHash [32]byte, expires time.Time) error {
	tag, err := pool.Exec(ctx, `
		WITH pruned AS (DELETE FROM dashboard_sessions WHERE merchant_id = $2 AND expires_at <= now())
		INSERT INTO dashboard_sessions (token_hash, merchant_id, expires_at)
		SELECT $1, id, $3 FROM merchants WHERE id = $2 AND api_secret_hash = $4 FOR SHARE`,
		hash[:], merchantID, expires, secretHash[:])
	if err == nil && tag.RowsAffected() == 0 {
		return merchants.ErrUnauthorized
	}
	return err
}

func deleteSession(ctx context.Context, pool *pgxpool.Pool, hash [32]byte) error {
	_, err := pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE token_hash = $1`, hash[:])
	return err
}

// sessionMerchant is the merchant of an unexpired session; pgx.ErrNoRows
// when there is none.
func sessionMerchant(ctx context.Context, pool *pgxpool.Pool, hash [32]byte) (merchants.Merchant, error) {
	var m merchants.Merchant
	err := pool.QueryRow(ctx, `
		SELECT m.id, m.name, m.email, m.api_key, m.created_at
		FROM dashboard_sessions s JOIN merchants m ON m.id = s.merchant_id
		WHERE s.token_hash = $1 AND s.expires_at > now()`, hash[:]).
		Scan(&m.ID, &m.Name, &m.Email, &m.APIKey, &m.CreatedAt)
	return m, err
}
