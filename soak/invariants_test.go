package soak

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/webhooks"
)

// settleWithin is how long after the last restart (or outage) every
// accepted payment and refund has to reach its final state.
const settleWithin = 2 * time.Minute

// checkInvariants holds the gateway to its promises over what the load was
// answered 201, reading the database directly:
//   - none lost: every accepted payment and refund exists;
//   - none stuck: every one reaches its final state by since+settleWithin;
//   - exactly one outcome event each (payment.success or payment.failed,
//     refund.processed), and one created event;
//   - every outcome event reaches the receiver at least once (by webhook-id);
//   - no refund total exceeds its payment, and amount_refunded is the sum of
//     the processed refunds;
//   - no webhook log is pending without a live job of its current run (once
//     the reconciler has resumed those whose first attempt lost its claim,
//     when that may have happened: lostClaims);
//   - nothing was answered 500.
//
// lostClaims says whether first webhook attempts may have lost their claims
// (a process was killed, or the database went away while one was given
// back): their logs are then without a job until the reconciler resumes
// them, which this waits for.
func checkInvariants(t *testing.T, dbURL string, l *load, r *receiver, since time.Time, lostClaims bool) {
	t.Helper()
	ctx := context.Background()
	pays, refs := l.accepted201()
	t.Logf("checking %s", l)
	require.NotEmpty(t, pays)
	require.NotEmpty(t, refs)
	deadline := since.Add(settleWithin)

	var conn *pgx.Conn
	var err error
	require.True(t, waitUntil(deadline, func() bool {
		conn, err = pgx.Connect(ctx, dbURL)
		return err == nil
	}), "database unreachable: %v", err)
	defer conn.Close(ctx)
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(&n), sql)
		return n
	}

	lost := count(`SELECT count(*) FROM unnest($1::text[]) a(id) WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = a.id)`, pays) +
		count(`SELECT count(*) FROM unnest($1::text[]) a(id) WHERE NOT EXISTS (SELECT 1 FROM refunds r WHERE r.id = a.id)`, refs)
	require.Zero(t, lost, "accepted payments or refunds lost")
	defer func() {
		var p50, p99, top float64
		_ = conn.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.99) WITHIN GROUP (ORDER BY s), max(s)
			FROM (SELECT extract(epoch FROM decided_at - created_at) AS s FROM payments WHERE id = ANY($1) AND status <> 'pending') d`,
			pays).Scan(&p50, &p99, &top)
		t.Logf("payments decided %.2f s after creation at the median, %.2f s at p99, %.2f s at most", p50, p99, top)
	}()

	var stuckPayments, stuckRefunds int
	if !waitUntil(deadline, func() bool {
		stuckPayments = count(`SELECT count(*) FROM payments WHERE id = ANY($1) AND status = 'pending'`, pays)
		stuckRefunds = count(`SELECT count(*) FROM refunds WHERE id = ANY($1) AND status = 'pending'`, refs)
		return stuckPayments+stuckRefunds == 0
	}) {
		var jobs string
		_ = conn.QueryRow(ctx, `SELECT coalesce(string_agg(state::text || ' attempt ' || attempt || ': ' || n, ', '), 'none')
			FROM (SELECT j.state, j.attempt, count(*) AS n FROM river_job j
			      WHERE j.args->>'payment_id' IN (SELECT id FROM payments WHERE id = ANY($1) AND status = 'pending')
			         OR j.args->>'refund_id' IN (SELECT id FROM refunds WHERE id = ANY($2) AND status = 'pending')
			      GROUP BY 1, 2) s`, pays, refs).Scan(&jobs)
		t.Fatalf("%s after the restart: %d payments and %d refunds still pending; their jobs: %s",
			settleWithin, stuckPayments, stuckRefunds, jobs)
	}

	// One snapshot for the event counts: each object's events by kind.
	events := `WITH ev AS (SELECT id, event, convert_from(payload, 'UTF8')::jsonb -> 'data' AS data FROM webhook_logs)`
	wrongPayments := count(events+`
		SELECT count(*) FROM unnest($1::text[]) a(id)
		WHERE (SELECT count(*) FROM ev WHERE ev.event IN ('payment.success', 'payment.failed') AND ev.data->'payment'->>'id' = a.id) <> 1
		   OR (SELECT count(*) FROM ev WHERE ev.event = 'payment.created' AND ev.data->'payment'->>'id' = a.id) <> 1`, pays)
	wrongRefunds := count(events+`
		SELECT count(*) FROM unnest($1::text[]) a(id)
		WHERE (SELECT count(*) FROM ev WHERE ev.event = 'refund.processed' AND ev.data->'refund'->>'id' = a.id) <> 1
		   OR (SELECT count(*) FROM ev WHERE ev.event = 'refund.created' AND ev.data->'refund'->>'id' = a.id) <> 1`, refs)
	require.Zero(t, wrongPayments, "payments without exactly one created and one outcome event")
	require.Zero(t, wrongRefunds, "refunds without exactly one created and one processed event")

	rows, err := conn.Query(ctx, events+`
		SELECT ev.id::text FROM ev WHERE (ev.event IN ('payment.success', 'payment.failed') AND ev.data->'payment'->>'id' = ANY($1))
		   OR (ev.event = 'refund.processed' AND ev.data->'refund'->>'id' = ANY($2))`, pays, refs)
	require.NoError(t, err)
	finals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var missing []string
	require.True(t, waitUntil(deadline, func() bool {
		missing = missing[:0]
		for _, id := range finals {
			if !r.got(id) {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	}), "%d of %d final events never reached the receiver, e.g. %v", len(missing), len(finals), missing[:min(len(missing), 5)])

	over := count(`
		SELECT count(*) FROM payments p
		JOIN (SELECT payment_id, sum(amount) AS held, sum(amount) FILTER (WHERE status = 'processed') AS done
		      FROM refunds WHERE status IN ('pending', 'processed') GROUP BY payment_id) r ON r.payment_id = p.id
		WHERE r.held > p.amount OR p.amount_refunded <> coalesce(r.done, 0)`)
	require.Zero(t, over, "payments refunded beyond their amount or with a wrong amount_refunded")

	// A log whose first attempt is being made by the process that recorded
	// it has no job meanwhile (less than webhooks.LostAfter), and one whose
	// claim was lost has none until the reconciler resumes it: with
	// lostClaims, that is waited for; otherwise no log may be without a job
	// for longer than a claimed attempt can take.
	orphans := func(olderThan time.Duration) int {
		return count(`
			SELECT count(*) FROM webhook_logs l WHERE l.status = 'pending' AND l.updated_at < now() - $1::interval
			  AND NOT EXISTS (
				SELECT 1 FROM river_job j WHERE j.kind = 'deliver_webhook' AND j.args->>'log_id' = l.id::text
				  AND (j.args->>'run')::int = l.run AND j.state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))`,
			olderThan)
	}
	if lostClaims {
		var n int
		require.True(t, waitUntil(deadline, func() bool { n = orphans(0); return n == 0 }),
			"%d webhook logs pending without a live job", n)
	} else {
		require.Zero(t, orphans(webhooks.LostAfter), "webhook logs pending without a live job")
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.errors, "answers 500")
}

// waitUntil polls cond until it holds (true) or deadline passes (false);
// the deadline is the promise under test.
func waitUntil(deadline time.Time, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
