package app_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/merchants"
)

// Stalled clients: thousands of requests that never finish (a body that
// stops short, a header that never ends, with and without credentials) hold
// connections on the real server, and /health and new requests are still
// answered; every stalled one is cut once the read timeouts pass.
func TestStalledClientsDoNotStopTheGateway(t *testing.T) {
	t.Parallel()
	const stalled = 2000
	a, logs := newLoggedApp(t, func(c *app.Config) {
		c.HTTPReadHeaderTimeout = 2 * time.Second
		c.HTTPReadTimeout = 3 * time.Second
		c.HTTPIdleTimeout = 3 * time.Second
		c.HTTPMaxConnections = 2*stalled + 100
	})
	// The worker's first heartbeat makes /health healthy.
	waitFor(t, func() bool { return apptest.Do(t, a.Echo, http.MethodGet, "/health", "", nil).Code == http.StatusOK })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := app.NewHTTPServer(a.Config, a.Echo, slog.New(slog.DiscardHandler))
	go srv.Serve(app.LimitListener(ln, a.Config.MaxConnections())) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	creds := fmt.Sprintf("X-Api-Key: %s\r\nX-Api-Secret: %s\r\n", merchants.TestMerchantKey, merchants.TestMerchantSecret)
	starts := []string{
		// A body that stops short of its Content-Length.
		"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\n" + creds + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"amount\":",
		// The same without credentials.
		"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"order_id\":",
		// A chunked body that never ends.
		"PUT /api/v1/webhooks/config HTTP/1.1\r\nHost: x\r\n" + creds + "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"web",
		// A header that never ends.
		"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\n" + creds,
	}
	conns := make([]net.Conn, 0, stalled)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range stalled {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err, "dial #%d", i)
		conns = append(conns, c)
		_, err = io.WriteString(c, starts[i%len(starts)])
		require.NoError(t, err)
	}

	// While they are held, the gateway answers.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/orders", strings.NewReader(`{"amount":50000}`))
	require.NoError(t, err)
	req.Header = apptest.TestMerchant()
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	// Every stalled request is cut: the server answers or closes it. The
	// wait is bounded well past the timeouts; a connection still open then
	// is one the server would hold forever.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held int
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				held++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Zero(t, held, "stalled requests still held by the server")

	// And it still answers.
	resp, err = client.Get("http://" + addr + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireNoSecretsInLog(t, logs.String(), merchants.TestMerchantSecret, merchants.TestMerchantWebhookSecret)
}
