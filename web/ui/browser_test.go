package ui_test

// The browser harness: one headless Chromium per test binary, a fresh tab
// (in its own browser context, so cookies do not leak between tests) per
// test, and on failure a screenshot and the page's console log kept on disk.

import (
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db/dbtest"
	"paygate/merchants"
)

func TestMain(m *testing.M) {
	code := dbtest.Run(m)
	stopBrowser()
	os.Exit(code)
}

var browser struct {
	once    sync.Once
	ctx     context.Context
	cancel  func()
	dataDir string
	err     error
}

// chromiumPath finds Debian's Chromium (make deps installs it).
func chromiumPath() (string, error) {
	if p := os.Getenv("PAYGATE_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium not found: run `make deps` as root (apt-get install chromium) or set PAYGATE_CHROMIUM")
}

// sharedBrowser starts Chromium once, with the flags of DESIGN.md and a
// fresh profile.
func sharedBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path, err := chromiumPath()
		if err != nil {
			browser.err = err
			return
		}
		browser.dataDir, err = os.MkdirTemp("", "paygate-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.UserDataDir(browser.dataDir),
		)
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelBrowser := chromedp.NewContext(actx)
		browser.ctx = bctx
		browser.cancel = func() { cancelBrowser(); cancelAlloc() }
		browser.err = chromedp.Do(bctx) // starts the browser
	})
	require.NoError(t, browser.err, "start Chromium")
	return browser.ctx
}

func stopBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dataDir != "" {
		_ = os.RemoveAll(browser.dataDir)
	}
}

// tab is one test's browser tab.
type tab struct {
	t    *testing.T
	ctx  context.Context // bounded: a stuck step fails the test instead of hanging it
	root context.Context // the tab itself, for the failure screenshot

	mu      sync.Mutex
	console []string
}

// newTab opens a tab for t. When t fails, the tab's screenshot and console
// log are saved in a folder that is kept, and the failure names it.
func newTab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(sharedBrowser(t), chromedp.WithNewBrowserContext())
	require.NoError(t, chromedp.Do(ctx), "open a tab")
	tb := &tab{t: t, root: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, fmt.Sprintf("%s %s %s:%d %s", m.Time.Format("15:04:05.000"), m.Type, m.URL, m.Line+1, m))
			tb.mu.Unlock()
		}
	}()
	bounded, cancelBounded := context.WithTimeout(ctx, 90*time.Second)
	tb.ctx = bounded
	t.Cleanup(func() {
		if t.Failed() {
			dir := filepath.Join(os.TempDir(), "paygate-browser-failures", safeName(t.Name())+"-"+time.Now().Format("150405"))
			if err := tb.saveArtifacts(dir); err != nil {
				t.Logf("could not save the browser artifacts: %v", err)
			}
			t.Errorf("browser: the screenshot and console log of this failure are in %s", dir)
		}
		cancelBounded()
		cancel()
	})
	return tb
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// saveArtifacts writes screenshot.png and console.log of the tab into dir.
func (tb *tab) saveArtifacts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tb.mu.Lock()
	log := strings.Join(tb.console, "\n") + "\n"
	tb.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "console.log"), []byte(log), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(tb.root, 15*time.Second)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "screenshot.png"), shot, 0o644)
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	require.NoError(tb.t, chromedp.Do(tb.ctx, actions...))
}

func (tb *tab) text(sel string, opts ...chromedp.QueryOption) string {
	tb.t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(sel), opts...))
	require.NoError(tb.t, err, "text of %s", sel)
	return strings.TrimSpace(s)
}

// eval runs JavaScript in the page and decodes its result.
func eval[T any](tb *tab, js string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, opts...))
	require.NoError(tb.t, err, "evaluate %s", js)
	return v
}

// waitJS waits until js is truthy in the page (bounded by the tab's deadline).
func (tb *tab) waitJS(js string) {
	tb.t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[any](js, chromedp.WithPollingInterval(50*time.Millisecond)))
	require.NoError(tb.t, err, "wait for %s", js)
}

// frame returns the checkout iframe of the modal once its page is drawn.
func (tb *tab) frame() chromedp.QueryOption {
	tb.t.Helper()
	tb.do(chromedp.WaitVisible(chromedp.CSS(byTest("payment-iframe"))))
	for i := 0; ; i++ {
		nodes, err := chromedp.Run(tb.ctx, chromedp.Nodes(chromedp.CSS(byTest("payment-iframe"))))
		require.NoError(tb.t, err)
		in := chromedp.FromNode(nodes[0])
		ctx, cancel := context.WithTimeout(tb.ctx, 3*time.Second)
		err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(byTest("order-amount")), in))
		cancel()
		if err == nil {
			return in
		}
		require.Less(tb.t, i, 10, "the checkout page never showed in the iframe: %v", err)
	}
}

// clear empties an input of the page (not of a frame) as a customer
// would, so its input handler runs.
func clear(sel string) chromedp.Action[chromedp.Void] {
	b, _ := json.Marshal(sel)
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		el.value = ''; el.dispatchEvent(new Event('input', {bubbles: true})); })()`, b))
}

func byTest(id string) string { return fmt.Sprintf(`[data-test-id=%q]`, id) }

// gateway is the real app behind a real HTTP server.
type gateway struct {
	app *app.App
	url string
}

// newGateway starts the app in test mode with a tiny processing delay.
func newGateway(t *testing.T, mutate ...func(*app.Config)) gateway {
	t.Helper()
	mutate = append([]func(*app.Config){func(c *app.Config) { c.TestProcessingDelay = 150 * time.Millisecond }}, mutate...)
	a := apptest.New(t, mutate...)
	srv := httptest.NewServer(a.Echo)
	t.Cleanup(srv.Close)
	return gateway{app: a, url: srv.URL}
}

// shop is a merchant's page on another origin that embeds /checkout.js and
// records the SDK's callbacks in window.paygateEvents.
func shop(t *testing.T, g gateway, key, orderID string) string {
	t.Helper()
	js := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	page := fmt.Sprintf(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop</title></head>
<body>
<h1>Demo shop</h1>
<button id="open" type="button">Pay now</button>
<a href="#later" id="later">Later link</a>
<script src="%s/checkout.js"></script>
<script>
window.paygateEvents = [];
const checkout = new PaymentGateway({
  key: %s, orderId: %s,
  onSuccess: (d) => paygateEvents.push({type: 'success', data: d}),
  onFailure: (d) => paygateEvents.push({type: 'failure', data: d}),
  onClose: () => paygateEvents.push({type: 'close'}),
});
document.getElementById('open').addEventListener('click', () => checkout.open());
addEventListener('message', (e) => { if (e.data === 'marker') window.markerSeen = true; });
</script>
</body></html>`, g.url, js(key), js(orderID))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	require.NotEqual(t, g.url, srv.URL)
	return srv.URL
}

// testKey is the seeded merchant's publishable key.
var testKey = merchants.TestMerchantKey
