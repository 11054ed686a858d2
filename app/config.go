package app

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"paygate/payments"
	"paygate/webhooks"
)

// Config is everything paygate reads from the environment, validated once at
// start. Nothing else reads the environment.
type Config struct {
	Port        int
	DatabaseURL string // empty: the embedded PostgreSQL in DataDir
	DataDir     string
	LogLevel    slog.Level
	LogFormat   string // "json" or "text"

	// TestMode makes processing deterministic (API.md, Test mode).
	TestMode            bool
	TestProcessingDelay time.Duration
	TestPaymentSuccess  bool

	ProcessingDelayMin, ProcessingDelayMax time.Duration
	RefundDelayMin, RefundDelayMax         time.Duration
	UPISuccessRate, CardSuccessRate        float64

	WebhookRetryIntervalsTest   bool
	WebhookAllowPrivateNetworks bool
	// WebhookMaxPerEndpoint bounds the deliveries a process makes to one
	// endpoint at once, so one slow endpoint cannot hold every worker.
	WebhookMaxPerEndpoint int
	// CheckoutMaxFailures is how many failed payments an order may have
	// before checkout (the publishable key's route) takes no more on it;
	// 0: no limit (payments.HTTP).
	CheckoutMaxFailures int
	// WebhookSchedule overrides the waits between delivery attempts. It is
	// not read from the environment: tests set it to run the whole schedule
	// in a moment.
	WebhookSchedule []time.Duration

	// Acquirer, when set, decides payments in place of the simulator, and
	// PaymentRetry replaces the waits between asking it again after an
	// error. Neither is read from the environment: tests set them to stand in
	// for an acquirer that errs, and to run its retries in a moment.
	Acquirer     payments.Decide
	PaymentRetry []time.Duration

	// RequestTimeout bounds every API request, so an unreachable database
	// answers 503 instead of hanging.
	RequestTimeout time.Duration
	// FetchPollInterval is how often River looks for due jobs; short, so that
	// short delays and retries run on time.
	FetchPollInterval time.Duration

	// ExistingDatabaseOnly is set by the commands other than serve: they use
	// the embedded cluster in DataDir only when it exists (never create one).
	ExistingDatabaseOnly bool
	// WebhookLogRetention is how long webhook logs and attempts are kept.
	WebhookLogRetention time.Duration
	// MetricsToken, when set, is required (Bearer) for /metrics on the API.
	MetricsToken string
	// AdminToken, when set, mounts River UI and pprof behind it.
	AdminToken string
	// The HTTP server's bounds: a client must send its header within
	// HTTPReadHeaderTimeout and its whole request within HTTPReadTimeout;
	// an idle keep-alive connection closes after HTTPIdleTimeout; at most
	// HTTPMaxConnections are open at once (0: derived from the open-file
	// limit, see MaxConnections).
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPIdleTimeout       time.Duration
	HTTPMaxConnections    int
	// ShutdownTimeout bounds the whole stop on SIGTERM: HTTP drain, River's
	// soft stop and cancel, the pool and the embedded PostgreSQL.
	ShutdownTimeout time.Duration
	// JobRescueAfter is how long a job may stay running before River takes
	// it for stuck (its process was killed) and runs it again. It must
	// exceed JobTimeout, or a job still running would be run twice.
	JobRescueAfter time.Duration
	// Queue throughput (queue.go): River fetches at most a queue's workers
	// per FetchCooldown, so workers / cooldown caps each queue's jobs per
	// second. DBMaxConns is the pgx pool size (0: db.Open's default).
	PaymentsWorkers, RefundWorkers, WebhookWorkers int
	FetchCooldown                                  time.Duration
	DBMaxConns                                     int
	// CreateBatches is how many batches of each kind of creation (orders,
	// payments, refunds) a process writes at once (payments/create.go);
	// CreateSpares how many more may start, each once the oldest request
	// queued behind them has waited CreateStall (payments.StallAfter).
	CreateBatches int
	CreateSpares  int
	CreateStall   time.Duration
	// EmbeddedSharedBuffers is the embedded server's buffer cache in MiB
	// (0: db.DefaultSharedBuffersMiB).
	EmbeddedSharedBuffers int
}

// JobTimeout cancels a job that runs longer: every job here is short (a
// webhook attempt is bounded by 5 s).
const JobTimeout = 30 * time.Second

