package app

import "time"

// Queue defaults, from what was measured (BENCHMARKS.md, "Queue settings").
//
// River fetches at most a queue's free workers every FetchCooldown, so
// workers / cooldown bounds a queue's jobs per second: River's defaults (100
// ms) with 20 workers capped payments at 200/s, a twentieth of what the
// database commits. A job's run time (a decision or one webhook POST plus
// its commit, a few ms, tens under load) times the wanted rate is the
// workers a queue needs: 1,000 payments/s is 1,000 decisions and 2,000
// deliveries a second, so 50 and 100 workers leave headroom at 20–50 ms a
// job, and a 5 ms cooldown lifts the fetch bound to 10,000 and 20,000 jobs/s,
// above anything the database can commit. More workers than that only queue
// on the pool and on PostgreSQL's locks.
const (
	defaultPaymentsWorkers = 50
	defaultRefundWorkers   = 20
	defaultWebhookWorkers  = 100
	defaultFetchCooldownMs = 5
)

// fetchCooldown is the cooldown River is given: never longer than the poll
// interval (River refuses that; tests poll every 20 ms).
func (c Config) fetchCooldown() time.Duration {
	return min(c.FetchCooldown, c.FetchPollInterval)
}
