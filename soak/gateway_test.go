package soak

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"paygate/db"
)

// binary is the paygate built once for the package by TestMain.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv("PAYGATE_SOAK") == "" {
		os.Exit(m.Run()) // every test skips
	}
	dir, err := os.MkdirTemp("", "paygate-soak-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "paygate")
	build := exec.Command("go", "build", "-o", binary, "paygate")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build paygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func soakOnly(t *testing.T) {
	if binary == "" {
		t.Skip("soak test: run with PAYGATE_SOAK=1 (make soak)")
	}
}

// Settings every soak gateway runs with: test mode with a short decision
// delay, the fast webhook schedule, and a rescue interval just above the
// job timeout so jobs of a killed process run again within the test.
var baseEnv = map[string]string{
	"TEST_MODE":                    "true",
	"TEST_PROCESSING_DELAY":        "200",
	"WEBHOOK_RETRY_INTERVALS_TEST": "true",
	"JOB_RESCUE_AFTER":             "31s",
	"SHUTDOWN_TIMEOUT":             "10s",
	"LOG_FORMAT":                   "text",
	"LOG_LEVEL":                    "info",
}

// gateway is one paygate process.
type gateway struct {
	t      *testing.T
	role   string
	port   int
	env    map[string]string
	log    string
	cmd    *exec.Cmd
	exited chan error
}

// dataDir is a DATA_DIR for the embedded database, under /tmp so that the
// postgres user (the server's user when the tests run as root) reaches it.
// Whatever postmaster is left on it is stopped when the test ends.
func dataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "paygate-soak-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() {
		if pid := postmasterPID(dir); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		os.RemoveAll(dir)
	})
	return dir
}

// embeddedURL is the paygate database of the embedded server in dir.
func embeddedURL(dir string) string {
	return "postgres:///paygate?" + url.Values{"host": {filepath.Join(dir, "run")}, "user": {"postgres"},
		"sslmode": {"disable"}}.Encode()
}

func postmasterPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startGateway runs paygate serve --role=role on port with env over
// baseEnv, and waits until /ready answers 200.
func startGateway(t *testing.T, role string, port int, env map[string]string) *gateway {
	t.Helper()
	g := &gateway{t: t, role: role, port: port, env: env,
		log: filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d-%d.log", role, port, time.Now().UnixNano()))}
	g.start()
	t.Cleanup(func() {
		if g.cmd != nil {
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", g.log, tailOf(g.log, 40))
		}
	})
	return g
}

func (g *gateway) start() {
	t := g.t
	t.Helper()
	f, err := os.Create(g.log)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(binary, "serve", "--role="+g.role)
	cmd.Env = os.Environ()
	for k, v := range baseEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range g.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PORT="+strconv.Itoa(g.port))
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	g.cmd, g.exited = cmd, make(chan error, 1)
	go func() { g.exited <- cmd.Wait() }()
	g.waitReady()
}

// restart starts the process again with the same settings and port.
func (g *gateway) restart() { g.start() }

func (g *gateway) url() string { return "http://127.0.0.1:" + strconv.Itoa(g.port) }

// waitReady polls /ready until it answers 200; the bound only stops a
// gateway that never comes up.
func (g *gateway) waitReady() {
	g.t.Helper()
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-g.exited:
			g.cmd = nil
			g.t.Fatalf("paygate %s exited at start (%v):\n%s", g.role, err, tailOf(g.log, 40))
		default:
		}
		resp, err := http.Get(g.url() + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	g.t.Fatalf("paygate %s never became ready:\n%s", g.role, tailOf(g.log, 40))
}

// kill sends sig and waits (at most within) for the process to exit.
func (g *gateway) kill(sig syscall.Signal, within time.Duration) error {
	g.t.Helper()
	g.signal(sig)
	return g.waitExit(within)
}

func (g *gateway) signal(sig syscall.Signal) {
	g.t.Helper()
	require.NoError(g.t, g.cmd.Process.Signal(sig))
}

// waitExit waits for the process to exit and returns how it did; it fails
// the test when the process outlives within.
func (g *gateway) waitExit(within time.Duration) error {
	g.t.Helper()
	select {
	case err := <-g.exited:
		g.cmd = nil
		return err
	case <-time.After(within):
		g.t.Fatalf("paygate %s did not exit within %s:\n%s", g.role, within, tailOf(g.log, 40))
		return nil
	}
}

// tailOf is the last n lines of a gateway's log, without its request lines.
func tailOf(path string, n int) string {
	b, _ := os.ReadFile(path)
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.Contains(line, " msg=request ") {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// externalPostgres is a PostgreSQL that paygate reaches through
// DATABASE_URL: the test starts and stops it.
type externalPostgres struct {
	t   *testing.T
	dir string
	pg  *db.Embedded
}

func startExternal(t *testing.T) *externalPostgres {
	x := &externalPostgres{t: t, dir: dataDir(t)}
	x.start()
	t.Cleanup(x.stop)
	return x
}

func (x *externalPostgres) start() {
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: x.dir, Fast: true, DieWithParent: true,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(x.t, err)
	x.pg = pg
}

func (x *externalPostgres) stop() {
	if x.pg != nil {
		require.NoError(x.t, x.pg.Stop(context.Background()))
		x.pg = nil
	}
}

func (x *externalPostgres) url() string { return embeddedURL(x.dir) }
