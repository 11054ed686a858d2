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

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	merchant   Merchant
	secretHash [32]byte
	expires    time.Time
}

func NewAuth(pool *pgxpool.Pool) *Auth {
	return &Auth{pool: pool, now: time.Now, cache: map[string]cached{}}
}

var errUnauthorized = web.Errorf(web.CodeUnauthorized, "Invalid API credentials")

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
			return errUnauthorized
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
		if key == "" {
			return errUnauthorized
		}
		entry, err := a.lookup(c.Request().Context(), key)
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
		if _, _, ok := credentials(c); ok || c.Request().Header.Get("X-Api-Key") != "" {
			return secret(c)
		}
		return next(c)
	}
}

func setMerchant(c echo.Context, m Merchant) {
	c.Set(merchantKey, m)
	web.SetMerchantID(c, m.ID.String())
}

func credentials(c echo.Context) (key, secret string, ok bool) {
	h := c.Request().Header
	if key, secret = h.Get("X-Api-Key"), h.Get("X-Api-Secret"); key != "" && secret != "" {
		return key, secret, true
	}
	if key, secret, ok = c.Request().BasicAuth(); ok && key != "" && secret != "" {
		return key, secret, true
	}
	return "", "", false
}

func (a *Auth) verify(ctx context.Context, key, secret string) (Merchant, error) {
	hash := hashSecret(secret)
	entry, err := a.lookup(ctx, key)
	if err != nil {
		return Merchant{}, err
	}
	if subtle.ConstantTimeCompare(hash[:], entry.secretHash[:]) != 1 {
		return Merchant{}, errUnauthorized
	}
	return entry.merchant, nil
}

// lookup finds a key in the cache or the database. Unknown keys are not
// cached, so a flood of made-up keys cannot evict real ones.
func (a *Auth) lookup(ctx context.Context, key string) (cached, error) {
	now := a.now()
	a.mu.Lock()
	entry, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(entry.expires) {
		return entry, nil
	}
	m, hash, err := byKey(ctx, a.pool, key)
	if errors.Is(err, pgx.ErrNoRows) {
		return cached{}, errUnauthorized
	}
	if err != nil {
		return cached{}, err
	}
	entry = cached{merchant: m, secretHash: hash, expires: now.Add(cacheTTL)}
	a.mu.Lock()
	if len(a.cache) >= cacheMaxKeys {
		clear(a.cache) // crude but bounded; a refill costs one query per key
	}
	a.cache[key] = entry
	a.mu.Unlock()
	return entry, nil
}
