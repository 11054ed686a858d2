package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// receiver plays the merchant's webhook endpoint. It answers 200 to a
// correctly signed delivery and 401 to any other, and remembers when each
// payment's final event (payment.success or payment.failed) first arrived.
type receiver struct {
	url string
	srv *http.Server

	mu        sync.Mutex
	secret    []byte
	final     map[string]arrival // payment id → first final event
	events    map[string]int     // event → signed deliveries
	badSig    int
	duplicate int // final events for a payment already seen (at-least-once)
}

type arrival struct {
	event string
	at    time.Time
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook", secret: []byte("whsec_test_abc123"),
		final: map[string]arrival{}, events: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.hook)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) close() { r.srv.Shutdown(context.Background()) }

func (r *receiver) setSecret(s string) { r.mu.Lock(); r.secret = []byte(s); r.mu.Unlock() }

func (r *receiver) hook(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	mac := hmac.New(sha256.New, r.secret)
	r.mu.Unlock()
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !hmac.Equal([]byte(want), []byte(req.Header.Get("X-Webhook-Signature"))) {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		Event string `json:"event"`
		Data  struct {
			Payment struct {
				ID string `json:"id"`
			} `json:"payment"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	r.events[ev.Event]++
	if id := ev.Data.Payment.ID; id != "" && (ev.Event == "payment.success" || ev.Event == "payment.failed") {
		if _, seen := r.final[id]; seen {
			r.duplicate++
		} else {
			r.final[id] = arrival{ev.Event, now}
		}
	}
	w.WriteHeader(http.StatusOK)
}

// await waits until every id has its final event or wait has passed, and
// returns the ids still without one.
func (r *receiver) await(ctx context.Context, ids []string, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var missing []string
		r.mu.Lock()
		for _, id := range ids {
			if _, ok := r.final[id]; !ok {
				missing = append(missing, id)
			}
		}
		r.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		ids = missing
		time.Sleep(50 * time.Millisecond)
	}
}

// successAt is when id's payment.success arrived.
func (r *receiver) successAt(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.final[id]
	return a.at, ok && a.event == "payment.success"
}

// succeeded keeps the ids whose payment.success arrived.
func (r *receiver) succeeded(ids []string) []string {
	var out []string
	for _, id := range ids {
		if _, ok := r.successAt(id); ok {
			out = append(out, id)
		}
	}
	return out
}

// lastArrival is the latest final-event arrival among ids.
func (r *receiver) lastArrival(ids []string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, id := range ids {
		if a, ok := r.final[id]; ok && a.at.After(last) {
			last = a.at
		}
	}
	return last
}

// ReceiverStats counts every delivery the receiver saw.
type ReceiverStats struct {
	Events        map[string]int `json:"signed_events"`
	BadSignatures int            `json:"bad_signatures"`
	Duplicates    int            `json:"duplicate_final_events"`
}

func (r *receiver) stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := make(map[string]int, len(r.events))
	for k, v := range r.events {
		ev[k] = v
	}
	return ReceiverStats{Events: ev, BadSignatures: r.badSig, Duplicates: r.duplicate}
}
