// Receive and verify paygate webhooks with Go, standard library only.
// Run: WEBHOOK_SECRET=whsec_... PORT=3000 go run verify.go
// Webhook URL: https://your-server.example/webhooks/paygate
package main

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// hmacKey is the key a webhook secret stands for: the bytes of the base64
// after "whsec_" (a secret that is not of that form is used as it is).
func hmacKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return k
		}
	}
	return []byte(secret)
}

// verify checks the Standard Webhooks signature: one of webhook-signature's
// space-separated values is "v1," + base64 HMAC-SHA256 of
// "webhook-id.webhook-timestamp.body". It covers the id and the time too, and
// for 24 hours after you regenerate the secret it carries the old secret's
// signature as well. A timestamp more than 5 minutes off is refused, so that
// a delivery recorded by someone cannot be replayed later.
func verify(h http.Header, body []byte, key []byte) bool {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return false
	}
	if age := time.Since(time.Unix(sec, 0)); age > 5*time.Minute || age < -5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	expected := []byte("v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), expected) {
			return true
		}
	}
	return false
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("set WEBHOOK_SECRET to the secret shown on the Webhooks page")
	}
	key := hmacKey(secret)
	http.HandleFunc("POST /webhooks/paygate", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if !verify(r.Header, body, key) { // the bytes received, not re-encoded JSON
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var event struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "invalid JSON", http.StatusBadRequest)
			return
		}
		// webhook-id is signed and the same on every attempt: act on an event once.
		log.Printf("verified %s %s", event.Event, r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", ":"+cmp.Or(os.Getenv("PORT"), "3000"))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on port %d", ln.Addr().(*net.TCPAddr).Port)
	log.Fatal(http.Serve(ln, nil))
}
