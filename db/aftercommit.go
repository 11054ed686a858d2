package db

import (
	"sync"

	"github.com/jackc/pgx/v5"
)

// afterCommit holds, per transaction run by WithTx, what to do once it has
// committed: counting a state change in a metric must not happen for a
// change that rolls back.
var afterCommit sync.Map // pgx.Tx → *[]func()

// AfterCommit runs fn after tx commits, and never if it rolls back. tx must
// be one that WithTx runs; elsewhere fn is dropped.
func AfterCommit(tx pgx.Tx, fn func()) {
	fns, _ := afterCommit.LoadOrStore(tx, new([]func()))
	// One transaction is used by one goroutine at a time: no lock needed.
	*fns.(*[]func()) = append(*fns.(*[]func()), fn)
}

// committed runs and forgets tx's callbacks; forget only forgets them.
func committed(tx pgx.Tx) {
	if fns, ok := afterCommit.LoadAndDelete(tx); ok {
		for _, fn := range *fns.(*[]func()) {
			fn()
		}
	}
}

func forget(tx pgx.Tx) { afterCommit.Delete(tx) }
