package db

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// gatedBatcher's run records each batch and blocks until gate gives way.
type gatedBatcher struct {
	*Batcher[int, string]
	gate    chan struct{}
	mu      sync.Mutex
	batches [][]int
}

func newGatedBatcher(max, flights int, fail func([]int) error) *gatedBatcher {
	g := &gatedBatcher{gate: make(chan struct{})}
	g.Batcher = NewBatcher(max, flights, time.Minute, func(_ context.Context, reqs []int) ([]string, error) {
		g.mu.Lock()
		g.batches = append(g.batches, slices.Clone(reqs))
		g.mu.Unlock()
		<-g.gate
		if fail != nil {
			if err := fail(reqs); err != nil {
				return nil, err
			}
		}
		out := make([]string, len(reqs))
		for i, r := range reqs {
			out[i] = fmt.Sprint("answer ", r)
		}
		return out, nil
	})
	return g
}

// waitQueued waits until n requests wait for the next batch.
func (g *gatedBatcher) waitQueued(t *testing.T, n int) {
	t.Helper()
	for {
		g.mu.Lock()
		g.Batcher.mu.Lock()
		queued := len(g.queue)
		g.Batcher.mu.Unlock()
		g.mu.Unlock()
		if queued == n {
			return
		}
		runtime.Gosched()
	}
}

// waitBatches waits until n batches have started.
func (g *gatedBatcher) waitBatches(n int) {
	for {
		g.mu.Lock()
		started := len(g.batches)
		g.mu.Unlock()
		if started >= n {
			return
		}
		runtime.Gosched()
	}
}

func (g *gatedBatcher) doAll(reqs []int) (map[int]string, map[int]error) {
	var mu sync.Mutex
	res, errs := map[int]string{}, map[int]error{}
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Go(func() {
			s, err := g.Do(context.Background(), r)
			mu.Lock()
			res[r], errs[r] = s, err
			mu.Unlock()
		})
	}
	wg.Wait()
	return res, errs
}

// secondBatch runs request 0 alone, queues reqs behind it, then lets the
// batches run, and returns reqs' answers: reqs make the second batch.
func (g *gatedBatcher) secondBatch(t *testing.T, reqs []int) (map[int]string, map[int]error) {
	t.Helper()
	go g.Do(context.Background(), 0)
	g.waitBatches(1)
	type result struct {
		res  map[int]string
		errs map[int]error
	}
	done := make(chan result)
	go func() {
		res, errs := g.doAll(reqs)
		done <- result{res, errs}
	}()
	g.waitQueued(t, len(reqs))
	close(g.gate)
	r := <-done
	return r.res, r.errs
}

