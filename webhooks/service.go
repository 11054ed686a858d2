package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/web"
)

// rotationOverlap is how long the previous secret keeps signing after a
// rotation, so receivers can switch secrets without dropping deliveries.
const rotationOverlap = 24 * time.Hour

// Service records events and runs the webhook use cases.
type Service struct {
	pool         *pgxpool.Pool
	kept         *db.KeptPlans // the deliveries' reads and final records (New)
	client       *http.Client
	allowPrivate bool
	// Schedule is the waits before attempts 2 to 5 (index attempt-1).
	Schedule []time.Duration
	// River inserts the jobs of retries and of next attempts (unique by
	// args; a first attempt's job is inserted with its log, db.JobRowsOf).
	// The app sets it once the client exists: the client is built with
	// this package's worker, so it comes later.
	River *river.Client[pgx.Tx]
	// MaxPerEndpoint bounds the deliveries this process makes to one
	// endpoint at once (0: DefaultMaxPerEndpoint).
	MaxPerEndpoint int

	limiter endpointLimiter
	batches batchers
	// first makes the first attempts of the events this process records,
	// while it works the webhook queue (StartFirstAttempts); nil otherwise.
	first atomic.Pointer[firstAttempts]
}

// batchers gather the delivery workers' reads and final records: under
// load, one statement serves many deliveries instead of one each.
type batchers struct {
	reads   *db.Batcher[logKey, found]
	records *db.Batcher[attempt, bool]
}

const (
	// maxBatch bounds the deliveries read or recorded in one statement.
	maxBatch = 256
	// readFlights lets reads, which lock nothing, overlap; records go one
	// batch at a time, so two batches of a process never lock the same
	// logs in different orders. Another process's batch meets the same log
	// only when a job runs twice at once; should that deadlock, PostgreSQL
	// fails one batch, which is then run again one attempt at a time.
	readFlights, recordFlights = 2, 1
	// batchTimeout bounds one batch's statement; it runs on even when the
	// workers waiting for it stop.
	batchTimeout = 10 * time.Second
)

func newBatchers(batchPool func() *pgxpool.Pool, logger *slog.Logger) batchers {
	return batchers{
		reads: db.NewBatcher(maxBatch, readFlights, batchTimeout, func(ctx context.Context, keys []logKey) ([]found, error) {
			return deliveriesOf(ctx, batchPool(), keys)
		}).WithLogger(logger),
		records: db.NewBatcher(maxBatch, recordFlights, batchTimeout, func(ctx context.Context, batch []attempt) ([]bool, error) {
			return recordAttempts(ctx, batchPool(), batch)
		}).WithLogger(logger),
	}
}

// New returns the service. The deliveries are read, and their final
// attempts recorded, on the pool kept gives (nil: pool). allowPrivate lets
// URLs and deliveries reach private, loopback and link-local addresses
// (test mode, local setups). logger logs a batch's panic, with its stack;
// nil: slog's default.
func New(pool *pgxpool.Pool, kept *db.KeptPlans, allowPrivate bool, schedule []time.Duration, logger *slog.Logger) *Service {
	s := &Service{
		pool:         pool,
		kept:         kept,
		client:       NewHTTPClient(&Dialer{AllowPrivate: allowPrivate}),
		allowPrivate: allowPrivate,
		Schedule:     schedule,
	}
	s.batches = newBatchers(s.batchPool, logger)
	return s
}

// batchPool is the pool the deliveries are read and recorded on.
func (s *Service) batchPool() *pgxpool.Pool { return s.kept.For(s.pool, "webhook_logs") }

// recordTx stores the body, whatever the subscription (the test event),
// with the job of its first attempt.
func recordTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, event string, data any) (uuid.UUID, error) {
	id, payload, err := newLog(event, data)
	if err != nil {
		return uuid.Nil, err
	}
	if err := insertLog(ctx, tx, id, merchantID, event, payload); err != nil {
		return uuid.Nil, err
	}
	return id, db.InsertJobsAtCommit(ctx, tx, firstDelivery(id, merchantID))
}

// newLog returns a new log's id and its body's exact bytes.
func newLog(event string, data any) (uuid.UUID, []byte, error) {
	payload, err := web.Marshal(body{Event: event, Timestamp: time.Now().Unix(), Data: data})
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("webhooks: marshal %s: %w", event, err)
	}
	// Version 7 ids sort by creation, which orders the list within a second.
	id, err := uuid.NewV7()
	return id, payload, err
}

// firstDelivery is the job of a stored log's first attempt.
func firstDelivery(id, merchantID uuid.UUID) river.InsertManyParams {
	return river.InsertManyParams{Args: firstDeliveryArgs{LogID: id, MerchantID: merchantID}}
}

// Endpoint returns the merchant's webhook configuration.
func (s *Service) Endpoint(ctx context.Context, merchantID uuid.UUID) (Endpoint, error) {
	return endpoint(ctx, s.pool, merchantID)
}

// ConfigInput is the body of PUT /api/v1/webhooks/config. It replaces the
// whole configuration: events default to all, enabled to true.
type ConfigInput struct {
	URL     *string  `json:"webhook_url"`
	Events  []string `json:"events"`
	Enabled *bool    `json:"enabled"`
}

