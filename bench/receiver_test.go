package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/webhooks"
)

// The receiver counts what the report says it counts: a valid first
// delivery once, a webhook-id again as a duplicate delivery, the same event
// of the same object under another webhook-id as an event delivered twice,
// a bad signature as invalid and a signed body naming no object as
// unreadable.
func TestReceiverCounts(t *testing.T) {
	r, err := startReceiver()
	require.NoError(t, err)
	t.Cleanup(r.close)
	secret, err := webhooks.NewSecret()
	require.NoError(t, err)
	r.setSecret(secret)
	post := func(id, body, signWith string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, r.url, strings.NewReader(body))
		require.NoError(t, err)
		webhooks.SignHeaders(req.Header, []string{signWith}, id, time.Now(), []byte(body))
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	success := `{"event":"payment.success","timestamp":1,"data":{"payment":{"id":"pay_a"}}}`
	require.Equal(t, http.StatusOK, post("log-1", success, secret))
	require.Equal(t, http.StatusOK, post("log-1", success, secret))
	require.Equal(t, http.StatusOK, post("log-2", success, secret))
	require.Equal(t, http.StatusOK, post("log-3", `{"event":"payment.created","timestamp":1,"data":{"payment":{"id":"pay_a"}}}`, secret))
	require.Equal(t, http.StatusOK, post("log-4", `{"event":"refund.processed","timestamp":1,"data":{"refund":{"id":"rfnd_a"}}}`, secret))
	require.Equal(t, http.StatusUnauthorized, post("log-5", success, "whsec_other"))
	require.Equal(t, http.StatusBadRequest, post("log-6", `{"event":"payment.success","timestamp":1,"data":{}}`, secret))
	require.Equal(t, http.StatusBadRequest, post("log-7", `not json`, secret))
	require.Equal(t, http.StatusOK, post("log-7", `not json`, secret), "a retry of it is a duplicate")
	for _, id := range []string{"log-8", "log-9"} {
		require.Equal(t, http.StatusOK, post(id, `{"event":"webhook.test","timestamp":1,"data":{"message":"hello"}}`, secret))
	}

	// pay_a has both its events; rfnd_a lacks its refund.created, pay_b its
	// outcome.
	require.Equal(t, http.StatusOK, post("log-10", `{"event":"payment.created","timestamp":1,"data":{"payment":{"id":"pay_b"}}}`, secret))

	require.Equal(t, ReceiverStats{Events: map[string]int{"payment.success": 1, "payment.created": 2, "refund.processed": 1, "webhook.test": 2},
		Invalid: 1, Duplicates: 2, Twice: 1, Unreadable: 2, Unpaired: 2}, r.stats())
	require.Len(t, r.arrivals([]string{"pay_a"}, false), 1)
	require.False(t, r.arrivals([]string{"pay_a"}, false)[0].IsZero())
	require.False(t, r.arrivals([]string{"rfnd_a"}, true)[0].IsZero())
}
