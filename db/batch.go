package db

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Batcher gathers the requests of many goroutines into batches, each run
// by one call of run (one statement, or one transaction, for all of them):
// group commit. A request that finds no batch running starts one at once,
// so an idle batcher adds no wait; the requests that arrive while a batch
// runs make the next one. At most flights batches run at once (and the
// spares of WithSpares), so the busier the workers, the larger the batches
// and the fewer the statements and commits per item.
//
// run answers each request at the same index, or fails the whole batch.
// A failed batch is run again one request at a time, so that one bad
// request (a constraint it breaks) fails only its own caller, instead of
// every job of every batch it joins as it is retried; unless the database
// is unavailable, when each would fail alike, or the batch's COMMIT may
// have committed (ErrCommitUnknown), when its requests would be carried
// out twice (a second refund of one request). A caller handles its error as
// it would its own statement's (a job is run again, a request answers it). A batch and its
// retries share one context of their own, bounded by timeout: a queued
// request is carried out even when its caller has stopped waiting (or
// had, when it called Do), so run's work must be harmless to repeat, as
// every worker's conditional write is.
//
// A batch that stalls (it waits for a row another transaction holds, or
// for a database that has stopped answering) would hold up every request
// queued behind it until it ends. WithSpares bounds that: once the oldest
// queued request has waited stall, a spare flight takes it and the
// requests queued with it, runs that one batch and ends; at most spares of
// them at once. A healthy batcher's requests never wait that long, so its
// batches stay as large as its flights make them.
type Batcher[Req, Res any] struct {
	run     func(context.Context, []Req) ([]Res, error)
	max     int
	flights int
	timeout time.Duration
	spares  int
	stall   time.Duration
	onSpare func()       // counts a spare's start; nil: nothing
	logger  *slog.Logger // a panic's; nil: slog's default

	mu      sync.Mutex
	queue   []*batchCall[Req, Res]
	running int         // flights running
	spare   int         // spare flights running
	watch   *time.Timer // armed while requests queue behind busy flights
}

type batchCall[Req, Res any] struct {
	req    Req
	queued time.Time
	res    Res
	err    error
	done   chan struct{}
}

// NewBatcher returns a batcher of at most max requests a batch and flights
// batches at once, each run within timeout.
func NewBatcher[Req, Res any](max, flights int, timeout time.Duration, run func(context.Context, []Req) ([]Res, error)) *Batcher[Req, Res] {
	return &Batcher[Req, Res]{run: run, max: max, flights: flights, timeout: timeout}
}

// WithSpares lets up to spares further batches run at once, each started
// when the oldest queued request has waited stall (the type's doc), and
// then calls started (nil: none), under the batcher's lock: it must not
// call the batcher. Call it before the first Do.
func (b *Batcher[Req, Res]) WithSpares(spares int, stall time.Duration, started func()) *Batcher[Req, Res] {
	b.spares, b.stall, b.onSpare = spares, stall, started
	return b
}

// WithLogger has a batch's panic logged through l (the process's logger,
// JSON in production) rather than slog's default. Call it before the
// first Do.
func (b *Batcher[Req, Res]) WithLogger(l *slog.Logger) *Batcher[Req, Res] {
	b.logger = l
	return b
}

// Do runs req in a batch and returns its answer, or ctx's error when ctx
// ends first (req may then still be carried out).
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &batchCall[Req, Res]{req: req, queued: time.Now(), done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	start := b.running < b.flights
	if start {
		b.running++
	} else {
		b.watchLocked()
	}
	b.mu.Unlock()
	if start {
		go b.flight()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		select {
		case <-c.done: // answered as ctx ended: the answer, not ctx's error
			return c.res, c.err
		default:
			var zero Res
			return zero, ctx.Err()
		}
	}
}

