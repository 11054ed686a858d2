package app

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/webhooks"
)

// reconcileEvery is how often a payment, refund or webhook log left pending
// without a live job gets a new one; jobLostAfter is after how long without
// progress a payment or refund is taken for one, longer than any job's
// timeout, so a job still working is never taken for a lost one. A webhook
// log is after webhooks.LostAfter, longer than a first attempt made by its
// recording process takes (it has no job meanwhile): so an attempt taken
// by a process that crashed is made again within about a minute and a
// quarter.
const (
	reconcileEvery = 15 * time.Second
	jobLostAfter   = time.Minute
)

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
	payments, err := w.app.Payments.Reconcile(ctx, jobLostAfter)
	if err != nil {
		return err
	}
	refunds, err := w.app.Refunds.Reconcile(ctx, jobLostAfter)
	if err != nil {
		return err
	}
	logs, err := w.app.Webhooks.Reconcile(ctx, webhooks.LostAfter)
	if err != nil {
		return err
	}
	if payments+refunds+logs > 0 {
		// Worth a look: a process stopped without handing over the work it
		// held without jobs (a crash: first attempts and first decisions),
		// or something took jobs away (an operator, or a job that kept
		// failing on the database).
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
