package webhooks

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
)

const endpointColumns = `m.webhook_url, m.webhook_secret, m.webhook_events, m.webhook_enabled,
	m.previous_webhook_secret, m.previous_secret_expires_at`

func endpointFields(e *Endpoint) []any {
	return []any{&e.URL, &e.Secret, &e.Events, &e.Enabled, &e.previous, &e.previousUntil}
}

func endpoint(ctx context.Context, q db.Querier, merchantID uuid.UUID) (Endpoint, error) {
	var e Endpoint
	err := q.QueryRow(ctx, `SELECT `+endpointColumns+` FROM merchants m WHERE m.id = $1`, merchantID).
		Scan(endpointFields(&e)...)
	return e, err
}

func saveEndpoint(ctx context.Context, q db.Querier, merchantID uuid.UUID, url string, events []string, enabled bool) (Endpoint, error) {
	var e Endpoint
	err := q.QueryRow(ctx, `
		UPDATE merchants m SET webhook_url = $2, webhook_events = $3, webhook_enabled = $4, updated_at = now()
		WHERE m.id = $1 RETURNING `+endpointColumns, merchantID, url, events, enabled).
		Scan(endpointFields(&e)...)
	return e, err
}

func rotateSecret(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, secret string, previousUntil time.Time) error {
	_, err := tx.Exec(ctx, `
		UPDATE merchants SET previous_webhook_secret = webhook_secret, previous_secret_expires_at = $3,
		       webhook_secret = $2, updated_at = now()
		WHERE id = $1`, merchantID, secret, previousUntil)
	return err
}

