package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Cost is what the database spent per item of a flow (a payment of the
// burst; a refund), from its first POST to the moment every job the flow
// made (the decisions or processing, and both webhooks of each item) had
// finished: pg_stat_statements, pg_stat_database and pg_stat_wal
// differences divided by the items, and the PostgreSQL processes' CPU time
// from /proc. Everything paygate sent in that time is counted, River's
// polling and maintenance included; bench's own queries (marked
// /* bench */) are not.
type Cost struct {
	Of         string          `json:"of"` // what an item is
	Items      int             `json:"items"`
	Statements float64         `json:"statements_per_item"`        // sent by paygate (top level)
	Nested     float64         `json:"nested_statements_per_item"` // run inside those (foreign-key checks)
	Commits    float64         `json:"commits_per_item"`
	Rollbacks  float64         `json:"rollbacks_per_item"`
	ExecMs     float64         `json:"statement_exec_ms_per_item"`
	DBCPUms    float64         `json:"db_cpu_ms_per_item"`
	GatewayCPU float64         `json:"paygate_cpu_ms_per_item"`
	WALBytes   float64         `json:"wal_bytes_per_item"`
	WALSyncs   float64         `json:"wal_syncs_per_item"`
	WALFPIs    float64         `json:"wal_full_page_images_per_item"`
	ByStmt     []StatementCost `json:"statements"`
	WAL        []TableWAL      `json:"wal_by_table"`
	Waits      []Wait          `json:"session_waits"`
}

// StatementCost is one normalised statement's share.
type StatementCost struct {
	Area   string  `json:"area"`
	Query  string  `json:"query"`
	Calls  float64 `json:"calls_per_item"`
	ExecMs float64 `json:"exec_ms_per_item"`
	Rows   float64 `json:"rows_per_item"`
	Nested bool    `json:"nested,omitempty"` // run inside another statement (a foreign-key check)
}

// costWindow is a cost account being taken: from openCost to done, the
// statements, commits and WAL of the database, its CPU and its sessions'
// waits, and paygate's and the bench's CPU.
type costWindow struct {
	b         *bench
	wal       *walWindow
	db0       dbSnapshot
	cpu       cpuMark
	waits     chan []Wait
	stopWaits context.CancelFunc
}

// openCost starts a cost account with pg_stat_statements reset, after a
// checkpoint if asked (the burst's: so that its full-page images count from
// a known state). The refunds' takes none: a checkpoint just before them
// would give each refund's first touch of its payment's page a full-page
// image, and change the phase it measures.
func (b *bench) openCost(ctx context.Context, checkpoint bool) (*costWindow, error) {
	if checkpoint {
		if _, err := b.pool.Exec(ctx, `/* bench */ CHECKPOINT`); err != nil {
			return nil, err
		}
	}
	if err := resetStatements(ctx, b.pool); err != nil {
		return nil, err
	}
	wal, err := openWALWindow(ctx, b.pool)
	if err != nil {
		return nil, fmt.Errorf("keep the WAL of a cost account: %w", err)
	}
	w := &costWindow{b: b, wal: wal, db0: snapshotDB(ctx, b.pool, b.pg.pid()), cpu: b.cpuMark(),
		waits: make(chan []Wait, 1)}
	waitCtx, stop := context.WithCancel(ctx)
	w.stopWaits = stop
	go func() { w.waits <- sampleWaits(waitCtx, b.pool) }()
	return w, nil
}

// done ends the account over n items (what an item is: of), whose flow
// measured paygate's CPU per item as paygateCPUms.
func (w *costWindow) done(ctx context.Context, of string, n int, paygateCPUms float64) (Cost, error) {
	b := w.b
	w.stopWaits()
	walBytes, err := w.wal.close(ctx)
	if err != nil {
		return Cost{}, err
	}
	d := snapshotDB(ctx, b.pool, b.pg.pid()).minus(w.db0)
	// The WAL's own positions, exact where pg_stat_wal lags by the
	// statistics each backend has yet to report.
	d.walBytes = walBytes
	c, err := readCost(ctx, b.pool, n, d, paygateCPUms)
	if err != nil {
		return Cost{}, fmt.Errorf("cost account: %w", err)
	}
	c.Of, c.Waits = of, <-w.waits
	// A diagnostic: without it the run goes on, its table left out.
	if c.WAL, err = w.wal.byTable(ctx, b.pg.pid(), n); err != nil {
		logf("WAL by table left out: %v", err)
	}
	return c, nil
}

// release frees what the window holds, whether or not it was done.
func (w *costWindow) release() {
	w.stopWaits()
	w.wal.release()
}

func resetStatements(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `/* bench */ SELECT pg_stat_statements_reset()`)
	return err
}

