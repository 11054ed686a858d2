package refunds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/web"
)

// Queue is the River queue of the refund jobs.
const Queue = "refunds"

// ProcessArgs is the job that processes one refund at ProcessAt.
type ProcessArgs struct {
	RefundID   string    `json:"refund_id"`
	MerchantID uuid.UUID `json:"merchant_id"`
	ProcessAt  time.Time `json:"process_at"`
}

func (ProcessArgs) Kind() string { return "process_refund" }

func (ProcessArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: Queue} }

// Worker processes ProcessArgs jobs. Until ProcessAt it snoozes, which
// costs no attempt and holds no worker slot. Every refund is processed: the
// simulated acquirer never declines one (API.md has no failed refund).
type Worker struct {
	river.WorkerDefaults[ProcessArgs]
	Service *Service
}

func (w *Worker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	if err := db.SnoozeUntil(job.Args.ProcessAt); err != nil {
		return err
	}
	// River completes the job after Work returns, batched (db/jobs.go);
	// ProcessTx's conditional update makes a rerun harmless.
	var changed bool
	err := db.WithTx(ctx, w.Service.Pool, func(tx pgx.Tx) (err error) {
		changed, err = w.Service.ProcessTx(ctx, tx, job.Args.MerchantID, job.Args.RefundID)
		return err
	})
	if err != nil || changed {
		return err
	}
	// Nothing changed: processed already (a rerun), or unknown. Only then
	// is it looked up, off the usual path.
	_, err = w.Service.Get(ctx, job.Args.MerchantID, job.Args.RefundID)
	var apiErr *web.Error
	if errors.As(err, &apiErr) && apiErr.Code == web.CodeNotFound {
		// Nothing will ever make it appear: retrying would only fail again.
		return river.JobCancel(fmt.Errorf("refund %s of merchant %s not found", job.Args.RefundID, job.Args.MerchantID))
	}
	return err
}
