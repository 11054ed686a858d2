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
	// awaitedAge is how old they may grow while a table awaits its first
	// statistics: a batch planned without them may read a merchant's every
	// row for each of its own.
	awaitedAge = time.Second
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
// of four pairs of runs (docs/benchmarks-history.md, session 17).
//
// A kept plan cannot see a batch's size, nor how a table has grown since it
// was made. So on those connections the planner joins by nested loops over
// indexes; and since, on a nearly empty table, a scan of a whole index
// costs the planner no more than one probe of the primary key, kept plans
// wait until every table of the batch is GrownBytes large on disk (the
// size PostgreSQL's estimates follow, ANALYZE or not), when a probe of a
// primary or unique key beats every scan by far: every statement run on
// them must reach each table that way, and dbtest.PlansByUniqueKeys checks
// each plan on tables of that size or smaller.
//
// Size alone is not enough: they also wait for each table's statistics,
// taken at no less than half its size. Without them the planner takes
// each equality to select 0.5 % of a table (and with a few rows' worth,
// a merchant's rows to be unique), so that a scan of a merchant's range of
// a compact secondary index (by merchant and status, say, which ends with
// the id) costs it no more than the primary key's probe, and a batch of a
// hundred then reads its merchant's rows a hundred times
// (docs/benchmarks-history.md, session 19). So the measure analyzes such
// a table rather than wait a minute or more for autovacuum: plans on the
// main pool are made with the statistics too. A batch that reads no table
// (orders created without keys) keeps its plans from the first. The
// merchants are looked up by primary key and never measured: a process
// may serve one merchant for ever, and a plan that scans them is replaced
// by PostgreSQL once autovacuum analyzes a table that has grown a tenth.
type KeptPlans struct {
	main, kept *pgxpool.Pool
	closing    context.Context // cancelled by Close: a measure stops
	stop       context.CancelFunc
	logger     *slog.Logger

	// measuring lets one measure run at a time, so that each reads what
	// the one before analyzed, and a table is not analyzed twice over.
	measuring sync.Mutex

	mu       sync.Mutex
	minBytes int64            // GrownBytes, unless a test lowers it
	sizes    map[string]int64 // each table's size on disk, as last read; -1: not yet
	stats    map[string]bool  // whether the table has statistics, as last read
	analyzed map[string]int64 // the size of each table this process analyzed, when it did
	read     time.Time        // when the last measure started
	reading  bool             // a measure For started is running
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
		sizes: map[string]int64{}, stats: map[string]bool{}, analyzed: map[string]int64{}}, nil
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
// once each table is minBytes large and has statistics, by measures at
// most age() old (made again in the background when older), and the main
// pool before. On a nil KeptPlans (a service built on one pool) it is
// fallback.
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
		grown = grown && ok && n >= k.minBytes && k.stats[t]
	}
	if time.Since(k.read) > k.age() && !k.reading {
		k.reading = true
		go k.measure(true)
	}
	if grown {
		return k.kept
	}
	return k.main
}

// age is how old the measures For goes by may grow: awaitedAge while a
// table measured awaits statistics that an ANALYZE would give (it is
// empty, or has grown to twice the size this process analyzed it at),
// sizesAge after. Called with k.mu held.
func (k *KeptPlans) age() time.Duration {
	for t, size := range k.sizes {
		if size >= 0 && !k.stats[t] && size >= 2*k.analyzed[t] {
			return awaitedAge
		}
	}
	return sizesAge
}

// Measured reads the tables' sizes now (tests) and answers For(tables...).
func (k *KeptPlans) Measured(tables ...string) *pgxpool.Pool {
	k.For(nil, tables...)
	k.measure(false)
	return k.For(nil, tables...)
}