// awaitIdle waits until nothing a flow caused is left to do, or wait has
// passed (then it says so in the report): no job of paygate's queues left
// to run, and no payment, refund or webhook log pending, since a payment's
// decision and a log's first attempt have no job (payments/first.go,
// webhooks/first.go). Then every delivery a flow caused has been made, and
// the CPU and statements counted up to now are the flow's own.
func (b *bench) awaitIdle(ctx context.Context, after string, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		var n int
		err := b.pool.QueryRow(ctx, `/* bench */ SELECT
			(SELECT count(*) FROM river_job WHERE queue <> 'maintenance'
			   AND state IN ('available', 'running', 'retryable', 'scheduled', 'pending'))
			+ (SELECT count(*) FROM payments WHERE status = 'pending')
			+ (SELECT count(*) FROM refunds WHERE status = 'pending')
			+ (SELECT count(*) FROM webhook_logs WHERE status = 'pending')`).Scan(&n)
		if err == nil && n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ctx.Err() == nil {
		b.rep.Warnings = append(b.rep.Warnings, fmt.Sprintf("after %s, work was still pending when -wait (%s) ran out: the CPU and cost counted next include its end", after, wait))
	}
}

func readCost(ctx context.Context, pool *pgxpool.Pool, n int, d dbSnapshot, gatewayCPUms float64) (Cost, error) {
	per := func(v float64) float64 { return v / float64(n) }
	c := Cost{Items: n, Commits: per(float64(d.commits)), Rollbacks: per(float64(d.rollbacks)),
		DBCPUms: per(d.cpu.Seconds() * 1000), GatewayCPU: gatewayCPUms,
		WALBytes: per(float64(d.walBytes)), WALSyncs: per(float64(d.walSyncs)), WALFPIs: per(float64(d.walFPIs))}
	rows, err := pool.Query(ctx, `/* bench */ SELECT query, calls, total_exec_time, rows, toplevel FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%/* bench */%'`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var calls, stmtRows int64
		var ms float64
		var toplevel bool
		if err := rows.Scan(&q, &calls, &ms, &stmtRows, &toplevel); err != nil {
			return c, err
		}
		s := StatementCost{Area: area(q), Query: oneLine(q), Calls: per(float64(calls)), ExecMs: per(ms), Rows: per(float64(stmtRows)), Nested: !toplevel}
		// A nested statement's time is inside its caller's already.
		if s.Nested {
			s.Area = "inside others"
			c.Nested += s.Calls
		} else {
			c.Statements += s.Calls
			c.ExecMs += s.ExecMs
		}
		c.ByStmt = append(c.ByStmt, s)
	}
	sort.Slice(c.ByStmt, func(i, j int) bool { return c.ByStmt[i].ExecMs > c.ByStmt[j].ExecMs })
	return c, rows.Err()
}

// area names who sends a statement, from the tables it touches.
func area(q string) string {
	l := strings.ToLower(q)
	switch {
	case strings.HasPrefix(l, "begin"), strings.HasPrefix(l, "commit"), strings.HasPrefix(l, "rollback"),
		strings.HasPrefix(l, "savepoint"), strings.HasPrefix(l, "release"):
		return "tx control"
	case strings.Contains(l, "idempotency_keys"):
		return "idempotency"
	case strings.Contains(l, "insert into payments"): // with its decision job
		return "payments"
	case strings.Contains(l, "insert into refunds"): // with its processing job
		return "refunds"
	case strings.Contains(l, "webhook_logs"), strings.Contains(l, "webhook_attempts"):
		return "webhooks"
	case strings.Contains(l, "river_"), strings.Contains(l, "pg_notify"), strings.Contains(l, "river"):
		return "river"
	case strings.Contains(l, "refunds"): // before payments: processing updates both
		return "refunds"
	case strings.Contains(l, "payments"), strings.Contains(l, "orders"):
		return "payments"
	case strings.Contains(l, "merchants"):
		return "merchants"
	}
	return "other"
}

var spaces = regexp.MustCompile(`\s+`)

func oneLine(q string) string { return strings.TrimSpace(spaces.ReplaceAllString(q, " ")) }
