package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// HTTP metrics. Every label is bounded: the route is the pattern (never the
// raw path: ids would make the label set unbounded), one "unmatched" value
// for everything no route matched, and methods outside the standard set are
// "OTHER".
var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_http_requests_total",
		Help: "HTTP requests by method, route pattern and status.",
	}, []string{"method", "route", "status"})
	httpDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paygate_http_request_duration_seconds",
		Help:    "HTTP request latency by method, route pattern and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route", "status"})
)

// methodLabel bounds the method label: anyone can send any method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// routeLabel is the matched route pattern, or "unmatched" (echo leaves the
// path empty when no route matched).
func routeLabel(c echo.Context) string {
	if route := c.Path(); route != "" {
		return route
	}
	return "unmatched"
}

func observe(c echo.Context, status int, elapsed time.Duration) {
	method, route, code := methodLabel(c.Request().Method), routeLabel(c), strconv.Itoa(status)
	httpRequests.WithLabelValues(method, route, code).Inc()
	httpDuration.WithLabelValues(method, route, code).Observe(elapsed.Seconds())
}
