package app

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// headAsGet answers HEAD on every GET route (echo routes HEAD only where it
// is registered). It runs before routing (Pre) and handles the request as a
// GET whose body is dropped, so status and headers are the GET's. echo's
// router reads the method of this very request, so it is changed in place
// and put back when the answer is done. The request log and metrics see GET.
func headAsGet(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Method != http.MethodHead {
			return next(c)
		}
		req.Method = http.MethodGet
		defer func() { req.Method = http.MethodHead }()
		c.Response().Writer = bodiless{c.Response().Writer}
		err := next(c)
		if err != nil {
			// Answer here, while the writer still drops the body.
			c.Error(err)
		}
		return nil
	}
}

// bodiless keeps headers and status and drops the body: net/http sends no
// body for HEAD, and a recorder (httptest) must not get one either.
type bodiless struct{ http.ResponseWriter }

func (b bodiless) Write(p []byte) (int, error) { return len(p), nil }

func (b bodiless) Unwrap() http.ResponseWriter { return b.ResponseWriter }
