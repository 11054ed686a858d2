package web

import (
	"strconv"

	"github.com/labstack/echo/v4"
)

// MaxOffset bounds ?offset=: a deeper page makes PostgreSQL read and drop
// that many rows first, and no client pages that far one page at a time.
const MaxOffset = 1_000_000

// Page is a list window: ?limit= (default 10, 1–100) and ?offset= (0 to
// MaxOffset).
type Page struct {
	Limit  int
	Offset int
}

// ParsePage reads ?limit= and ?offset=; a bad value is a 400 naming it.
func ParsePage(c echo.Context) (Page, error) {
	p := Page{Limit: 10}
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 100 {
			return Page{}, BadField("limit", "limit must be an integer from 1 to 100")
		}
		p.Limit = n
	}
	if raw := c.QueryParam("offset"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 || n > MaxOffset {
			return Page{}, BadField("offset", "offset must be an integer from 0 to 1000000")
		}
		p.Offset = n
	}
	return p, nil
}

// List is the list envelope of API.md, newest first.
type List[T any] struct {
	Data   []T   `json:"data"`
	Total  int64 `json:"total"`
	Limit  int   `json:"limit"`
	Offset int   `json:"offset"`
}

// NewList wraps one page of items; an empty page is [] in JSON, never null.
func NewList[T any](items []T, total int64, p Page) List[T] {
	if items == nil {
		items = []T{}
	}
	return List[T]{Data: items, Total: total, Limit: p.Limit, Offset: p.Offset}
}