// SetConfig validates and saves the configuration. An empty URL disables
// delivery; any other URL must pass CheckURL.
func (s *Service) SetConfig(ctx context.Context, merchantID uuid.UUID, in ConfigInput) (Endpoint, error) {
	if in.URL == nil {
		return Endpoint{}, web.BadField("webhook_url", "webhook_url is required (an empty string disables delivery)")
	}
	url := strings.TrimSpace(*in.URL)
	if url != "" {
		if err := CheckURL(ctx, url, s.allowPrivate); err != nil {
			return Endpoint{}, web.BadField("webhook_url", err.Error())
		}
	}
	events, err := normaliseEvents(in.Events)
	if err != nil {
		return Endpoint{}, err
	}
	enabled := in.Enabled == nil || *in.Enabled
	return saveEndpoint(ctx, s.pool, merchantID, url, events, enabled)
}

// normaliseEvents checks a subscription: nil means all, "*" swallows the
// rest, duplicates go.
func normaliseEvents(in []string) ([]string, error) {
	if in == nil {
		return []string{AllEvents}, nil
	}
	if len(in) == 0 {
		return nil, web.BadField("events", `events must list at least one event, or "*" for all`)
	}
	var out []string
	for _, e := range in {
		if e != AllEvents && !slices.Contains(Events, e) {
			return nil, web.BadField("events", fmt.Sprintf(`events: %q is not a known event; use "*" or any of %s`,
				e, strings.Join(Events, ", ")))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	if slices.Contains(out, AllEvents) {
		return []string{AllEvents}, nil
	}
	return out, nil
}

// RegenerateSecretTx replaces the signing secret. The old one keeps signing
// alongside for rotationOverlap; a second rotation within that time drops
// the oldest secret.
func (s *Service) RegenerateSecretTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID) (string, error) {
	secret, err := NewSecret()
	if err != nil {
		return "", err
	}
	return secret, rotateSecret(ctx, tx, merchantID, secret, time.Now().Add(rotationOverlap))
}

// SendTestTx records a webhook.test event. The merchant asked for it, so it
// is sent whatever the subscription, but only to a configured, enabled URL.
func (s *Service) SendTestTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID) (uuid.UUID, error) {
	ep, err := endpoint(ctx, tx, merchantID)
	if err != nil {
		return uuid.Nil, err
	}
	if ep.URL == "" {
		return uuid.Nil, web.Errorf(web.CodeBadRequest,
			"No webhook URL is configured; set one with PUT /api/v1/webhooks/config first")
	}
	if !ep.Enabled {
		return uuid.Nil, web.Errorf(web.CodeBadRequest,
			"Webhook delivery is disabled; enable it with PUT /api/v1/webhooks/config first")
	}
	return recordTx(ctx, tx, merchantID, EventTest, map[string]any{
		"message": "This is a test webhook from paygate",
	})
}

// RetryTx delivers a log again now, from the start of the schedule,
// whatever its status: it starts a new run at attempt one, whose job is due
// at once; a job of the old run that is still waiting finds itself
// superseded and delivers nothing. A log that has not been attempted in its
// run yet (just created or just retried) is already about to be delivered:
// it keeps its job, so a double click schedules one delivery.
func (s *Service) RetryTx(ctx context.Context, tx pgx.Tx, merchantID, id uuid.UUID) error {
	l, err := lockLog(ctx, tx, merchantID, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return web.NotFound("Webhook")
	}
	if err != nil {
		return err
	}
	run := l.run
	if l.status == StatusPending && l.attempts == 0 {
		// Its job is due now; should it have been lost (deleted by an
		// operator), this puts one back, and otherwise adds nothing. A
		// first run's job has no unique key (firstDeliveryArgs), so it is
		// looked for, not left to River's unique insert. Its attempt, if
		// it is being made, is recorded after this transaction: it needs
		// the log row, which this one holds. A first attempt being made by
		// the recording process has no job (first.go) for up to LostAfter:
		// a first run's log that moved within it is left to that attempt,
		// and to the reconciler should its process have died (a retry
		// answered meanwhile schedules nothing itself).
		alive, err := runHasLiveJob(ctx, tx, id, run)
		if err != nil || alive || (l.moved && run == 0) {
			return err
		}
		return s.insertDeliveryTx(ctx, tx, DeliverArgs{LogID: id, MerchantID: merchantID, Run: run})
	}
	run++
	if err := restartLog(ctx, tx, merchantID, id, run); err != nil {
		return err
	}
	return s.insertDeliveryTx(ctx, tx, DeliverArgs{LogID: id, MerchantID: merchantID, Run: run})
}

// ListFilter narrows the log list.
type ListFilter struct {
	web.Page
	Status string // "" or a status
	Event  string // "" or an event
}

// List returns one page of the merchant's logs, newest first, and the total.
func (s *Service) List(ctx context.Context, merchantID uuid.UUID, f ListFilter) ([]Log, int64, error) {
	if f.Status != "" && !slices.Contains([]string{StatusPending, StatusSuccess, StatusFailed}, f.Status) {
		return nil, 0, web.BadField("status", "status must be one of pending, success, failed")
	}
	if f.Event != "" && !slices.Contains(Events, f.Event) {
		return nil, 0, web.BadField("event", "event must be one of "+strings.Join(Events, ", "))
	}
	return listLogs(ctx, s.pool, merchantID, f)
}

// Get returns one log with its body and attempt history.
func (s *Service) Get(ctx context.Context, merchantID, id uuid.UUID) (LogDetail, error) {
	d, err := getLog(ctx, s.pool, merchantID, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return LogDetail{}, web.NotFound("Webhook")
	}
	return d, err
}
