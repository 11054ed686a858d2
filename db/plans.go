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
// (OpenKeptPlans): each statement's generic plan is made once and kept, and
// the planner is kept off sequential and bitmap scans and hash and merge
// joins (it still takes one where nothing else can run the statement:
// dbtest.PlansByUniqueKeys is what holds every plan to primary keys).
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

// keptConns are the connections of every pool of kept plans, so that
// PlanMode knows one from the *pgx.Conn under a transaction.
var keptConns sync.Map // *pgx.Conn → struct{}

// keptPools are the pools of kept plans.
var keptPools sync.Map // *pgxpool.Pool → struct{}

// KeptPlans gives each batch of db.Batcher's hot paths (payments and
// orders created, payments decided, deliveries read and recorded) the pool
// to run on: at first the pool of Open, where a batch's statements are
// planned for each execution with its own arrays (PlannedEachTime), and
// once its tables have grown, a pool of its own whose connections plan
// each statement once and keep the plan (PlanMode). Planning a batch cost
// the database about as much as running it at a moderate load, and kept
// plans made payment creation at 64 clients about 14 % faster on the means
// of four pairs of runs (BENCHMARKS.md, session 17).
//
// A kept plan cannot see a batch's size, nor how a table has grown since it
// was made. So on those connections the planner joins by nested loops over
// indexes; and since, on a nearly empty table, a scan of a whole index
// costs the planner no more than one probe of the primary key, kept plans
// wait until every table of the batch is GrownBytes large on disk (the
// size PostgreSQL's estimates follow, ANALYZE or not), when a probe of a
// primary or unique key beats every scan by far: every statement run on
// them must reach each table that way, and dbtest.PlansByUniqueKeys checks
// each plan on tables of that size or smaller. A batch that reads no table
// (orders created without keys) keeps its plans from the first. The
// merchants are looked up by primary key and never measured: a process
// may serve one merchant for ever, and a plan that scans them is replaced
// by PostgreSQL once autovacuum analyzes a table that has grown a tenth.
type KeptPlans struct {
	main, kept *pgxpool.Pool
	closing    context.Context // cancelled by Close: a measure stops
	stop       context.CancelFunc
	logger     *slog.Logger

	mu       sync.Mutex
	minBytes int64            // GrownBytes, unless a test lowers it
	sizes    map[string]int64 // each table's size on disk, as last read; -1: not yet
	read     time.Time        // when the last measure started
	reading  bool             // a measure For started is running
	started  int              // measures started
	applied  int              // the latest measure whose sizes are in sizes
}

// OpenKeptPlans connects the pool of kept plans beside main, the pool of
// Open (which it does not close); logger tells when a table has grown.
func OpenKeptPlans(ctx context.Context, url string, maxConns int32, main *pgxpool.Pool, logger *slog.Logger) (*KeptPlans, error) {
	kept, err := open(ctx, url, maxConns, true)
	if err != nil {
		return nil, err
	}
	closing, stop := context.WithCancel(context.Background())
	return &KeptPlans{main: main, kept: kept, closing: closing, stop: stop, logger: logger, minBytes: GrownBytes,
		sizes: map[string]int64{}}, nil
}

// Kept is the pool of kept plans.
func (k *KeptPlans) Kept() *pgxpool.Pool { return k.kept }

// Close closes the pool of kept plans.
func (k *KeptPlans) Close() {
	k.stop()
	k.kept.Close()
	keptPools.Delete(k.kept)
}

// SetMinBytes sets how large a table must be for kept plans (tests).
func (k *KeptPlans) SetMinBytes(n int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.minBytes = n
}

// For returns the pool a batch over tables runs on: that of kept plans
// once each table is minBytes large, by sizes at most sizesAge old (read
// again in the background when older), and the main pool before. On a
// nil KeptPlans (a service built on one pool) it is fallback.
func (k *KeptPlans) For(fallback *pgxpool.Pool, tables ...string) *pgxpool.Pool {
	if k == nil {
		return fallback
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	grown := true
	for _, t := range tables {
		n, ok := k.sizes[t]
		if !ok {
			k.sizes[t] = -1
		}
		grown = grown && ok && n >= k.minBytes
	}
	if time.Since(k.read) > sizesAge && !k.reading {
		k.reading = true
		go k.measure(true)
	}
	if grown {
		return k.kept
	}
	return k.main
}

// Measured reads the tables' sizes now (tests) and answers For(tables...).
func (k *KeptPlans) Measured(tables ...string) *pgxpool.Pool {
	k.For(nil, tables...)
	k.measure(false)
	return k.For(nil, tables...)
}

// measure reads the sizes of the tables For was asked about. Of measures
// that overlap, the one started last is kept, whichever ends last.
func (k *KeptPlans) measure(background bool) {
	k.mu.Lock()
	k.started++
	n := k.started
	k.read = time.Now()
	tables := make([]string, 0, len(k.sizes))
	for t := range k.sizes {
		tables = append(tables, t)
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(k.closing, 10*time.Second)
	defer cancel()
	rows, _ := k.main.Query(ctx, `SELECT relname::text, pg_relation_size(oid) FROM pg_class
		WHERE relname = ANY ($1) AND relnamespace = current_schema()::regnamespace AND relkind = 'r'`, tables)
	sizes := map[string]int64{}
	var t string
	var size int64
	_, err := pgx.ForEachRow(rows, []any{&t, &size}, func() error {
		sizes[t] = size
		return nil
	})
	k.mu.Lock()
	defer k.mu.Unlock()
	if background {
		k.reading = false
	}
	if err != nil {
		// Kept as they were; read again at the next For after sizesAge.
		if k.closing.Err() == nil {
			k.logger.Warn("db: reading the tables' sizes failed", "error", err)
		}
		return
	}
	if n < k.applied {
		return // a later measure's sizes are in already
	}
	k.applied = n
	for t, size := range sizes {
		if was := k.sizes[t]; was < k.minBytes && size >= k.minBytes {
			k.logger.Info("db: a table has grown: batches over it keep their plans", "table", t, "bytes", size)
		}
		k.sizes[t] = size
	}
}

// PlanMode is the mode to run a batched statement in on q: prepared, its
// generic plan kept, on a connection of kept plans (KeptPlans), and
// planned for each execution with the batch's own arrays anywhere else
// (PlannedEachTime), where a kept plan could scan whole tables.
func PlanMode(q Querier) pgx.QueryExecMode {
	var c *pgx.Conn
	switch q := q.(type) {
	case *pgxpool.Pool:
		if _, kept := keptPools.Load(q); kept {
			return pgx.QueryExecModeCacheStatement
		}
	case pgx.Tx:
		c = q.Conn()
	}
	if c != nil {
		if _, kept := keptConns.Load(c); kept {
			return pgx.QueryExecModeCacheStatement
		}
	}
	return PlannedEachTime
}
