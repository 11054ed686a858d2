package app

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"paygate/docs"
)

// openAPIJSON and openAPIYAML serve the embedded API description, so that
// client generators and validators can fetch it from the gateway itself.
func openAPIJSON(c echo.Context) error {
	b, err := docs.OpenAPIJSON()
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

func openAPIYAML(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", docs.OpenAPIYAML)
}
