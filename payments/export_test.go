package payments

import "context"

// Answer is an answer of a decision batch.
type Answer = answer

// RecordBatch records answers as one batch of the worker's decisions.
func (w *Worker) RecordBatch(ctx context.Context, answers []Answer) ([]bool, error) {
	return w.recordBatch()(ctx, answers)
}
