package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"paygate/db"
	"paygate/payments"
)

// ceilingQueue is a queue no paygate works: the ceiling's job rows are
// inserted the way paygate inserts its own and then deleted.
const ceilingQueue = "bench_ceiling"

// Ceiling is the rate at which the database alone (paygate stopped) commits
// one of the transactions paygate's hot paths commit, from conc clients.
type Ceiling struct {
	Name     string  `json:"name"`
	Way      string  `json:"way,omitempty"` // how it is sent, where there is more than one way
	Conc     int     `json:"concurrency"`
	Conns    int     `json:"connections"`
	Best     bool    `json:"best"` // the highest tx/s of its transaction: the ceiling the ratios use
	Tx       int     `json:"transactions"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	TPS      float64 `json:"tx_per_s"`
	Latency  Latency `json:"latency"`
	DBCPUms  float64 `json:"db_cpu_ms_per_tx"`
	Commits  float64 `json:"commits_per_tx"`
	WALBytes float64 `json:"wal_bytes_per_tx"`
	Note     string  `json:"note,omitempty"`
}

// ceilingConns are the connection counts the ceiling is measured through:
// conc clients share each pool. A PostgreSQL on few cores commits more
// through fewer connections (less contention among its backends), so the
// ceiling is the best of them, not the rate at the clients' count.
var ceilingConns = []int{8, 20}

// measureCeilings measures each ceiling through every pool size of
// ceilingConns and through one connection per client, and marks the best.
func measureCeilings(ctx context.Context, url string, pgPID int, merchantID uuid.UUID, conc int, dur time.Duration) ([]Ceiling, error) {
	sizes := append(slices.Clone(ceilingConns), conc)
	slices.Sort(sizes)
	var all []Ceiling
	for _, n := range slices.Compact(sizes) {
		pool, err := pgxpool.New(ctx, url+"&pool_max_conns="+fmt.Sprint(n))
		if err != nil {
			return nil, err
		}
		cs, err := measureCeiling(ctx, pool, pgPID, merchantID, conc, dur)
		pool.Close()
		if err != nil {
			return nil, err
		}
		for i := range cs {
			cs[i].Conns = n
		}
		all = append(all, cs...)
	}
	best := map[string]int{}
	for i, c := range all {
		if j, ok := best[c.Name]; !ok || c.TPS > all[j].TPS {
			best[c.Name] = i
		}
	}
	for _, i := range best {
		all[i].Best = true
	}
	return all, nil
}

// measureCeiling runs the two ceilings: an order insert (its own commit, as
// POST /orders without an idempotency key), and a payment row plus its
// ProcessPayment job row in one transaction, sent two ways: with River's
// InsertTx in a pgx transaction (four round trips, with BEGIN on its own;
// paygate's request also took four until session 5), and in one round trip (BEGIN, the two INSERTs, COMMIT), the
// job inserted by paygate's own statement (db.JobRows). The second is the
// database's best for those rows: paygate's request takes two round trips
// (it reads the payment back before it writes its event) and writes more
// (the event's log and delivery job, a NOTIFY at most every 50 ms), which
// the ceiling leaves out. Each payment needs an order of its own.
func measureCeiling(ctx context.Context, pool *pgxpool.Pool, pgPID int, merchantID uuid.UUID, conc int, dur time.Duration) ([]Ceiling, error) {
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{}) // insert-only
	if err != nil {
		return nil, err
	}
	var ids idList
	orders := ceiling(ctx, pool, pgPID, "order insert", conc, dur, 0, func(i int) error {
		id := db.NewID("order_")
		_, err := pool.Exec(ctx, `INSERT INTO orders (id, merchant_id, amount, currency, receipt) VALUES ($1, $2, $3, 'INR', $4)`,
			id, merchantID, 50000, "ceiling")
		if err == nil {
			ids.add(id)
		}
		return err
	})
	const insertPayment = `INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status)
		VALUES ($1, $2, $3, 50000, 'INR', 'upi', 'bench@paytm', 'pending')`
	orderIDs := ids.all()
	pays := ceiling(ctx, pool, pgPID, "payment + job", conc, dur, len(orderIDs), func(i int) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		id := db.NewID("pay_")
		if _, err := tx.Exec(ctx, insertPayment, id, orderIDs[i], merchantID); err != nil {
			return err
		}
		args := payments.ProcessArgs{PaymentID: id, MerchantID: merchantID, DecideAt: time.Now()}
		if _, err := rc.InsertTx(ctx, tx, args, &river.InsertOpts{Queue: ceilingQueue}); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	pays.Way = "River InsertTx"
	// Enough orders for the faster way at well over the rates seen here.
	batchOrders, err := seedOrders(ctx, pool, merchantID, int(dur.Seconds()*10000)+1000)
	if err != nil {
		return nil, err
	}
	batched := ceiling(ctx, pool, pgPID, "payment + job", conc, dur, len(batchOrders), func(i int) error {
		id := db.NewID("pay_")
		jobs, err := db.JobRowsOf(river.InsertManyParams{
			Args:       payments.ProcessArgs{PaymentID: id, MerchantID: merchantID, DecideAt: time.Now()},
			InsertOpts: &river.InsertOpts{Queue: ceilingQueue},
		})
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(insertPayment, id, batchOrders[i], merchantID)
		insertJob, args := jobs.Insert()
		b.Queue(insertJob, args...)
		b.Queue("COMMIT")
		return pool.SendBatch(ctx, b).Close()
	})
	batched.Way = "one round trip"
	if batched.Tx >= len(batchOrders) {
		batched.Note = fmt.Sprintf("stopped early: used every order seeded for it (%d)", len(batchOrders))
	}
	if pays.Tx >= len(orderIDs) {
		pays.Note = fmt.Sprintf("stopped early: used every order of the order ceiling (%d)", len(orderIDs))
	}
	// Its own database: nothing to clean, but the checkpoint its writes
	// would cause should not land in paygate's phases.
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return nil, err
	}
	return []Ceiling{orders, pays, batched}, nil
}

func ceiling(ctx context.Context, pool *pgxpool.Pool, pgPID int, name string, conc int, dur time.Duration, count int, tx func(i int) error) Ceiling {
	// What ran before (the previous ceiling, the orders seeded for this
	// one) is reported first, so that it does not land in this one.
	flushStats(ctx, pool) // its own commits reported with the rest
	before := snapshotDB(ctx, pool, pgPID)
	before.walPos = walPosition(ctx, pool)
	p := runPhase(ctx, name, conc, dur, count, func(i int) (int, error) {
		if err := tx(i); err != nil {
			return 0, err
		}
		return 200, nil
	})
	// The CPU and the WAL's position as the phase ends, not after the
	// flush's pause; the commits once reported.
	cpu, wal := treeUsage(pgPID, false).CPU, walPosition(ctx, pool)
	flushed := flushStats(ctx, pool)
	after := snapshotDB(ctx, pool, pgPID)
	after.commits -= int64(flushed) // flushStats's own
	after.cpu, after.walPos = cpu, wal
	c := Ceiling{Name: name, Conc: conc, Tx: p.Requests - p.Errors, Errors: p.Errors, Seconds: p.Seconds, Latency: p.Latency}
	if c.Tx > 0 {
		c.TPS = float64(c.Tx) / p.Seconds
		d := after.minus(before)
		c.DBCPUms = d.cpu.Seconds() * 1000 / float64(c.Tx)
		c.Commits = float64(d.commits) / float64(c.Tx)
		c.WALBytes = float64(d.walPos) / float64(c.Tx)
	}
	return c
}

// flushStats has every connection of pool report its statistics (commits,
// WAL) to pg_stat_database and pg_stat_wal: a backend reports them at most
// once a second, so a snapshot taken as a phase ends misses up to a second
// of each connection's work (the ceiling's commits per transaction read
// 0.90). A backend reports as it goes idle, before it answers; from
// PostgreSQL 15, pg_stat_force_next_flush() lifts the once-a-second limit
// for that report, so each connection's answer to it means its report is
// in. Before 15, a backend that has not reported for a second reports, so
// it waits that second out first. It returns how many statements (each a
// commit) it sent.
func flushStats(ctx context.Context, pool *pgxpool.Pool) int {
	conns := pool.AcquireAllIdle(ctx)
	flush := `/* bench */ SELECT pg_stat_force_next_flush()`
	if len(conns) > 0 && !serverAtLeast15(conns[0].Conn()) {
		time.Sleep(1100 * time.Millisecond)
		flush = `/* bench */ SELECT 1`
	}
	n := 0
	for _, c := range conns {
		if _, err := c.Exec(ctx, flush); err == nil {
			n++
		}
		c.Release()
	}
	return n
}

// serverAtLeast15 reads the server's major version from what it sent at
// connection (no statement, so no commit to count).
func serverAtLeast15(c *pgx.Conn) bool {
	major, _, _ := strings.Cut(c.PgConn().ParameterStatus("server_version"), ".")
	v, err := strconv.Atoi(major)
	return err == nil && v >= 15
}

// dbSnapshot is the server-wide counters a phase's cost is the difference of.
type dbSnapshot struct {
	cpu                 time.Duration
	commits, rollbacks  int64
	walBytes, walSyncs  int64
	walRecords, walFPIs int64
	walPos              int64 // the WAL's insert position (exact; the ceilings')
}

// walPosition is the WAL's insert position in bytes.
func walPosition(ctx context.Context, pool *pgxpool.Pool) int64 {
	var pos int64
	_ = pool.QueryRow(ctx, `/* bench */ SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint`).Scan(&pos)
	return pos
}

func snapshotDB(ctx context.Context, pool *pgxpool.Pool, pgPID int) dbSnapshot {
	var s dbSnapshot
	s.cpu = treeUsage(pgPID, false).CPU
	_ = pool.QueryRow(ctx, `/* bench */ SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()`).
		Scan(&s.commits, &s.rollbacks)
	_ = pool.QueryRow(ctx, `/* bench */ SELECT wal_bytes::bigint, wal_sync, wal_records, wal_fpi FROM pg_stat_wal`).
		Scan(&s.walBytes, &s.walSyncs, &s.walRecords, &s.walFPIs)
	return s
}

func (a dbSnapshot) minus(b dbSnapshot) dbSnapshot {
	return dbSnapshot{cpu: a.cpu - b.cpu, commits: a.commits - b.commits, rollbacks: a.rollbacks - b.rollbacks,
		walBytes: a.walBytes - b.walBytes, walSyncs: a.walSyncs - b.walSyncs,
		walRecords: a.walRecords - b.walRecords, walFPIs: a.walFPIs - b.walFPIs, walPos: a.walPos - b.walPos}
}

// seedOrders inserts n orders for the merchant with COPY, outside any
// measurement: the payment phases each need fresh orders, and making them
// through the API would spend the run's time and CPU on something already
// measured.
func seedOrders(ctx context.Context, pool *pgxpool.Pool, merchantID uuid.UUID, n int) ([]string, error) {
	ids := make([]string, n)
	rows := make([][]any, n)
	for i := range ids {
		ids[i] = db.NewID("order_")
		rows[i] = []any{ids[i], merchantID, int64(50000), "INR", "bench"}
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "merchant_id", "amount", "currency", "receipt"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return nil, fmt.Errorf("seed %d orders: %w", n, err)
	}
	_, _ = pool.Exec(ctx, `ANALYZE orders`)
	return ids, nil
}

// idList collects ids from concurrent callers.
type idList struct {
	mu  sync.Mutex
	ids []string
}

func (l *idList) add(id string) { l.mu.Lock(); l.ids = append(l.ids, id); l.mu.Unlock() }
func (l *idList) all() []string { l.mu.Lock(); defer l.mu.Unlock(); return slices.Clone(l.ids) }