func TestBatcherGathersWhatArrivesWhileABatchRuns(t *testing.T) {
	g := newGatedBatcher(4, 1, nil)
	first := make(chan string)
	go func() {
		s, _ := g.Do(context.Background(), 0)
		first <- s
	}()
	g.waitBatches(1) // the idle batcher ran the first request at once, alone
	done := make(chan map[int]string)
	go func() {
		res, _ := g.doAll([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
		done <- res
	}()
	g.waitQueued(t, 10)
	close(g.gate)
	if s := <-first; s != "answer 0" {
		t.Fatalf("first request answered %q", s)
	}
	res := <-done
	for r := 1; r <= 10; r++ {
		if res[r] != fmt.Sprint("answer ", r) {
			t.Errorf("request %d answered %q", r, res[r])
		}
	}
	var sizes []int
	for _, b := range g.batches {
		sizes = append(sizes, len(b))
	}
	// One flight: the ten that waited went in batches of at most four.
	if !slices.Equal(sizes, []int{1, 4, 4, 2}) {
		t.Fatalf("batch sizes %v, want [1 4 4 2]", sizes)
	}
}

func TestBatcherRunsUpToFlightsBatchesAtOnce(t *testing.T) {
	g := newGatedBatcher(10, 2, nil)
	done := make(chan struct{}, 2)
	for r := range 2 {
		go func() {
			g.Do(context.Background(), r)
			done <- struct{}{}
		}()
		g.waitBatches(r + 1) // the second ran while the first had not finished
	}
	close(g.gate)
	<-done
	<-done
	if len(g.batches) != 2 {
		t.Fatalf("batches %v, want two of one", g.batches)
	}
}

// A batch that stalls holds up the requests queued behind it only until
// the oldest has waited the stall: then a spare batch takes them, runs
// that one batch and ends. No more spares run at once than allowed: a
// request that queues while they are all held waits for one to end, and
// is then taken by a spare while the flight is still held.
func TestBatcherStartsASpareWhenABatchStalls(t *testing.T) {
	ctx := context.Background()
	held := map[int]chan struct{}{0: make(chan struct{}), 1: make(chan struct{})}
	var mu sync.Mutex
	var running, most int
	b := NewBatcher(10, 1, time.Minute, func(_ context.Context, reqs []int) ([]string, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		out := make([]string, len(reqs))
		for i, r := range reqs {
			if gate, ok := held[r]; ok {
				<-gate
			}
			out[i] = fmt.Sprint("answer ", r)
		}
		return out, nil
	}).WithSpares(1, time.Millisecond, nil)
	do := func(r int) <-chan string {
		answer := make(chan string, 1)
		go func() {
			s, err := b.Do(ctx, r)
			if err != nil {
				s = err.Error()
			}
			answer <- s
		}()
		return answer
	}
	awaitRunning := func(n int) {
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return running == n },
			10*time.Second, time.Millisecond, "%d batches running", n)
	}
	answer := func(c <-chan string) string {
		select {
		case s := <-c:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no answer: the request waits behind a held batch")
			return ""
		}
	}

	zero := do(0) // the flight takes it, and is held
	awaitRunning(1)
	one := do(1) // queued; a spare takes it, and is held too
	awaitRunning(2)
	two := do(2)
	require.Eventually(t, func() bool { return b.Queued() == 1 }, 10*time.Second, time.Millisecond,
		"the one spare is taken: the request waits")
	time.Sleep(20 * time.Millisecond) // twenty stalls, for a second spare to show in most
	require.Equal(t, 1, b.Queued(), "the one spare is taken: the request waits")
	close(held[1])
	require.Equal(t, "answer 1", answer(one))
	require.Equal(t, "answer 2", answer(two), "a spare took it while the flight is held")
	select {
	case s := <-zero:
		t.Fatalf("the held batch answered %q", s)
	default:
	}
	close(held[0])
	require.Equal(t, "answer 0", answer(zero))
	require.Equal(t, 2, most, "the flight and one spare at most")
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.running == 0 && b.spare == 0
	}, 10*time.Second, time.Millisecond, "the flight and the spares ended")
}

// A failed batch is run again request by request: only the request that
// fails it gets the error.
func TestBatcherRunsAFailedBatchOneByOne(t *testing.T) {
	boom := errors.New("boom")
	g := newGatedBatcher(10, 1, func(reqs []int) error {
		if slices.Contains(reqs, 3) {
			return boom
		}
		return nil
	})
	res, errs := g.secondBatch(t, []int{1, 2, 3})
	require.ErrorIs(t, errs[3], boom)
	for _, n := range []int{1, 2} {
		require.NoError(t, errs[n])
		require.Equal(t, fmt.Sprint("answer ", n), res[n])
	}
	require.Len(t, g.batches, 5, "the first, the failed batch, then each of its requests alone")
}