// insertLog stores a log, whatever the merchant subscribes to (EmitTx's
// insertLogs checks the subscription).
func insertLog(ctx context.Context, tx pgx.Tx, id, merchantID uuid.UUID, event string, payload []byte) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO webhook_logs (id, merchant_id, event, payload, next_retry_at) VALUES ($1, $2, $3, $4, now())`,
		id, merchantID, event, payload)
	return err
}

// lockedLog is a log's state, read under its row lock.
type lockedLog struct {
	status        string
	run, attempts int  // attempts made in that run
	moved         bool // changed within LostAfter
}

// lockLog reads a log, holding its row until tx ends so that concurrent
// retries of one log take turns.
func lockLog(ctx context.Context, tx pgx.Tx, merchantID, id uuid.UUID) (lockedLog, error) {
	var l lockedLog
	err := tx.QueryRow(ctx, `
		SELECT status, run, attempts, updated_at > now() - $3::interval
		FROM webhook_logs WHERE id = $1 AND merchant_id = $2 FOR UPDATE`, id, merchantID, LostAfter).
		Scan(&l.status, &l.run, &l.attempts, &l.moved)
	return l, err
}

// liveJobOfRun is the SQL test that the log logID (a uuid expression) has
// a job of its run run (an int expression) still to run or running: by
// args keys over the live jobs, which River's fetching index finds.
func liveJobOfRun(logID, run string) string {
	return `EXISTS (SELECT 1 FROM river_job j WHERE j.kind = 'deliver_webhook'
		AND j.args->>'log_id' = (` + logID + `)::text AND j.args->'run' = to_jsonb(` + run + `)
		AND j.state IN ` + db.LiveJobStates + `)`
}

// runHasLiveJob reports whether a job of the log's run is still to run or
// running (the reconciler's test for a lost job, for one log).
func runHasLiveJob(ctx context.Context, tx pgx.Tx, id uuid.UUID, run int) (bool, error) {
	var alive bool
	err := tx.QueryRow(ctx, `SELECT `+liveJobOfRun("$1::uuid", "$2::int"), id, run).Scan(&alive)
	return alive, err
}

func restartLog(ctx context.Context, tx pgx.Tx, merchantID, id uuid.UUID, run int) error {
	_, err := tx.Exec(ctx, `
		UPDATE webhook_logs SET status = 'pending', attempts = 0, run = $3, next_retry_at = now(), updated_at = now()
		WHERE id = $1 AND merchant_id = $2`, id, merchantID, run)
	return err
}

const logColumns = `id, event, status, attempts, created_at, last_attempt_at, next_retry_at, response_code`

func logFields(l *Log) []any {
	return []any{&l.ID, &l.Event, &l.Status, &l.Attempts, &l.CreatedAt, &l.LastAttemptAt, &l.NextRetryAt, &l.ResponseCode}
}

func listLogs(ctx context.Context, q db.Querier, merchantID uuid.UUID, f ListFilter) ([]Log, int64, error) {
	const where = ` FROM webhook_logs WHERE merchant_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR event = $3)`
	var total int64
	if err := q.QueryRow(ctx, `SELECT count(*)`+where, merchantID, f.Status, f.Event).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := q.Query(ctx, `SELECT `+logColumns+where+` ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5`,
		merchantID, f.Status, f.Event, f.Limit, f.Offset)
	if err != nil {
		return nil, 0, err
	}
	logs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Log, error) {
		var l Log
		return l, r.Scan(logFields(&l)...)
	})
	return logs, total, err
}

func getLog(ctx context.Context, q db.Querier, merchantID, id uuid.UUID) (LogDetail, error) {
	var d LogDetail
	err := q.QueryRow(ctx, `SELECT `+logColumns+`, payload FROM webhook_logs WHERE id = $1 AND merchant_id = $2`,
		id, merchantID).Scan(append(logFields(&d.Log), &d.Payload)...)
	if err != nil {
		return LogDetail{}, err
	}
	rows, err := q.Query(ctx, `
		SELECT a.run, a.attempt, a.attempted_at, a.response_code, a.response_body, a.error, a.duration_ms
		FROM webhook_attempts a JOIN webhook_logs l ON l.id = a.log_id
		WHERE a.log_id = $1 AND l.merchant_id = $2 ORDER BY a.id`, id, merchantID)
	if err != nil {
		return LogDetail{}, err
	}
	d.AttemptHistory, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		return a, r.Scan(&a.Run, &a.Attempt, &a.AttemptedAt, &a.ResponseCode, &a.ResponseBody, &a.Error, &a.DurationMS)
	})
	return d, err
}

// delivery is what one attempt needs: the log's state and the endpoint as
// it is now (the URL or secret may have changed since the event).
type delivery struct {
	status   string
	run      int
	attempts int // made in this run so far
	payload  []byte
	Endpoint
}

// logKey names one log of one merchant.
type logKey struct{ merchantID, id uuid.UUID }

// found is a delivery read for a job; ok is false when its log is gone.
type found struct {
	delivery
	ok bool
}

// deliveriesOf reads the deliveries of many jobs in one statement (the
// worker's batch of reads), answering each key at its index.
func deliveriesOf(ctx context.Context, q db.Querier, keys []logKey) ([]found, error) {
	ids, merchants := make([]uuid.UUID, len(keys)), make([]uuid.UUID, len(keys))
	for i, k := range keys {
		ids[i], merchants[i] = k.id, k.merchantID
	}
	rows, err := q.Query(ctx, `
		SELECT k.i, l.status, l.run, l.attempts, l.payload, `+endpointColumns+`
		FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS k(id, merchant_id, i)
		JOIN webhook_logs l ON l.id = k.id AND l.merchant_id = k.merchant_id
		JOIN merchants m ON m.id = l.merchant_id`, db.PlanMode(q), ids, merchants)
	if err != nil {
		return nil, err
	}
	return scanDeliveries(rows, len(keys))
}

// scanDeliveries reads rows of (the 1-based index of a request, the
// delivery's columns) into the answers to n requests.
func scanDeliveries(rows pgx.Rows, n int) ([]found, error) {
	out := make([]found, n)
	var i int
	var d delivery
	_, err := pgx.ForEachRow(rows, append([]any{&i, &d.status, &d.run, &d.attempts, &d.payload}, endpointFields(&d.Endpoint)...),
		func() error {
			out[i-1] = found{delivery: d, ok: true}
			d = delivery{}
			return nil
		})
	return out, err
}

// attempt is attempt n of a job's run, its outcome, and the status it
// leaves the log in: pending until next, or final (next nil).
type attempt struct {
	args   DeliverArgs
	status string
	n      int
	next   *time.Time
	o      outcome
}

// attemptKey names attempt n of a log's run.
type attemptKey struct {
	logID  uuid.UUID
	run, n int
}

func (a attempt) key() attemptKey { return attemptKey{a.args.LogID, a.args.Run, a.n} }

// recordAttempts (recordAttempt, one at a time, before batches; migration
// 00008 names it) stores attempts, one statement for all (the workers'
// batch of final records, or one retry's): each log's summary and a
// history row together, so that attempts always counts the history of the
// run. Only a log still pending in that run with the attempts before this
// one is updated, so a stale or repeated job changes nothing. It reports
// at each index whether that log was updated. The same attempt named twice
// (a job run twice at once) is recorded once: the first is, the others are
// answered not updated, as they would be one after the other. Attempts of
// one log in different runs (a manual retry started a new run while the
// old run's job was sending) are all sent: only the one of the log's
// current run matches its row. The status a log must still have is a
// parameter: a plan kept (db.KeptPlans) that saw it written out read every
// pending log, through their partial index, for each batch.
func recordAttempts(ctx context.Context, q db.Querier, batch []attempt) ([]bool, error) {
	unique, first := db.Distinct(batch, attempt.key, nil)
	n := len(unique)
	var (
		ids, merchants   = make([]uuid.UUID, n), make([]uuid.UUID, n)
		runs, attempts   = make([]int32, n), make([]int32, n)
		statuses, bodies = make([]string, n), make([]string, n)
		ats, nexts       = make([]time.Time, n), make([]*time.Time, n)
		codes, errs      = make([]*int, n), make([]*string, n)
		ms               = make([]int64, n)
	)
	for i, f := range unique {
		ids[i], merchants[i], runs[i], attempts[i] = f.args.LogID, f.args.MerchantID, int32(f.args.Run), int32(f.n)
		statuses[i], bodies[i], ats[i], nexts[i] = f.status, f.o.body, f.o.at, f.next
		codes[i], errs[i], ms[i] = f.o.code, f.o.err, f.o.duration.Milliseconds()
	}
	rows, err := q.Query(ctx, `
		WITH v AS (
		    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::timestamptz[],
		                         $7::int[], $8::text[], $9::text[], $10::bigint[], $11::timestamptz[])
		        WITH ORDINALITY AS v(log_id, merchant_id, run, status, attempt, at, code, body, error, ms, next, i)),
		log AS (
		    UPDATE webhook_logs l SET status = v.status, attempts = v.attempt, last_attempt_at = v.at,
		           next_retry_at = v.next, response_code = v.code, updated_at = now()
		    FROM v
		    WHERE l.id = v.log_id AND l.merchant_id = v.merchant_id AND l.run = v.run
		      AND l.status = $12 AND l.attempts = v.attempt - 1
		    RETURNING v.*),
		history AS (
		    INSERT INTO webhook_attempts (log_id, run, attempt, attempted_at, response_code, response_body, error, duration_ms)
		    SELECT log_id, run, attempt, at, code, body, error, ms FROM log)
		SELECT i FROM log`, db.PlanMode(q),
		ids, merchants, runs, statuses, attempts, ats, codes, bodies, errs, ms, nexts, StatusPending)
	if err != nil {
		return nil, err
	}
	updated := make([]bool, len(batch))
	var i int
	_, err = pgx.ForEachRow(rows, []any{&i}, func() error {
		updated[first[unique[i-1].key()]] = true
		return nil
	})
	return updated, err
}
