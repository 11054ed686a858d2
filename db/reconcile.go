package db

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ResumeBatch is how many rows a reconciler resumes per transaction; it
// goes on with another while one is full, so that what a crashed process
// held (up to 10,000 payments) is resumed in one run.
const ResumeBatch = 1000

// ResumeLost resumes the rows of table (payments, refunds: a text id and a
// merchant_id) that are pending, were created more than after ago, and have
// no live job of kind whose args name them under idArg: in transactions of
// up to ResumeBatch rows it locks them FOR UPDATE SKIP LOCKED, so two
// reconcilers never resume one row twice, calls resume for each (which
// inserts its new job in tx), and reports how many it resumed. A row whose job commits with it (created
// together) is never seen without it. after must exceed any job's timeout,
// so that a job still working is never taken for a lost one. table, kind
// and idArg are constants of the caller, never input. The live jobs are
// found through River's fetching index (state first) and matched on the one
// args key, so the search costs the live jobs, never the completed ones kept
// for a day (migration 00017 dropped River's GIN index on args).
func ResumeLost(ctx context.Context, pool *pgxpool.Pool, table, kind, idArg string, after time.Duration,
	resume func(tx pgx.Tx, id string, merchantID uuid.UUID) error) (int, error) {
	lost := fmt.Sprintf(`
		SELECT t.id, t.merchant_id FROM %s t
		WHERE t.status = 'pending' AND t.created_at < now() - $1::interval
		  AND NOT EXISTS (
		      SELECT 1 FROM river_job j
		      WHERE j.kind = '%s' AND j.args->>'%s' = t.id
		        AND j.state IN `+LiveJobStates+`)
		ORDER BY t.created_at LIMIT %d
		FOR UPDATE OF t SKIP LOCKED`, table, kind, idArg, ResumeBatch)
	return ResumeInBatches(func() (int, error) { return resumeOnce(ctx, pool, lost, after, resume) })
}

// ResumeInBatches runs once until it resumes fewer than a full batch, or
// fails, and reports how many it resumed in all.
func ResumeInBatches(once func() (int, error)) (int, error) {
	total := 0
	for {
		n, err := once()
		total += n
		if err != nil || n < ResumeBatch {
			return total, err
		}
	}
}

func resumeOnce(ctx context.Context, pool *pgxpool.Pool, lost string, after time.Duration,
	resume func(tx pgx.Tx, id string, merchantID uuid.UUID) error) (int, error) {
	resumed := 0
	err := WithTx(ctx, pool, func(tx pgx.Tx) error {
		type row struct {
			id         string
			merchantID uuid.UUID
		}
		rows, err := tx.Query(ctx, lost, after)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.merchantID)
		})
		if err != nil {
			return err
		}
		for _, x := range found {
			if err := resume(tx, x.id, x.merchantID); err != nil {
				return err
			}
		}
		resumed = len(found)
		return nil
	})
	return resumed, err
}
