package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client is the one HTTP client every phase shares, authenticated as the
// merchant, with an idle connection per concurrent caller so that no phase
// measures TCP handshakes.
type client struct {
	base, key, secret string
	http              *http.Client
}

func newClient(base, key, secret string, conc int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(2*conc, 1024)
	tr.MaxIdleConnsPerHost = max(2*conc, 1024)
	return &client{base: strings.TrimRight(base, "/"), key: key, secret: secret,
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do sends one request and decodes a 2xx body into out. A transport failure
// is an error; any answer, whatever its status, is not.
func (c *client) do(ctx context.Context, method, path string, body any, idemKey string, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(c.key, c.secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *client) get(ctx context.Context, path string, out any) (int, error) {
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *client) createOrder(ctx context.Context, i int) (int, string, error) {
	var o struct{ ID string }
	status, err := c.do(ctx, http.MethodPost, "/api/v1/orders",
		map[string]any{"amount": 50000, "currency": "INR", "receipt": "bench_" + strconv.Itoa(i)}, "", &o)
	return status, o.ID, err
}

// createPayment pays orderID by UPI, with an Idempotency-Key when idem.
func (c *client) createPayment(ctx context.Context, orderID string, idem bool) (int, string, error) {
	key := ""
	if idem {
		key = "bench-" + orderID
	}
	var p struct{ ID string }
	status, err := c.do(ctx, http.MethodPost, "/api/v1/payments",
		map[string]any{"order_id": orderID, "method": "upi", "vpa": "bench@paytm"}, key, &p)
	return status, p.ID, err
}

func (c *client) createRefund(ctx context.Context, paymentID string, amount int) (int, string, error) {
	var r struct{ ID string }
	status, err := c.do(ctx, http.MethodPost, "/api/v1/payments/"+paymentID+"/refunds",
		map[string]any{"amount": amount, "reason": "bench"}, "", &r)
	return status, r.ID, err
}

// configureWebhook points the merchant's webhook at the receiver and gives
// the receiver the signing secret.
func (c *client) configureWebhook(ctx context.Context, r *receiver) error {
	var cfg struct {
		WebhookSecret string `json:"webhook_secret"`
	}
	if status, err := c.do(ctx, http.MethodPut, "/api/v1/webhooks/config", map[string]any{"webhook_url": r.url}, "", &cfg); err != nil || status != http.StatusOK {
		return fmt.Errorf("PUT /api/v1/webhooks/config: status %d, %v", status, err)
	}
	if cfg.WebhookSecret == "" {
		if status, err := c.get(ctx, "/api/v1/webhooks/config", &cfg); err != nil || status != http.StatusOK {
			return fmt.Errorf("GET /api/v1/webhooks/config: status %d, %v", status, err)
		}
	}
	r.setSecret(cfg.WebhookSecret)
	return nil
}

// runPhase runs do from conc workers (closed loop: each sends its next
// request when the last one answered), each call with the next index, until
// dur has passed (if dur > 0) or count calls were made (if count > 0). A
// request in flight at the deadline finishes and counts.
func runPhase(ctx context.Context, name string, conc int, dur time.Duration, count int, do func(i int) (int, error)) Phase {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		of       []int // the request of each latency in all
		byStatus = map[string]int{}
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var reqs []int
			errs := map[string]int{}
			for ctx.Err() == nil && (dur == 0 || time.Now().Before(deadline)) {
				i := int(next.Add(1) - 1)
				if count > 0 && i >= count {
					break
				}
				t := time.Now()
				status, err := do(i)
				if kind := failure(status, err); kind != "" {
					errs[kind]++
					continue
				}
				lat, reqs = append(lat, time.Since(t)), append(reqs, i)
			}
			mu.Lock()
			all, of = append(all, lat...), append(of, reqs...)
			for k, v := range errs {
				byStatus[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	p := Phase{Name: name, Seconds: elapsed.Seconds(), Latency: percentiles(slices.Clone(all)),
		samples: all, of: of}
	p.setCounts(len(all), byStatus, elapsed)
	return p
}

// failure names what went wrong with a request's answer; "" for a success.
func failure(status int, err error) string {
	switch {
	case err != nil && status == 0:
		return "net"
	case err != nil:
		return "bad body"
	case status/100 != 2:
		return strconv.Itoa(status)
	}
	return ""
}

// setCounts sets a phase's requests (answered, failed ones too), errors and
// rate: successes a second, as the ceiling counts its transactions, so that
// a gateway that fails fast does not look faster.
func (p *Phase) setCounts(successes int, byStatus map[string]int, elapsed time.Duration) {
	for _, v := range byStatus {
		p.Errors += v
	}
	if p.Errors > 0 {
		p.ErrorsByStatus = byStatus
	}
	p.Requests = successes + p.Errors
	if elapsed > 0 {
		p.RPS = float64(successes) / elapsed.Seconds()
	}
}

// Latency is in milliseconds, nearest-rank percentiles.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func percentiles(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return float64(d[max(0, min(i, len(d)-1))]) / float64(time.Millisecond)
	}
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: at(1)}
}

// openLoop starts do at a fixed rate for dur, whether or not earlier calls
// have answered (open loop: a slow gateway does not slow the offered load,
// so its queueing shows in the latencies instead of hiding in a lower
// rate). Latency counts from when a call was due, not from when a goroutine
// got to it. At most maxInFlight calls run at once; a call due beyond that
// is counted as dropped, not sent.
func openLoop(ctx context.Context, name string, rate float64, dur time.Duration, maxInFlight int, do func(i int) (int, error)) Phase {
	var (
		mu       sync.Mutex
		all      []time.Duration
		byStatus = map[string]int{}
		wg       sync.WaitGroup
		sem      = make(chan struct{}, maxInFlight)
		dropped  int
	)
	start := time.Now()
	n := int(rate * dur.Seconds())
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		select {
		case sem <- struct{}{}:
		default:
			dropped++
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			status, err := do(i)
			lat := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if kind := failure(status, err); kind != "" {
				byStatus[kind]++
				return
			}
			all = append(all, lat)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	p := Phase{Name: name, Seconds: elapsed.Seconds(), Latency: percentiles(all)}
	if dropped > 0 {
		byStatus["dropped (too many in flight)"] = dropped
	}
	p.setCounts(len(all), byStatus, elapsed)
	return p
}
