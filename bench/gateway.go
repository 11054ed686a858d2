package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// gateway is the paygate process bench builds and starts: test mode, its own
// embedded PostgreSQL in a fresh temporary DATA_DIR, a free port.
type gateway struct {
	url     string
	dir     string // DATA_DIR; the binary and its log live here too
	cmd     *exec.Cmd
	exited  chan struct{}
	startup time.Duration // process start to /health 200
}

func startGateway(ctx context.Context, delay, wait time.Duration) (*gateway, error) {
	if _, err := os.Stat("go.mod"); err != nil {
		return nil, fmt.Errorf("run from the repository root (make bench): %w", err)
	}
	// MkdirTemp makes it 0700; paygate opens it to the postgres user itself.
	dir, err := os.MkdirTemp("", "paygate-bench-")
	if err != nil {
		return nil, err
	}
	g := &gateway{dir: dir, exited: make(chan struct{})}
	bin := filepath.Join(dir, "paygate")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return g, fmt.Errorf("go build: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return g, err
	}
	logFile, err := os.Create(filepath.Join(dir, "paygate.log"))
	if err != nil {
		return g, err
	}
	defer logFile.Close()

	g.cmd = exec.Command(bin, "serve")
	g.cmd.Env = append(environWithout("DATABASE_URL", "PORT", "DATA_DIR", "LOG_LEVEL", "TEST_MODE",
		"TEST_PROCESSING_DELAY", "TEST_PAYMENT_SUCCESS", "WEBHOOK_ALLOW_PRIVATE_NETWORKS"),
		"PORT="+strconv.Itoa(port), "DATA_DIR="+dir, "LOG_LEVEL=warn", "TEST_MODE=true",
		"TEST_PROCESSING_DELAY="+strconv.FormatInt(delay.Milliseconds(), 10), "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true")
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C reaches bench, which then stops paygate in order.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := g.cmd.Start(); err != nil {
		g.cmd = nil
		return g, err
	}
	go func() { g.cmd.Wait(); close(g.exited) }()
	g.url = "http://127.0.0.1:" + strconv.Itoa(port)

	deadline := time.Now().Add(wait)
	for {
		select {
		case <-g.exited:
			return g, fmt.Errorf("paygate exited during start-up:\n%s", tail(filepath.Join(dir, "paygate.log"), 20))
		case <-ctx.Done():
			return g, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(g.url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				g.startup = time.Since(start)
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			return g, fmt.Errorf("paygate not healthy after %v:\n%s", wait, tail(filepath.Join(dir, "paygate.log"), 20))
		}
	}
}

// stop sends SIGTERM and waits (paygate stops HTTP, its workers, then its
// PostgreSQL), records what paygate logged, and removes DATA_DIR.
func (g *gateway) stop(rep *Report) {
	defer os.RemoveAll(g.dir)
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "bench: paygate did not stop within 30 s; killing it and its PostgreSQL")
		g.cmd.Process.Kill()
		<-g.exited
		// A killed paygate leaves its PostgreSQL running; its pid is the
		// first line of postmaster.pid.
		if b, err := os.ReadFile(filepath.Join(g.dir, "pg", "postmaster.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
				syscall.Kill(pid, syscall.SIGQUIT)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(g.dir, "paygate.log")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) == 1 && lines[0] == "" {
			lines = nil
		}
		rep.GatewayLog = GatewayLog{Lines: len(lines), First: lines[:min(5, len(lines))]}
	}
}

// rss is the gateway process's resident set in bytes, from /proc (0 if
// unknown).
func (g *gateway) rss() int64 {
	if g == nil || g.cmd == nil {
		return 0
	}
	f, err := os.Open("/proc/" + strconv.Itoa(g.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// sampleRSS keeps the highest RSS seen in peak, every 100 ms, until ctx ends.
func (g *gateway) sampleRSS(ctx context.Context, peak *int64) {
	var p int64
	defer func() { *peak = max(*peak, p) }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		p = max(p, g.rss())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// environWithout is os.Environ minus the given variables, so that the
// caller's environment cannot point paygate at another database or port.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
