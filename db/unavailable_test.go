package db_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// What pgx hands back when the database goes away is 503 material; what a
// query or a client does wrong is not.
func TestIsUnavailableErrors(t *testing.T) {
	t.Parallel()
	wrapped := func(err error) error { return fmt.Errorf("payments: create: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"reset mid-query", wrapped(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"unexpected EOF mid-query", wrapped(fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF)), true},
		{"EOF", wrapped(io.EOF), true},
		{"broken pipe", wrapped(syscall.EPIPE), true},
		{"conn closed", wrapped(pgconn.ErrConnClosed), true},
		{"closed pool", wrapped(puddle.ErrClosedPool), true},
		{"admin shutdown", wrapped(&pgconn.PgError{Code: "57P01"}), true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"database dropped", &pgconn.PgError{Code: "3D000"}, true},
		{"deadline", wrapped(context.DeadlineExceeded), true},

		{"nil", nil, false},
		{"query cancelled", &pgconn.PgError{Code: "57014"}, false},
		{"unique violation", wrapped(&pgconn.PgError{Code: "23505"}), false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"no rows", wrapped(pgx.ErrNoRows), false},
		{"client went away", wrapped(context.Canceled), false},
		{"anything else", errors.New("boom"), false},
	} {
		require.Equal(t, tc.want, db.IsUnavailable(tc.err), "%s: %v", tc.name, tc.err)
	}
}

// A connection cut while a query runs (here by a proxy in between, as a
// network failure or a killed server would) gives errors IsUnavailable
// recognises: on the query that was running and on the next one.
func TestConnectionDroppedMidQueryIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dbtest.New(t))
	require.NoError(t, err)
	network, addr := "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if filepath.IsAbs(cfg.Host) {
		network, addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cut := make(chan struct{})
	go func() {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial(network, addr)
		if err != nil {
			client.Close()
			return
		}
		go func() { _, _ = io.Copy(server, client) }()
		go func() { _, _ = io.Copy(client, server) }()
		<-cut
		client.Close()
		server.Close()
	}()
	cfg.Host, cfg.Port = "127.0.0.1", uint16(ln.Addr().(*net.TCPAddr).Port)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)

	running := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		running <- err
	}()
	close(cut)
	err = <-running
	require.Error(t, err)
	require.True(t, db.IsUnavailable(err), "mid-query: %v", err)
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, db.IsUnavailable(err), "next query: %v", err)
}
