package db_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/db"
)

// logBuffer is a slog destination the test can read while the server runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func embeddedDir(t *testing.T) string {
	t.Helper()
	// Under /tmp, reachable by the postgres user when the tests run as root.
	dir, err := os.MkdirTemp("", "paygate-embedded-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startEmbedded(t *testing.T, dir string, logs *logBuffer) *db.Embedded {
	t.Helper()
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Fast: true,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err, logs.String())
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	return pg
}

// A start stopped while initdb makes the cluster (a Ctrl-C in the first
// make run) leaves no half-made cluster behind: the next start makes it.
func TestEmbeddedInitdbStoppedHalfWay(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	var logs logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Once initdb has begun writing the cluster, wherever it writes it.
		for ctx.Err() == nil {
			for _, f := range []string{"pg/PG_VERSION", "pg.init/PG_VERSION"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					cancel()
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	pg, err := db.StartEmbedded(ctx, db.EmbeddedOptions{Dir: dir, Fast: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		_ = pg.Stop(context.Background()) // initdb was faster than the watch: nothing to check
		t.Skip("initdb finished before it could be stopped")
	}
	pg = startEmbedded(t, dir, &logs)
	conn, err := pgx.Connect(context.Background(), pg.URL())
	require.NoError(t, err, logs.String())
	defer conn.Close(context.Background())
	var one int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 1`).Scan(&one))
	_, err = os.Stat(filepath.Join(dir, "pg.init"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// A lock file left by a postmaster long gone may name a pid that another
// postgres has since (a reboot): that process is left alone, and the
// stale file removed so that the cluster starts.
func TestEmbeddedStaleLockFileOfAnotherServer(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	other := startEmbedded(t, embeddedDir(t), &logs)
	dir := embeddedDir(t)
	pg := startEmbedded(t, dir, &logs)
	require.NoError(t, pg.Stop(context.Background()))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pg", "postmaster.pid"),
		[]byte(strconv.Itoa(other.PID())+"\n"+filepath.Join(dir, "pg")+"\n"), 0o600))

	pg = startEmbedded(t, dir, &logs)
	for _, p := range []*db.Embedded{other, pg} {
		conn, err := pgx.Connect(context.Background(), p.URL())
		require.NoError(t, err, logs.String())
		require.NoError(t, conn.Ping(context.Background()))
		conn.Close(context.Background())
	}
	require.Contains(t, logs.String(), "names a process of another folder")
}

// A server that answers that it is starting up (crash recovery; here a
// standby without hot standby, which answers so until promoted) is waited
// for past the start's bound for a server that does not answer, not
// killed. Not parallel: it shortens that bound.
func TestEmbeddedWaitsForAServerStartingUp(t *testing.T) {
	dir := embeddedDir(t)
	var logs logBuffer
	pg := startEmbedded(t, dir, &logs)
	require.NoError(t, pg.Stop(context.Background()))
	defer db.SetEmbeddedStartWait(time.Second, 50*time.Millisecond)()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pg", "standby.signal"), nil, 0o600))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(t, err)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(filepath.Join(dir, "pg", "standby.signal"), uid, gid))
	}
	type started struct {
		pg  *db.Embedded
		err error
	}
	done := make(chan started, 1)
	go func() {
		pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Fast: true,
			Settings: []string{"hot_standby=off"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		done <- started{pg, err}
	}()
	const waiting = "embedded postgres is starting up (recovering after a crash?); waiting for it"
	require.Eventually(t, func() bool { return strings.Count(logs.String(), waiting) >= 40 }, 60*time.Second, 10*time.Millisecond,
		"it waits, past its bound of a second: %s", &logs)
	select {
	case s := <-done:
		t.Fatalf("the start ended while the server started up: %v", s.err)
	default:
	}
	// Promoted (as pg_ctl promote does), the server ends its recovery.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pg", "promote"), nil, 0o600))
	pid, err := strconv.Atoi(strings.Fields(readFile(t, filepath.Join(dir, "pg", "postmaster.pid")))[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGUSR1))
	s := <-done
	require.NoError(t, s.err, logs.String())
	t.Cleanup(func() { _ = s.pg.Stop(context.Background()) })
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// A cluster folder that is a symbolic link (to another disk, say) is made
// where it points, in place.
func TestEmbeddedClusterFolderThroughALink(t *testing.T) {
	t.Parallel()
	dir, target := embeddedDir(t), embeddedDir(t)
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "pg")))
	var logs logBuffer
	startEmbedded(t, dir, &logs)
	_, err := os.Stat(filepath.Join(target, "PG_VERSION"))
	require.NoError(t, err, "the cluster is where the link points")
	fi, err := os.Lstat(filepath.Join(dir, "pg"))
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&os.ModeSymlink, "the link stays")
}

// The server runs with the buffer cache it is given, and says so.
func TestEmbeddedSharedBuffers(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: embeddedDir(t), Fast: true,
		SharedBuffersMiB: 160, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err, logs.String())
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var setting string
	require.NoError(t, conn.QueryRow(ctx, `SHOW shared_buffers`).Scan(&setting))
	require.Equal(t, "160MB", setting)
	require.Contains(t, logs.String(), "shared_buffers_mib=160")
}

func queryOK(pg *db.Embedded) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// eventually polls cond; the bound only stops a broken test.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf(msg, args...)
}

// When the postmaster dies, the supervisor starts it again and says so.
func TestEmbeddedRestartsDeadPostmaster(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	pg := startEmbedded(t, embeddedDir(t), &logs)
	require.True(t, pg.Owned())
	old := pg.PID()
	require.NotZero(t, old)
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	eventually(t, 90*time.Second, func() bool {
		pid := pg.PID()
		return pid != 0 && pid != old && queryOK(pg) == nil
	}, "postgres was not restarted; log:\n%s", logs.String())
	require.Contains(t, logs.String(), "embedded postgres exited unexpectedly")
	require.Contains(t, logs.String(), "embedded postgres restarted")

	pid := pg.PID()
	require.NoError(t, pg.Stop(context.Background()))
	require.False(t, processAlive(pid), "stopped postgres still runs")
	select {
	case err := <-pg.Failed():
		t.Fatalf("supervisor gave up: %v", err)
	default:
	}
}

// A server that cannot be started again is given up on after a bound, and
// said so on Failed (serve then exits with the error).
func TestEmbeddedSupervisorGivesUp(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	dir := embeddedDir(t)
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Fast: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), RestartBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	defer pg.Stop(context.Background())
	// Without PG_VERSION postgres refuses the folder at once.
	require.NoError(t, os.Rename(filepath.Join(dir, "pg", "PG_VERSION"), filepath.Join(dir, "pg", "PG_VERSION.away")))
	require.NoError(t, syscall.Kill(pg.PID(), syscall.SIGKILL))
	select {
	case err := <-pg.Failed():
		require.ErrorContains(t, err, "could not be restarted after 8 attempts")
	case <-time.After(2 * time.Minute):
		t.Fatalf("the supervisor never gave up; log:\n%s", logs.String())
	}
	require.Equal(t, 8, strings.Count(logs.String(), "embedded postgres restart failed"))
	require.Contains(t, logs.String(), "supervisor gives up")
	require.Zero(t, pg.PID())
}

// TestEmbeddedHelperProcess is not a test: TestEmbeddedAdoptsLeftover runs
// the test binary as a paygate process that starts the embedded server and
// then waits to be killed.
func TestEmbeddedHelperProcess(t *testing.T) {
	dir := os.Getenv("PAYGATE_EMBEDDED_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	pg, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Fast: true,
		DieWithParent: os.Getenv("PAYGATE_EMBEDDED_HELPER_DIE") != "", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("postmaster %d\n", pg.PID())
	select {}
}

// A throwaway server (DieWithParent: the tests' own) shuts down when its
// process is killed with SIGKILL, which runs no deferred Stop.
func TestEmbeddedDiesWithParent(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestEmbeddedHelperProcess$", "-test.count=1")
	helper.Env = append(os.Environ(), "PAYGATE_EMBEDDED_HELPER_DIR="+dir, "PAYGATE_EMBEDDED_HELPER_DIE=1")
	out, err := helper.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, helper.Start())
	var pid int
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if p, ok := strings.CutPrefix(sc.Text(), "postmaster "); ok {
			pid, _ = strconv.Atoi(p)
			break
		}
		require.False(t, strings.HasPrefix(sc.Text(), "error"), sc.Text())
	}
	require.NotZero(t, pid, "helper did not start postgres")
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	require.NoError(t, helper.Process.Kill())
	_ = helper.Wait()
	require.Eventually(t, func() bool { return !processAlive(pid) }, 30*time.Second, 50*time.Millisecond,
		"the postmaster outlived its killed test process")
}

// A paygate killed with SIGKILL leaves its postmaster running (it runs in
// its own process group). The next paygate on the folder adopts it: it
// runs the server as its own, and stopping it stops the server. Meanwhile a
// second process on the folder is a guest that leaves the server alone.
func TestEmbeddedAdoptsLeftover(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestEmbeddedHelperProcess$", "-test.count=1")
	helper.Env = append(os.Environ(), "PAYGATE_EMBEDDED_HELPER_DIR="+dir)
	out, err := helper.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, helper.Start())
	var leftover int
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if pid, ok := strings.CutPrefix(sc.Text(), "postmaster "); ok {
			leftover, _ = strconv.Atoi(pid)
			break
		}
		require.False(t, strings.HasPrefix(sc.Text(), "error"), sc.Text())
	}
	require.NotZero(t, leftover, "helper did not start postgres")
	require.NoError(t, helper.Process.Kill())
	_ = helper.Wait()
	require.True(t, processAlive(leftover), "the postmaster should outlive its killed paygate")
	t.Cleanup(func() { _ = syscall.Kill(leftover, syscall.SIGKILL) })

	var logs logBuffer
	pg := startEmbedded(t, dir, &logs)
	require.True(t, pg.Owned())
	require.NotEqual(t, leftover, pg.PID())
	require.False(t, processAlive(leftover), "the leftover postmaster should have been stopped")
	require.Contains(t, logs.String(), "left running by a paygate process that is gone")
	require.NoError(t, queryOK(pg))

	guest := startEmbedded(t, dir, &logs)
	require.False(t, guest.Owned())
	require.NoError(t, queryOK(guest))
	require.NoError(t, guest.Stop(context.Background()))
	require.NoError(t, queryOK(pg), "a guest's stop must leave the server running")

	pid := pg.PID()
	require.NoError(t, pg.Stop(context.Background()))
	require.False(t, processAlive(pid))
	_, err = os.Stat(filepath.Join(dir, "pg", "postmaster.pid"))
	require.True(t, os.IsNotExist(err), "postgres did not shut down cleanly")
}

// As root the server runs as the postgres OS user: a DATA_DIR it cannot
// reach (a clone under a mode-700 home) fails with the way out.
func TestEmbeddedUnreachableDataDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to the postgres user")
	}
	if _, err := user.Lookup("postgres"); err != nil {
		t.Skip("no postgres OS user")
	}
	home := embeddedDir(t)
	require.NoError(t, os.Chmod(home, 0o700))
	_, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: filepath.Join(home, "paygate", "data"),
		Logger: slog.New(slog.DiscardHandler)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot reach DATA_DIR")
	require.Contains(t, err.Error(), home+" (mode 0700)")
	require.Contains(t, err.Error(), "Set DATA_DIR to a folder it can reach")
	require.Contains(t, err.Error(), "chmod o+x "+home)
}
