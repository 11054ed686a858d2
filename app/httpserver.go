package app

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// maxHeaderBytes bounds a request's header block (net/http's default is
// 1 MiB per connection).
const maxHeaderBytes = 32 << 10

// NewHTTPServer builds the HTTP server with the configured timeouts, so that
// a client that stalls cannot hold a connection: the header must arrive
// within HTTPReadHeaderTimeout, the whole request (body included) within
// HTTPReadTimeout, and an idle keep-alive connection is closed after
// HTTPIdleTimeout.
func NewHTTPServer(cfg Config, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// MaxConnections is HTTP_MAX_CONNECTIONS, or by default three quarters of
// the open-file limit (at most 10,000), so that the process keeps
// descriptors for its database connections and files however many clients
// connect.
func (c Config) MaxConnections() int {
	if c.HTTPMaxConnections > 0 {
		return c.HTTPMaxConnections
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1024
	}
	return int(max(64, min(10_000, rl.Cur*3/4)))
}

// LimitListener accepts at most n connections at a time: beyond that, new
// connections wait in the kernel's backlog until one closes (the read and
// idle timeouts see that one does).
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Close also wakes an Accept that waits for a free slot, so that a shutdown
// with every slot taken does not wait for a client.
func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}
