package webhooks

import (
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
	const url = "https://merchant.example/hooks"
	var held []func()
	for range 3 {
		release, _, ok := l.acquire(url, 3)
		require.True(t, ok)
		held = append(held, release)
	}
	_, wait, ok := l.acquire(url+"/other-path", 3)
	require.False(t, ok, "paths of one server share its bound")
	require.GreaterOrEqual(t, wait, time.Second, "nothing finished yet: wait as for a hanging endpoint")
	require.LessOrEqual(t, wait, maxBusyWait)

	release, _, ok := l.acquire("https://other.example/", 3)
	require.True(t, ok, "another endpoint keeps its own bound")
	release()

	for _, release := range held {
		release() // each attempt took next to nothing
	}
	for range 3 {
		release, _, _ := l.acquire(url, 3)
		defer release()
	}
	_, wait, ok = l.acquire(url, 3)
	require.False(t, ok)
	require.Equal(t, minBusyWait, wait, "a fast endpoint's backlog comes back at once")
}
