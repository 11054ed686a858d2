package db

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EmbeddedOptions describe the private PostgreSQL that paygate runs when no
// DATABASE_URL is given.
type EmbeddedOptions struct {
	// Dir holds the cluster (Dir/pg), its socket (Dir/run) and its log
	// (Dir/postgres.log).
	Dir string
	// Fast turns durability off (fsync, synchronous_commit, full-page
	// writes). Only tests set it: a crash may then lose committed data.
	Fast bool
	// Settings are further server settings (name=value), such as the
	// statistics the benchmark reads.
	Settings []string
	// SharedBuffersMiB is the server's buffer cache (shared_buffers);
	// 0: PostgreSQL's default (128 MiB). paygate gives its own server
	// DefaultSharedBuffersMiB unless told otherwise.
	SharedBuffersMiB int
	// MaxConnections is the server's max_connections; 0: 200. paygate
	// raises it to hold its pools when DB_MAX_CONNS asks for more.
	MaxConnections int
	// Connections is how many this process's pools may open: a process
	// that uses a server another one runs is warned when they may not fit.
	Connections int
	// DieWithParent makes the server shut down when this process dies,
	// however it dies (a test binary killed by its timeout, a bench
	// interrupted): for throwaway servers that nothing would ever stop or
	// adopt. paygate's own server must outlive a killed paygate (it is
	// adopted by the next one), so paygate never sets it.
	DieWithParent bool
	Logger        *slog.Logger
	// RestartBackoff is the first wait before restarting a server that
	// died (doubling up to maxBackoff); default restartBackoff.
	RestartBackoff time.Duration
}

// Embedded is a PostgreSQL server in a folder of ours.
//
// One paygate process owns the server of a folder: it holds an exclusive
// lock on Dir/paygate.lock (the kernel releases it however the process
// ends), supervises the postmaster (restarting it with back-off when it
// dies, giving up after a bound) and stops it on Stop. A second process on
// the same folder while the owner lives (a `paygate merchant create`, a
// replica) connects to the owner's server and leaves it alone. A server
// still running from an owner that is gone (killed with SIGKILL: the
// postmaster runs in its own process group and outlives it) is adopted: the
// new owner stops it and starts it again as its own child, so that it
// supervises it and stops it when it stops.
type Embedded struct {
	opts    EmbeddedOptions
	dir     string
	pgdata  string
	sockDir string
	bin     string
	cred    *syscall.Credential
	lock    *os.File // held by the owner only

	mu     sync.Mutex
	cmd    *exec.Cmd  // the running postmaster, when we own it
	exited chan error // receives cmd's exit

	stopOnce sync.Once
	stopping chan struct{} // closed by Stop
	done     chan struct{} // closed when the supervisor has returned
	failed   chan error    // one error when supervision gives up
}

// embeddedDB is the database paygate uses inside the embedded cluster.
const embeddedDB = "paygate"

// Supervision bounds: a restart waits restartBackoff, doubling up to
// maxBackoff; after maxFailedRestarts failed restarts in a row, or
// maxRestarts restarts within restartWindow, the supervisor gives up.
const (
	restartBackoff    = 250 * time.Millisecond
	maxBackoff        = 10 * time.Second
	maxFailedRestarts = 8
	maxRestarts       = 10
	restartWindow     = 10 * time.Minute
)

// ErrNoServerBinaries means PostgreSQL's server is not installed.
var ErrNoServerBinaries = errors.New("PostgreSQL server binaries (postgres, initdb) not found on PATH or in /usr/lib/postgresql/*/bin: " +
	"install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing PostgreSQL database")

