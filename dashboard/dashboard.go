// Package dashboard is the server side of the merchant dashboard: sign-in
// sessions, and the JSON its pages read that no API route serves (who is
// signed in, stats, docs snippets). Every other call of the dashboard goes to
// an API handler mounted behind the session (see app/routes.go), so the
// dashboard shows and changes exactly what the API would.
//
// Invariants:
//   - A session is a random 256-bit token in an HttpOnly, SameSite=Strict
//     cookie (Secure when the request came over HTTPS), scoped to /dashboard
//     so the API routes never see it. The database keeps only its SHA-256: a
//     leaked table signs nobody in. The secret itself is checked once, at
//     sign-in, and is never stored or sent back to the page.
//   - A session ends at its expiry or at sign-out, whichever comes first: the
//     row is the session, so deleting it is final.
//   - A request that changes something (any method but GET, HEAD, OPTIONS)
//     must carry an Origin of the dashboard's own host: with SameSite=Strict
//     this is the second lock against cross-site request forgery.
//   - Every query is scoped by merchant_id.
//   - Every /dashboard/api answer is Cache-Control: no-store (NoStore).
//   - The test merchant's sessions work only in test mode, like its keys.
//
// Why sessions in PostgreSQL and not a signed cookie: sign-out really ends
// the session (a signed cookie stays valid until it expires), every replica
// sees the same sessions with no shared signing key to configure or rotate,
// and a sign-in costs one insert.
package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"paygate/merchants"
	"paygate/web"
)

// CookieName is the session cookie; CookiePath keeps it off the API routes.
const (
	CookieName = "paygate_session"
	CookiePath = "/dashboard"
)

// SessionTTL is how long a sign-in lasts: a working day.
const SessionTTL = 12 * time.Hour

// Dashboard serves the dashboard's own routes.
type Dashboard struct {
	Pool *pgxpool.Pool
	Auth *merchants.Auth
}

var errSignedOut = web.Errorf(web.CodeUnauthorized, "Sign in to continue")

// SignIn: POST /dashboard/api/session {"api_key","api_secret"}. The pair is
// checked as the API checks it; a wrong one is the API's 401.
func (d *Dashboard) SignIn(c echo.Context) error {
	var in struct {
		Key    string `json:"api_key"`
		Secret string `json:"api_secret"`
	}
	if _, err := web.Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	m, err := d.Auth.Verify(ctx, in.Key, in.Secret)
	if err != nil {
		return err
	}
	token, hash := newToken()
	expires := time.Now().Add(SessionTTL)
	if err := createSession(ctx, d.Pool, hash, m.ID, merchants.HashSecret(in.Secret), expires); err != nil {
		return err
	}
	c.SetCookie(sessionCookie(c, token, expires))
	return web.JSON(c, http.StatusOK, m)
}

// SignOut: DELETE /dashboard/api/session. It ends the session whether or
// not it was still valid, and always clears the cookie: first, so that a
// browser is signed out even when the session's row could not be deleted
// (the database unreachable), an error the answer still reports.
func (d *Dashboard) SignOut(c echo.Context) error {
	gone := sessionCookie(c, "", time.Unix(0, 0))
	gone.MaxAge = -1
	c.SetCookie(gone)
	if ck, err := c.Cookie(CookieName); err == nil {
		if err := deleteSession(c.Request().Context(), d.Pool, hashToken(ck.Value)); err != nil {
			return err
		}
	}
	return c.NoContent(http.StatusNoContent)
}

// Require binds the request to the session's merchant, so the API handlers
// behind it work as under the Secret middleware; no valid session is 401.
func (d *Dashboard) Require(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(CookieName)
		if err != nil || ck.Value == "" {
			return errSignedOut
		}
		m, err := sessionMerchant(c.Request().Context(), d.Pool, hashToken(ck.Value))
		if errors.Is(err, pgx.ErrNoRows) {
			return errSignedOut
		}
		if err != nil {
			return err
		}
		if !d.Auth.Admits(m.ID) {
			// The test merchant's session, from a test-mode run.
			return errSignedOut
		}
		merchants.SetMerchant(c, m)
		return next(c)
	}
}

// Me: GET /dashboard/api/me, the signed-in merchant (never a secret).
func (d *Dashboard) Me(c echo.Context) error {
	return web.JSON(c, http.StatusOK, merchants.FromContext(c))
}

// NoStore marks every answer of the dashboard's JSON as not to be kept by
// the browser or any cache: it carries the webhook secret and the
// merchant's payments.
func NoStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return next(c)
	}
}

// SameOrigin refuses a state-changing request whose Origin is missing or is
// not this host. Browsers send Origin on every such fetch, so only a forged
// or cross-site request is refused.
func SameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Request().Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		origin := c.Request().Header.Get(echo.HeaderOrigin)
		u, err := url.Parse(origin)
		if origin == "" || err != nil || u.Host != c.Request().Host {
			return &web.Error{Code: web.CodeBadRequest, Status: http.StatusForbidden,
				Description: "Request refused: it did not come from the dashboard's own page"}
		}
		return next(c)
	}
}

// sessionCookie is the cookie carrying token until expires.
func sessionCookie(c echo.Context, token string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: token, Path: CookiePath,
		Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.Scheme() == "https",
	}
}

// newToken returns a fresh session token and the hash that is stored.
func newToken() (string, [32]byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	token := base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }
