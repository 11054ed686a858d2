package webhooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stubResolver answers for made-up hosts only, so no test touches real DNS.
// Each lookup of a host consumes the next answer; the last one repeats,
// which lets a test change the answer between check and dial (rebinding).
type stubResolver struct {
	mu      sync.Mutex
	answers map[string][][]string
	calls   map[string]int
}

func newStubResolver(answers map[string][][]string) *stubResolver {
	return &stubResolver{answers: answers, calls: map[string]int{}}
}

func (r *stubResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(seq)-1)
	r.calls[host]++
	var out []net.IPAddr
	for _, s := range seq[i] {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

// one is a resolver answer that never changes.
func one(ips ...string) [][]string { return [][]string{ips} }

// recorder is a Dial func that never touches the network: it records the
// address, fails the test if asked for a forbidden one, and hands back one
// end of a pipe.
type recorder struct {
	t     *testing.T
	mu    sync.Mutex
	addrs []string
	fail  map[string]bool // addresses whose dial should fail
}

func (rec *recorder) Dial(_ context.Context, network, addr string) (net.Conn, error) {
	rec.mu.Lock()
	rec.addrs = append(rec.addrs, addr)
	rec.mu.Unlock()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		rec.t.Errorf("dial of non-literal address %q (network %s)", addr, network)
		return nil, err
	}
	if ForbiddenIP(ap.Addr()) {
		rec.t.Errorf("dial reached forbidden address %s", addr)
		return nil, errors.New("forbidden dial")
	}
	if rec.fail[addr] {
		return nil, fmt.Errorf("stub: %s unreachable", addr)
	}
	c1, c2 := net.Pipe()
	rec.t.Cleanup(func() { c2.Close() })
	return c1, nil
}

func (rec *recorder) dialled() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.addrs...)
}

func TestForbiddenIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip        string
		forbidden bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fd00:ec2::254", true}, // AWS IPv6 metadata
		{"169.254.169.254", true},
		{"169.254.1.1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"ff02::1", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"192.0.2.1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:0.0.0.0", true},
		{"::127.0.0.1", true}, // deprecated IPv4-compatible form
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::a9fe:a9fe", true},  // NAT64 of 169.254.169.254
		{"2002:c0a8:101::1", true},    // 6to4 of 192.168.1.1
		{"64:ff9b:1:808:808::", true}, // local-use NAT64 (RFC 8215), whatever it embeds
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"172.32.0.1", false},
		{"100.128.0.1", false},
		{"2606:4700::1", false},
		{"2001:4860:4860::8888", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.forbidden, ForbiddenIP(netip.MustParseAddr(tc.ip)))
		})
	}
	require.True(t, ForbiddenIP(netip.Addr{}), "the zero Addr is forbidden")
}

func TestDialerRefusesBeforeDialling(t *testing.T) {
	t.Parallel()
	resolver := newStubResolver(map[string][][]string{
		"evil.example":     one("127.0.0.1"),
		"metadata.example": one("169.254.169.254"),
		"lan.example":      one("10.0.0.7"),
		"aws6.example":     one("fd00:ec2::254"),
		"mixed.example":    one("8.8.8.8", "192.168.1.1"),
		"mapped.example":   one("::ffff:127.0.0.1"),
	})
	tests := []struct {
		name    string
		network string
		addr    string
	}{
		{"resolves to loopback", "tcp", "evil.example:80"},
		{"resolves to metadata", "tcp", "metadata.example:80"},
		{"resolves to private", "tcp", "lan.example:443"},
		{"resolves to aws v6 metadata", "tcp", "aws6.example:80"},
		{"any forbidden answer refuses", "tcp", "mixed.example:443"},
		{"mapped answer", "tcp", "mapped.example:80"},
		{"loopback literal", "tcp", "127.0.0.1:8080"},
		{"v6 loopback literal", "tcp", "[::1]:80"},
		{"mapped metadata literal", "tcp", "[::ffff:169.254.169.254]:80"},
		{"nat64 private literal", "tcp", "[64:ff9b::a00:1]:80"},
		{"unspecified literal", "tcp4", "0.0.0.0:80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{t: t}
			d := &Dialer{Resolver: resolver, Dial: rec.Dial}
			conn, err := d.DialContext(context.Background(), tc.network, tc.addr)
			require.ErrorIs(t, err, ErrForbiddenAddress)
			require.Nil(t, conn)
			host, _, _ := net.SplitHostPort(tc.addr)
			require.Contains(t, err.Error(), host)
			require.Empty(t, rec.dialled())
		})
	}
}

