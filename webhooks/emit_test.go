package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/webhooks"
)

// EmitTx records, in one call, only the events whose merchant's endpoint
// is set, enabled and subscribed to them; each with its own body and one
// first-delivery job; and nothing unless its transaction commits.
func TestEmitRecordsWhatEachEndpointDelivers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The API role works no jobs: the jobs are read as inserted, before a
	// worker (woken by the insert notification) could take them.
	a, err := app.New(ctx, apptest.Config(t), app.RoleAPI, apptest.Logger())
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(ctx) })
	r := newReceiver(t, nil)
	// The test merchant takes payment.success only; "all" takes everything;
	// "disabled" and "none" take nothing.
	configure(t, a, apptest.TestMerchant(), r.URL, webhooks.EventPaymentSuccess)
	all, allH := apptest.NewMerchant(t, a, "all@example.com")
	configure(t, a, allH, r.URL)
	disabled, disabledH := apptest.NewMerchant(t, a, "disabled@example.com")
	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config",
		fmt.Sprintf(`{"webhook_url":%q,"enabled":false}`, r.URL), disabledH)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	none, _ := apptest.NewMerchant(t, a, "none@example.com")

	event := func(m uuid.UUID, name, id string) webhooks.Event {
		return webhooks.Event{MerchantID: m, Name: name, Data: map[string]any{"payment": map[string]any{"id": id}}}
	}
	events := []webhooks.Event{
		event(merchants.TestMerchantID, webhooks.EventPaymentSuccess, "pay_1"),
		event(merchants.TestMerchantID, webhooks.EventPaymentFailed, "pay_2"),
		event(all.ID, webhooks.EventPaymentFailed, "pay_3"),
		event(disabled.ID, webhooks.EventPaymentSuccess, "pay_4"),
		event(none.ID, webhooks.EventPaymentSuccess, "pay_5"),
		event(all.ID, webhooks.EventPaymentSuccess, "pay_6"),
	}
	stored := map[string]uuid.UUID{"pay_1": merchants.TestMerchantID, "pay_3": all.ID, "pay_6": all.ID}

	// Rolled back: nothing.
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Webhooks.EmitTx(ctx, tx, events))
	require.NoError(t, tx.Rollback(ctx))
	require.Zero(t, count(t, a, `SELECT count(*) FROM webhook_logs`))
	require.Zero(t, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`))

	before := time.Now()
	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error { return a.Webhooks.EmitTx(ctx, tx, events) }))
	after := time.Now()
	rows, err := a.Pool.Query(ctx, `SELECT args, queue, max_attempts, priority, state FROM river_job WHERE kind = 'deliver_webhook' ORDER BY id`)
	require.NoError(t, err)
	type job struct {
		Args                  []byte
		Queue                 string
		MaxAttempts, Priority int16
		State                 string
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[job])
	require.NoError(t, err)
	var order []string
	for _, j := range jobs {
		require.Equal(t, job{Args: j.Args, Queue: webhooks.Queue, MaxAttempts: 10, Priority: 1, State: "available"}, j,
			"a first delivery's job is DeliverArgs' kind, queue and attempts")
		var args struct {
			LogID      uuid.UUID `json:"log_id"`
			MerchantID uuid.UUID `json:"merchant_id"`
		}
		require.NoError(t, json.Unmarshal(j.Args, &args))
		// The retention prune walks logs by id as by age.
		require.Equal(t, uuid.Version(7), args.LogID.Version(), "a log's id is a version 7 UUID")
		sec, nsec := args.LogID.Time().UnixTime()
		made := time.Unix(sec, nsec)
		require.False(t, made.Before(before.Truncate(time.Millisecond)) || made.After(after),
			"a log's id holds when its event was made: %v, not within %v–%v", made, before, after)
		var merchantID uuid.UUID
		var payload []byte
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT merchant_id, payload FROM webhook_logs WHERE id = $1`, args.LogID).
			Scan(&merchantID, &payload))
		var body struct {
			Event string
			Data  struct{ Payment struct{ ID string } }
		}
		require.NoError(t, json.Unmarshal(payload, &body))
		order = append(order, body.Data.Payment.ID)
		require.Equal(t, stored[body.Data.Payment.ID], merchantID)
		require.Equal(t, merchantID, args.MerchantID, "the job names the log's merchant")
	}
	require.Equal(t, []string{"pay_1", "pay_3", "pay_6"}, order, "the jobs come in the order of their events")
	require.Equal(t, 3, count(t, a, `SELECT count(*) FROM webhook_logs`))
	require.Equal(t, 3, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`))

	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error { return a.Webhooks.EmitTx(ctx, tx, nil) }))
	require.Equal(t, 3, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`))
	require.Error(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		return a.Webhooks.EmitTx(ctx, tx, []webhooks.Event{event(all.ID, "payment.unknown", "pay_7")})
	}), "an unknown event is a programming error")
}

// Recording a delivered event wakes the webhook queue's producers with
// River's insert notification, on River's channel and in River's payload.
func TestEmitNotifiesTheWebhookQueue(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	// The events a process takes for its own first attempts wake no
	// producer (first.go): with those stopped, every event is River's.
	a.Webhooks.StopFirstAttempts(ctx)
	r := newReceiver(t, nil)
	configure(t, a, apptest.TestMerchant(), r.URL)
	conn, err := a.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `LISTEN "public.river_insert"`)
	require.NoError(t, err)
	// The process notifies a queue at most every 50 ms, and the package's
	// other tests emit too: emit until a notification comes.
	for range 100 {
		require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
			return a.Webhooks.EmitTx(ctx, tx, []webhooks.Event{{MerchantID: merchants.TestMerchantID,
				Name: webhooks.EventPaymentSuccess, Data: map[string]any{"payment": map[string]any{"id": "pay_1"}}}})
		}))
		wait, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
		n, err := conn.Conn().WaitForNotification(wait)
		cancel()
		if err != nil {
			continue
		}
		var payload struct{ Queue string }
		require.NoError(t, json.Unmarshal([]byte(n.Payload), &payload))
		if payload.Queue == webhooks.Queue {
			return
		}
		// Another queue's (River's periodic jobs): wait for ours.
	}
	t.Fatal("no insert notification")
}
