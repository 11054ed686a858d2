package refunds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
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

// maxProcessAttempts is River's default, named because paygate inserts the
// job itself (db.JobRowsOf): processing a refund fails only when the
// database does, and the reconciler resumes a refund whose job gave up.
const maxProcessAttempts = river.MaxAttemptsDefault

func (ProcessArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: maxProcessAttempts}
}

// Worker processes ProcessArgs jobs. Until ProcessAt it snoozes, which
// costs no attempt and holds no worker slot. Every refund is processed: the
// simulated acquirer never declines one (API.md has no failed refund).
type Worker struct {
	river.WorkerDefaults[ProcessArgs]
	Service *Service

	once    sync.Once
	batches *db.Batcher[refundKey, bool]
}

// Batches. The worker's refunds are processed by batches (db.Batcher): the
// workers that process while a batch runs make the next batch, one
// transaction for all of them (Service.processTx: one statement for the
// refunds and their payments, one for the events with their delivery jobs,
// and a commit) where each had its own. An idle worker's batch is its refund
// alone, at once. maxBatch bounds a batch's statements; one flight, as for
// the payment worker's decisions: larger batches, and no two processing
// batches of a process lock refunds or payments at once (a creation batch
// may, in the same order: processManyTx). batchTimeout bounds a batch,
// which runs on even when the job that asked for it has stopped waiting.
const (
	maxBatch     = 128
	flights      = 1
	batchTimeout = 5 * time.Second
)

func (w *Worker) batcher() *db.Batcher[refundKey, bool] {
	w.once.Do(func() {
		w.batches = db.NewBatcher(maxBatch, flights, batchTimeout, w.processBatch()).WithLogger(w.Service.Logger)
	})
	return w.batches
}

// processBatch processes a batch of refunds in one transaction
// (Service.processTx).
func (w *Worker) processBatch() func(context.Context, []refundKey) ([]bool, error) {
	return db.InTx(w.Service.Pool, w.Service.processTx)
}

func (w *Worker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	if err := db.SnoozeUntil(ctx, job.Args.ProcessAt); err != nil {
		return err
	}
	// River completes the job after Work returns, batched (db/jobs.go);
	// the conditional update makes a rerun harmless, as it does a batch
	// that commits after this stopped waiting for it.
	changed, err := w.batcher().Do(ctx, refundKey{MerchantID: job.Args.MerchantID, ID: job.Args.RefundID})
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