// Queued is how many requests wait for a batch to take them (for tests
// that hold a batch and fill the next).
func (b *Batcher[Req, Res]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// flight runs batches until the queue is empty.
func (b *Batcher[Req, Res]) flight() {
	for {
		b.mu.Lock()
		calls := b.takeLocked()
		if calls == nil {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.runBatch(calls)
	}
}

// takeLocked takes the next batch off the queue: nil when it is empty.
func (b *Batcher[Req, Res]) takeLocked() []*batchCall[Req, Res] {
	n := min(len(b.queue), b.max)
	if n == 0 {
		return nil
	}
	calls := b.queue[:n:n]
	b.queue = b.queue[n:]
	return calls
}

// watchLocked arms the stall timer for the oldest queued request, unless
// there are no spares, it is armed already, or nothing queues.
func (b *Batcher[Req, Res]) watchLocked() {
	if b.spares == 0 || b.watch != nil || len(b.queue) == 0 {
		return
	}
	b.watch = time.AfterFunc(b.stall-time.Since(b.queue[0].queued), b.stalled)
}

// stalled starts a spare flight when the oldest queued request has waited
// stall and a spare is free, and watches the queue again while it is not
// empty. A spare that ends watches it too, so a stall that outlasts every
// spare is seen when one is free.
func (b *Batcher[Req, Res]) stalled() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watch = nil
	if len(b.queue) == 0 {
		return
	}
	if time.Since(b.queue[0].queued) >= b.stall {
		if b.spare >= b.spares {
			return
		}
		calls := b.takeLocked()
		b.spare++
		if b.onSpare != nil {
			b.onSpare()
		}
		go func() {
			b.runBatch(calls)
			b.mu.Lock()
			b.spare--
			b.watchLocked()
			b.mu.Unlock()
		}()
	}
	b.watchLocked()
}

func (b *Batcher[Req, Res]) runBatch(calls []*batchCall[Req, Res]) {
	reqs := make([]Req, len(calls))
	for i, c := range calls {
		reqs[i] = c.req
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	res, err := b.call(ctx, reqs)
	if err != nil && len(reqs) > 1 && ctx.Err() == nil && !IsUnavailable(err) && !errors.Is(err, ErrCommitUnknown) {
		for i, c := range calls {
			one, err := b.call(ctx, reqs[i:i+1])
			c.answer(one, err)
		}
		return
	}
	for i, c := range calls {
		if err != nil {
			c.answer(nil, err)
			continue
		}
		c.answer(res[i:i+1], nil)
	}
}

// answer gives the call the first of res, or err.
func (c *batchCall[Req, Res]) answer(res []Res, err error) {
	if err == nil {
		c.res = res[0]
	}
	c.err = err
	close(c.done)
}

// call runs one batch and checks that it answered every request; a panic
// fails the batch rather than the process, and is logged with its stack.
// One raised by a callback of a transaction that may have committed
// (CallbackPanic) fails it as ErrCommitUnknown: its work is not run again.
func (b *Batcher[Req, Res]) call(ctx context.Context, reqs []Req) (res []Res, err error) {
	defer func() {
		if p := recover(); p != nil {
			stack := debug.Stack()
			res, err = nil, fmt.Errorf("batch panicked: %v", p)
			if cp, ok := p.(*CallbackPanic); ok {
				stack = cp.PanicStack()
				if cp.Outcome != RolledBack {
					err = fmt.Errorf("%w: a callback after its commit panicked: %v", ErrCommitUnknown, cp.Value)
				}
			}
			cmp.Or(b.logger, slog.Default()).Error("batch panicked", "panic", fmt.Sprint(p), "stack", string(stack))
		}
	}()
	res, err = b.run(ctx, reqs)
	if err == nil && len(res) != len(reqs) {
		return nil, fmt.Errorf("batch of %d answered %d", len(reqs), len(res))
	}
	return res, err
}

// InTx is a batch's run that calls fn in one transaction of pool: the
// batch's use cases commit together, or none does. The transaction is
// pipelined (WithPipelinedTx): fn's first statement carries BEGIN, and its
// last writes (events, jobs) may travel with COMMIT.
func InTx[Req, Res any](pool *pgxpool.Pool, fn func(context.Context, pgx.Tx, []Req) ([]Res, error)) func(context.Context, []Req) ([]Res, error) {
	return func(ctx context.Context, reqs []Req) (res []Res, err error) {
		err = WithPipelinedTx(ctx, pool, func(tx pgx.Tx) error {
			res, err = fn(ctx, tx, reqs)
			return err
		})
		return res, err
	}
}

// Due returns the requests of a batch of API requests whose deadlines
// (zero: none) have not passed, with their indexes in reqs, and ctx bounded
// by the earliest of those deadlines: a batch neither does the work of a
// request already answered with an error, nor commits after the first
// request it would answer was answered so (unless its COMMIT was on its
// way). A batch cut off by that deadline answers each request the error.
func Due[Req any](ctx context.Context, reqs []Req, deadline func(Req) time.Time) (live []Req, at []int, bounded context.Context, cancel context.CancelFunc) {
	now := time.Now()
	var earliest time.Time
	for i, r := range reqs {
		d := deadline(r)
		if !d.IsZero() && !d.After(now) {
			continue
		}
		live, at = append(live, r), append(at, i)
		if !d.IsZero() && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	if earliest.IsZero() {
		bounded, cancel = context.WithCancel(ctx)
		return live, at, bounded, cancel
	}
	bounded, cancel = context.WithDeadline(ctx, earliest)
	return live, at, bounded, cancel
}

// Distinct returns a batch's items without repeats of a key (the first is
// kept: a job run twice at once names its row twice), sorted by cmp when
// it is not nil, so that every batch's statement meets its rows in one
// order; and, for each key, the index in items of the one kept.
func Distinct[T any, K comparable](items []T, key func(T) K, cmp func(a, b T) int) ([]T, map[K]int) {
	first := make(map[K]int, len(items))
	unique := make([]T, 0, len(items))
	for i, it := range items {
		k := key(it)
		if _, seen := first[k]; !seen {
			first[k] = i
			unique = append(unique, it)
		}
	}
	if cmp != nil {
		slices.SortFunc(unique, cmp)
	}
	return unique, first
}

// PlannedEachTime, given as a batched statement's first argument, has
// PostgreSQL plan it for each execution with the batch's own arrays and the
// tables' current size, instead of reusing the plan the connection cached
// (pgx prepares every statement; PostgreSQL keeps a generic plan after five
// executions). The batches look their rows up through unnest(…): a plan
// cached while the tables were small and had no statistics (a new install,
// the bench's first minute) joined by scanning every log of the merchant,
// 19,000–26,000 buffers for a batch of about 20 deliveries, where planning
// afresh finds them by primary key in about 100. Planning costs a fraction
// of a millisecond, once per batch: once the tables have grown, the hot
// paths' batches run on connections that keep a plan safe to keep
// (KeptPlans, PlanMode).
const PlannedEachTime = pgx.QueryExecModeCacheDescribe
