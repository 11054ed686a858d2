// Package metrics holds paygate's Prometheus families that are not about
// HTTP (web counts requests): final payment and refund states, webhook
// delivery attempts, job latency, and collectors that read the job queue and
// the connection pool when scraped.
//
// Invariants: label values come from small fixed sets (statuses, methods,
// queue names, outcomes), never from ids or input; the counters of state
// changes are incremented after the transaction that made the change
// committed (db.AfterCommit), so a rolled-back change is never counted.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	payments = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_payments_total",
		Help: "Payments decided, by final status and method.",
	}, []string{"status", "method"})
	refunds = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_refunds_total",
		Help: "Refunds that reached a final status.",
	}, []string{"status"})
	webhookDeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome: success, retry (failed, another attempt is scheduled) or failed (the last attempt failed).",
	}, []string{"outcome"})
	spareBatches = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "paygate_spare_batches_total",
		Help: "Spare creation batches started, by kind (orders, payments, refunds): each took the queued requests once the oldest had waited payments.StallAfter behind a running batch.",
	}, []string{"kind"})
	jobLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paygate_job_latency_seconds",
		Help:    "Time from a job being due (available) to a worker starting it, by queue.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"queue"})
)

// PaymentFinal counts a payment that reached status (success or failed).
func PaymentFinal(status, method string) { payments.WithLabelValues(status, method).Inc() }

// RefundFinal counts a refund that reached status (processed).
func RefundFinal(status string) { refunds.WithLabelValues(status).Inc() }

// WebhookDelivery counts one delivery attempt. logStatus is the webhook
// log's status after the attempt: success, pending (a retry is scheduled)
// or failed (no attempt is left).
func WebhookDelivery(logStatus string) {
	outcome := "retry"
	switch logStatus {
	case "success":
		outcome = "success"
	case "failed":
		outcome = "failed"
	}
	webhookDeliveries.WithLabelValues(outcome).Inc()
}

// SpareBatch counts a spare creation batch of kind (db.Batcher.WithSpares).
func SpareBatch(kind string) { spareBatches.WithLabelValues(kind).Inc() }

// JobStarted records how long a job waited between being due and being
// started.
func JobStarted(queue string, due time.Time, started *time.Time) {
	if started == nil {
		return
	}
	jobLatency.WithLabelValues(queue).Observe(max(0, started.Sub(due).Seconds()))
}
