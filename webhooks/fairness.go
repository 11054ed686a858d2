package webhooks

import (
	"math/rand/v2"
	"net/url"
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

// endpointLimiter bounds the deliveries in flight per endpoint (scheme, host
// and port), so that one merchant's slow or hanging endpoint holds at most
// that many of the webhook workers and everyone else's deliveries keep
// theirs. The bound is per process: with several worker processes an
// endpoint can hold the bound in each.
type endpointLimiter struct {
	mu     sync.Mutex
	active map[string]int
	// took is each endpoint's recent attempt time (a moving average), which
	// sets how long a delivery waits when the endpoint is at its bound.
	took map[string]time.Duration
}

// acquire takes a slot for rawURL's endpoint; when the endpoint already has
// limit (0: DefaultMaxPerEndpoint) deliveries in flight, ok is false and
// wait is how long to snooze. release must be called once, when the attempt
// is over.
func (l *endpointLimiter) acquire(rawURL string, limit int) (release func(), wait time.Duration, ok bool) {
	key := endpointKey(rawURL)
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit <= 0 {
		limit = DefaultMaxPerEndpoint
	}
	if l.active[key] >= limit {
		took, known := l.took[key]
		if !known {
			// No attempt has finished yet: it may be hanging.
			took = time.Second
		}
		return nil, busySnooze(took), false
	}
	if l.active == nil {
		l.active, l.took = map[string]int{}, map[string]time.Duration{}
	}
	l.active[key]++
	start := time.Now()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if took, known := l.took[key]; known {
			l.took[key] = (3*took + time.Since(start)) / 4
		} else {
			l.took[key] = time.Since(start)
		}
		// took is kept when the endpoint goes idle (one entry per endpoint
		// this process delivered to), so its next burst starts from it.
		if l.active[key]--; l.active[key] <= 0 {
			delete(l.active, key)
		}
	}, 0, true
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
