package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"paygate/db"
)

// cluster is the PostgreSQL bench starts for a run: paygate's own embedded
// server (db.StartEmbedded), durable as in production, in a temporary
// folder, with pg_stat_statements loaded so the cost account can read what
// each payment costs. The ceiling and paygate use this one server, so they
// run on the same settings.
type cluster struct {
	dir string
	pg  *db.Embedded
}

// serverSettings are added to the embedded server's own (max_connections
// 200): durability stated explicitly, the buffer cache paygate gives its
// own embedded server on this machine (db.DefaultSharedBuffersMiB), and the
// statistics the cost account reads. Printed in the report.
var serverSettings = []string{
	"fsync=on", "synchronous_commit=on", "full_page_writes=on",
	fmt.Sprintf("shared_buffers=%dMB", db.DefaultSharedBuffersMiB()),
	"shared_preload_libraries=pg_stat_statements",
	"pg_stat_statements.track=all", "pg_stat_statements.max=1000",
	"track_io_timing=on",
}

func startCluster(ctx context.Context) (*cluster, error) {
	dir, err := os.MkdirTemp("", "paygate-bench-pg-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	// As root the server runs as postgres, which must enter the folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return c, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c.pg, err = db.StartEmbedded(ctx, db.EmbeddedOptions{Dir: dir, Settings: serverSettings, DieWithParent: true, Logger: logger})
	if err != nil {
		return c, err
	}
	return c, c.admin(ctx, `CREATE DATABASE ceiling`)
}

func (c *cluster) url(database string) string { return c.pg.DatabaseURL(database) }

// admin runs sql in the server's postgres database (creating and dropping
// the others).
func (c *cluster) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// stop shuts the server down (its data is thrown away) and removes it.
func (c *cluster) stop() {
	defer os.RemoveAll(c.dir)
	if c.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.pg.Stop(ctx)
	}
}

func (c *cluster) pid() int {
	if c == nil || c.pg == nil {
		return 0
	}
	return c.pg.PID()
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
func pss(pid int) int64 { return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") }
