// Package webhooks records events and delivers them to merchants' endpoints.
//
// Invariants:
//   - An event is recorded by EmitTx in the transaction of the state change
//     that causes it: the log row (with its DeliverWebhook job, unless the
//     recording process makes the first attempt itself: first.go),
//     inserted by one statement (sent with a request's COMMIT), commits
//     with the change or not at all. Events the merchant does not subscribe to, and events for a
//     merchant with no URL or with delivery disabled, record nothing.
//   - A body is marshalled once (compact, no HTML escaping) and stored as
//     bytes. Those bytes are signed and sent unchanged on every attempt, so a
//     receiver verifying the bytes it got verifies what we recorded.
//   - Each attempt is one River job, or, for a first attempt, made by the
//     process that recorded the event when it works the webhook queue and
//     had room for it (first.go): the log then has no job, and that
//     process makes the attempt at once, recording it as a job's worker
//     would. Its record is the log's summary and
//     its history row, written by one statement, so attempts always counts
//     the current run's history. A final attempt (delivered, or failed
//     after the fifth) is that statement alone, shared with the other
//     workers' final attempts of the moment (a batch, each log's row
//     conditional on its own run and count): the log leaves pending, and
//     River completes the job after it; a job run again finds the log no
//     longer pending and does nothing. An attempt to be retried keeps the
//     log pending, so its record, the next attempt's job and this job's
//     completion commit in one transaction. So a log is pending exactly
//     while a job of its current run is alive, or its first attempt is being
//     made by its recording process (within LostAfter of its event; one
//     that cannot be made or recorded is given back as a job), on every
//     path.
//     The schedule lives in the job table and survives restarts; each wait
//     counts from the start of the attempt before, and next_retry_at is
//     when the next job is due. A job that leaves River some other way
//     (discarded after infrastructure errors, cancelled by an operator), or a
//     first attempt whose process died, is replaced by the reconciler, so no
//     log stays pending forever.
//   - A manual retry starts a new run; jobs of older runs deliver nothing.
//   - One endpoint holds at most MaxPerEndpoint deliveries of a process at
//     once; the rest snooze without spending an attempt (after waiting at
//     most maxTurnWait for a slot of an endpoint that answers fast; a
//     first attempt made by its recording process waits up to maxFirstWait for one that answers
//     within slowEndpoint), so a hanging endpoint cannot take every webhook
//     worker or every first attempt's slot.
//   - Delivery never reaches a forbidden address (loopback, private, link-local,
//     metadata, ...) unless private networks are explicitly allowed: the check
//     runs when a URL is saved and again in the dialer, on the resolved IPs
//     that are then dialled, so DNS rebinding cannot slip past it.
//   - A log's id is a version 7 UUID made when its event is (newLog), so
//     the primary key orders logs by age: the list breaks ties by it, and
//     the retention prune walks it instead of an index on created_at
//     (retention.go).
//   - Every query is scoped by the merchant's id (but the prune, whose rule
//     is the same for all merchants). This package never imports payments
//     or refunds: an event carries a JSON snapshot they supply.
package webhooks

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/web"
)

// The events of API.md. Callers of EmitTx use these names.
const (
	EventPaymentCreated  = "payment.created"
	EventPaymentSuccess  = "payment.success"
	EventPaymentFailed   = "payment.failed"
	EventRefundCreated   = "refund.created"
	EventRefundProcessed = "refund.processed"
	EventTest            = "webhook.test"
)

// Events lists every event a merchant can subscribe to.
var Events = []string{EventPaymentCreated, EventPaymentSuccess, EventPaymentFailed,
	EventRefundCreated, EventRefundProcessed, EventTest}

// Emit records events in tx, with the jobs of their first deliveries, so
// that they commit with the changes that caused them: Service.EmitTx, which
// the payments and refunds services are given.
type Emit func(ctx context.Context, tx pgx.Tx, events []Event) error

// AllEvents is the subscription to every event.
const AllEvents = "*"

// Log statuses.
const (
	StatusPending = "pending"
	StatusSuccess = "success"
	StatusFailed  = "failed"
)

// maxAttempts is the number of attempts of one run: the first, then one
// after each wait of the schedule.
const maxAttempts = 5

// The waits before attempts 2 to 5.
var (
	DefaultSchedule = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}
	TestSchedule    = []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second}
)

// Endpoint is a merchant's webhook configuration as the API shows it.
type Endpoint struct {
	URL     string   `json:"webhook_url"`
	Secret  string   `json:"webhook_secret"`
	Events  []string `json:"events"`
	Enabled bool     `json:"enabled"`

	// During a rotation the previous secret signs too, until previousUntil.
	previous      *string
	previousUntil *time.Time
}

// secrets are the secrets that sign a delivery made at now, current first.
func (e Endpoint) secrets(now time.Time) []string {
	s := []string{e.Secret}
	if e.previous != nil && e.previousUntil != nil && now.Before(*e.previousUntil) {
		s = append(s, *e.previous)
	}
	return s
}

// body is the delivered JSON; field order is the wire order.
type body struct {
	Event     string `json:"event"`
	Timestamp int64  `json:"timestamp"`
	Data      any    `json:"data"`
}

// Log is one event's delivery as listed.
type Log struct {
	ID            uuid.UUID `json:"id"`
	Event         string    `json:"event"`
	Status        string    `json:"status"`
	Attempts      int       `json:"attempts"`
	CreatedAt     web.Time  `json:"created_at"`
	LastAttemptAt *web.Time `json:"last_attempt_at"`
	NextRetryAt   *web.Time `json:"next_retry_at"`
	ResponseCode  *int      `json:"response_code"`
}

// LogDetail is one log with its body and every request made for it.
type LogDetail struct {
	Log
	Payload        json.RawMessage `json:"payload"`
	AttemptHistory []Attempt       `json:"attempt_history"`
}

// Attempt is one request to the merchant's endpoint and what came back.
// Run and Attempt say which attempt of which run it was: the log's attempts
// count the entries of its current run (a manual retry starts a new run).
type Attempt struct {
	Run          int      `json:"run"`
	Attempt      int      `json:"attempt"`
	AttemptedAt  web.Time `json:"attempted_at"`
	ResponseCode *int     `json:"response_code"`
	ResponseBody string   `json:"response_body"`
	Error        *string  `json:"error"`
	DurationMS   int64    `json:"duration_ms"`
}
