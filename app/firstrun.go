package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"paygate/merchants"
)

// The first hour of a new user: what each command says about the database it
// uses, and the mistakes that must stop it early with a message that names
// the variable to change.

// errNoEmbeddedCluster is returned by commands other than serve when DATA_DIR
// holds no cluster: creating one there would give them a second, empty
// database (with its own merchants) next to the one the server uses.
var errNoEmbeddedCluster = errors.New("no embedded database")

// requireEmbeddedCluster refuses to go on when DATA_DIR has no initialised
// cluster. Only serve creates one.
func requireEmbeddedCluster(dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("DATA_DIR=%q: %w", dataDir, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "pg", "PG_VERSION")); err == nil {
		return nil
	}
	return fmt.Errorf("%w in %s (DATA_DIR=%q, relative to %s): only `paygate serve` creates one. "+
		"Run this command from the folder where paygate serve runs, or point it there with DATA_DIR=/path/to/data "+
		"(or DATABASE_URL=postgres://… for an external database)", errNoEmbeddedCluster, abs, dataDir, workingDir())
}

func workingDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "the current folder"
	}
	return wd
}

// databaseAttrs describe the database a command uses, for its first log
// line: the embedded cluster's folder, or the external host and database
// (never the password).
func databaseAttrs(cfg Config) []any {
	if cfg.DatabaseURL == "" {
		abs, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			abs = cfg.DataDir
		}
		return []any{"database", "embedded", "data_dir", abs}
	}
	pc, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return []any{"database", "external"}
	}
	return []any{"database", "external", "host", pc.Host, "port", pc.Port, "dbname", pc.Database, "user", pc.User}
}

// checkDatabaseURL parses DATABASE_URL at configuration time, so that a typo
// is reported with the variable's name before anything starts.
func checkDatabaseURL(url string) error {
	if url == "" {
		return nil
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx redacts the password in its message.
		return fmt.Errorf("DATABASE_URL: must be a PostgreSQL URL such as postgres://user:pass@host:5432/db: %w", err)
	}
	// pgx ends the user and password at the first "@": with another "@" in
	// the password, the rest of it would become the host, and be logged as
	// the host at start and in a connection error. Not repeated here.
	hosts := []string{pc.ConnConfig.Host}
	for _, f := range pc.ConnConfig.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if strings.Contains(h, "@") {
			return errors.New(`DATABASE_URL: its host holds an "@": percent-encode "@" in the user name or password as %40 (and ":" as %3A, "/" as %2F)`)
		}
	}
	return nil
}

// pingExternal connects once to an external database so that a wrong host,
// user or password is reported as a DATABASE_URL problem, not as a
// migration failure.
func pingExternal(ctx context.Context, pool *pgxpool.Pool, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pc := pool.Config().ConnConfig
		return fmt.Errorf("DATABASE_URL: cannot connect to database %q on %s:%d as %q: %w",
			pc.Database, pc.Host, pc.Port, pc.User, err)
	}
	return nil
}

// listen binds the HTTP port before any slow start-up step (initdb,
// migrations), so that a port in use is reported at once.
func listen(cfg Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return nil, fmt.Errorf("PORT=%d: cannot listen (set PORT to a free port): %w", cfg.Port, err)
	}
	return LimitListener(ln, cfg.MaxConnections()), nil
}

// welcome tells a developer where to go once the gateway listens.
func welcome(logger *slog.Logger, cfg Config, addr net.Addr, seeded bool) {
	base := "http://localhost:" + strconv.Itoa(cfg.Port)
	if tcp, ok := addr.(*net.TCPAddr); ok {
		base = "http://localhost:" + strconv.Itoa(tcp.Port)
	}
	attrs := []any{"api", base + "/api/v1", "dashboard", base + "/dashboard", "openapi", base + "/api/v1/openapi.json"}
	if seeded { // only in test mode
		attrs = append(attrs, "test_key", merchants.TestMerchantKey, "test_secret", merchants.TestMerchantSecret)
	}
	logger.Info("paygate is ready", attrs...)
}
