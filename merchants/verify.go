package merchants

import (
	"context"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// Verify checks an API key and secret exactly as the Secret middleware does,
// for the dashboard's sign-in form, which sends them in a body.
func (a *Auth) Verify(ctx context.Context, key, secret string) (Merchant, error) {
	if !ValidCredential(key) || !ValidCredential(secret) {
		return Merchant{}, ErrUnauthorized
	}
	return a.verify(ctx, key, secret)
}

// SetMerchant binds the request to m, as the middlewares of Auth do, for
// another way of authenticating (the dashboard's session cookie). Handlers
// behind it read the merchant with FromContext as usual.
func SetMerchant(c echo.Context, m Merchant) { setMerchant(c, m) }

// Admits reports whether merchant id may act at all: every merchant but the
// test merchant, which only in test mode. The dashboard asks it of every
// session, since a session created in an earlier test-mode run outlives it.
func (a *Auth) Admits(id uuid.UUID) bool { return a.testMerchant || id != TestMerchantID }