// decideTimeout is how long the acquirer is given to answer: less than
// JobTimeout, so that the job's last attempt can still fail the payment.
const decideTimeout = JobTimeout - 5*time.Second

// LoadConfig reads and validates the configuration. Every invalid variable
// is reported, each with what is allowed.
func LoadConfig(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		Port:        p.int("PORT", 8000, 1, 65535),
		DatabaseURL: strings.TrimSpace(getenv("DATABASE_URL")),
		DataDir:     p.str("DATA_DIR", "./data"),
		LogFormat:   p.oneOf("LOG_FORMAT", "json", "json", "text"),

		TestMode:            p.bool("TEST_MODE", false),
		TestProcessingDelay: p.millis("TEST_PROCESSING_DELAY", 1000),
		TestPaymentSuccess:  p.bool("TEST_PAYMENT_SUCCESS", true),

		ProcessingDelayMin: p.millis("PROCESSING_DELAY_MIN", 5000),
		ProcessingDelayMax: p.millis("PROCESSING_DELAY_MAX", 10000),
		RefundDelayMin:     p.millis("REFUND_DELAY_MIN", 3000),
		RefundDelayMax:     p.millis("REFUND_DELAY_MAX", 5000),
		UPISuccessRate:     p.rate("UPI_SUCCESS_RATE", 0.90),
		CardSuccessRate:    p.rate("CARD_SUCCESS_RATE", 0.95),

		WebhookRetryIntervalsTest: p.bool("WEBHOOK_RETRY_INTERVALS_TEST", false),
		WebhookMaxPerEndpoint:     p.int("WEBHOOK_MAX_PER_ENDPOINT", webhooks.DefaultMaxPerEndpoint, 1, 1000),
		CheckoutMaxFailures:       p.int("CHECKOUT_MAX_FAILED_PAYMENTS", 10, 0, 1000),

		RequestTimeout:    10 * time.Second,
		FetchPollInterval: p.millis("RIVER_FETCH_POLL_INTERVAL", 100),

		PaymentsWorkers: p.int("PAYMENTS_WORKERS", defaultPaymentsWorkers, 1, 10_000),
		RefundWorkers:   p.int("REFUND_WORKERS", defaultRefundWorkers, 1, 10_000),
		WebhookWorkers:  p.int("WEBHOOK_WORKERS", defaultWebhookWorkers, 1, 10_000),
		FetchCooldown:   p.millis("RIVER_FETCH_COOLDOWN", defaultFetchCooldownMs),
		DBMaxConns:      p.int("DB_MAX_CONNS", defaultDBMaxConns, 0, 10_000),
		CreateBatches:   p.int("CREATE_BATCHES", 1, 1, 16),
		CreateSpares:    p.int("CREATE_SPARES", payments.SpareBatches, 0, 16),
		CreateStall:     p.millisFrom("CREATE_STALL", int(payments.StallAfter/time.Millisecond), 1),

		EmbeddedSharedBuffers: p.int("EMBEDDED_SHARED_BUFFERS", 0, 0, 262_144),

		HTTPReadHeaderTimeout: p.millisFrom("HTTP_READ_HEADER_TIMEOUT", 5000, 1),
		HTTPReadTimeout:       p.millisFrom("HTTP_READ_TIMEOUT", 15000, 1),
		HTTPIdleTimeout:       p.millisFrom("HTTP_IDLE_TIMEOUT", 60000, 1),
		HTTPMaxConnections:    p.int("HTTP_MAX_CONNECTIONS", 0, 0, 1_000_000),

		ShutdownTimeout: p.duration("SHUTDOWN_TIMEOUT", 10*time.Second, time.Second, 10*time.Minute),
		JobRescueAfter:  p.duration("JOB_RESCUE_AFTER", time.Minute, time.Second, 24*time.Hour),
	}
	if c.JobRescueAfter <= JobTimeout {
		p.fail("JOB_RESCUE_AFTER", getenv("JOB_RESCUE_AFTER"), fmt.Sprintf("longer than the job timeout (%s), or a job still running would run twice", JobTimeout))
	}
	if c.FetchCooldown < time.Millisecond {
		p.fail("RIVER_FETCH_COOLDOWN", getenv("RIVER_FETCH_COOLDOWN"), "at least 1 (ms)")
	}
	if c.FetchPollInterval < c.FetchCooldown {
		// Blame the variable that was set: a cooldown set alone, above the
		// poll interval's default, is the cooldown's mistake.
		if poll := getenv("RIVER_FETCH_POLL_INTERVAL"); poll != "" {
			p.fail("RIVER_FETCH_POLL_INTERVAL", poll, fmt.Sprintf("at least RIVER_FETCH_COOLDOWN (%d ms)", c.FetchCooldown.Milliseconds()))
		} else {
			p.fail("RIVER_FETCH_COOLDOWN", getenv("RIVER_FETCH_COOLDOWN"), fmt.Sprintf("at most RIVER_FETCH_POLL_INTERVAL (unset: %d ms)", c.FetchPollInterval.Milliseconds()))
		}
	}
	c.WebhookAllowPrivateNetworks = p.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", c.TestMode)
	c.WebhookLogRetention = p.duration("WEBHOOK_LOG_RETENTION", 720*time.Hour, time.Hour, 100*365*24*time.Hour)
	c.MetricsToken = strings.TrimSpace(getenv("METRICS_TOKEN"))
	c.AdminToken = strings.TrimSpace(getenv("ADMIN_TOKEN"))
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		p.errs = append(p.errs, err)
	}
	switch lvl := strings.ToLower(p.str("LOG_LEVEL", "info")); lvl {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		p.fail("LOG_LEVEL", lvl, "one of debug, info, warn, error")
	}
	if c.ProcessingDelayMin > c.ProcessingDelayMax {
		p.fail("PROCESSING_DELAY_MIN", getenv("PROCESSING_DELAY_MIN"), "not more than PROCESSING_DELAY_MAX")
	}
	if c.RefundDelayMin > c.RefundDelayMax {
		p.fail("REFUND_DELAY_MIN", getenv("REFUND_DELAY_MIN"), "not more than REFUND_DELAY_MAX")
	}
	// PostgreSQL would start on less than 32 MiB, and crawl: such a value is
	// likelier a unit mistaken (GiB) than a wish.
	if c.EmbeddedSharedBuffers > 0 && c.EmbeddedSharedBuffers < 32 {
		p.fail("EMBEDDED_SHARED_BUFFERS", getenv("EMBEDDED_SHARED_BUFFERS"),
			"0 (a quarter of the memory, 128 to 1024 MiB) or from 32 to 262144 (MiB)")
	}
	if c.DatabaseURL == "" && c.DataDir == "" {
		p.fail("DATA_DIR", "", "a folder for the embedded database (or set DATABASE_URL)")
	}
	if len(p.errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration:\n  %w", errors.Join(p.errs...))
	}
	return c, nil
}

