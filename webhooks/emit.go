package webhooks

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// Event is one event to record: data becomes the body's "data", e.g.
// map[string]any{"payment": p}.
type Event struct {
	MerchantID uuid.UUID
	Name       string
	Data       any
}

// EmitTx records events in tx, the transaction of the state changes that
// cause them (one for a request, a batch's for a worker), in one statement,
// and returns the jobs of their first deliveries, which the caller inserts
// in tx with its own jobs: one River insert for all of them
// (db.InsertJobsTx). The log rows (with the bodies' exact bytes) and their
// jobs then commit with those changes or not at all. An event is recorded,
// and its job returned, only when its merchant's endpoint delivers it: a
// URL is set, delivery is enabled, and the event (or all events) is
// subscribed; the INSERT checks it, so the hot path has no read for it.
// The jobs come back in the order of their events.
func (s *Service) EmitTx(ctx context.Context, tx pgx.Tx, events []Event) ([]river.InsertManyParams, error) {
	if len(events) == 0 {
		return nil, nil
	}
	ids := make([]uuid.UUID, len(events))
	merchantIDs := make([]uuid.UUID, len(events))
	names := make([]string, len(events))
	payloads := make([][]byte, len(events))
	for i, e := range events {
		if !slices.Contains(Events, e.Name) {
			return nil, fmt.Errorf("webhooks: unknown event %q", e.Name)
		}
		id, payload, err := newLog(e.Name, e.Data)
		if err != nil {
			return nil, err
		}
		ids[i], merchantIDs[i], names[i], payloads[i] = id, e.MerchantID, e.Name, payload
	}
	stored, err := insertLogs(ctx, tx, ids, merchantIDs, names, payloads)
	if err != nil {
		return nil, err
	}
	jobs := make([]river.InsertManyParams, 0, len(stored))
	for i, id := range ids {
		if stored[id] {
			jobs = append(jobs, firstDelivery(id, merchantIDs[i]))
		}
	}
	return jobs, nil
}

// insertLogs stores, in one statement, the logs whose merchant's endpoint
// delivers their event, and returns the ids it stored.
func insertLogs(ctx context.Context, tx pgx.Tx, ids, merchantIDs []uuid.UUID, events []string, payloads [][]byte) (map[uuid.UUID]bool, error) {
	rows, _ := tx.Query(ctx, `
		INSERT INTO webhook_logs (id, merchant_id, event, payload, next_retry_at)
		SELECT e.id, m.id, e.event, e.payload, now()
		FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[]) AS e(id, merchant_id, event, payload)
		JOIN merchants m ON m.id = e.merchant_id
		WHERE m.webhook_url <> '' AND m.webhook_enabled
			AND ($5 = ANY (m.webhook_events) OR e.event = ANY (m.webhook_events))
		RETURNING id`, ids, merchantIDs, events, payloads, AllEvents)
	stored, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	set := make(map[uuid.UUID]bool, len(stored))
	for _, id := range stored {
		set[id] = true
	}
	return set, nil
}
