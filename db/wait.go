package db

import (
	"context"
	"sync"
)

// WaitThenCancel waits for wg until ctx ends; should ctx end first, it
// calls cancel (which must make the work wg counts end soon) and waits for
// the rest. The stops of the work done outside River use it: they give up
// waiting at their deadline and give the work still running back.
func WaitThenCancel(ctx context.Context, wg *sync.WaitGroup, cancel func()) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
	}
}
