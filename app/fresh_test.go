package app

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// Callers that arrive while a run is going share the next run: one run at a
// time, and none answered by a run that started before it called.
func TestFreshSharesTheNextRun(t *testing.T) {
	t.Parallel()
	var runs, running atomic.Int64
	var overlapped atomic.Bool
	started := make(chan int64)
	release := make(chan struct{})
	f := &fresh[int64]{run: func(context.Context) (int64, error) {
		n := runs.Add(1)
		if running.Add(1) > 1 {
			overlapped.Store(true)
		}
		started <- n
		<-release
		running.Add(-1)
		return n, nil
	}}

	first := make(chan int64, 1)
	go func() {
		v, err := f.get(context.Background())
		require.NoError(t, err)
		first <- v
	}()
	require.Equal(t, int64(1), <-started)

	// Ten callers while run 1 is going.
	var wg sync.WaitGroup
	got := make(chan int64, 10)
	for range 10 {
		wg.Go(func() {
			v, err := f.get(context.Background())
			require.NoError(t, err)
			got <- v
		})
	}
	// A caller whose context ends leaves; the others still wait.
	ctx, cancel := context.WithCancelCause(context.Background())
	gone := errors.New("client gone")
	cancel(gone)
	_, err := f.get(ctx)
	require.ErrorIs(t, err, gone)

	// They wait for run 1 to end: the callers that came during it must not
	// see its counts. They are all queued for the next (the one that left
	// too).
	for queued := 0; queued < 11; runtime.Gosched() {
		f.mu.Lock()
		queued = f.next.callers
		f.mu.Unlock()
	}
	release <- struct{}{}
	require.Equal(t, int64(1), <-first)
	require.Equal(t, int64(2), <-started, "the callers' run starts once the first ends")
	release <- struct{}{}
	wg.Wait()
	close(got)
	for v := range got {
		require.Equal(t, int64(2), v)
	}
	require.Equal(t, int64(2), runs.Load(), "ten callers, one run")
	require.False(t, overlapped.Load(), "one run at a time")

	// A caller after that starts a run of its own.
	go func() { <-started; release <- struct{}{} }()
	v, err := f.get(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(3), v)
}
