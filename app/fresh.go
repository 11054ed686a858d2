package app

import (
	"context"
	"sync"
)

// fresh runs one function for concurrent callers, at most once at a time,
// and never answers a caller with a run that started before it called:
// callers that arrive while a run is going share the next one. So an
// unauthenticated route that counts a large table (GET
// /api/v1/test/jobs/status) costs the database one count at a time per
// process however many ask, and a caller that polls until the queue is
// empty is never shown an older count than its request.
type fresh[T any] struct {
	// run bounds its own time: it is shared, so no caller's context is
	// given to it.
	run func(context.Context) (T, error)

	mu      sync.Mutex
	running bool
	next    *round[T] // the run the callers arriving now will share
}

type round[T any] struct {
	done    chan struct{}
	v       T
	err     error
	callers int // that asked for it: the tests wait for them
}

// get waits for the next run, or for ctx.
func (f *fresh[T]) get(ctx context.Context) (T, error) {
	f.mu.Lock()
	if f.next == nil {
		f.next = &round[T]{done: make(chan struct{})}
	}
	r := f.next
	r.callers++
	if !f.running {
		f.start()
	}
	f.mu.Unlock()
	select {
	case <-r.done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}

// start runs f.next, then the one queued behind it meanwhile, if any. f.mu
// is held.
func (f *fresh[T]) start() {
	r := f.next
	f.next, f.running = nil, true
	go func() {
		r.v, r.err = f.run(context.Background())
		close(r.done)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.running = false
		if f.next != nil {
			f.start()
		}
	}()
}