func TestDialerOtherFailures(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t}
	d := &Dialer{Resolver: newStubResolver(nil), Dial: rec.Dial}

	_, err := d.DialContext(context.Background(), "unix", "/var/run/docker.sock")
	require.ErrorContains(t, err, "refusing network")

	_, err = d.DialContext(context.Background(), "tcp", "nowhere.example:80")
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrForbiddenAddress)
	require.Empty(t, rec.dialled())
}

func TestDialerDialsCheckedLiteral(t *testing.T) {
	t.Parallel()
	resolver := newStubResolver(map[string][][]string{
		"merchant.example": one("93.184.216.34", "2606:4700::1"),
	})
	tests := []struct {
		name    string
		network string
		fail    map[string]bool
		want    []string
	}{
		{"first address", "tcp", nil, []string{"93.184.216.34:443"}},
		{"falls back to next address", "tcp", map[string]bool{"93.184.216.34:443": true},
			[]string{"93.184.216.34:443", "[2606:4700::1]:443"}},
		{"tcp6 only dials v6", "tcp6", nil, []string{"[2606:4700::1]:443"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{t: t, fail: tc.fail}
			d := &Dialer{Resolver: resolver, Dial: rec.Dial}
			conn, err := d.DialContext(context.Background(), tc.network, "merchant.example:443")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			require.Equal(t, tc.want, rec.dialled())
		})
	}
}

func TestRebindingRefusedAtDialTime(t *testing.T) {
	t.Parallel()
	// Public when the URL is saved, private when the delivery dials.
	resolver := newStubResolver(map[string][][]string{
		"rebind.example": {{"8.8.8.8"}, {"10.0.0.5"}},
	})
	const hook = "http://rebind.example/hook"
	require.NoError(t, CheckURL(context.Background(), hook, false, resolver))

	rec := &recorder{t: t}
	client := NewHTTPClient(&Dialer{Resolver: resolver, Dial: rec.Dial})
	resp, err := client.Post(hook, "application/json", strings.NewReader(`{}`))
	if resp != nil {
		resp.Body.Close()
	}
	require.ErrorIs(t, err, ErrForbiddenAddress)
	require.ErrorContains(t, err, "10.0.0.5")
	require.Empty(t, rec.dialled())
}

