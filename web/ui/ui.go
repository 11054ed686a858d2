// Package ui serves the browser half of paygate from files embedded in the
// binary: the checkout SDK (/checkout.js), the hosted checkout page
// (/checkout), the dashboard's pages and their assets (/assets/...). It is
// plain HTML, CSS and ES modules: there is no build step, what is in static/
// is what the browser gets.
//
// Invariants:
//   - No page runs inline script: every page is sent with a
//     Content-Security-Policy whose script-src is 'self' only.
//   - The checkout page may be framed by any origin (it is made to be
//     embedded by merchants' pages); the dashboard may be framed by none.
//   - Every file is sent with a strong ETag of its bytes, and a request that
//     names it in If-None-Match is answered 304.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"paygate/web"
)

//go:embed static
var static embed.FS

// file is one embedded file, ready to send.
type file struct {
	body        []byte
	etag        string
	contentType string
}

// files maps a path under static/ to its file, read once at start.
var files = func() map[string]file {
	out := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // the machine's mime table may lack these or add no charset
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		}
		out[strings.TrimPrefix(p, "static/")] = file{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: ctype}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out
}()

// Content-Security-Policy of the pages: scripts and styles only from this
// origin (no inline script, no eval), calls only to this origin.
const basePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'"

const (
	checkoutPolicy  = basePolicy + "; frame-ancestors *"
	dashboardPolicy = basePolicy + "; frame-ancestors 'none'"
)

// SDK: GET /checkout.js and /web/checkout.js. Merchants' pages load it from
// another origin, and browsers keep it five minutes before asking again.
func SDK(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	return send(c, files["checkout.js"], "public, max-age=300")
}

// Checkout: GET /checkout, the hosted checkout page.
func Checkout(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", checkoutPolicy)
	// The URL carries the order id and key: don't hand it to other sites.
	h.Set("Referrer-Policy", "no-referrer")
	return send(c, files["checkout.html"], "no-cache")
}

// Dashboard: GET /dashboard and its pages. One document serves them all;
// its script reads the path and draws the page.
func Dashboard(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", dashboardPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	return send(c, files["dashboard.html"], "no-cache")
}

// Asset: GET /assets/*, the pages' styles, scripts and images. They change
// with the binary, so browsers revalidate (a 304 while unchanged).
func Asset(c echo.Context) error {
	f, ok := files["assets/"+c.Param("*")]
	if !ok {
		return web.NotFound("Asset")
	}
	return send(c, f, "no-cache")
}

func send(c echo.Context, f file, cacheControl string) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, f.contentType)
	h.Set("Cache-Control", cacheControl)
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if matches(c.Request().Header.Get("If-None-Match"), f.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, f.contentType, f.body)
}

// matches reports whether an If-None-Match header names etag (or is "*").
func matches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
