// Receive and verify paygate webhooks with Go, standard library only.
// Run: WEBHOOK_SECRET=whsec_... PORT=3000 go run verify.go
// Webhook URL: https://your-server.example/webhooks/paygate
package main

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

// verify reports whether signature (X-Webhook-Signature) is the hex
// HMAC-SHA256 of the exact body bytes under secret.
func verify(body []byte, signature, secret string) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	expected := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(expected), []byte(signature))
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("set WEBHOOK_SECRET to the secret shown on the Webhooks page")
	}
	http.HandleFunc("POST /webhooks/paygate", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if !verify(body, r.Header.Get("X-Webhook-Signature"), secret) {
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
		// webhook-id is the same on every attempt: use it to act on an event once.
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
