package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"paygate/web"
)

// ErrForbiddenAddress is wrapped by every refusal to reach an address that
// ForbiddenIP rejects.
var ErrForbiddenAddress = errors.New("forbidden address")

// Resolver is the part of *net.Resolver the checks need; tests stub it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

const (
	deliveryTimeout = 5 * time.Second
	maxURLLength    = 2048
)

// forbiddenPrefixes are the ranges the netip.Addr Is* methods do not cover.
var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"; 0.x can reach the local host
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, provider-internal
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, includes 255.255.255.255 broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated), includes :: and ::1
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still private in practice)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // NAT64 for local use (RFC 8215): its translator is on our network
}

// Prefixes whose addresses embed an IPv4 address that a local translator or
// relay would reach for us, so the embedded address decides.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // v4 in the last 4 bytes
	sixToFour   = netip.MustParsePrefix("2002::/16")    // v4 in bytes 2..5
)

// ForbiddenIP reports whether delivery must not connect to ip: anything that
// is not a globally routable unicast address. Invalid addresses are forbidden.
func ForbiddenIP(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	// Prefix.Contains never matches zoned or v4-mapped addresses, so normalise
	// first; ::ffff:127.0.0.1 must be judged as 127.0.0.1.
	ip = ip.WithZone("").Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	b := ip.As16()
	if nat64Prefix.Contains(ip) {
		return ForbiddenIP(netip.AddrFrom4([4]byte(b[12:16])))
	}
	if sixToFour.Contains(ip) {
		return ForbiddenIP(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return false
}

// Dialer resolves, checks and dials in one place, and connects to the checked
// IP literal, so a DNS answer that changes between check and connect (DNS
// rebinding) cannot redirect the connection.
type Dialer struct {
	AllowPrivate bool
	Resolver     Resolver                                                          // nil: net.DefaultResolver
	Dial         func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dialer with a 5 s timeout
}

// DialContext has the signature http.Transport expects.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		// Only TCP is ever needed; anything else (unix sockets) is local by nature.
		return nil, fmt.Errorf("webhooks: refusing network %q", network)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := resolve(ctx, d.Resolver, host)
	if err != nil {
		return nil, err
	}
	if !d.AllowPrivate {
		// Any forbidden answer refuses the host, even if others are public:
		// otherwise the attacker controls which one we reach.
		for _, ip := range ips {
			if ForbiddenIP(ip) {
				return nil, fmt.Errorf("webhooks: %w: host %q resolves to %s", ErrForbiddenAddress, host, ip)
			}
		}
	}
	dial := d.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: deliveryTimeout}).DialContext
	}
	var lastErr error
	for _, ip := range ips {
		if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && !ip.Is6()) {
			continue
		}
		conn, err := dial(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("webhooks: host %q has no %s address", host, network)
	}
	return nil, lastErr
}

// resolve returns host's addresses: the literal itself for an IP literal,
// otherwise a lookup. Results are unmapped so v4 answers dial as v4.
func resolve(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	answers, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("webhooks: resolving %q: %w", host, err)
	}
	ips := make([]netip.Addr, 0, len(answers))
	for _, a := range answers {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return nil, fmt.Errorf("webhooks: resolving %q: bad address %v", host, a.IP)
		}
		ips = append(ips, ip.Unmap().WithZone(a.Zone))
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("webhooks: host %q has no addresses", host)
	}
	return ips, nil
}

// CheckURL validates a webhook URL when a merchant saves it. Errors are
// plain, user-facing messages about webhook_url. resolver is optional
// (default net.DefaultResolver). The dialer checks again at delivery time,
// because DNS answers can change after this check.
func CheckURL(ctx context.Context, raw string, allowPrivate bool, resolver ...Resolver) error {
	if len(raw) > maxURLLength {
		return fmt.Errorf("webhook_url must be at most %d characters", maxURLLength)
	}
	// RFC 3986: a URL is printable ASCII; anything else is percent-encoded
	// (or punycode in a host). Spaces and control characters are refused.
	if !web.IsPrintableASCII(raw) {
		return errors.New("webhook_url must be printable ASCII without spaces (percent-encode the rest)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("webhook_url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("webhook_url must use http or https")
	}
	if u.User != nil {
		return errors.New("webhook_url must not contain a username or password")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("webhook_url must include a host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("webhook_url has an invalid port")
		}
	}
	if allowPrivate {
		return nil
	}
	var r Resolver
	if len(resolver) > 0 {
		r = resolver[0]
	}
	ips, err := resolve(ctx, r, host)
	if err != nil {
		return fmt.Errorf("webhook_url host %q could not be resolved", host)
	}
	for _, ip := range ips {
		if ForbiddenIP(ip) {
			return fmt.Errorf("webhook_url host %q resolves to a private, loopback, link-local or reserved address (%s): %w",
				host, ip, ErrForbiddenAddress)
		}
	}
	return nil
}

// NewHTTPClient returns the delivery client: every connection goes through
// d (a nil d refuses private networks), no proxy (a proxy would connect on
// our behalf and bypass the check), and redirects are returned rather than
// followed, so a 3xx is a failed attempt and cannot lead somewhere unchecked.
func NewHTTPClient(d *Dialer) *http.Client {
	if d == nil {
		d = &Dialer{}
	}
	return &http.Client{
		Timeout: deliveryTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true, // a custom DialContext otherwise disables HTTP/2
			TLSHandshakeTimeout:   deliveryTimeout,
			ResponseHeaderTimeout: deliveryTimeout,
			// An endpoint may have DefaultMaxPerEndpoint deliveries in
			// flight; with fewer idle connections kept for it, a busy
			// merchant's deliveries would each dial (and shake hands for
			// TLS) anew, on our side and on the merchant's.
			MaxIdleConns:           4 * DefaultMaxPerEndpoint,
			MaxIdleConnsPerHost:    DefaultMaxPerEndpoint,
			IdleConnTimeout:        90 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
	}
}
