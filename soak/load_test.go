package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The seeded test merchant (TEST_MODE=true).
const (
	merchantKey    = "key_test_abc123"
	merchantSecret = "secret_test_xyz789"
)

// load is merchants paying and refunding against one gateway URL, and what
// the gateway answered them.
type load struct {
	base   string
	client *http.Client
	max    int // payments to create at most

	mu       sync.Mutex
	payments []string // answered 201
	refunds  []string // answered 201
	codes    map[int]int
	errors   []string // every 500, with its body
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// startLoad runs workers merchants until stop or until max payments were
// accepted.
func startLoad(base string, workers, max int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{base: base, max: max, codes: map[int]int{}, cancel: cancel,
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.merchant(ctx)
		}()
	}
	return l
}

// stop ends the load and waits for its requests to be answered.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// merchant creates orders and pays them; five payments later, once the
// payment is decided, it refunds 60% of it twice at once, which the gateway
// must accept at most once.
func (l *load) merchant(ctx context.Context) {
	type paid struct {
		id     string
		amount int
	}
	var mine []paid
	refunded := 0
	for ctx.Err() == nil && l.accepted() < l.max {
		amount := 1000 + rand.IntN(99_000)
		code, order := l.post(ctx, "/api/v1/orders", fmt.Sprintf(`{"amount":%d}`, amount))
		if code != http.StatusCreated {
			l.pause(ctx, code)
			continue
		}
		code, p := l.post(ctx, "/api/v1/payments", fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"soak@paytm"}`, order["id"]))
		if code != http.StatusCreated {
			l.pause(ctx, code)
			continue
		}
		l.record(&l.payments, p["id"].(string))
		mine = append(mine, paid{p["id"].(string), amount})
		if len(mine) < refunded+6 {
			continue
		}
		target := mine[refunded]
		refunded++
		// Only a decided payment is refundable: a gateway quicker than
		// TEST_PROCESSING_DELAY over five payments comes back before it
		// is decided, and would have every refund refused. One still
		// pending goes to the back, to be tried again five payments on,
		// so that a decision held up (a killed process's, until the
		// reconciler) holds up none of the merchant's other refunds.
		if code, p := l.send(ctx, http.MethodGet, "/api/v1/payments/"+target.id, ""); code != http.StatusOK || p["status"] == "pending" {
			mine = append(mine, target)
			l.pause(ctx, code)
			continue
		}
		var both sync.WaitGroup
		for range 2 {
			both.Add(1)
			go func() {
				defer both.Done()
				code, r := l.post(ctx, "/api/v1/payments/"+target.id+"/refunds", fmt.Sprintf(`{"amount":%d}`, target.amount*6/10))
				if code == http.StatusCreated {
					l.record(&l.refunds, r["id"].(string))
				}
			}()
		}
		both.Wait()
	}
}

// pause slows a merchant down while the gateway is away or unavailable.
func (l *load) pause(ctx context.Context, code int) {
	if code == 0 || code == http.StatusServiceUnavailable {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// post sends one authenticated request; code 0 means no answer came back.
func (l *load) post(ctx context.Context, path, body string) (int, map[string]any) {
	return l.send(ctx, http.MethodPost, path, body)
}

// send sends one authenticated request; code 0 means no answer came back.
func (l *load) send(ctx context.Context, method, path, body string) (int, map[string]any) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, l.base+path, bytes.NewBufferString(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", merchantKey)
	req.Header.Set("X-Api-Secret", merchantSecret)
	resp, err := l.client.Do(req)
	if err != nil {
		l.count(0, "")
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	l.count(resp.StatusCode, fmt.Sprintf("%s %s: %s", method, path, raw))
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (l *load) count(code int, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[code]++
	if code >= 500 && code != http.StatusServiceUnavailable {
		l.errors = append(l.errors, what)
	}
}

func (l *load) record(into *[]string, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*into = append(*into, id)
}

func (l *load) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.payments)
}

func (l *load) answered(code int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[code]
}

// accepted201 returns copies of the payment and refund ids answered 201.
func (l *load) accepted201() (payments, refunds []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.payments...), append([]string(nil), l.refunds...)
}

// waitAccepted waits until n payments in all were accepted; the bound only
// stops a gateway that stopped accepting.
func (l *load) waitAccepted(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l.accepted() >= n {
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("only %d of %d payments accepted; answers: %v", len(l.payments), n, l.codes)
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d payments and %d refunds accepted; answers by status (0: no answer): %v",
		len(l.payments), len(l.refunds), l.codes)
}

// receiver is the merchant's webhook endpoint: it answers 200 (some
// deliveries slowly, so that some are running whenever the gateway stops)
// and records which webhook ids arrived.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		if rand.IntN(10) == 0 {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond)
		}
		r.mu.Lock()
		r.ids[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id] > 0
}

// subscribe points the test merchant's webhooks at the receiver.
func (r *receiver) subscribe(t *testing.T, gatewayURL string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, gatewayURL+"/api/v1/webhooks/config",
		bytes.NewBufferString(`{"webhook_url":"`+r.srv.URL+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(merchantKey, merchantSecret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}