func TestLoopbackServer(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)

	t.Run("allowed when private networks are allowed", func(t *testing.T) {
		client := NewHTTPClient(&Dialer{AllowPrivate: true})
		resp, err := client.Post(srv.URL+"/hook", "application/json", strings.NewReader(`{"ok":true}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, `{"ok":true}`, string(body))
		require.NoError(t, CheckURL(context.Background(), srv.URL, true))
	})

	t.Run("refused otherwise", func(t *testing.T) {
		before := hits.Load()
		rec := &recorder{t: t}
		client := NewHTTPClient(&Dialer{Dial: rec.Dial})
		resp, err := client.Post(srv.URL+"/hook", "application/json", strings.NewReader(`{}`))
		if resp != nil {
			resp.Body.Close()
		}
		var ue *url.Error
		require.ErrorAs(t, err, &ue)
		require.ErrorIs(t, err, ErrForbiddenAddress)
		require.Empty(t, rec.dialled())
		require.Equal(t, before, hits.Load())
		require.ErrorIs(t, CheckURL(context.Background(), srv.URL, false), ErrForbiddenAddress)
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Store(true)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	resp, err := NewHTTPClient(&Dialer{AllowPrivate: true}).Post(srv.URL+"/hook", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/elsewhere", resp.Header.Get("Location"))
	require.False(t, followed.Load())
}

func TestNewHTTPClientSettings(t *testing.T) {
	t.Parallel()
	c := NewHTTPClient(nil)
	require.Equal(t, 5*time.Second, c.Timeout)
	tr, ok := c.Transport.(*http.Transport)
	require.True(t, ok)
	require.Nil(t, tr.Proxy, "a proxy would connect for us and bypass the check")
	require.NotNil(t, tr.DialContext)
	require.NotZero(t, tr.TLSHandshakeTimeout)
	require.Equal(t, DefaultMaxPerEndpoint, tr.MaxIdleConnsPerHost,
		"a connection kept for each delivery an endpoint may have in flight")
	require.GreaterOrEqual(t, tr.MaxIdleConns, tr.MaxIdleConnsPerHost)

	// A nil Dialer refuses private networks.
	_, err := tr.DialContext(context.Background(), "tcp", "127.0.0.1:1")
	require.ErrorIs(t, err, ErrForbiddenAddress)
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	resolver := newStubResolver(map[string][][]string{
		"merchant.example": one("8.8.8.8", "2606:4700::1"),
		"metadata.example": one("169.254.169.254"),
		"internal.example": one("8.8.8.8", "172.16.3.4"),
	})
	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		wantErr      string // substring; empty means valid
		forbidden    bool
	}{
		{"public https", "https://merchant.example/hooks?x=1", false, "", false},
		{"public http with port", "http://merchant.example:8443/hooks", false, "", false},
		{"public literal", "https://8.8.8.8/hooks", false, "", false},
		{"ftp scheme", "ftp://merchant.example/hooks", false, "must use http or https", false},
		{"javascript scheme", "javascript:alert(1)", false, "must use http or https", false},
		{"no scheme", "merchant.example/hooks", false, "must use http or https", false},
		{"empty", "", false, "must use http or https", false},
		{"no host", "https:///hooks", false, "must include a host", false},
		{"opaque", "https:merchant.example", false, "must include a host", false},
		{"userinfo", "https://user:pass@merchant.example/hooks", false, "username or password", false},
		{"bad port", "https://merchant.example:99999/", false, "invalid port", false},
		{"unparseable", "https://merchant.example/%zz", false, "not a valid URL", false},
		{"too long", "https://merchant.example/" + strings.Repeat("a", 2048), false, "at most 2048", false},
		{"space", "https://merchant.example/a b", true, "printable ASCII", false},
		{"control character", "https://merchant.example/\x07", true, "printable ASCII", false},
		{"NUL", "https://merchant.example/\x00", true, "printable ASCII", false},
		{"invalid UTF-8", "https://merchant.example/\xff", true, "printable ASCII", false},
		{"not ASCII", "https://merchant.example/é", true, "printable ASCII", false},
		{"relative", "/hooks", true, "must use http or https", false},
		{"private literal", "http://10.1.2.3/hooks", false, "10.1.2.3", true},
		{"loopback v6 literal", "http://[::1]:8080/", false, "::1", true},
		{"metadata literal", "http://169.254.169.254/latest/meta-data", false, "169.254.169.254", true},
		{"metadata by name", "http://metadata.example/", false, "metadata.example", true},
		{"one private answer", "https://internal.example/", false, "172.16.3.4", true},
		{"unresolvable", "https://nowhere.example/", false, "could not be resolved", false},
		{"private allowed", "http://127.0.0.1:3000/hooks", true, "", false},
		{"private allowed skips DNS", "http://nowhere.example/hooks", true, "", false},
		{"scheme still checked when private allowed", "file:///etc/passwd", true, "must use http or https", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckURL(context.Background(), tc.url, tc.allowPrivate, resolver)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			require.Equal(t, tc.forbidden, errors.Is(err, ErrForbiddenAddress))
		})
	}
}