// A batch is not run again one request at a time when the database is
// unavailable (every request would fail alike), nor when its COMMIT may
// have committed (its requests would be carried out twice): the batch's
// error is everyone's.
func TestBatcherDoesNotRetryAlone(t *testing.T) {
	for name, failure := range map[string]error{
		"unavailable": &net.OpError{Op: "dial", Err: errors.New("connection refused")},
		// A FATAL that IsUnavailable does not know.
		"commit unknown": fmt.Errorf("%w: %w", ErrCommitUnknown, &pgconn.PgError{Severity: "FATAL", Code: "XX000"}),
	} {
		t.Run(name, func(t *testing.T) {
			g := newGatedBatcher(10, 1, func(reqs []int) error {
				if len(reqs) > 1 {
					return failure
				}
				return nil
			})
			_, errs := g.secondBatch(t, []int{1, 2})
			for n, err := range errs {
				require.ErrorIs(t, err, failure, "request %d", n)
			}
			require.Len(t, g.batches, 2, "no request was run again alone")
		})
	}
}

// A callback of a batch's committed transaction that panics fails the
// batch as ErrCommitUnknown, after the transaction's other callbacks ran:
// its requests are not run again one at a time, which would carry them out
// twice (a second refund).
func TestBatcherDoesNotRunACommittedBatchAgain(t *testing.T) {
	var ran atomic.Int32
	g := newGatedBatcher(10, 1, func(reqs []int) error {
		if len(reqs) > 1 {
			tx := &trackedTx{}
			end := Track(tx)
			AfterCommit(tx, func() { panic("after the commit") })
			AfterCommit(tx, func() { ran.Add(1) })
			end(Committed)
		}
		return nil
	})
	_, errs := g.secondBatch(t, []int{1, 2})
	for n, err := range errs {
		require.ErrorIs(t, err, ErrCommitUnknown, "request %d", n)
		require.ErrorContains(t, err, "after the commit")
	}
	require.Len(t, g.batches, 2, "no request was run again alone")
	require.EqualValues(t, 1, ran.Load(), "the other callback ran")
}

// trackedTx is a transaction for Track: its callbacks are all it has.
type trackedTx struct{ pgx.Tx }

// A panic fails the batch and is logged, with its stack, through the
// batcher's logger (the process's, JSON in production).
func TestBatcherPanicAndShortAnswerAreErrors(t *testing.T) {
	var logged bytes.Buffer
	b := NewBatcher(10, 1, time.Minute, func(_ context.Context, reqs []int) ([]int, error) {
		if reqs[0] == 1 {
			panic("bad")
		}
		return nil, nil
	}).WithLogger(slog.New(slog.NewJSONHandler(&logged, nil)))
	if _, err := b.Do(context.Background(), 1); err == nil {
		t.Fatal("a panicking batch answered without error")
	}
	var line struct{ Msg, Panic, Stack string }
	if err := json.Unmarshal(logged.Bytes(), &line); err != nil || line.Msg != "batch panicked" || line.Panic != "bad" ||
		!strings.Contains(line.Stack, "TestBatcherPanicAndShortAnswerAreErrors") {
		t.Fatalf("the panic was not logged through the batcher's logger: %v %q", err, logged.String())
	}
	if _, err := b.Do(context.Background(), 2); err == nil {
		t.Fatal("a batch with no answers answered without error")
	}
}

func TestBatcherCallerStopsWaitingWhenItsContextEnds(t *testing.T) {
	g := newGatedBatcher(10, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	// The request was taken into a batch all the same, which still runs.
	g.waitBatches(1)
	close(g.gate)
	if s, err := g.Do(context.Background(), 2); err != nil || s != "answer 2" {
		t.Fatalf("next request: %q, %v", s, err)
	}
}

func TestDistinctKeepsTheFirstOfAKeyInOrder(t *testing.T) {
	items := []string{"b1", "a1", "b2", "c1", "a2"}
	key := func(s string) byte { return s[0] }
	unique, first := Distinct(items, key, func(a, b string) int { return int(a[0]) - int(b[0]) })
	require.Equal(t, []string{"a1", "b1", "c1"}, unique)
	require.Equal(t, map[byte]int{'a': 1, 'b': 0, 'c': 3}, first)
	unique, _ = Distinct(items, key, nil)
	require.Equal(t, []string{"b1", "a1", "c1"}, unique, "unsorted without cmp")
}