// webhookSchedule is the waits before delivery attempts 2 to 5.
func (c Config) webhookSchedule() []time.Duration {
	switch {
	case len(c.WebhookSchedule) > 0:
		return c.WebhookSchedule
	case c.WebhookRetryIntervalsTest:
		return webhooks.TestSchedule
	}
	return webhooks.DefaultSchedule
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, value, allowed string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: must be %s", name, value, allowed))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(p.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, v, "one of "+strings.Join(allowed, ", "))
	return def
}

func (p *parser) int(name string, def, min, max int) int {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return def
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < min || v > max {
		p.fail(name, raw, fmt.Sprintf("an integer from %d to %d", min, max))
		return def
	}
	return v
}

func (p *parser) millis(name string, def int) time.Duration { return p.millisFrom(name, def, 0) }

// millisFrom reads milliseconds of at least min (and at most an hour).
func (p *parser) millisFrom(name string, def, min int) time.Duration {
	return time.Duration(p.int(name, def, min, 3_600_000)) * time.Millisecond
}

// duration reads a Go duration ("10s", "1m30s") within [min, max].
func (p *parser) duration(name string, def, min, max time.Duration) time.Duration {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return def
	}
	v, err := time.ParseDuration(raw)
	if err != nil || v < min || v > max {
		p.fail(name, raw, fmt.Sprintf("a duration from %s to %s (like 10s or 2m)", min, max))
		return def
	}
	return v
}

func (p *parser) bool(name string, def bool) bool {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return def
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		p.fail(name, raw, "true or false")
		return def
	}
	return v
}

func (p *parser) rate(name string, def float64) float64 {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return def
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || !(v >= 0 && v <= 1) { // NaN compares false both ways
		p.fail(name, raw, "a number from 0 to 1")
		return def
	}
	return v
}
