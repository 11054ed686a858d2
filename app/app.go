// Package app is the composition root: it turns a Config into a running
// gateway (database, migrations, River, HTTP routes), and stops it in order.
//
// Invariants: migrations run before anything serves; the test merchant
// (public, well-known credentials) is seeded, served and accepted only in
// test mode; shutdown stops HTTP,
// then River, then the pool, then the embedded PostgreSQL, so no job or
// request loses its database under it; River runs on a context no signal
// cancels, so only Close stops it, and a job it cancels goes back to the
// queue without spending an attempt.
package app

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// KeptPlans gives the hot paths' batches their pool (db.KeptPlans).
	KeptPlans *db.KeptPlans
	River     *river.Client[pgx.Tx]
	Echo      *echo.Echo
	Auth      *merchants.Auth
	// Idempotency runs the POST routes that create or change something.
	Idempotency *idempotency.Keys
	// Webhooks records events (EmitTx, in the caller's transaction) and
	// delivers them.
	Webhooks *webhooks.Service
	Payments *payments.Service
	Refunds  *refunds.Service
	// decisions is the payments queue's worker, which also decides the
	// payments this process creates (StartFirstDecisions).
	decisions *payments.Worker
	// simulator decides payments until a real acquirer connector exists.
	simulator payments.Simulator
	// jobCounts counts the queue for /api/v1/test/jobs/status.
	jobCounts *fresh[jobTotals]

	role     Role
	seeded   bool
	embedded *db.Embedded
	beat     *heartbeat
	// stopAdmin stops River UI's background services (ADMIN_TOKEN set).
	stopAdmin context.CancelFunc

	// draining is set from the first moment of a stop: /ready answers 503.
	draining atomic.Bool
	// working is set once River has started working jobs.
	working   atomic.Bool
	closeOnce sync.Once
	stepLevel slog.Level // of Close's step-by-step log
}

