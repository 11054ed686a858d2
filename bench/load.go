package main

import (
	"bufio"
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
	tr.MaxIdleConns = 2 * conc
	tr.MaxIdleConnsPerHost = 2 * conc
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

func (c *client) createOrder(ctx context.Context, i int, into *idList) (int, error) {
	var o struct{ ID string }
	status, err := c.do(ctx, http.MethodPost, "/api/v1/orders",
		map[string]any{"amount": 50000, "currency": "INR", "receipt": "bench_" + strconv.Itoa(i)}, "", &o)
	if status == http.StatusCreated && err == nil {
		into.add(o.ID)
	}
	return status, err
}

// createPayment pays orderID by UPI; the new id goes to into and onCreated
// (called the moment the 201 is read), whichever is given.
func (c *client) createPayment(ctx context.Context, orderID string, idem bool, into *idList, onCreated func(string)) (int, error) {
	key := ""
	if idem {
		key = "bench-" + orderID
	}
	var p struct{ ID string }
	status, err := c.do(ctx, http.MethodPost, "/api/v1/payments",
		map[string]any{"order_id": orderID, "method": "upi", "vpa": "bench@paytm"}, key, &p)
	if status == http.StatusCreated && err == nil {
		if onCreated != nil {
			onCreated(p.ID)
		}
		if into != nil {
			into.add(p.ID)
		}
	}
	return status, err
}

func (c *client) createRefund(ctx context.Context, paymentID string, amount int) (int, error) {
	return c.do(ctx, http.MethodPost, "/api/v1/payments/"+paymentID+"/refunds",
		map[string]any{"amount": amount, "reason": "bench"}, "", nil)
}

// configureWebhook points the merchant's webhook at the receiver and learns
// its secret; the returned func puts the previous URL back.
func (c *client) configureWebhook(ctx context.Context, r *receiver) (func(), error) {
	var before struct {
		WebhookURL    string `json:"webhook_url"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if status, err := c.get(ctx, "/api/v1/webhooks/config", &before); err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/webhooks/config: status %d, %v", status, err)
	}
	if before.WebhookSecret != "" {
		r.setSecret(before.WebhookSecret)
	}
	put := func(url string) (int, error) {
		return c.do(context.Background(), http.MethodPut, "/api/v1/webhooks/config", map[string]any{"webhook_url": url}, "", nil)
	}
	if status, err := put(r.url); err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("PUT /api/v1/webhooks/config: status %d, %v", status, err)
	}
	return func() { put(before.WebhookURL) }, nil
}

// scrapeMetrics reads the few gauges the report shows from /metrics.
func (c *client) scrapeMetrics(ctx context.Context) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && (name == "go_memstats_heap_inuse_bytes" || name == "go_goroutines") {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				out[name] = v
			}
		}
	}
	return out
}

// idList collects ids from concurrent callers.
type idList struct {
	mu  sync.Mutex
	ids []string
}

func (l *idList) add(id string) { l.mu.Lock(); l.ids = append(l.ids, id); l.mu.Unlock() }
func (l *idList) len() int      { l.mu.Lock(); defer l.mu.Unlock(); return len(l.ids) }
func (l *idList) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

// runPhase runs do from conc workers, each call with the next index, until
// dur has passed (if dur > 0) or count calls were made (if count > 0). A
// request in flight at the deadline finishes and counts.
func runPhase(ctx context.Context, name string, conc int, dur time.Duration, count int, do func(i int) (int, error)) Phase {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
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
			errs := map[string]int{}
			for ctx.Err() == nil && (dur == 0 || time.Now().Before(deadline)) {
				i := int(next.Add(1) - 1)
				if count > 0 && i >= count {
					break
				}
				t := time.Now()
				status, err := do(i)
				lat = append(lat, time.Since(t))
				switch {
				case err != nil && status == 0:
					errs["net"]++
				case err != nil:
					errs["bad body"]++
				case status/100 != 2:
					errs[strconv.Itoa(status)]++
				}
			}
			mu.Lock()
			all = append(all, lat...)
			for k, v := range errs {
				byStatus[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	p := Phase{Name: name, Requests: len(all), Seconds: elapsed.Seconds(), Latency: percentiles(all)}
	for _, v := range byStatus {
		p.Errors += v
	}
	if p.Errors > 0 {
		p.ErrorsByStatus = byStatus
	}
	if elapsed > 0 {
		p.RPS = float64(len(all)) / elapsed.Seconds()
	}
	return p
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
