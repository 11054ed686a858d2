package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

var testBody = []byte(`{"event":"payment.success","timestamp":1764066660,"data":{"payment":{"id":"pay_1","amount":50000}}}`)

func TestNewSecretFormat(t *testing.T) {
	t.Parallel()
	s, err := NewSecret()
	require.NoError(t, err)
	rest, ok := strings.CutPrefix(s, "whsec_")
	require.True(t, ok, s)
	key, err := base64.StdEncoding.DecodeString(rest)
	require.NoError(t, err)
	require.Len(t, key, 32)

	s2, err := NewSecret()
	require.NoError(t, err)
	require.NotEqual(t, s, s2)
}

func TestHexSignature(t *testing.T) {
	t.Parallel()
	// Well-known HMAC-SHA256 vector, so the test does not merely repeat the code.
	require.Equal(t,
		"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
		HexSignature("key", []byte("The quick brown fox jumps over the lazy dog")))

	// Keyed with the secret string itself, never the base64-decoded form.
	secret, err := NewSecret()
	require.NoError(t, err)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(testBody)
	require.Equal(t, hex.EncodeToString(m.Sum(nil)), HexSignature(secret, testBody))
}

// signed returns headers as a delivery attempt would carry them, now.
func signed(t *testing.T, secrets []string, body []byte) http.Header {
	t.Helper()
	h := http.Header{}
	SignHeaders(h, secrets, "0b5e4a4e-8f5c-4f0e-9a59-7c2f3f0c1d2e", time.Now(), body)
	return h
}

func TestOfficialLibraryVerifies(t *testing.T) {
	t.Parallel()
	current, err := NewSecret()
	require.NoError(t, err)
	previous, err := NewSecret()
	require.NoError(t, err)

	tests := []struct {
		name     string
		secrets  []string
		verifier string
	}{
		{"single secret", []string{current}, current},
		{"rotation, verifier has new secret", []string{current, previous}, current},
		{"rotation, verifier has old secret", []string{current, previous}, previous},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := signed(t, tc.secrets, testBody)
			require.Len(t, strings.Fields(h.Get("webhook-signature")), len(tc.secrets))
			require.Equal(t, HexSignature(tc.secrets[0], testBody), h.Get("X-Webhook-Signature"))
			require.Equal(t, "application/json", h.Get("Content-Type"))

			wh, err := standardwebhooks.NewWebhook(tc.verifier)
			require.NoError(t, err)
			require.NoError(t, wh.Verify(testBody, h))

			tampered := append([]byte(nil), testBody...)
			tampered[len(tampered)-2] = '1'
			require.ErrorIs(t, wh.Verify(tampered, h), standardwebhooks.ErrNoMatchingSignature)
		})
	}
}

func TestOtherSecretDoesNotVerify(t *testing.T) {
	t.Parallel()
	a, err := NewSecret()
	require.NoError(t, err)
	b, err := NewSecret()
	require.NoError(t, err)
	wh, err := standardwebhooks.NewWebhook(b)
	require.NoError(t, err)
	require.ErrorIs(t, wh.Verify(testBody, signed(t, []string{a}, testBody)), standardwebhooks.ErrNoMatchingSignature)
}

func TestSeededNonBase64Secret(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test_abc123"
	// The official constructor rejects it; that is why the fallback exists.
	_, err := standardwebhooks.NewWebhook(secret)
	require.Error(t, err)

	ts := time.Unix(1764066660, 0)
	const id = "log-1"
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + ".1764066660." + string(testBody)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	require.Equal(t, want, StandardSignature(secret, id, ts, testBody))

	h := http.Header{}
	SignHeaders(h, []string{secret}, id, ts, testBody)
	require.Equal(t, want, h.Get("webhook-signature"))
	require.Equal(t, "1764066660", h.Get("webhook-timestamp"))
	require.Equal(t, id, h.Get("webhook-id"))

	// A receiver using the raw secret bytes as key verifies it.
	wh, err := standardwebhooks.NewWebhookRaw([]byte(secret))
	require.NoError(t, err)
	require.NoError(t, wh.VerifyIgnoringTimestamp(testBody, h))
	require.Error(t, wh.VerifyIgnoringTimestamp([]byte(`{}`), h))
}

func TestSignatureCoversIDAndTimestamp(t *testing.T) {
	t.Parallel()
	secret, err := NewSecret()
	require.NoError(t, err)
	now := time.Now()
	base := StandardSignature(secret, "a", now, testBody)
	require.NotEqual(t, base, StandardSignature(secret, "b", now, testBody))
	require.NotEqual(t, base, StandardSignature(secret, "a", now.Add(time.Second), testBody))

	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	h := http.Header{}
	SignHeaders(h, []string{secret}, "a", now, testBody)
	require.NoError(t, wh.Verify(testBody, h))
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
	require.Error(t, wh.Verify(testBody, h))
}
