package web

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// HTTP metrics, labelled by route pattern (never by raw path: ids would make
// the label set unbounded).
var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_http_requests_total",
		Help: "HTTP requests by method, route pattern and status.",
	}, []string{"method", "route", "status"})
	httpDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paygate_http_request_duration_seconds",
		Help:    "HTTP request latency by method and route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route"})
)

func observe(c echo.Context, status int, elapsed time.Duration) {
	route := c.Path()
	if route == "" {
		route = "unmatched"
	}
	httpRequests.WithLabelValues(c.Request().Method, route, strconv.Itoa(status)).Inc()
	httpDuration.WithLabelValues(c.Request().Method, route).Observe(elapsed.Seconds())
}
