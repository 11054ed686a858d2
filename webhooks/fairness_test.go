package webhooks

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The bound holds per endpoint; a delivery over it waits about as long as
// the endpoint takes: long while nothing has finished (it may hang), short
// once it has shown to answer fast.
func TestEndpointLimiterWaitsByTheEndpointsPace(t *testing.T) {
	t.Parallel()
	var l endpointLimiter
	ctx := context.Background()
	const url = "https://merchant.example/hooks"
	var held []func()
	for range 3 {
		release, _, ok := l.acquire(ctx, url, 3)
		require.True(t, ok)
		held = append(held, release)
	}
	_, wait, ok := l.acquire(ctx, url+"/other-path", 3)
	require.False(t, ok, "paths of one server share its bound")
	require.GreaterOrEqual(t, wait, time.Second, "nothing finished yet: wait as for a hanging endpoint")
	require.LessOrEqual(t, wait, maxBusyWait)

	release, _, ok := l.acquire(ctx, "https://other.example/", 3)
	require.True(t, ok, "another endpoint keeps its own bound")
	release()

	for _, release := range held {
		release() // each attempt took next to nothing
	}
	for range 3 {
		release, _, _ := l.acquire(ctx, url, 3)
		defer release()
	}
	_, wait, ok = l.acquire(ctx, url, 3)
	require.False(t, ok)
	require.Equal(t, minBusyWait, wait, "a fast endpoint's backlog comes back at once")
}

// waitingTurns is how many deliveries wait for a slot of url's endpoint.
func (l *endpointLimiter) waitingTurns(url string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.endpoints[endpointKey(url)].turns)
}

func (l *endpointLimiter) setTook(url string, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endpoints[endpointKey(url)].took = took
}

// A delivery over a fast endpoint's bound waits its turn in the process and
// is handed the next slot released, first come first served, instead of
// snoozing; the slot passes on, so the bound still holds.
func TestEndpointLimiterHandsAFastEndpointsSlotOn(t *testing.T) {
	t.Parallel()
	l := endpointLimiter{turnWait: 3 * time.Hour}
	ctx := context.Background()
	const url = "https://fast.example/"
	first, _, ok := l.acquire(ctx, url, 1)
	require.True(t, ok)
	// Waits of two hours (twice took, within turnWait): a waiter is only
	// ever answered by a release.
	l.setTook(url, time.Hour)
	type result struct {
		release func()
		ok      bool
	}
	got := make(chan result, 2)
	for n := range 2 {
		go func() {
			release, _, ok := l.acquire(ctx, url, 1)
			got <- result{release, ok}
		}()
		for l.waitingTurns(url) != n+1 {
			runtime.Gosched()
		}
	}
	first()
	r := <-got
	require.True(t, r.ok, "the first waiting delivery has the released slot")
	require.Equal(t, 1, l.waitingTurns(url), "the other still waits: the bound holds")
	r.release()
	r = <-got
	require.True(t, r.ok)
	r.release()
	release, _, ok := l.acquire(ctx, url, 1)
	require.True(t, ok, "the last release freed the slot")
	release()
}

// A delivery whose wait ends without a slot snoozes and leaves no turn
// behind; a slow endpoint's deliveries do not wait at all.
func TestEndpointLimiterWaitsOnlyBriefly(t *testing.T) {
	t.Parallel()
	var l endpointLimiter
	ctx := context.Background()
	const url = "https://brief.example/"
	held, _, ok := l.acquire(ctx, url, 1)
	require.True(t, ok)
	l.setTook(url, time.Microsecond)
	_, wait, ok := l.acquire(ctx, url, 1)
	require.False(t, ok, "no slot came within twice the endpoint's time")
	require.Equal(t, minBusyWait, wait)
	require.Zero(t, l.waitingTurns(url))

	l.setTook(url, maxTurnWait)
	_, wait, ok = l.acquire(ctx, url, 1)
	require.False(t, ok)
	require.GreaterOrEqual(t, wait, maxTurnWait, "a slow endpoint's delivery snoozes at once, by its pace")
	require.Zero(t, l.waitingTurns(url))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	l.setTook(url, time.Hour) // a wait of two hours, ended by the context alone
	l.turnWait = 3 * time.Hour
	_, _, ok = l.acquire(cancelled, url, 1)
	require.False(t, ok, "a stopping worker stops waiting")
	require.Zero(t, l.waitingTurns(url))

	held()
	release, _, ok := l.acquire(ctx, url, 1)
	require.True(t, ok, "the release freed the slot: no stale turn took it")
	release()
}

// A claimed first attempt waits for an endpoint at its bound that has
// answered fast, however many wait; for one none of whose attempts has
// finished, only while fewer than maxWaiting wait; for a slow one, not at
// all.
func TestEndpointLimiterWaitsWithinForFirstAttempts(t *testing.T) {
	t.Parallel()
	var l endpointLimiter
	ctx := context.Background()
	const url = "https://first.example/"
	held, _, ok := l.acquire(ctx, url, 1)
	require.True(t, ok)
	got := make(chan bool, 3)
	wait := func() {
		release, ok := l.acquireWithin(ctx, url, 1, time.Hour, time.Second, 1)
		if ok {
			release() // the turn passes on
		}
		got <- ok
	}

	go wait() // no attempt finished yet: one may wait
	for l.waitingTurns(url) != 1 {
		runtime.Gosched()
	}
	_, ok = l.acquireWithin(ctx, url, 1, time.Hour, time.Second, 1)
	require.False(t, ok, "a second would wait for an endpoint that may hang")

	l.setTook(url, time.Millisecond)
	go wait() // answered fast: any number wait
	go wait()
	for l.waitingTurns(url) != 3 {
		runtime.Gosched()
	}
	l.setTook(url, time.Second)
	_, ok = l.acquireWithin(ctx, url, 1, time.Hour, time.Second, 1)
	require.False(t, ok, "a slow endpoint is not waited for")

	held()
	for range 3 {
		require.True(t, <-got, "each waiting attempt had its turn")
	}
}
