package merchants

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"paygate/web"
)

// cacheTTL bounds how long a verified key is trusted without a query; a
// deleted merchant stops working within it.
const (
	cacheTTL     = 60 * time.Second
	cacheMaxKeys = 10000
)

// Auth authenticates requests. Verified keys are cached in memory so that the
// hot path costs no query; the secret is still compared, in constant time,
// on every request.
type Auth struct {
	pool *pgxpool.Pool
	now  func() time.Time
	// testMerchant lets the seeded test merchant's public credentials in;
	// only in test mode. A database seeded by an earlier test-mode run
	// still holds that merchant, so its key is refused here, not merely
	// left unseeded.
	testMerchant bool

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	merchant   Merchant
	secretHash [32]byte
	expires    time.Time
	cached     bool // found in the cache, not read just now
}

// NewAuth authenticates against pool; testMerchant says whether the test
// merchant's well-known credentials are accepted (TEST_MODE).
func NewAuth(pool *pgxpool.Pool, testMerchant bool) *Auth {
	return &Auth{pool: pool, now: time.Now, cache: map[string]cached{}, testMerchant: testMerchant}
}

// ErrUnauthorized is the answer to wrong or missing credentials.
var ErrUnauthorized = web.Errorf(web.CodeUnauthorized, "Invalid API credentials")

const merchantKey = "paygate.merchant"

// FromContext returns the merchant a middleware of Auth put on the request.
// It panics when the route has no authentication: that is a wiring bug.
func FromContext(c echo.Context) Merchant {
	return c.Get(merchantKey).(Merchant)
}

// Secret requires the key and secret: X-Api-Key + X-Api-Secret, or HTTP
// Basic with the key as user and the secret as password.
func (a *Auth) Secret(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, secret, ok := credentials(c)
		if !ok {
			return ErrUnauthorized
		}
		m, err := a.verify(c.Request().Context(), key, secret)
		if err != nil {
			return err
		}
		setMerchant(c, m)
		return next(c)
	}
}

// Publishable requires only X-Api-Key: the checkout runs in a customer's
// browser, where the secret must never be. Handlers behind it can touch only
// the order or payment they name.
func (a *Auth) Publishable(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get("X-Api-Key")
		if key == "" {
			key, _, _ = c.Request().BasicAuth()
		}
		if !ValidCredential(key) {
			return ErrUnauthorized
		}
		entry, err := a.lookup(c.Request().Context(), key, false)
		if err != nil {
			return err
		}
		setMerchant(c, entry.merchant)
		return next(c)
	}
}

// Optional authenticates when credentials are present (and refuses wrong
// ones) and lets anonymous requests through.
func (a *Auth) Optional(next echo.HandlerFunc) echo.HandlerFunc {
	secret := a.Secret(next)
	return func(c echo.Context) error {
		h := c.Request().Header
		if h.Get("X-Api-Key") != "" || h.Get("X-Api-Secret") != "" || h.Get("Authorization") != "" {
			return secret(c)
		}
		return next(c)
	}
}

func setMerchant(c echo.Context, m Merchant) {
	c.Set(merchantKey, m)
	web.SetMerchantID(c, m.ID.String())
}

// credentials returns the key and secret of a request. Credentials of
// another shape than ValidCredential are absent: they cannot match, and are
// never sent to the database (PostgreSQL refuses invalid UTF-8 and NUL).
func credentials(c echo.Context) (key, secret string, ok bool) {
	h := c.Request().Header
	if key, secret = h.Get("X-Api-Key"), h.Get("X-Api-Secret"); key != "" && secret != "" {
		return key, secret, ValidCredential(key) && ValidCredential(secret)
	}
	if key, secret, ok = c.Request().BasicAuth(); ok && key != "" && secret != "" {
		return key, secret, ValidCredential(key) && ValidCredential(secret)
	}
	return "", "", false
}

// maxCredential is longer than any key or secret Create makes.
const maxCredential = 128

// ValidCredential reports whether s can be an API key or secret: 1 to 128
// printable ASCII characters, as every generated one is.
func ValidCredential(s string) bool {
	return s != "" && len(s) <= maxCredential && web.IsPrintableASCII(s)
}

// verify checks a key's secret. A secret that does not match the cached one
// is checked against the database before it is refused: the secret may have
// been rotated (RotateSecret) since it was cached, and the new one must work
// at once. (The old one is trusted until the cache entry expires.)
func (a *Auth) verify(ctx context.Context, key, secret string) (Merchant, error) {
	hash := HashSecret(secret)
	entry, err := a.lookup(ctx, key, false)
	if err == nil && subtle.ConstantTimeCompare(hash[:], entry.secretHash[:]) != 1 && entry.cached {
		entry, err = a.lookup(ctx, key, true)
	}
	if err != nil {
		return Merchant{}, err
	}
	if subtle.ConstantTimeCompare(hash[:], entry.secretHash[:]) != 1 {
		return Merchant{}, ErrUnauthorized
	}
	return entry.merchant, nil
}

// lookup finds a key in the cache (unless fresh) or the database. Unknown
// keys are not cached, so a flood of made-up keys cannot evict real ones.
func (a *Auth) lookup(ctx context.Context, key string, fresh bool) (cached, error) {
	if key == TestMerchantKey && !a.testMerchant {
		return cached{}, ErrUnauthorized
	}
	now := a.now()
	a.mu.Lock()
	entry, ok := a.cache[key]
	a.mu.Unlock()
	if ok && !fresh && now.Before(entry.expires) {
		entry.cached = true
		return entry, nil
	}
	m, hash, err := byKey(ctx, a.pool, key)
	if errors.Is(err, pgx.ErrNoRows) {
		return cached{}, ErrUnauthorized
	}
	if err != nil {
		return cached{}, err
	}
	entry = cached{merchant: m, secretHash: hash, expires: now.Add(cacheTTL)}
	a.mu.Lock()
	if _, known := a.cache[key]; !known && len(a.cache) >= cacheMaxKeys {
		clear(a.cache) // crude but bounded; a refill costs one query per key
	}
	a.cache[key] = entry
	a.mu.Unlock()
	return entry, nil
}
