package main

import (
	"context"
	"fmt"
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
)

// cluster is the PostgreSQL bench starts for a run: a fresh cluster in a
// temporary folder, durable (fsync, synchronous_commit and full-page writes
// on, as paygate's embedded one), reachable only through a socket in that
// folder, with pg_stat_statements loaded so the cost account can read what
// each payment costs. The ceiling and paygate use this one server, so they
// run on the same settings.
type cluster struct {
	dir, sock string
	cmd       *exec.Cmd
	exited    chan struct{}
	cred      *syscall.Credential
}

// serverSettings are the server's settings beyond initdb's defaults: the
// embedded PostgreSQL's (max_connections=200, durable), plus the statistics
// the cost account reads. Printed in the report.
var serverSettings = []string{
	"max_connections=200",
	"fsync=on", "synchronous_commit=on", "full_page_writes=on",
	"shared_preload_libraries=pg_stat_statements",
	"pg_stat_statements.track=all", "pg_stat_statements.max=1000",
	"track_io_timing=on",
}

func startCluster(ctx context.Context) (*cluster, error) {
	bin, err := serverBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "paygate-bench-pg-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, sock: filepath.Join(dir, "run"), exited: make(chan struct{})}
	pgdata := filepath.Join(dir, "data")
	for _, d := range []string{pgdata, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c, err
		}
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse root: run them as postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, fmt.Errorf("as root, bench needs a 'postgres' OS user to run PostgreSQL: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			return c, err
		}
		for _, d := range []string{pgdata, c.sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return c, err
			}
		}
	}
	initdb := c.command(bin, "initdb", "-D", pgdata, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=reject")
	if out, err := initdb.CombinedOutput(); err != nil {
		return c, fmt.Errorf("initdb: %w: %s", err, out)
	}
	args := []string{"-D", pgdata, "-k", c.sock, "-c", "listen_addresses=", "-c", "unix_socket_permissions=0777"}
	for _, s := range serverSettings {
		args = append(args, "-c", s)
	}
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return c, err
	}
	defer logFile.Close()
	c.cmd = c.command(bin, "postgres", args...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		c.cmd = nil
		return c, err
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			defer conn.Close(ctx)
			for _, db := range []string{"paygate", "ceiling"} {
				if _, err := conn.Exec(ctx, `CREATE DATABASE `+db); err != nil {
					return c, err
				}
			}
			return c, nil
		}
		select {
		case <-c.exited:
			return c, fmt.Errorf("postgres exited during start-up:\n%s", tail(filepath.Join(dir, "postgres.log"), 20))
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("postgres not ready after 60 s:\n%s", tail(filepath.Join(dir, "postgres.log"), 20))
		}
	}
}

func (c *cluster) command(bin, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	// Its own process group: a Ctrl-C stops bench, which stops it last.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (c *cluster) url(db string) string {
	return "postgres://postgres@/" + db + "?host=" + c.sock + "&sslmode=disable"
}

// stop shuts the server down fast (its data is thrown away) and removes it.
func (c *cluster) stop() {
	defer os.RemoveAll(c.dir)
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *cluster) pid() int {
	if c == nil || c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

func serverBin() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (apt-get install postgresql)")
}

// usage is CPU time and memory of a process tree, read from /proc.
type usage struct {
	CPU time.Duration // user + system, including reaped children
	RSS int64         // bytes: the sum of the tree's proportional set sizes
}

var clockTick = 100.0 // USER_HZ on Linux

// treeUsage sums a process and its live children. An exited child's CPU
// shows in its parent's cutime/cstime once reaped, which the postmaster does
// for every backend, so nothing a backend spent is lost when it exits.
func treeUsage(root int, withMemory bool) usage {
	if root == 0 {
		return usage{}
	}
	var u usage
	pids := []int{root}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", root, root)); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	for i, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the ")" closing the command name: state is field 3.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 15 {
			continue
		}
		ticks := 0.0
		for _, k := range []int{11, 12} { // utime, stime (fields 14, 15)
			v, _ := strconv.ParseFloat(f[k], 64)
			ticks += v
		}
		if i == 0 {
			for _, k := range []int{13, 14} { // cutime, cstime of the root
				v, _ := strconv.ParseFloat(f[k], 64)
				ticks += v
			}
		}
		u.CPU += time.Duration(ticks / clockTick * float64(time.Second))
		if withMemory {
			u.RSS += pss(pid)
		}
	}
	return u
}

// pss is a process's proportional set size in bytes: shared pages (such as
// PostgreSQL's shared buffers) are divided among the processes sharing them,
// so a tree's sum counts them once.
func pss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
