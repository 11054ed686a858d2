package webhooks

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// Event is one event to record: data becomes the body's "data", e.g.
// map[string]any{"payment": p}.
type Event struct {
	MerchantID uuid.UUID
	Name       string
	Data       any
}

// EmitTx records events in tx, the transaction of the state changes that
// cause them (one for a request, a batch's for a worker), in one statement
// that tx sends with its COMMIT where it can (db.QueryAtCommit). The log
// rows (with the bodies' exact bytes) commit with those changes or not at
// all. An event is recorded only when its merchant's endpoint delivers it:
// a URL is set, delivery is enabled, and the event (or all events) is
// subscribed; the INSERT checks it, so the hot path has no read for it.
//
// When this process works the webhook queue and has room for the events
// (first.go), it makes their first attempts itself once tx has committed,
// and the logs get no job. Otherwise the statement inserts each log's first
// delivery job, in the order of the events, from the logs the INSERT
// returns, and notifies the webhook queue's producers as River's insert
// would (db.NotifyDue): an event no endpoint takes wakes no one, but uses
// the queue's notification slot all the same (the INSERT's rows are not
// known when the statement is queued), so a delivery inserted within the
// next 50 ms waits for the producers' next fetch or poll.
func (s *Service) EmitTx(ctx context.Context, tx pgx.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(events))
	merchantIDs := make([]uuid.UUID, len(events))
	names := make([]string, len(events))
	payloads := make([][]byte, len(events))
	candidates := make([]logKey, len(events))
	for i, e := range events {
		if !slices.Contains(Events, e.Name) {
			return fmt.Errorf("webhooks: unknown event %q", e.Name)
		}
		id, payload, err := newLog(e.Name, e.Data)
		if err != nil {
			return err
		}
		ids[i], merchantIDs[i], names[i], payloads[i] = id, e.MerchantID, e.Name, payload
		candidates[i] = logKey{id: id, merchantID: e.MerchantID}
	}
	take, taken := s.first.Load().reserve(tx, candidates)
	// The jobs' columns (db.JobRows) ride beside their events': none when
	// this process takes the events.
	var jobs []river.InsertManyParams
	var notify *string // River's insert notification, when the queue is due one
	if !taken {
		for _, k := range candidates {
			jobs = append(jobs, firstDelivery(k.id, k.merchantID))
		}
		if len(db.NotifyDue(time.Now(), Queue)) > 0 {
			payload := db.InsertPayload(Queue)
			notify = &payload
		}
	}
	rows, err := db.JobRowsOf(jobs...)
	if err != nil {
		return err
	}
	emitted := time.Now()
	scan := func(rows pgx.Rows) error {
		var logs []logKey
		var k logKey
		var age time.Duration // of the transaction, when this statement ran
		_, err := pgx.ForEachRow(rows, []any{&k.id, &k.merchantID, &age}, func() error {
			logs = append(logs, k)
			return nil
		})
		if taken && err == nil {
			// From before the statement was queued: its rows may come
			// back only after the COMMIT, however long that took.
			take(logs, emitted.Add(-age))
		}
		return err
	}
	err = db.QueryAtCommit(ctx, tx, scan, `
		WITH e AS (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[],
				$6::jsonb[], $7::text[], $8::text[], $9::smallint[], $10::smallint[]) WITH ORDINALITY
				AS e(id, merchant_id, event, payload, args, kind, queue, max_attempts, priority, n)
		), log AS (
			INSERT INTO webhook_logs (id, merchant_id, event, payload, next_retry_at)
			SELECT e.id, m.id, e.event, e.payload, now()
			FROM e JOIN merchants m ON m.id = e.merchant_id
			WHERE m.webhook_url <> '' AND m.webhook_enabled
				AND ($5 = ANY (m.webhook_events) OR e.event = ANY (m.webhook_events))
			RETURNING id, merchant_id
		), job AS (
			`+db.InsertJobsFrom(`SELECT e.args, e.kind, e.queue, e.max_attempts, e.priority
				FROM e JOIN log USING (id) WHERE NOT $12 ORDER BY e.n`)+`
			RETURNING id
		), notified AS (
			SELECT pg_notify(`+db.InsertChannel+`, $11) WHERE $11::text IS NOT NULL AND EXISTS (SELECT 1 FROM job)
		)
		SELECT log.id, log.merchant_id, clock_timestamp() - now() FROM log LEFT JOIN notified ON true`,
		append([]any{ids, merchantIDs, names, payloads, AllEvents}, append(rows.Params(), notify, taken)...)...)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}
