package app

import "time"

// Queue defaults, from what was measured (BENCHMARKS.md, "What changed").
//
// River fetches at most a queue's free workers every FetchCooldown, so
// workers / cooldown bounds a queue's jobs per second: River's default (100
// ms) with 20 workers capped payments at 200/s, a twentieth of what the
// database commits (its payment + job ceiling, 1,000–6,000 tx/s on the
// 2-core bench machine). The bound must sit above that ceiling, for each
// payment is one decision and two deliveries: 100 and 200 workers per 10 ms
// are 10,000 and 20,000 jobs/s. The cooldown is not shorter because each
// fetch is a transaction of its own and each insert NOTIFY (at most one per
// queue per cooldown) serialises commits on PostgreSQL's notify lock: at 5
// ms the bench saw 0.4 fetches per payment, at 20 ms 0.17. A job's run time
// (a decision, or one webhook POST and its commit: a few ms, tens under
// load) times the rate is the workers in use; idle workers cost nothing.
const (
	defaultPaymentsWorkers = 100
	defaultRefundWorkers   = 20
	defaultWebhookWorkers  = 200
	defaultFetchCooldownMs = 10
	// A worker holds a connection only while it talks to the database, but
	// 300 workers and the API's requests on 25 (db.Open's default) queued
	// for connections in the burst; most of a connection's time is spent
	// waiting for its commit's WAL flush, which more concurrent committers
	// share (group commit). 50 leaves room for four replicas under the
	// embedded server's max_connections=200.
	defaultDBMaxConns = 50
)

// fetchCooldown is the cooldown River is given: never longer than the poll
// interval (River refuses that; tests poll every 20 ms).
func (c Config) fetchCooldown() time.Duration {
	return min(c.FetchCooldown, c.FetchPollInterval)
}
