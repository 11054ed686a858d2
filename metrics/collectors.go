package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Jobs is paygate_jobs{queue,state}: River's jobs counted when scraped, in
// every state but completed. The count is bounded in cost: one grouped
// query under a 2 s statement timeout, reused for a second, so many
// scrapers at once cost one query. Completed jobs are not counted: River
// keeps them for a day, three per payment, and counting them was a scan of
// the whole table at every scrape (2 million completed jobs took 2-3 s, past
// the timeout, so the family vanished when the gateway was busiest). The
// other states are read through River's fetching index (state first), at
// the cost of the jobs waiting, running or failed; the work done is counted
// by paygate_job_latency_seconds_count and the *_total families.
type Jobs struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger

	mu       sync.Mutex
	at       time.Time
	counts   []jobCount
	cacheFor time.Duration
}

type jobCount struct {
	Queue, State string
	N            int64
}

var jobsDesc = prometheus.NewDesc("paygate_jobs", "Jobs in River's queue by queue and state, completed jobs aside (counted at scrape, cached for a second).",
	[]string{"queue", "state"}, nil)

// NewJobs returns the collector over pool.
func NewJobs(pool *pgxpool.Pool, logger *slog.Logger) *Jobs {
	return &Jobs{Pool: pool, Logger: logger, cacheFor: time.Second}
}

func (j *Jobs) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (j *Jobs) Collect(ch chan<- prometheus.Metric) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.counts == nil || time.Since(j.at) > j.cacheFor {
		counts, err := j.count()
		if err != nil {
			j.Logger.Warn("metrics: counting jobs failed", "error", err)
		} else {
			j.counts, j.at = counts, time.Now()
		}
	}
	for _, c := range j.counts {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(c.N), c.Queue, c.State)
	}
}

func (j *Jobs) count() ([]jobCount, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tx, err := j.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '2s'`); err != nil {
		return nil, err
	}
	rows, _ := tx.Query(ctx, `SELECT queue, state::text AS state, count(*) AS n FROM river_job
		WHERE state IN ('available', 'pending', 'scheduled', 'running', 'retryable', 'discarded', 'cancelled')
		GROUP BY 1, 2`)
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByName[jobCount])
	if err != nil {
		return nil, err
	}
	if counts == nil {
		counts = []jobCount{}
	}
	return counts, nil
}

// Pools exports pgxpool's statistics as paygate_db_pool_* metrics, one
// series a pool, labelled by its name: a process has two (db.KeptPlans), and
// a dashboard that summed one gauge without the label would hide which of
// them is exhausted.
type Pools map[string]*pgxpool.Pool

var (
	poolLabels   = []string{"pool"}
	poolAcquired = prometheus.NewDesc("paygate_db_pool_acquired_connections", "Connections in use.", poolLabels, nil)
	poolIdle     = prometheus.NewDesc("paygate_db_pool_idle_connections", "Idle connections.", poolLabels, nil)
	poolTotal    = prometheus.NewDesc("paygate_db_pool_total_connections", "Open connections (in use, idle and being opened).", poolLabels, nil)
	poolMax      = prometheus.NewDesc("paygate_db_pool_max_connections", "The pool's size limit.", poolLabels, nil)
	poolAcquires = prometheus.NewDesc("paygate_db_pool_acquires_total", "Connections acquired from the pool.", poolLabels, nil)
	poolEmpty    = prometheus.NewDesc("paygate_db_pool_empty_acquires_total", "Acquires that had to wait because no idle connection was free.", poolLabels, nil)
	poolWait     = prometheus.NewDesc("paygate_db_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", poolLabels, nil)
)

func (p Pools) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolAcquires, poolEmpty, poolWait} {
		ch <- d
	}
}

func (p Pools) Collect(ch chan<- prometheus.Metric) {
	for name, pool := range p {
		s := pool.Stat()
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, name)
		}
		gauge(poolAcquired, float64(s.AcquiredConns()))
		gauge(poolIdle, float64(s.IdleConns()))
		gauge(poolTotal, float64(s.TotalConns()))
		gauge(poolMax, float64(s.MaxConns()))
		counter(poolAcquires, float64(s.AcquireCount()))
		counter(poolEmpty, float64(s.EmptyAcquireCount()))
		counter(poolWait, s.AcquireDuration().Seconds())
	}
}
