package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// receiver plays the merchant's webhook endpoint. It verifies both
// signatures of every delivery (the Standard Webhooks one over
// id.timestamp.body and the hex one over the body) independently of
// paygate's code, answers 401 to a delivery that fails either, and 200
// otherwise. A webhook-id seen before is a duplicate delivery (at-least-once
// makes them possible; a delivered one should not come again). The same
// event of the same payment or refund under another webhook-id is an event
// delivered twice: a second log for one state change, which exactly-once
// effects forbid. A signed body that names no payment or refund is
// unreadable. For each payment it keeps when its first payment.success
// arrived, and for each refund when its refund.processed did.
type receiver struct {
	url string
	srv *http.Server

	mu        sync.Mutex
	key, hex  []byte
	seen      map[string]struct{}  // webhook-id
	once      map[string]string    // event + " " + object id → its webhook-id
	success   map[string]time.Time // payment id → payment.success arrival
	refunded  map[string]time.Time // refund id → refund.processed arrival
	events    map[string]int       // event → valid, first deliveries
	invalid   int
	duplicate int
	twice     int
	bad       int // unreadable bodies
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook",
		seen: map[string]struct{}{}, once: map[string]string{}, success: map[string]time.Time{}, refunded: map[string]time.Time{}, events: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.hook)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) close() { r.srv.Shutdown(context.Background()) }

// setSecret takes the merchant's signing secret. The Standard Webhooks key
// is the base64 after "whsec_"; a secret not of that form is used whole
// (API.md).
func (r *receiver) setSecret(s string) {
	key := []byte(s)
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			key = k
		}
	}
	r.mu.Lock()
	r.key, r.hex = key, []byte(s)
	r.mu.Unlock()
}

func (r *receiver) valid(h http.Header, body []byte) bool {
	r.mu.Lock()
	key, hexKey := r.key, r.hex
	r.mu.Unlock()
	m := hmac.New(sha256.New, hexKey)
	m.Write(body)
	if !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(h.Get("X-Webhook-Signature"))) {
		return false
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil || id == "" {
		return false
	}
	m = hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

func (r *receiver) hook(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if !r.valid(req.Header, body) {
		r.mu.Lock()
		r.invalid++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		Event string `json:"event"`
		Data  struct {
			Payment struct{ ID string } `json:"payment"`
			Refund  struct{ ID string } `json:"refund"`
		} `json:"data"`
	}
	err = json.Unmarshal(body, &ev)
	id := req.Header.Get("webhook-id")
	object := ev.Data.Payment.ID
	switch {
	case strings.HasPrefix(ev.Event, "refund."):
		object = ev.Data.Refund.ID
	case ev.Event == "webhook.test":
		object = id // names no payment or refund; each test is its own
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[id]; dup {
		r.duplicate++
		w.WriteHeader(http.StatusOK)
		return
	}
	r.seen[id] = struct{}{}
	if err != nil || ev.Event == "" || object == "" {
		r.bad++ // once a webhook-id: paygate's retries of it are duplicates
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if first, ok := r.once[ev.Event+" "+object]; ok && first != id {
		r.twice++
		w.WriteHeader(http.StatusOK)
		return
	}
	r.once[ev.Event+" "+object] = id
	r.events[ev.Event]++
	switch {
	case ev.Event == "payment.success" && ev.Data.Payment.ID != "":
		if _, ok := r.success[ev.Data.Payment.ID]; !ok {
			r.success[ev.Data.Payment.ID] = now
		}
	case ev.Event == "refund.processed" && ev.Data.Refund.ID != "":
		if _, ok := r.refunded[ev.Data.Refund.ID]; !ok {
			r.refunded[ev.Data.Refund.ID] = now
		}
	}
	w.WriteHeader(http.StatusOK)
}

// awaitSuccess waits until every payment in ids has its payment.success, or
// wait has passed, and returns how many are still missing.
func (r *receiver) awaitSuccess(ctx context.Context, ids []string, wait time.Duration) int {
	return r.await(ctx, ids, wait, r.success)
}

func (r *receiver) awaitRefunds(ctx context.Context, ids []string, wait time.Duration) int {
	return r.await(ctx, ids, wait, r.refunded)
}

func (r *receiver) await(ctx context.Context, ids []string, wait time.Duration, in map[string]time.Time) int {
	deadline := time.Now().Add(wait)
	for {
		var missing []string
		r.mu.Lock()
		for _, id := range ids {
			if _, ok := in[id]; !ok {
				missing = append(missing, id)
			}
		}
		r.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return len(missing)
		}
		ids = missing
		time.Sleep(20 * time.Millisecond)
	}
}

// arrivals returns, for each id, when its payment.success (or, refunds,
// refund.processed) arrived; zero when it has not.
func (r *receiver) arrivals(ids []string, refunds bool) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.success
	if refunds {
		in = r.refunded
	}
	out := make([]time.Time, len(ids))
	for i, id := range ids {
		out[i] = in[id]
	}
	return out
}

// ReceiverStats counts every delivery the receiver saw.
type ReceiverStats struct {
	Events     map[string]int `json:"valid_events"`
	Invalid    int            `json:"invalid_signatures"`
	Duplicates int            `json:"duplicate_deliveries"`
	Twice      int            `json:"events_delivered_twice"`
	Unreadable int            `json:"unreadable_bodies"`
	// Unpaired counts the payments and refunds with a created event but no
	// outcome's, or an outcome's but no created: an event lost. (Those with
	// neither show as missing in their flow.) -1: not counted, as the run
	// did not end with every flow's work done.
	Unpaired int `json:"objects_with_an_event_missing"`
}

func (r *receiver) stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := make(map[string]int, len(r.events))
	for k, v := range r.events {
		ev[k] = v
	}
	return ReceiverStats{Events: ev, Invalid: r.invalid, Duplicates: r.duplicate, Twice: r.twice, Unreadable: r.bad,
		Unpaired: r.unpaired()}
}

// unpaired counts the objects whose created event and outcome's event did
// not both arrive. r.mu is held.
func (r *receiver) unpaired() int {
	created := map[string]bool{} // object → whether its created event came
	outcome := map[string]bool{}
	for k := range r.once {
		event, object, _ := strings.Cut(k, " ")
		switch event {
		case "payment.created", "refund.created":
			created[object] = true
		case "payment.success", "payment.failed", "refund.processed":
			outcome[object] = true
		}
	}
	n := 0
	for o := range created {
		if !outcome[o] {
			n++
		}
	}
	for o := range outcome {
		if !created[o] {
			n++
		}
	}
	return n
}
