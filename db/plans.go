package db

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// keptPlanSettings are the settings of the connections whose plans are kept
// (OpenBatches): each statement's generic plan is made once and kept, and
// a plan may reach a table only through an index, joined row by row in
// nested loops.
var keptPlanSettings = map[string]string{
	"plan_cache_mode": "force_generic_plan",
	"enable_seqscan":  "off", "enable_bitmapscan": "off",
	"enable_hashjoin": "off", "enable_mergejoin": "off",
}

const (
	// GrownBytes is how large each table a batch reads or updates must be
	// on disk before the batch runs on kept plans: some thousands of rows.
	GrownBytes = 1 << 20
	// sizesAge is how old the sizes For goes by may grow.
	sizesAge = 10 * time.Second
)

// Batches gives each batch of db.Batcher's hot paths (payments and orders
// created, payments decided, deliveries read) the pool to run on: at first
// the pool of Open, where a batch's statements are planned for each
// execution with its own arrays (PlannedEachTime), and once its tables
// have grown, a pool of its own whose connections plan each statement once
// and keep the plan (PlanMode). Planning a batch cost the database about
// as much as running it at a moderate load, and kept plans made payment
// creation at 64 clients about a tenth faster (BENCHMARKS.md, session 17).
//
// A kept plan cannot see a batch's size, nor how a table has grown since it
// was made. So on those connections a plan may join only by nested loops
// over indexes; and since, on a nearly empty table, a scan of a whole
// index costs the planner no more than one probe of the primary key, kept
// plans wait until every table of the batch is GrownBytes large on disk
// (the size PostgreSQL's estimates follow, ANALYZE or not), when a probe
// of a primary or unique key beats every scan by far: every statement run
// on them must reach each table that way, and dbtest.PlansByUniqueKeys
// checks each plan on tables of that size. The merchants are looked up by
// primary key and never measured: a process may serve one merchant for
// ever, and a plan that scans them is replaced by PostgreSQL once
// autovacuum analyzes a table that has grown a tenth.
type Batches struct {
	main, kept *pgxpool.Pool
	closing    context.Context // cancelled by Close: a measure stops
	logger     *slog.Logger
	close      context.CancelFunc

	mu       sync.Mutex
	minBytes int64            // GrownBytes, unless a test lowers it
	sizes    map[string]int64 // each table's size on disk, as last read; -1: not yet
	read     time.Time        // when they were read
	reading  bool
}

// OpenBatches connects the pool of kept plans beside main, the pool of
// Open (which it does not close); logger tells when a table has grown.
func OpenBatches(ctx context.Context, url string, maxConns int32, main *pgxpool.Pool, logger *slog.Logger) (*Batches, error) {
	kept, err := open(ctx, url, maxConns, keptPlanSettings)
	if err != nil {
		return nil, err
	}
	closing, close := context.WithCancel(context.Background())
	return &Batches{main: main, kept: kept, closing: closing, close: close, logger: logger, minBytes: GrownBytes,
		sizes: map[string]int64{}}, nil
}

// SetMinBytes sets how large a table must be for kept plans (tests).
func (b *Batches) SetMinBytes(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.minBytes = n
}

// Kept is the pool of kept plans.
func (b *Batches) Kept() *pgxpool.Pool { return b.kept }

// Close closes the pool of kept plans.
func (b *Batches) Close() {
	b.close()
	b.kept.Close()
}

// For returns the pool a batch over tables runs on: that of kept plans
// once each table is minBytes large, by sizes at most sizesAge old (read
// again in the background when older), and main before. A nil Batches
// (tests that build a service on one pool) answers nil.
func (b *Batches) For(tables ...string) *pgxpool.Pool {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	grown := true
	for _, t := range tables {
		n, ok := b.sizes[t]
		if !ok {
			b.sizes[t] = -1
		}
		grown = grown && ok && n >= b.minBytes
	}
	if time.Since(b.read) > sizesAge && !b.reading {
		b.reading = true
		go b.measure()
	}
	if grown {
		return b.kept
	}
	return b.main
}

// measure reads the sizes of the tables For was asked about.
func (b *Batches) measure() {
	b.mu.Lock()
	tables := make([]string, 0, len(b.sizes))
	for t := range b.sizes {
		tables = append(tables, t)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.closing, 10*time.Second)
	defer cancel()
	rows, _ := b.main.Query(ctx, `SELECT relname::text, pg_relation_size(oid) FROM pg_class
		WHERE relname = ANY ($1) AND relnamespace = current_schema()::regnamespace AND relkind = 'r'`, tables)
	sizes := map[string]int64{}
	var t string
	var n int64
	_, err := pgx.ForEachRow(rows, []any{&t, &n}, func() error {
		sizes[t] = n
		return nil
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.read = time.Now()
	if err != nil {
		// Kept as they were; read again at the next For after sizesAge.
		if b.closing.Err() == nil {
			b.logger.Warn("db: reading the tables' sizes failed", "error", err)
		}
		return
	}
	for t, n := range sizes {
		if was := b.sizes[t]; was < b.minBytes && n >= b.minBytes {
			b.logger.Info("db: a table has grown: batches over it keep their plans", "table", t, "bytes", n)
		}
		b.sizes[t] = n
	}
}

// Measured reads the tables' sizes now (tests) and answers For(tables...).
func (b *Batches) Measured(tables ...string) *pgxpool.Pool {
	b.For(tables...)
	b.measure()
	return b.For(tables...)
}

// PlanMode is the mode to run a batched statement in on q: prepared, its
// generic plan kept, on a connection of kept plans (Batches), and planned
// for each execution with the batch's own arrays anywhere else
// (PlannedEachTime), where a kept plan could scan whole tables.
func PlanMode(q Querier) pgx.QueryExecMode {
	var cfg *pgx.ConnConfig
	switch q := q.(type) {
	case *pgxpool.Pool:
		cfg = q.Config().ConnConfig
	case pgx.Tx:
		if c := q.Conn(); c != nil {
			cfg = c.Config()
		}
	}
	if cfg != nil && cfg.RuntimeParams["plan_cache_mode"] == keptPlanSettings["plan_cache_mode"] {
		return pgx.QueryExecModeCacheStatement
	}
	return PlannedEachTime
}
