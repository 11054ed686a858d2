package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// gateway is the paygate process bench builds and starts: test mode, on the
// bench's PostgreSQL, on a free port.
type gateway struct {
	url     string
	dir     string // the binary and its log live here
	bin     string
	cmd     *exec.Cmd
	exited  chan struct{}
	startup time.Duration // process start to /health 200
	// adminToken opens /debug/pprof (-profile); empty: the admin routes stay off.
	adminToken string
}

// buildGateway builds paygate into a temporary folder.
func buildGateway(ctx context.Context) (*gateway, error) {
	if _, err := os.Stat("go.mod"); err != nil {
		return nil, fmt.Errorf("run from the repository root (make bench): %w", err)
	}
	dir, err := os.MkdirTemp("", "paygate-bench-")
	if err != nil {
		return nil, err
	}
	g := &gateway{dir: dir, bin: filepath.Join(dir, "paygate")}
	build := exec.CommandContext(ctx, "go", "build", "-o", g.bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return g, fmt.Errorf("go build: %w", err)
	}
	return g, nil
}

// migrate runs paygate migrate on databaseURL.
func (g *gateway) migrate(ctx context.Context, databaseURL string) error {
	cmd := exec.CommandContext(ctx, g.bin, "migrate")
	cmd.Env = append(environWithout("DATABASE_URL", "LOG_LEVEL"), "DATABASE_URL="+databaseURL, "LOG_LEVEL=warn")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("paygate migrate: %w: %s", err, out)
	}
	return nil
}

// start runs paygate serve on databaseURL with env added to its settings,
// and waits until /health answers 200.
func (g *gateway) start(ctx context.Context, databaseURL string, delay, wait time.Duration, env []string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(g.dir, "paygate.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()

	g.exited = make(chan struct{})
	g.cmd = exec.Command(g.bin, "serve")
	g.cmd.Env = append(environWithout("ADMIN_TOKEN", "DATABASE_URL", "PORT", "DATA_DIR", "LOG_LEVEL", "TEST_MODE",
		"TEST_PROCESSING_DELAY", "TEST_PAYMENT_SUCCESS", "WEBHOOK_ALLOW_PRIVATE_NETWORKS"),
		"DATABASE_URL="+databaseURL, "PORT="+strconv.Itoa(port), "DATA_DIR="+g.dir, "LOG_LEVEL=warn", "TEST_MODE=true",
		"TEST_PROCESSING_DELAY="+strconv.FormatInt(delay.Milliseconds(), 10), "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true")
	g.cmd.Env = append(g.cmd.Env, env...)
	if g.adminToken != "" {
		g.cmd.Env = append(g.cmd.Env, "ADMIN_TOKEN="+g.adminToken)
	}
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C reaches bench, which then stops paygate in order.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := g.cmd.Start(); err != nil {
		g.cmd = nil
		return err
	}
	go func() { g.cmd.Wait(); close(g.exited) }()
	g.url = "http://127.0.0.1:" + strconv.Itoa(port)

	deadline := time.Now().Add(wait)
	for {
		select {
		case <-g.exited:
			return fmt.Errorf("paygate exited during start-up:\n%s", tail(filepath.Join(g.dir, "paygate.log"), 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get(g.url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				g.startup = time.Since(start)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("paygate not healthy after %v:\n%s", wait, tail(filepath.Join(g.dir, "paygate.log"), 20))
		}
	}
}

// counter sums the series of the counter name on paygate's /metrics: -1
// when it cannot be read.
func (g *gateway) counter(name string) float64 {
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			if v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// stop sends SIGTERM and waits: paygate stops HTTP and then its workers.
func (g *gateway) stop() {
	if g == nil || g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "bench: paygate did not stop within 30 s; killing it")
		g.cmd.Process.Kill()
		<-g.exited
	}
	g.cmd = nil
}

// remove deletes the binary and log, keeping what paygate logged.
func (g *gateway) remove(rep *Report) {
	if g == nil {
		return
	}
	if b, err := os.ReadFile(filepath.Join(g.dir, "paygate.log")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) == 1 && lines[0] == "" {
			lines = nil
		}
		rep.GatewayLog = GatewayLog{Lines: len(lines), First: lines[:min(5, len(lines))]}
	}
	os.RemoveAll(g.dir)
}

func (g *gateway) pid() int {
	if g == nil || g.cmd == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// peakRSS is a process's peak resident set in bytes (VmHWM: the kernel's
// high-water mark, so no sample can miss the peak).
func peakRSS(pid int) int64 { return procKB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:") }

// procKB reads the "key: N kB" line of a /proc file, in bytes (0 when
// absent).
func procKB(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
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
