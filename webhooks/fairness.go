package webhooks

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultMaxPerEndpoint is how many deliveries to one endpoint a process
// makes at once unless configured otherwise.
const DefaultMaxPerEndpoint = 10

// A delivery whose endpoint is at its bound waits between busyWait and
// busyWaitMax before it is tried again, at random so that waiting deliveries
// do not all come back together. The wait is a River snooze: it spends no
// attempt and holds no worker slot, but each costs an update of the job, so
// a backlog of a hanging endpoint should not come back too often; up to 5 s
// the job stays available and is fetched on time.
const (
	busyWait    = time.Second
	busyWaitMax = 5 * time.Second
)

// endpointLimiter bounds the deliveries in flight per endpoint (scheme, host
// and port), so that one merchant's slow or hanging endpoint holds at most
// that many of the webhook workers and everyone else's deliveries keep
// theirs. The bound is per process: with several worker processes an
// endpoint can hold the bound in each.
type endpointLimiter struct {
	mu     sync.Mutex
	active map[string]int
}

// acquire takes a slot for rawURL's endpoint; ok is false when the endpoint
// already has limit (0: DefaultMaxPerEndpoint) deliveries in flight.
// release must be called once.
func (l *endpointLimiter) acquire(rawURL string, limit int) (release func(), ok bool) {
	key := endpointKey(rawURL)
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit <= 0 {
		limit = DefaultMaxPerEndpoint
	}
	if l.active[key] >= limit {
		return nil, false
	}
	if l.active == nil {
		l.active = map[string]int{}
	}
	l.active[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.active[key]--; l.active[key] <= 0 {
			delete(l.active, key)
		}
	}, true
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

// busySnooze is a random wait in [busyWait, busyWaitMax).
func busySnooze() time.Duration {
	return busyWait + rand.N(busyWaitMax-busyWait)
}