// New connects to the database (starting the embedded one if needed),
// migrates, seeds and wires everything. Nothing runs until Start.
func New(ctx context.Context, cfg Config, role Role, logger *slog.Logger) (*App, error) {
	a := &App{Config: cfg, Logger: logger, role: role}
	a.jobCounts = &fresh[jobTotals]{run: a.countJobs}
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
	a.Logger.Info("using database", databaseAttrs(a.Config)...)
	if url == "" {
		if a.Config.ExistingDatabaseOnly {
			if err := requireEmbeddedCluster(a.Config.DataDir); err != nil {
				return err
			}
		}
		pg, err := db.StartEmbedded(ctx, db.EmbeddedOptions{Dir: a.Config.DataDir, Logger: a.Logger,
			SharedBuffersMiB: cmp.Or(a.Config.EmbeddedSharedBuffers, db.DefaultSharedBuffersMiB()),
			MaxConnections:   a.Config.embeddedMaxConns(), Connections: a.Config.poolConns()})
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
	if a.KeptPlans, err = db.OpenKeptPlans(ctx, url, a.Config.keptConns(), pool, a.Logger); err != nil {
		return err
	}
	if a.embedded == nil {
		if err := pingExternal(ctx, pool, a.Config); err != nil {
			return err
		}
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	applied, err := db.Migrate(ctx, sqlDB, a.Logger)
	for _, m := range applied { // those before an error too
		a.Logger.Info("migration applied", "migration", m)
	}
	if err != nil {
		return err
	}
	if a.Config.TestMode {
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
	a.Webhooks = webhooks.New(a.Pool, a.KeptPlans, a.Config.WebhookAllowPrivateNetworks, a.Config.webhookSchedule(), a.Logger)
	a.Webhooks.MaxPerEndpoint = a.Config.WebhookMaxPerEndpoint
	c := a.Config
	a.simulator = payments.Simulator{TestMode: c.TestMode, TestDelay: c.TestProcessingDelay, TestSuccess: c.TestPaymentSuccess,
		DelayMin: c.ProcessingDelayMin, DelayMax: c.ProcessingDelayMax,
		UPISuccessRate: c.UPISuccessRate, CardSuccessRate: c.CardSuccessRate}
	a.Payments = &payments.Service{Pool: a.Pool, KeptPlans: a.KeptPlans, Logger: a.Logger, Delay: a.simulator.Delay, Emit: a.Webhooks.EmitTx,
		CreateBatches: c.CreateBatches, Spares: c.CreateSpares, Stall: c.CreateStall}
	// Refunds wait like payments, within their own range; none is declined.
	refundDelay := payments.Simulator{TestMode: c.TestMode, TestDelay: c.TestProcessingDelay,
		DelayMin: c.RefundDelayMin, DelayMax: c.RefundDelayMax}
	a.Refunds = &refunds.Service{Pool: a.Pool, Payments: a.Payments, Emit: a.Webhooks.EmitTx, Logger: a.Logger,
		Delay: func() time.Duration { return refundDelay.Delay("") }, CreateBatches: c.CreateBatches,
		Spares: c.CreateSpares, Stall: c.CreateStall}
	workers := river.NewWorkers()
	periodic := a.addWorkers(workers)
	client, err := river.NewClient(riverpgxv5.New(a.Pool), a.riverConfig(workers, periodic))
	if err != nil {
		return fmt.Errorf("river: %w", err)
	}
	a.River = client
	a.Webhooks.River = client
	a.Auth = merchants.NewAuth(a.Pool, a.Config.TestMode)

	// Once per process: tests build many apps in parallel, and the answer
	// is the same for all of them.
	setUnavailable.Do(func() { web.IsUnavailable = db.IsUnavailable })
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = web.ErrorHandler(a.Logger)
	web.Middleware(e, a.Logger, a.Config.RequestTimeout)
	e.Pre(headAsGet)
	a.Echo = e
	a.routes(e)
	return a.adminRoutes(e)
}

// riverConfig is the River client's configuration: the queues and periodic
// jobs only in the worker roles.
func (a *App) riverConfig(workers *river.Workers, periodic []*river.PeriodicJob) *river.Config {
	c := a.Config
	// No Schema, MaxAttempts, insert hooks or middleware: paygate inserts
	// its hot paths' jobs itself, as River would without them
	// (db.JobRowsOf).
	cfg := &river.Config{
		// River reports routine progress at info; keep the log for our events.
		Logger:            riverLogger(a.Logger),
		Workers:           workers,
		FetchPollInterval: c.FetchPollInterval,
		FetchCooldown:     c.fetchCooldown(),
		JobTimeout:        JobTimeout,
		Hooks:             riverHooks(),
		// The running jobs of a killed process are run again after this
		// (River's default is an hour).
		RescueStuckJobsAfter: c.JobRescueAfter,
		ReindexerIndexNames:  db.RiverJobIndexes(),
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
	return cfg
}

// setUnavailable guards the one write of web.IsUnavailable.
var setUnavailable sync.Once

// Queue names, defined once beside each package's jobs (their InsertOpts
// use the same constants).
const (
	queuePayments    = payments.Queue
	queueRefunds     = refunds.Queue
	queueWebhooks    = webhooks.Queue
	queueMaintenance = db.QueueMaintenance
)

// Start starts the workers (in the worker roles) and the heartbeat that
// /health reads. River runs on a context that ctx's cancellation does not
// reach: a SIGTERM must not hard-stop running jobs while HTTP still drains;
// Close stops River in order.
func (a *App) Start(ctx context.Context) error {
	if !a.role.works() {
		return nil
	}
	if err := a.River.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	a.working.Store(true)
	// The workers' process makes its own events' first attempts, and
	// decides its own payments.
	a.Webhooks.StartFirstAttempts(a.Config.WebhookWorkers, a.Logger)
	a.decisions.StartFirstDecisions(a.Config.PaymentsWorkers, jobLostAfter, a.Logger)
	a.beat = startHeartbeat(a.Pool, a.Logger)
	return nil
}

// NewLogger builds the process logger from the configuration; it writes to w
// (stderr).
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
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
