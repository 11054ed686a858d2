package dashboard_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/merchants"
	"paygate/webhooks"
)

// The docs page's snippets are correct: filled in for the signed-in
// merchant, the curl creates an order, and the Go and Node receivers verify
// real deliveries (and refuse a forged one). Node's part is skipped when
// node is not installed.
func TestDocsSnippetsWork(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	srv := httptest.NewServer(a.Echo)
	t.Cleanup(srv.Close)
	h := apptest.TestMerchant()
	session := signIn(t, a, merchants.TestMerchantKey, merchants.TestMerchantSecret)

	// Fetched as the browser does, so the base URL is the server's.
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/dashboard/api/docs", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", session.Get("Cookie"))
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var docs map[string]string
	require.NoError(t, json.NewDecoder(res.Body).Decode(&docs))
	for name, text := range docs {
		require.NotContains(t, text, merchants.TestMerchantSecret, name)
	}
	require.Contains(t, docs["create_order"], srv.URL+"/api/v1/orders")
	require.Contains(t, docs["create_order"], merchants.TestMerchantKey)
	require.Contains(t, docs["sdk"], srv.URL+"/checkout.js")
	require.Contains(t, docs["sdk"], "key: '"+merchants.TestMerchantKey+"'")

	if curl, err := exec.LookPath("curl"); err == nil {
		cmd := exec.Command("sh", "-c", docs["create_order"])
		cmd.Env = append(os.Environ(), "PAYGATE_API_SECRET="+merchants.TestMerchantSecret, "PATH="+filepath.Dir(curl)+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		require.NoError(t, err)
		var order map[string]any
		require.NoError(t, json.Unmarshal(out, &order), "%s", out)
		require.Equal(t, "created", order["status"])
		require.Equal(t, float64(50000), order["amount"])
	} else {
		t.Log("curl is not installed: the create-order snippet was not run")
	}

	dir := t.TempDir()
	receivers := map[string]*snippetProcess{}
	goFile := filepath.Join(dir, "verify.go")
	require.NoError(t, os.WriteFile(goFile, []byte(docs["webhook_go"]), 0o644))
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go tool runs this test")
	build := exec.Command(goTool, "build", "-o", filepath.Join(dir, "verify"), goFile)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "the Go snippet does not build: %s", out)
	receivers["go"] = startSnippet(t, filepath.Join(dir, "verify"))
	if node, err := exec.LookPath("node"); err == nil {
		jsFile := filepath.Join(dir, "verify.js")
		require.NoError(t, os.WriteFile(jsFile, []byte(docs["webhook_node"]), 0o644))
		receivers["node"] = startSnippet(t, node, jsFile)
	} else {
		t.Log("node is not installed: the Node snippet was not run")
	}

	// deliver has a real payment.success delivered to the receiver, which
	// must accept it.
	deliver := func(name string, r *snippetProcess) {
		t.Helper()
		url := fmt.Sprintf("http://127.0.0.1:%s/webhooks/paygate", r.port)
		status, body := apptest.Call(t, a, http.MethodPut, "/api/v1/webhooks/config",
			fmt.Sprintf(`{"webhook_url":%q,"events":["payment.success"]}`, url), h)
		require.Equal(t, http.StatusOK, status, "%v", body)
		p := apptest.PaySuccessfully(t, a, h)
		logs := apptest.Await(t, a, h, "/api/v1/webhooks?event=payment.success", func(l map[string]any) bool {
			newest := l["data"].([]any)[0].(map[string]any)
			return newest["status"] != webhooks.StatusPending
		})
		newest := logs["data"].([]any)[0].(map[string]any)
		require.Equal(t, webhooks.StatusSuccess, newest["status"], "%s receiver refused a real delivery of %s: %s", name, p["id"], r.output())
		require.Equal(t, float64(200), newest["response_code"])
		r.await(t, "verified payment.success "+newest["id"].(string))
	}
	// post sends body signed with secret as at the time at.
	post := func(r *snippetProcess, body string, secret string, at time.Time) int {
		t.Helper()
		url := fmt.Sprintf("http://127.0.0.1:%s/webhooks/paygate", r.port)
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		require.NoError(t, err)
		webhooks.SignHeaders(req.Header, []string{secret}, "msg_docs_test", at, []byte(body))
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}

	event := `{"event":"payment.success","timestamp":1,"data":{}}`
	for name, r := range receivers {
		deliver(name, r)

		// A forged delivery is refused: unsigned, or signed with another secret.
		require.Equal(t, http.StatusUnauthorized, post(r, event, "whsec_other", time.Now()), name)
		forged, err := http.Post(fmt.Sprintf("http://127.0.0.1:%s/webhooks/paygate", r.port), "application/json", strings.NewReader(event))
		require.NoError(t, err)
		forged.Body.Close()
		require.Equal(t, http.StatusUnauthorized, forged.StatusCode, name)
		// A signed delivery replayed ten minutes later is refused.
		require.Equal(t, http.StatusOK, post(r, event, merchants.TestMerchantWebhookSecret, time.Now()), name)
		require.Equal(t, http.StatusUnauthorized, post(r, event, merchants.TestMerchantWebhookSecret, time.Now().Add(-10*time.Minute)), name)
	}

	// After the secret is regenerated, the receivers still holding the old
	// one go on accepting real deliveries, as the dashboard says they do.
	status, body := apptest.Call(t, a, http.MethodPost, "/api/v1/webhooks/regenerate-secret", `{}`, h)
	require.Equal(t, http.StatusOK, status, "%v", body)
	require.NotEqual(t, merchants.TestMerchantWebhookSecret, body["webhook_secret"])
	for name, r := range receivers {
		deliver(name, r)
		// What they accept is the old secret's signature beside the new one's:
		// the new secret's alone is refused.
		require.Equal(t, http.StatusUnauthorized, post(r, event, body["webhook_secret"].(string), time.Now()), name)
	}
}

// snippetProcess is a docs snippet running as a webhook receiver.
type snippetProcess struct {
	port string
	mu   sync.Mutex
	out  strings.Builder
}

var listening = regexp.MustCompile(`listening on port (\d+)`)

// startSnippet runs a receiver on a free port with the test merchant's
// webhook secret, and stops it when the test ends.
func startSnippet(t *testing.T, name string, args ...string) *snippetProcess {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+merchants.TestMerchantWebhookSecret, "PORT=0")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
	})
	p := &snippetProcess{}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	p.await(t, "listening on port")
	p.port = listening.FindStringSubmatch(p.output())[1]
	return p
}

func (p *snippetProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// await waits (boundedly) until the process has printed s.
func (p *snippetProcess) await(t *testing.T, s string) {
	t.Helper()
	for i := 0; !strings.Contains(p.output(), s); i++ {
		require.Less(t, i, 2000, "the snippet never printed %q: %s", s, p.output())
		time.Sleep(10 * time.Millisecond)
	}
}
