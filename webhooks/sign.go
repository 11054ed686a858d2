package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const secretPrefix = "whsec_"

// HexSignature is the X-Webhook-Signature value: lower-case hex
// HMAC-SHA256 of body, keyed with the secret string's bytes as they are.
func HexSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// StandardSignature is one Standard Webhooks signature, "v1,<base64>", over
// msgID + "." + unix seconds + "." + body.
func StandardSignature(secret, msgID string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, standardKey(secret))
	m.Write([]byte(msgID + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// standardKey follows the Standard Webhooks libraries (base64 after "whsec_")
// so generated secrets verify with any official library. Secrets that are not
// of that form (the seeded "whsec_test_abc123") would make those libraries
// fail, so for them the whole string is the key, as API.md documents.
func standardKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, secretPrefix); ok {
		// An empty remainder decodes to an empty key; never sign with that.
		if key, err := base64.StdEncoding.DecodeString(rest); err == nil && len(key) > 0 {
			return key
		}
	}
	return []byte(secret)
}

// SignHeaders sets the delivery headers for one attempt. secrets[0] is the
// current secret; during a rotation the previous one follows it, and each
// active secret contributes one space-separated webhook-signature entry so
// receivers holding either secret keep verifying. With no secrets, no
// signature headers are set (receivers then reject, which is the safe side).
func SignHeaders(h http.Header, secrets []string, msgID string, ts time.Time, body []byte) {
	h.Set("Content-Type", "application/json")
	h.Set("webhook-id", msgID)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	if len(secrets) == 0 {
		return
	}
	h.Set("X-Webhook-Signature", HexSignature(secrets[0], body))
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = StandardSignature(s, msgID, ts, body)
	}
	h.Set("webhook-signature", strings.Join(sigs, " "))
}

// NewSecret returns "whsec_" + std base64 of 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(b), nil
}
