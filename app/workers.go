package app

import (
	"github.com/riverqueue/river"

	"paygate/idempotency"
	"paygate/payments"
	"paygate/refunds"
	"paygate/webhooks"
)

// addWorkers registers every job kind and returns the periodic jobs.
func (a *App) addWorkers(workers *river.Workers) []*river.PeriodicJob {
	river.AddWorker(workers, &idempotency.PruneWorker{Keys: a.Idempotency})
	river.AddWorker(workers, &webhooks.Worker{Service: a.Webhooks})
	decide := a.simulator.Decide
	if a.Config.Acquirer != nil {
		decide = a.Config.Acquirer
	}
	a.decisions = &payments.Worker{Service: a.Payments, Decide: decide, Retry: a.Config.PaymentRetry,
		DecideTimeout: decideTimeout}
	river.AddWorker(workers, a.decisions)
	river.AddWorker(workers, &refunds.Worker{Service: a.Refunds})
	river.AddWorker(workers, &webhooks.PruneWorker{Pool: a.Pool, Retention: a.Config.WebhookLogRetention})
	river.AddWorker(workers, &reconcileWorker{app: a})
	return []*river.PeriodicJob{idempotency.PeriodicPrune(), webhooks.PeriodicPrune(), periodicReconcile()}
}
