package dashboard

import (
	"bytes"
	"embed"
	"net/http"
	"text/template"

	"github.com/labstack/echo/v4"

	"paygate/merchants"
	"paygate/web"
)

// The docs page's snippets. verify.go is a real program (go vet checks it),
// and a test runs it and verify.js against real deliveries.
//
//go:embed snippets/create-order.sh snippets/sdk.html snippets/verify.js snippets/verify.go
var snippetFiles embed.FS

var snippets = template.Must(template.ParseFS(snippetFiles, "snippets/*"))

// Snippets are the docs page's code, filled in for the signed-in merchant.
type Snippets struct {
	CreateOrder string `json:"create_order"`
	SDK         string `json:"sdk"`
	WebhookNode string `json:"webhook_node"`
	WebhookGo   string `json:"webhook_go"`
}

// Docs: GET /dashboard/api/docs. The base URL is the one the merchant's
// browser reached the dashboard at; the secret is never filled in.
func (d *Dashboard) Docs(c echo.Context) error {
	data := struct{ BaseURL, Key string }{c.Scheme() + "://" + c.Request().Host, merchants.FromContext(c).APIKey}
	var out Snippets
	for name, dst := range map[string]*string{"create-order.sh": &out.CreateOrder, "sdk.html": &out.SDK,
		"verify.js": &out.WebhookNode, "verify.go": &out.WebhookGo} {
		var buf bytes.Buffer
		if err := snippets.ExecuteTemplate(&buf, name, data); err != nil {
			return err
		}
		*dst = buf.String()
	}
	return web.JSON(c, http.StatusOK, out)
}