// StartEmbedded initialises the cluster on first use, starts the server (or
// connects to the one its living owner runs) and makes sure the paygate
// database exists.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	e := &Embedded{opts: opts, dir: dir, pgdata: filepath.Join(dir, "pg"), sockDir: filepath.Join(dir, "run"),
		stopping: make(chan struct{}), done: make(chan struct{}), failed: make(chan error, 1)}
	if e.bin, err = serverBinDir(); err != nil {
		return nil, err
	}
	if err := e.prepare(dir); err != nil {
		return nil, err
	}
	owner, err := e.claim()
	if err != nil {
		return nil, err
	}
	if !owner {
		close(e.done)
		if err := e.waitForOwner(ctx); err != nil {
			return nil, err
		}
		opts.Logger.Info("embedded postgres run by another paygate process; connecting to it", "dir", dir)
		if err := e.ensureDatabase(ctx); err != nil {
			return nil, err
		}
		return e, nil
	}
	if _, err := os.Stat(filepath.Join(e.pgdata, "PG_VERSION")); err != nil {
		if err := e.initdb(ctx); err != nil {
			e.release()
			return nil, err
		}
	}
	if err := e.stopLeftover(ctx); err != nil {
		e.release()
		return nil, err
	}
	// Backends of a postmaster killed outright may hold its shared memory
	// for a moment, and postgres refuses to start until they are gone.
	for attempt := 1; ; attempt++ {
		err = e.start(ctx)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			e.release()
			return nil, err
		}
		opts.Logger.Warn("embedded postgres did not start; trying again", "attempt", attempt, "error", err)
		time.Sleep(time.Second)
	}
	go e.supervise()
	if err := e.ensureDatabase(ctx); err != nil {
		_ = e.Stop(context.Background())
		return nil, err
	}
	return e, nil
}

// URL is the connection string of the paygate database over the socket.
func (e *Embedded) URL() string { return e.DatabaseURL(embeddedDB) }

// SocketDir is where the server's Unix socket lives.
func (e *Embedded) SocketDir() string { return e.sockDir }

// DatabaseURL is the connection string of another database of the server.
func (e *Embedded) DatabaseURL(database string) string {
	q := url.Values{"host": {e.sockDir}, "user": {"postgres"}, "sslmode": {"disable"}}
	return "postgres:///" + database + "?" + q.Encode()
}

// Owned tells whether this process owns the server (and will stop it).
func (e *Embedded) Owned() bool { return e.lock != nil }

// Failed delivers an error when the supervisor has given up restarting the
// server: the process should exit and let its own supervisor act.
func (e *Embedded) Failed() <-chan error { return e.failed }

// PID is the postmaster's process id while this process runs it, else 0.
func (e *Embedded) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return 0
	}
	return e.cmd.Process.Pid
}

// Stop ends supervision and shuts a server we own down with a fast
// shutdown (open transactions roll back, committed ones are durable),
// escalating to an immediate shutdown (recovery on next start) when ctx
// ends first. It waits for the server to exit.
func (e *Embedded) Stop(ctx context.Context) error {
	if e.lock == nil {
		return nil
	}
	e.stopOnce.Do(func() { close(e.stopping) })
	<-e.done
	defer e.release()
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		return ignoreSignalExit(err)
	case <-ctx.Done():
	}
	e.opts.Logger.Warn("embedded postgres: fast shutdown did not finish in time; immediate shutdown")
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-exited:
		return ignoreSignalExit(err)
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		return ignoreSignalExit(<-exited)
	}
}

func ignoreSignalExit(err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil
	}
	return err
}