// measure reads the sizes of the tables For was asked about, and whether
// their statistics were taken at no less than half their size, after
// analyzing those that hold rows and have none such: statistics of a few
// rows make a merchant's rows look unique, which costs a scan of their
// range like a probe. A table paygate analyzed is analyzed again only at
// twice that size, so that one whose rows were all deleted (left without
// statistics) or that paygate's role does not own is not analyzed at every
// measure. One measure runs at a time (measuring).
func (k *KeptPlans) measure(background bool) {
	k.measuring.Lock()
	defer k.measuring.Unlock()
	k.mu.Lock()
	k.read = time.Now()
	tables := make([]string, 0, len(k.sizes))
	for t := range k.sizes {
		tables = append(tables, t)
	}
	k.mu.Unlock()
	sizes, stats, err := k.readTables(tables)
	var tried []string
	for t, size := range sizes {
		if err == nil && size > 0 && !stats[t] && k.toAnalyze(t, size) {
			tried = append(tried, t)
			k.analyze(t)
		}
	}
	if len(tried) > 0 && err == nil {
		sizes, stats, err = k.readTables(tables)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if background {
		k.reading = false
	}
	if err != nil {
		// Kept as they were; measured again at the next For after age().
		if k.closing.Err() == nil {
			k.logger.Warn("db: measuring the tables failed", "error", err)
		}
		return
	}
	for _, t := range tried {
		switch {
		case stats[t]:
			k.logger.Info("db: analyzed a table whose statistics were missing or taken at under half its size", "table", t)
		case sizes[t] < k.minBytes:
			// A new install's first rows are often still uncommitted when
			// a table is first measured (ANALYZE counts none of them), and
			// kept plans do not wait on a table this small: no warning.
			k.logger.Debug("db: analyzed a small table, which has no statistics yet: its rows are uncommitted or deleted (analyzed again at twice its size)", "table", t)
		default:
			k.logger.Warn("db: analyzed a table, which still has no statistics: its rows are deleted, or paygate's role does not own it (autovacuum's are awaited)", "table", t)
		}
	}
	for t, size := range sizes {
		was := k.sizes[t] >= k.minBytes && k.stats[t]
		k.sizes[t], k.stats[t] = size, stats[t]
		if !was && size >= k.minBytes && stats[t] {
			k.logger.Info("db: a table has grown: batches over it keep their plans", "table", t, "bytes", size)
		}
	}
}

// toAnalyze is whether a table of size with no statistics is to be
// analyzed now: not if this process analyzed it at more than half that
// size.
func (k *KeptPlans) toAnalyze(table string, size int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if size < 2*k.analyzed[table] {
		return false
	}
	k.analyzed[table] = size
	return true
}

// analyze runs ANALYZE on table, with a timeout of its own: a large table
// restored without statistics takes longer than a measure. It takes no
// lock that writes wait for; without the table's ownership it only warns.
func (k *KeptPlans) analyze(table string) {
	ctx, cancel := context.WithTimeout(k.closing, 5*time.Minute)
	defer cancel()
	if _, err := k.main.Exec(ctx, `ANALYZE `+pgx.Identifier{table}.Sanitize()); err != nil && k.closing.Err() == nil {
		k.logger.Warn("db: analyzing a table failed", "table", table, "error", err)
	}
}

// readTables reads each of tables' size on disk, and whether it has
// statistics taken (by pg_class.relpages, which ANALYZE and VACUUM set) at
// no less than half that size.
func (k *KeptPlans) readTables(tables []string) (sizes map[string]int64, stats map[string]bool, err error) {
	ctx, cancel := context.WithTimeout(k.closing, 10*time.Second)
	defer cancel()
	rows, _ := k.main.Query(ctx, `SELECT c.relname::text, pg_relation_size(c.oid),
		       EXISTS (SELECT FROM pg_stats s WHERE s.schemaname = current_schema() AND s.tablename = c.relname)
		       AND 2 * c.relpages::bigint * current_setting('block_size')::bigint >= pg_relation_size(c.oid)
		FROM pg_class c
		WHERE c.relname = ANY ($1) AND c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'`, tables)
	sizes, stats = map[string]int64{}, map[string]bool{}
	var t string
	var size int64
	var has bool
	_, err = pgx.ForEachRow(rows, []any{&t, &size, &has}, func() error {
		sizes[t], stats[t] = size, has
		return nil
	})
	return sizes, stats, err
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
