package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"paygate/merchants"
	"paygate/webhooks"
)

const usage = `usage:
  paygate [serve] [--role=all|api|worker]   run the gateway (default)
  paygate migrate                           apply database migrations and exit
  paygate merchant create --name N --email E
                                            create a merchant; prints its key and secret once
  paygate merchant rotate-secret --key KEY  give a merchant a new API secret (printed once) and
                                            end its dashboard sessions; the old one stops
                                            working within a minute
  paygate healthcheck                       exit 0 when this container's gateway is ready (GET /ready)
  paygate help                              this text

Only serve creates the embedded database (in DATA_DIR, default ./data); the
other commands use the one that exists there, or DATABASE_URL.

Configuration comes from the environment; see README.md.
`

// Main runs the command line and returns the exit code.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if isHelp(cmd) || (len(args) > 0 && isHelp(args[0])) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cmd != "serve" {
		cfg.ExistingDatabaseOnly = true
	}
	if cmd == "healthcheck" {
		return healthcheck(cfg, stderr)
	}
	logger := NewLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		role := fs.String("role", string(RoleAll), "what this process does: all, api or worker")
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		r := Role(*role)
		if r != RoleAll && r != RoleAPI && r != RoleWorker {
			fmt.Fprintf(stderr, "--role=%q: must be all, api or worker\n", *role)
			return 2
		}
		tuneGC(getenv)
		err = serve(ctx, cfg, r, logger)
	case "migrate":
		err = migrate(ctx, cfg, logger)
	case "merchant":
		err = merchantCmd(ctx, cfg, args, logger, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if !errors.Is(err, errUsage) {
			// Once, through the logger (the configured format on stderr).
			logger.Error("paygate failed", "error", err.Error())
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "--help" || arg == "-help"
}

// serve runs until ctx is cancelled (SIGINT/SIGTERM), then stops HTTP first
// and everything else after it.
func serve(ctx context.Context, cfg Config, role Role, logger *slog.Logger) error {
	// The port first: a port in use is reported before initdb and migrations.
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	defer ln.Close()
	a, err := New(ctx, cfg, role, logger)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	if err := a.Start(ctx); err != nil {
		return err
	}
	srv := NewHTTPServer(cfg, a.Echo, logger)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("paygate listening", "addr", ln.Addr().String(), "role", role, "test_mode", cfg.TestMode,
		"embedded_database", cfg.DatabaseURL == "")
	welcome(logger, cfg, ln.Addr(), a.seeded)

	// A fatal error (the listener failed, the embedded database is gone for
	// good) stops in the same order as a signal: HTTP before the pool it
	// answers from.
	var fatal error
	select {
	case fatal = <-served:
	case fatal = <-a.DatabaseFailed():
	case <-ctx.Done():
	}
	shutdown(a, srv, cfg.ShutdownTimeout, logger, fatal)
	return fatal
}

// shutdown is the stop of API.md (Operations), all within timeout: /ready
// turns 503, HTTP stops taking connections and finishes in-flight requests
// (for at most half the time), then River, the pool and PostgreSQL stop.
// cause is the fatal error that stops it, nil for a signal.
func shutdown(a *App, srv *http.Server, timeout time.Duration, logger *slog.Logger, cause error) {
	start := time.Now()
	if cause != nil {
		logger.Error("shutdown: fatal error", "error", cause, "timeout", timeout)
	} else {
		logger.Info("shutdown: signal received", "timeout", timeout)
	}
	a.Drain()
	httpCtx, cancel := context.WithDeadline(context.Background(), start.Add(timeout/2))
	if err := srv.Shutdown(httpCtx); err != nil {
		logger.Warn("shutdown: requests still running at the HTTP deadline; closing their connections", "error", err)
		_ = srv.Close()
	}
	cancel()
	logger.Info("shutdown: http stopped; in-flight requests answered")
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
	defer cancel()
	a.Close(ctx)
	logger.Info("shutdown: done", "took", time.Since(start).Round(time.Millisecond))
}

func migrate(ctx context.Context, cfg Config, logger *slog.Logger) error {
	// New migrates; the worker role is not started, so this only migrates.
	return onDatabase(ctx, cfg, logger, func(*pgxpool.Pool) error { return nil })
}

func merchantCmd(ctx context.Context, cfg Config, args []string, logger *slog.Logger, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rotate-secret" {
		return rotateSecretCmd(ctx, cfg, args[1:], logger, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	fs := flag.NewFlagSet("merchant create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "merchant name")
	email := fs.String("email", "", "merchant email")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if *name == "" || *email == "" {
		fmt.Fprintln(stderr, "merchant create needs --name and --email")
		return errUsage
	}
	return onDatabase(ctx, cfg, logger, func(pool *pgxpool.Pool) error {
		m, err := merchants.Create(ctx, pool, *name, *email, webhooks.NewSecret)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "merchant_id=%s\napi_key=%s\napi_secret=%s\nwebhook_secret=%s\n"+
			"The secret is shown only now; it is stored hashed.\n", m.ID, m.APIKey, m.APISecret, m.WebhookSecret)
		return nil
	})
}

// onDatabase runs a command's work on the database it configures (migrated,
// the embedded one attached to), and closes it.
func onDatabase(ctx context.Context, cfg Config, logger *slog.Logger, work func(*pgxpool.Pool) error) error {
	a, err := New(ctx, cfg, RoleAPI, logger)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	return work(a.Pool)
}

// rotateSecretCmd is for a leaked API secret: the merchant's integrations
// need the new one, and whoever held the old one (or a dashboard session
// opened with it) is shut out.
func rotateSecretCmd(ctx context.Context, cfg Config, args []string, logger *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("merchant rotate-secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("key", "", "the merchant's API key (key_…)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *key == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "merchant rotate-secret needs --key and nothing else")
		return errUsage
	}
	return onDatabase(ctx, cfg, logger, func(pool *pgxpool.Pool) error {
		m, secret, err := merchants.RotateSecret(ctx, pool, *key)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "merchant_id=%s\napi_key=%s\napi_secret=%s\n"+
			"The new secret is shown only now; it is stored hashed, and works at once. The old one is refused\n"+
			"within a minute (running processes cache a verified key for up to 60 s) and opens no dashboard\n"+
			"session; the merchant's dashboard sessions have ended.\n",
			m.ID, m.APIKey, secret)
		return nil
	})
}
