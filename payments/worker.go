package payments

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// ProcessArgs is the job that decides one payment at DecideAt.
type ProcessArgs struct {
	PaymentID  string    `json:"payment_id"`
	MerchantID uuid.UUID `json:"merchant_id"`
	DecideAt   time.Time `json:"decide_at"`
}

func (ProcessArgs) Kind() string { return "process_payment" }

func (ProcessArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: "payments"} }

// Decide is where a payment is decided: the simulator now, an acquirer
// connector later. An error is retried; a decline is ok == false.
type Decide func(ctx context.Context, p Payment) (ok bool, err error)

// Worker processes ProcessArgs jobs. It holds no worker slot while a payment
// waits: until DecideAt it snoozes, which costs no attempt.
type Worker struct {
	river.WorkerDefaults[ProcessArgs]
	Service *Service
	Decide  Decide
}

func (w *Worker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	if err := db.SnoozeUntil(job.Args.DecideAt); err != nil {
		return err
	}
	p, err := w.Service.GetPayment(ctx, job.Args.MerchantID, job.Args.PaymentID)
	if err != nil {
		return err
	}
	// Decided outside the transaction: an acquirer answers over the network,
	// and no row lock should wait on it. A payment already decided (a job run
	// again) is not asked about again.
	ok := false
	if p.Status == StatusPending {
		if ok, err = w.Decide(ctx, p); err != nil {
			return err
		}
	}
	// The job is completed by River after Work returns, batched with
	// others (db/jobs.go); DecideTx's conditional update makes a rerun
	// harmless.
	return db.WithTx(ctx, w.Service.Pool, func(tx pgx.Tx) error {
		_, err := w.Service.DecideTx(ctx, tx, p.MerchantID, p.ID, ok)
		return err
	})
}

// Simulator stands in for an acquirer (API.md, Test mode): in test mode
// every payment waits TestDelay and ends as TestSuccess; otherwise it waits
// a random delay in [DelayMin, DelayMax] and succeeds at its method's rate.
type Simulator struct {
	TestMode                        bool
	TestDelay                       time.Duration
	TestSuccess                     bool
	DelayMin, DelayMax              time.Duration
	UPISuccessRate, CardSuccessRate float64
}

// Delay is the Service.Delay of the simulator.
func (s Simulator) Delay(string) time.Duration {
	if s.TestMode {
		return s.TestDelay
	}
	return s.DelayMin + rand.N(s.DelayMax-s.DelayMin+1)
}

// Decide is the Worker.Decide of the simulator.
func (s Simulator) Decide(_ context.Context, p Payment) (bool, error) {
	if s.TestMode {
		return s.TestSuccess, nil
	}
	rate := s.UPISuccessRate
	if p.Method == MethodCard {
		rate = s.CardSuccessRate
	}
	return rand.Float64() < rate, nil
}
