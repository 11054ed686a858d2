package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
	Fast   bool
	Logger *slog.Logger
}

// Embedded is a PostgreSQL server in a folder of ours. When another paygate
// process already runs the server on the same folder, Embedded connects to
// it and leaves it running on Stop.
type Embedded struct {
	opts    EmbeddedOptions
	pgdata  string
	sockDir string
	cmd     *exec.Cmd
	exited  chan error
	cred    *syscall.Credential
}

// embeddedDB is the database paygate uses inside the embedded cluster.
const embeddedDB = "paygate"

// ErrNoServerBinaries means PostgreSQL's server is not installed.
var ErrNoServerBinaries = errors.New("PostgreSQL server binaries (postgres, initdb) not found on PATH or in /usr/lib/postgresql/*/bin: " +
	"install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing PostgreSQL database")

// StartEmbedded initialises the cluster on first use, starts the server
// unless one is already running on the folder, and makes sure the paygate
// database exists.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	e := &Embedded{opts: opts, pgdata: filepath.Join(dir, "pg"), sockDir: filepath.Join(dir, "run")}
	bin, err := serverBinDir()
	if err != nil {
		return nil, err
	}
	if err := e.prepare(dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(e.pgdata, "PG_VERSION")); err != nil {
		if err := e.initdb(ctx, bin); err != nil {
			return nil, err
		}
	}
	if e.ping(ctx) != nil {
		if err := e.start(ctx, bin); err != nil {
			return nil, err
		}
	} else {
		opts.Logger.Info("embedded postgres already running, connecting to it", "dir", dir)
	}
	if err := e.ensureDatabase(ctx); err != nil {
		e.Stop(context.Background())
		return nil, err
	}
	return e, nil
}

// URL is the connection string of the paygate database over the socket.
func (e *Embedded) URL() string { return e.url(embeddedDB) }

// SocketDir is where the server's Unix socket lives.
func (e *Embedded) SocketDir() string { return e.sockDir }

func (e *Embedded) url(database string) string {
	q := url.Values{"host": {e.sockDir}, "user": {"postgres"}, "sslmode": {"disable"}}
	return "postgres:///" + database + "?" + q.Encode()
}

// Owned tells whether this process started the server (and will stop it).
func (e *Embedded) Owned() bool { return e.cmd != nil }

// Stop shuts a server we started down with a fast shutdown (open
// transactions roll back, committed ones are durable) and waits for it.
func (e *Embedded) Stop(ctx context.Context) error {
	if e.cmd == nil {
		return nil
	}
	_ = e.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-e.exited:
		e.cmd = nil
		return ignoreSignalExit(err)
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	_ = e.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown: recovery on next start
	err := <-e.exited
	e.cmd = nil
	return ignoreSignalExit(err)
}

func ignoreSignalExit(err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil
	}
	return err
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
	for _, d := range []string{e.pgdata, e.sockDir} {
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (e *Embedded) command(ctx context.Context, bin, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	// Own process group: a Ctrl-C on the terminal must not stop the database
	// before the gateway has drained its work; Stop does that in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: e.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (e *Embedded) initdb(ctx context.Context, bin string) error {
	e.opts.Logger.Info("initialising embedded postgres", "pgdata", e.pgdata)
	cmd := e.command(ctx, bin, "initdb", "-D", e.pgdata, "-U", "postgres", "-E", "UTF8", "--locale=C",
		// Only the socket in our private folder is reachable.
		"--auth-local=trust", "--auth-host=reject")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *Embedded) start(ctx context.Context, bin string) error {
	logPath := filepath.Join(filepath.Dir(e.pgdata), "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{"-D", e.pgdata, "-k", e.sockDir, "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700",
		"-c", "max_connections=200"}
	if e.opts.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// Not CommandContext: the server outlives the start-up context.
	cmd := e.command(context.Background(), bin, "postgres", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		if e.ping(ctx) == nil {
			e.cmd, e.exited = cmd, exited
			e.opts.Logger.Info("embedded postgres started", "pid", cmd.Process.Pid, "socket_dir", e.sockDir)
			return nil
		}
		select {
		case err := <-exited:
			// Another process may have started the server on this folder in
			// the meantime (postgres refuses a second postmaster): use it.
			if e.ping(ctx) == nil {
				return nil
			}
			return fmt.Errorf("embedded postgres exited (%v); see %s: %s", err, logPath, tail(logPath))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("embedded postgres did not accept connections within 60s; see %s", logPath)
		}
	}
}

func (e *Embedded) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.url("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func (e *Embedded) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
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