// claim takes the owner lock of the folder without waiting: true when this
// process is now the owner, false when a living process holds it.
func (e *Embedded) claim() (bool, error) {
	f, err := os.OpenFile(filepath.Join(e.dir, "paygate.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return false, fmt.Errorf("embedded postgres owner lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("embedded postgres owner lock: %w", err)
	}
	e.lock = f
	return true, nil
}

func (e *Embedded) release() {
	if e.lock != nil {
		e.lock.Close() // closing the last descriptor drops the flock
		e.lock = nil
	}
}

// waitForOwner waits for the owner's server to accept connections: the
// owner may be starting or restarting it.
func (e *Embedded) waitForOwner(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := e.ping(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded postgres in %s is owned by another paygate process but does not answer: %w", e.dir, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopLeftover stops a postmaster that still runs on the cluster although
// its owner is gone (we hold the owner lock): first a fast shutdown, then
// an immediate one.
//
// The lock file may be stale, its pid since taken by another process (after
// a power loss, say), a postgres of another cluster even: only a process
// that runs in this cluster's folder is stopped. The stale file is removed,
// as PostgreSQL would refuse to start beside a live pid.
func (e *Embedded) stopLeftover(ctx context.Context) error {
	pid := postmasterPID(e.pgdata)
	if pid == 0 || !alive(pid) {
		return nil
	}
	switch in, err := e.runsHere(pid); {
	case err != nil:
		return fmt.Errorf("embedded postgres: cannot tell whether pid %d of %s runs this cluster: %w",
			pid, filepath.Join(e.pgdata, "postmaster.pid"), err)
	case !in:
		e.opts.Logger.Warn("embedded postgres: its lock file names a process of another folder (a pid reused since); removing the file",
			"pid", pid, "dir", e.dir)
		return os.Remove(filepath.Join(e.pgdata, "postmaster.pid"))
	}
	e.opts.Logger.Warn("embedded postgres left running by a paygate process that is gone; stopping it to run it under supervision",
		"pid", pid, "dir", e.dir)
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		_ = syscall.Kill(pid, step.sig)
		deadline := time.Now().Add(step.wait)
		for alive(pid) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if !alive(pid) {
			return nil
		}
	}
	return fmt.Errorf("embedded postgres left running (pid %d) would not stop", pid)
}

// runsHere tells whether process pid runs in this cluster's folder, as a
// postmaster does (it changes into it).
func (e *Embedded) runsHere(pid int) (bool, error) {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	switch {
	case err == nil:
	case !alive(pid):
		return false, nil // gone meanwhile
	case os.IsPermission(err) && os.Geteuid() != 0:
		// Another user's process: this cluster's postmaster runs as this
		// process's user (as root, every process can be read).
		return false, nil
	default:
		return false, err
	}
	abs, err := filepath.Abs(e.pgdata)
	if err != nil {
		return false, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return cwd == abs, nil
}

// postmasterPID reads the postmaster's pid from its lock file; 0 if none.
func postmasterPID(pgdata string) int {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

// alive tells whether pid is a running postgres process. A zombie is not
// (an orphaned postmaster may wait as one for a parent that never reaps it),
// nor is another program that got the pid of a postmaster long gone.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) state ...": the name may hold spaces and parentheses.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 >= len(stat) {
		return false
	}
	return string(stat[open+1:end]) == "postgres" && stat[end+2] != 'Z'
}

// supervise restarts the postmaster whenever it exits without Stop, with
// back-off, until Stop or until it gives up (reported on Failed).
func (e *Embedded) supervise() {
	defer close(e.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	var restarts []time.Time
	for {
		e.mu.Lock()
		exited := e.exited
		e.mu.Unlock()
		var err error
		select {
		case <-e.stopping:
			return
		case err = <-exited:
		}
		e.mu.Lock()
		e.cmd = nil
		e.mu.Unlock()
		select {
		case <-e.stopping: // exited as we stop: nothing to restart
			return
		default:
		}
		e.opts.Logger.Error("embedded postgres exited unexpectedly; restarting it", "error", err,
			"log", filepath.Join(e.dir, "postgres.log"))
		now := time.Now()
		restarts = append(restarts, now)
		for len(restarts) > 0 && now.Sub(restarts[0]) > restartWindow {
			restarts = restarts[1:]
		}
		if len(restarts) > maxRestarts {
			e.giveUp(fmt.Errorf("embedded postgres died %d times within %s; see %s", len(restarts), restartWindow,
				filepath.Join(e.dir, "postgres.log")))
			return
		}
		if !e.restart(ctx) {
			return
		}
	}
}

// restart starts the server again with back-off; false when stopping or
// giving up.
func (e *Embedded) restart(ctx context.Context) bool {
	wait := cmp.Or(e.opts.RestartBackoff, restartBackoff)
	var err error
	for attempt := 1; attempt <= maxFailedRestarts; attempt++ {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
		if err = e.stopLeftover(ctx); err == nil {
			err = e.start(ctx)
		}
		if err == nil {
			e.opts.Logger.Warn("embedded postgres restarted", "attempt", attempt, "pid", e.PID())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		e.opts.Logger.Error("embedded postgres restart failed", "attempt", attempt, "error", err)
	}
	e.giveUp(fmt.Errorf("embedded postgres could not be restarted after %d attempts: %w", maxFailedRestarts, err))
	return false
}

func (e *Embedded) giveUp(err error) {
	e.opts.Logger.Error("embedded postgres supervisor gives up: the gateway cannot work without its database", "error", err)
	e.failed <- err
}

// serverBinDir finds a folder that holds both postgres and initdb: PATH
// first, then the newest Debian install.
func serverBinDir() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		_, err1 := os.Stat(filepath.Join(dir, "postgres"))
		_, err2 := os.Stat(filepath.Join(dir, "initdb"))
		if err1 == nil && err2 == nil {
			return dir, nil
		}
	}
	return "", ErrNoServerBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// prepare creates the folders. initdb and postgres refuse to run as root, so
// as root they run as the postgres OS user, who must own the cluster.
func (e *Embedded) prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create DATA_DIR: %w", err)
	}
	for _, d := range []string{e.pgdata, e.sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a 'postgres' OS user to run the embedded PostgreSQL (useradd --system postgres): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	e.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// The postgres user must be able to reach the cluster through DATA_DIR.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := reachable(dir, u); err != nil {
		return err
	}
	for _, d := range []string{e.pgdata, e.sockDir} {
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// reachable checks that user u may search every folder from / down to dir,
// by their mode bits: a clone under a mode-700 /root is not reachable by
// the postgres user, and initdb would fail with a bare "permission denied".
func reachable(dir string, u *user.User) error {
	uid, _ := strconv.Atoi(u.Uid)
	groups := map[uint32]bool{}
	ids, _ := u.GroupIds()
	for _, g := range append(ids, u.Gid) {
		if n, err := strconv.Atoi(g); err == nil {
			groups[uint32(n)] = true
		}
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == uint32(uid):
			can = mode&0o100 != 0
		case groups[st.Gid]:
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if !can {
			return fmt.Errorf("paygate runs as root, so the embedded PostgreSQL runs as the %q OS user, and that user cannot reach DATA_DIR %s: "+
				"%s (mode %#o) does not let it through. Set DATA_DIR to a folder it can reach (for example DATA_DIR=/var/lib/paygate), "+
				"or open the way with: chmod o+x %s", u.Username, dir, p, mode, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (e *Embedded) command(ctx context.Context, bin, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	// Own process group: a Ctrl-C on the terminal must not stop the database
	// before the gateway has drained its work; Stop does that in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: e.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

// initdb makes the cluster. initdb writes PG_VERSION first and the rest
// over seconds: stopped half way (a Ctrl-C in the first make run, a docker
// stop), it would leave a folder that every later start takes for a
// cluster and fails on. So the cluster is made beside pgdata and moved in
// once complete; a half-made one is removed at the next start.
//
// A cluster folder that is a symbolic link or a mount point (its own disk)
// cannot be replaced so: there initdb runs in place, as before.
func (e *Embedded) initdb(ctx context.Context) error {
	e.opts.Logger.Info("initialising embedded postgres", "pgdata", e.pgdata)
	dir := e.pgdata
	if inPlace, err := ownDisk(e.pgdata); err == nil && !inPlace {
		dir = e.pgdata + ".init"
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove a half-made cluster: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if e.cred != nil {
			if err := os.Chown(dir, int(e.cred.Uid), int(e.cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := e.command(ctx, e.bin, "initdb", "-D", dir, "-U", "postgres", "-E", "UTF8", "--locale=C",
		// Only the socket in our private folder is reachable.
		"--auth-local=trust", "--auth-host=reject")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if dir == e.pgdata {
		return nil
	}
	if err := os.Remove(e.pgdata); err != nil {
		return fmt.Errorf("%s holds files but no cluster (no PG_VERSION); move them away: %w", e.pgdata, err)
	}
	return os.Rename(dir, e.pgdata)
}

// ownDisk reports whether dir is a symbolic link, or a mount point (on
// another device than its parent).
func ownDisk(dir string) (bool, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return false, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return true, nil
	}
	parent, err := os.Stat(filepath.Dir(dir))
	if err != nil {
		return false, err
	}
	return fi.Sys().(*syscall.Stat_t).Dev != parent.Sys().(*syscall.Stat_t).Dev, nil
}

// start runs the postmaster as our child and waits until it accepts
// connections.
func (e *Embedded) start(ctx context.Context) error {
	logPath := filepath.Join(filepath.Dir(e.pgdata), "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{"-D", e.pgdata, "-k", e.sockDir, "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700",
		"-c", "max_connections=" + strconv.Itoa(cmp.Or(e.opts.MaxConnections, 200))}
	if e.opts.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	if e.opts.SharedBuffersMiB > 0 {
		args = append(args, "-c", "shared_buffers="+strconv.Itoa(e.opts.SharedBuffersMiB)+"MB")
	}
	for _, s := range e.opts.Settings {
		args = append(args, "-c", s)
	}
	// Not CommandContext: the server outlives the start-up context.
	cmd := e.command(context.Background(), e.bin, "postgres", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	exited := make(chan error, 1)
	if err := e.launch(cmd, exited); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}

	deadline := time.Now().Add(startWait)
	told := time.Now() // every start answers "starting up" for a moment: told only after recoveryLog
	for {
		err := e.ping(ctx)
		if err == nil {
			e.mu.Lock()
			e.cmd, e.exited = cmd, exited
			e.mu.Unlock()
			e.opts.Logger.Info("embedded postgres started", "pid", cmd.Process.Pid, "socket_dir", e.sockDir,
				"shared_buffers_mib", e.opts.SharedBuffersMiB)
			return nil
		}
		if startingUp(err) {
			// It answers that it starts: crash recovery replays the WAL
			// written since the last checkpoint, which may take longer than
			// any bound, and a server killed for it would start over.
			deadline = time.Now().Add(startWait)
			if time.Since(told) >= recoveryLog {
				told = time.Now()
				e.opts.Logger.Info("embedded postgres is starting up (recovering after a crash?); waiting for it", "log", logPath)
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("embedded postgres exited (%v); see %s: %s", err, logPath, tail(logPath))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("embedded postgres did not answer within %v; see %s", startWait, logPath)
		}
	}
}

// startWait bounds a start's wait for a server that does not answer;
// one that answers that it is starting up is waited for as long as it
// does, and the log says so every recoveryLog.
var (
	startWait   = 60 * time.Second
	recoveryLog = 30 * time.Second
)

// startingUp tells whether err is the server's answer that it is starting
// up or recovering (cannot_connect_now).
func startingUp(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57P03"
}

// launch starts the postmaster and sends its end to exited. With
// DieWithParent it gets SIGQUIT (PostgreSQL's immediate shutdown) when this
// process dies. Linux sends that signal when the thread that started the
// child ends, not the process, and Go may end idle threads: the child is
// started from a goroutine that holds its OS thread until the child has
// exited.
func (e *Embedded) launch(cmd *exec.Cmd, exited chan<- error) error {
	if !e.opts.DieWithParent {
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() { exited <- cmd.Wait() }()
		return nil
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the child.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	return <-started
}

func (e *Embedded) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.DatabaseURL("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// ensureDatabase creates paygate's database unless it exists. A process that
// uses a server another one runs also checks, on the same connection, that
// its pools fit (checkMaxConnections).
func (e *Embedded) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.DatabaseURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if !e.Owned() {
		e.checkMaxConnections(ctx, conn)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", embeddedDB).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+embeddedDB)
	if err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// checkMaxConnections warns a process that uses a server another process
// runs when the connections open now and this process's pools may not fit
// in the server's max_connections, which its owner set (from its own
// DB_MAX_CONNS): under load some of this process's connections may be
// refused.
func (e *Embedded) checkMaxConnections(ctx context.Context, conn *pgx.Conn) {
	var has, used int
	err := conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&has, &used)
	if err == nil && has < used+e.opts.Connections {
		e.opts.Logger.Warn("the embedded server may not have room for this process's connections; under load some may be refused (give the process that runs it a DB_MAX_CONNS large enough for every process)",
			"max_connections", has, "in_use", used, "this_process", e.opts.Connections)
	}
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P04"
}

// tail returns the last lines of the server log for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
