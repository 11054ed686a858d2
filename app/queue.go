package app

import (
	"time"

	"paygate/db"
)

// Queue defaults, from what was measured (docs/benchmarks-history.md,
// "What changed").
//
// River fetches at most a queue's free workers every FetchCooldown, so
// workers / cooldown bounds a queue's jobs per second: River's default (100
// ms) with 20 workers capped payments at 200/s, below what the database
// commits (its payment + job ceiling, 500–1,500 tx/s on the busy 2-core
// bench machine). 100 payment and 200 webhook workers per 50 ms bound the
// queues at 2,000 decisions and 4,000 deliveries a second: above the 1,000
// payments/s target (each is a decision and two deliveries) and far above
// what a payment's CPU cost allows on 2 cores. The cooldown is not shorter
// because each fetch is a transaction of its own and each insert NOTIFY (at
// most one per queue per cooldown) holds PostgreSQL's notify lock through
// its commit: at 10 ms the bench's sessions spent 5–7 % of the burst waiting
// on it (Lock:object), at 50 ms none, and fetches per payment fell from 0.4
// at 5 ms to 0.17 at 20 ms. A job's run time (a decision, or one webhook
// POST and its commit: a few ms, tens under load) times the rate is the
// workers in use; idle workers cost nothing. Refunds had 20 workers until
// the bench showed them to be the cap: 2,000 refunds went end to end at
// 244–251/s, their refund.processed 3.4 s after their 201 (p50); with
// 100, at 414–524/s and 1.2–1.4 s, in the same hour.
const (
	defaultPaymentsWorkers = 100
	defaultRefundWorkers   = 100
	defaultWebhookWorkers  = 200
	defaultFetchCooldownMs = 50
	// The pool is sized to the database's cores, not to the workers: a
	// worker holds a connection only while it talks to the database, and
	// the rest wait for one in Go, which is cheap. PostgreSQL on 2 cores
	// did more through fewer connections: with 20 instead of 50 the
	// bench's database CPU per payment fell by about 15 %, and the burst,
	// payment creation and the steady phase's webhook lag were as good or
	// better in three pairs of runs (docs/benchmarks-history.md); 120 was
	// worse, 10 no better. A database on more cores wants more
	// (DB_MAX_CONNS).
	defaultDBMaxConns = 20
)

// keptConns is the size of the pool of kept plans (db.KeptPlans), besides
// DB_MAX_CONNS: a connection for each batch on it that may run at once,
// however busy the process is (CREATE_BATCHES and CREATE_SPARES of
// payments and as many of orders; one of decisions; two of the webhook
// worker's reads, one of first attempts' reads and one of records), so
// that a spare batch finds one while another stalls: 11 by default.
func (c Config) keptConns() int32 {
	return int32(2*(max(c.CreateBatches, 1)+c.CreateSpares) + 5)
}

// embeddedMaxConns is the embedded server's max_connections: 200, or more
// when this process's two pools would not fit with 20 to spare for the other
// commands that attach to it (merchant create, migrate, a psql). Otherwise
// DB_MAX_CONNS=200 would be accepted and then, under load, refused
// connections would answer 503.
func (c Config) embeddedMaxConns() int {
	return max(200, c.poolConns()+20)
}

// poolConns is how many connections this process's two pools may open.
func (c Config) poolConns() int {
	pool := c.DBMaxConns
	if pool == 0 {
		pool = db.DefaultMaxConns
	}
	return pool + int(c.keptConns())
}

// fetchCooldown is the cooldown River is given: never longer than the poll
// interval (River refuses that; tests poll every 20 ms).
func (c Config) fetchCooldown() time.Duration {
	return min(c.FetchCooldown, c.FetchPollInterval)
}
