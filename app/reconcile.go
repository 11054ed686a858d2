package app

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"paygate/db"
)

// reconcileEvery is how often, and after how long without progress, a
// payment, refund or webhook log left pending without a live job gets a new
// one. It is longer than any job's timeout, so a job still working is never
// taken for a lost one.
const reconcileEvery = time.Minute

// reconcileArgs is the periodic job that resumes work whose job left River
// without finishing it (payments.Service.Reconcile,
// refunds.Service.Reconcile, webhooks.Service.Reconcile), so nothing stays
// pending forever.
type reconcileArgs struct{}

func (reconcileArgs) Kind() string { return "reconcile" }

func (reconcileArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: db.QueueMaintenance, UniqueOpts: river.UniqueOpts{ByPeriod: reconcileEvery}}
}

type reconcileWorker struct {
	river.WorkerDefaults[reconcileArgs]
	app *App
}

func (w *reconcileWorker) Work(ctx context.Context, _ *river.Job[reconcileArgs]) error {
	payments, err := w.app.Payments.Reconcile(ctx, reconcileEvery)
	if err != nil {
		return err
	}
	refunds, err := w.app.Refunds.Reconcile(ctx, reconcileEvery)
	if err != nil {
		return err
	}
	logs, err := w.app.Webhooks.Reconcile(ctx, reconcileEvery)
	if err != nil {
		return err
	}
	if payments+refunds+logs > 0 {
		// Worth a look: something took jobs away (an operator, or a job that
		// kept failing on the database).
		w.app.Logger.WarnContext(ctx, "resumed pending work that had lost its job",
			"payments", payments, "refunds", refunds, "webhook_logs", logs)
	}
	return nil
}

func periodicReconcile() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(reconcileEvery),
		func() (river.JobArgs, *river.InsertOpts) { return reconcileArgs{}, nil },
		&river.PeriodicJobOpts{ID: "reconcile"})
}
