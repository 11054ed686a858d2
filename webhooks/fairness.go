package webhooks

import (
	"context"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultMaxPerEndpoint is how many deliveries to one endpoint a process
// makes at once unless configured otherwise: a quarter of the default 200
// webhook workers, so that a hanging endpoint leaves three quarters to
// everyone else, while a busy merchant with a fast endpoint is not held back.
const DefaultMaxPerEndpoint = 50

// A delivery whose endpoint is at its bound snoozes (a River snooze spends
// no attempt and holds no worker slot) for about twice the endpoint's recent
// attempt time, at random so that waiting deliveries do not all come back
// together, within [minBusyWait, maxBusyWait]: a fast endpoint's backlog is
// back within a fetch or two, while a hanging one's does not come back often
// (each snooze costs an update of the job); up to 5 s the job stays
// available and is fetched on time.
const (
	minBusyWait = 50 * time.Millisecond
	maxBusyWait = 5 * time.Second
)

// maxTurnWait bounds how long a delivery waits in the process for a slot
// of an endpoint at its bound instead of snoozing: only an endpoint whose
// recent attempts took at most half of it is waited for, for twice that
// time. A fast endpoint frees a slot within moments, and a snooze costs the
// job an update, a fetch and a read again; the worker is held at most this
// long, so a slow or hanging endpoint (whose deliveries snooze at once)
// still cannot hold the others' workers.
const maxTurnWait = 20 * time.Millisecond

// endpointLimiter bounds the deliveries in flight per endpoint (scheme, host
// and port), so that one merchant's slow or hanging endpoint holds at most
// that many of the webhook workers and everyone else's deliveries keep
// theirs. The bound is per process: with several worker processes an
// endpoint can hold the bound in each.
type endpointLimiter struct {
	mu        sync.Mutex
	endpoints map[string]*endpointState
	// turnWait replaces maxTurnWait when set (tests).
	turnWait time.Duration
}

type endpointState struct {
	active int
	// took is the recent attempt time (a moving average; zero until one
	// finished), which sets how long a delivery waits when the endpoint is
	// at its bound.
	took time.Duration
	// turns are the deliveries waiting for a slot, first come first
	// served: a release hands its slot to the first, by closing its channel.
	turns []chan struct{}
}

// acquire takes a slot for rawURL's endpoint; when the endpoint already has
// limit (0: DefaultMaxPerEndpoint) deliveries in flight, it waits for one
// if the endpoint is fast (maxTurnWait), and otherwise, or when none came,
// ok is false and wait is how long to snooze. release must be called once,
// when the attempt is over.
func (l *endpointLimiter) acquire(ctx context.Context, rawURL string, limit int) (release func(), wait time.Duration, ok bool) {
	turnWait := l.turnWait
	if turnWait == 0 {
		turnWait = maxTurnWait
	}
	release, took, ok := l.take(ctx, rawURL, limit, func(took time.Duration, _ int) time.Duration {
		if took == 0 || 2*took > turnWait {
			return 0 // no attempt has finished yet (it may be hanging), or slow: no wait
		}
		return 2 * took
	})
	if ok {
		return release, 0, true
	}
	if took == 0 {
		took = time.Second
	}
	return nil, busySnooze(took), false
}

// acquireWithin takes a slot for rawURL's endpoint, waiting up to wait for
// one when it is at its bound, unless its recent attempts took slow or
// more, or none has finished yet (it may be hanging) and maxWaiting others
// wait already: for an attempt whose other way to wait costs more (a first
// attempt made without a job, which would be given back as one), and
// which must not hold its slot for a slow endpoint.
func (l *endpointLimiter) acquireWithin(ctx context.Context, rawURL string, limit int, wait, slow time.Duration,
	maxWaiting int) (release func(), ok bool) {
	release, _, ok = l.take(ctx, rawURL, limit, func(took time.Duration, waiting int) time.Duration {
		if took >= slow || (took == 0 && waiting >= maxWaiting) {
			return 0
		}
		return wait
	})
	return release, ok
}

// take takes a slot for rawURL's endpoint; when the endpoint already has
// limit (0: DefaultMaxPerEndpoint) deliveries in flight, it waits for one,
// first come first served, as long as wait says given the endpoint's recent
// attempt time (took, zero until one finished), which it returns, and the
// deliveries waiting already.
func (l *endpointLimiter) take(ctx context.Context, rawURL string, limit int,
	wait func(took time.Duration, waiting int) time.Duration) (release func(), took time.Duration, ok bool) {
	key, limit := endpointKey(rawURL), endpointBound(limit)
	l.mu.Lock()
	if l.endpoints == nil {
		l.endpoints = map[string]*endpointState{}
	}
	e := l.endpoints[key]
	if e == nil {
		e = &endpointState{}
		l.endpoints[key] = e
	}
	if e.active < limit {
		e.active++
		l.mu.Unlock()
		return l.releaser(e), 0, true
	}
	took = e.took
	d := wait(took, len(e.turns))
	if d <= 0 {
		l.mu.Unlock()
		return nil, took, false
	}
	turn := make(chan struct{})
	e.turns = append(e.turns, turn)
	l.mu.Unlock()

	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-turn:
		return l.releaser(e), took, true
	case <-timer.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.Index(e.turns, turn); i >= 0 {
		e.turns = slices.Delete(e.turns, i, i+1)
		return nil, took, false
	}
	// Handed a slot just as the wait ended: it is ours to use.
	return l.releaser(e), took, true
}

// releaser is the release of one slot of e, measured from now.
func (l *endpointLimiter) releaser(e *endpointState) func() {
	start := time.Now()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		took := max(time.Since(start), time.Microsecond)
		if e.took != 0 {
			took = (3*e.took + took) / 4
		}
		// took is kept when the endpoint goes idle (one entry per endpoint
		// this process delivered to), so its next burst starts from it.
		e.took = took
		if len(e.turns) > 0 {
			close(e.turns[0]) // the slot passes on: active is unchanged
			e.turns = e.turns[1:]
			return
		}
		e.active--
	}
}

// endpointBound is a configured bound per endpoint, limit, or
// DefaultMaxPerEndpoint when it is not set (0).
func endpointBound(limit int) int {
	if limit <= 0 {
		return DefaultMaxPerEndpoint
	}
	return limit
}

// endpointKey is what deliveries share a bound by: the URL's scheme and
// host with its port; paths of one server share its capacity.
func endpointKey(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// busySnooze is a random wait around twice took, within [minBusyWait,
// maxBusyWait].
func busySnooze(took time.Duration) time.Duration {
	d := took + rand.N(2*took+1)
	return min(max(d, minBusyWait), maxBusyWait)
}
