// Package app is the composition root: it turns a Config into a running
// gateway (database, migrations, River, HTTP routes), and stops it in order.
//
// Invariants: migrations run before anything serves; the test merchant is
// seeded only in test mode or on the embedded database; shutdown stops HTTP,
// then River, then the pool, then the embedded PostgreSQL, so no job or
// request loses its database under it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"paygate/db"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/payments"
	"paygate/refunds"
	"paygate/web"
	"paygate/webhooks"
)

// Role says what a process does: serve the API, work jobs, or both.
type Role string

const (
	RoleAll    Role = "all"
	RoleAPI    Role = "api"
	RoleWorker Role = "worker"
)

func (r Role) works() bool { return r == RoleAll || r == RoleWorker }

// App is one paygate process.
type App struct {
	Config Config
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	River  *river.Client[pgx.Tx]
	Echo   *echo.Echo
	Auth   *merchants.Auth
	// Idempotency runs the POST routes that create or change something.
	Idempotency *idempotency.Keys
	// Webhooks records events (EmitTx, in the caller's transaction) and
	// delivers them.
	Webhooks *webhooks.Service
	Payments *payments.Service
	Refunds  *refunds.Service
	// simulator decides payments until a real acquirer connector exists.
	simulator payments.Simulator

	role     Role
	seeded   bool
	embedded *db.Embedded
	beat     *heartbeat
}

// New connects to the database (starting the embedded one if needed),
// migrates, seeds and wires everything. Nothing runs until Start.
func New(ctx context.Context, cfg Config, role Role, logger *slog.Logger) (*App, error) {
	a := &App{Config: cfg, Logger: logger, role: role}
	if err := a.openDatabase(ctx); err != nil {
		a.Close(context.Background())
		return nil, err
	}
	if err := a.wire(); err != nil {
		a.Close(context.Background())
		return nil, err
	}
	return a, nil
}

func (a *App) openDatabase(ctx context.Context) error {
	url := a.Config.DatabaseURL
	if url == "" {
		pg, err := db.StartEmbedded(ctx, db.EmbeddedOptions{Dir: a.Config.DataDir, Logger: a.Logger})
		if err != nil {
			return err
		}
		a.embedded = pg
		url = pg.URL()
	}
	pool, err := db.Open(ctx, url, int32(a.Config.DBMaxConns))
	if err != nil {
		return err
	}
	a.Pool = pool
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	applied, err := db.Migrate(ctx, sqlDB)
	if err != nil {
		return err
	}
	for _, m := range applied {
		a.Logger.Info("migration applied", "migration", m)
	}
	if a.Config.TestMode || a.embedded != nil {
		if err := merchants.SeedTestMerchant(ctx, pool); err != nil {
			return fmt.Errorf("seed test merchant: %w", err)
		}
		a.seeded = true
	}
	return nil
}

// wire builds the River client and the HTTP routes.
func (a *App) wire() error {
	a.Idempotency = idempotency.New(a.Pool)
	a.Webhooks = webhooks.New(a.Pool, a.Config.WebhookAllowPrivateNetworks, a.Config.webhookSchedule())
	c := a.Config
	a.simulator = payments.Simulator{TestMode: c.TestMode, TestDelay: c.TestProcessingDelay, TestSuccess: c.TestPaymentSuccess,
		DelayMin: c.ProcessingDelayMin, DelayMax: c.ProcessingDelayMax,
		UPISuccessRate: c.UPISuccessRate, CardSuccessRate: c.CardSuccessRate}
	a.Payments = &payments.Service{Pool: a.Pool, Delay: a.simulator.Delay, Emit: a.Webhooks.EmitTx}
	// Refunds wait like payments, within their own range; none is declined.
	refundDelay := payments.Simulator{TestMode: c.TestMode, TestDelay: c.TestProcessingDelay,
		DelayMin: c.RefundDelayMin, DelayMax: c.RefundDelayMax}
	a.Refunds = &refunds.Service{Pool: a.Pool, Payments: a.Payments, Emit: a.Webhooks.EmitTx,
		Delay: func() time.Duration { return refundDelay.Delay("") }}
	workers := river.NewWorkers()
	periodic := a.addWorkers(workers)
	cfg := &river.Config{
		// River reports routine progress at info; keep the log for our events.
		Logger:            riverLogger(a.Logger),
		Workers:           workers,
		FetchPollInterval: a.Config.FetchPollInterval,
		FetchCooldown:     a.Config.fetchCooldown(),
		// A job that runs longer than this is cancelled and retried: every
		// job here is short (a webhook attempt is bounded by 5 s).
		JobTimeout: 30 * time.Second,
	}
	if a.role.works() {
		// One queue per kind of work, so a slow merchant endpoint cannot
		// starve payments.
		cfg.Queues = map[string]river.QueueConfig{
			queuePayments:    {MaxWorkers: c.PaymentsWorkers},
			queueRefunds:     {MaxWorkers: c.RefundWorkers},
			queueWebhooks:    {MaxWorkers: c.WebhookWorkers},
			queueMaintenance: {MaxWorkers: 2},
		}
		cfg.PeriodicJobs = periodic
	}
	client, err := river.NewClient(riverpgxv5.New(a.Pool), cfg)
	if err != nil {
		return fmt.Errorf("river: %w", err)
	}
	a.River = client
	a.Webhooks.River = client
	a.Payments.River = client
	a.Refunds.River = client
	a.Auth = merchants.NewAuth(a.Pool)

	// Once per process: tests build many apps in parallel, and the answer
	// is the same for all of them.
	setUnavailable.Do(func() { web.IsUnavailable = db.IsUnavailable })
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = web.ErrorHandler(a.Logger)
	web.Middleware(e, a.Logger, a.Config.RequestTimeout)
	a.Echo = e
	a.routes(e)
	return nil
}

// setUnavailable guards the one write of web.IsUnavailable.
var setUnavailable sync.Once

// Queue names. Each job kind says its queue in its InsertOpts.
const (
	queuePayments    = "payments"
	queueRefunds     = "refunds"
	queueWebhooks    = "webhooks"
	queueMaintenance = "maintenance"
)

// Start starts the workers (in the worker roles) and the heartbeat that
// /health reads.
func (a *App) Start(ctx context.Context) error {
	if !a.role.works() {
		return nil
	}
	if err := a.River.Start(ctx); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	a.beat = startHeartbeat(a.Pool, a.Logger)
	return nil
}

// Close stops what is running, in order: workers (soft stop, then cancel),
// heartbeat, pool, embedded PostgreSQL. HTTP is stopped by the caller first.
func (a *App) Close(ctx context.Context) {
	if a.beat != nil {
		a.beat.stop()
		a.beat = nil
	}
	if a.River != nil && a.role.works() {
		softCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.River.Stop(softCtx)
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			a.Logger.Warn("river did not stop in time; cancelling running jobs", "error", err)
			hardCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.River.StopAndCancel(hardCtx)
			cancel()
		}
	}
	if a.Pool != nil {
		a.Pool.Close()
	}
	if a.embedded != nil {
		if err := a.embedded.Stop(ctx); err != nil {
			a.Logger.Error("stop embedded postgres", "error", err)
		}
	}
}

// NewLogger builds the process logger from the configuration.
func NewLogger(cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

func riverLogger(l *slog.Logger) *slog.Logger {
	return slog.New(minLevel{l.Handler().WithAttrs([]slog.Attr{slog.String("component", "river")}), slog.LevelWarn})
}

// minLevel drops records below level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}
