package db

import (
	"sync"

	"github.com/jackc/pgx/v5"
)

// afterCommit holds, per transaction that WithTx runs, what to do once it
// has committed: counting a state change in a metric must not happen for a
// change that rolls back. WithTx enters a transaction before its work and
// removes it on every way out (commit, error, rollback, panic), so nothing
// outlives the transaction.
var afterCommit sync.Map // pgx.Tx → *[]func()

// AfterCommit runs fn after tx commits, and never if it rolls back. It works
// only inside WithTx or a transaction Track follows: in a transaction begun
// any other way (a raw pool.Begin, a nested savepoint transaction) fn is
// dropped, never run, and nothing is kept for it.
func AfterCommit(tx pgx.Tx, fn func()) {
	fns, ok := afterCommit.Load(tx)
	if !ok {
		return
	}
	// One transaction is used by one goroutine at a time: no lock needed.
	*fns.(*[]func()) = append(*fns.(*[]func()), fn)
}

// Track keeps the AfterCommit callbacks of a transaction begun other than
// by WithTx: end(true), once tx has committed, runs them; end(false) drops
// them. Call end on every way out (defer end(false)); once is enough.
func Track(tx pgx.Tx) (end func(committed bool)) {
	track(tx)
	return func(ok bool) {
		if ok {
			committed(tx)
		} else {
			forget(tx)
		}
	}
}

// track makes tx one whose AfterCommit callbacks are kept.
func track(tx pgx.Tx) { afterCommit.Store(tx, new([]func())) }

// committed runs and forgets tx's callbacks; forget only forgets them.
func committed(tx pgx.Tx) {
	if fns, ok := afterCommit.LoadAndDelete(tx); ok {
		for _, fn := range *fns.(*[]func()) {
			fn()
		}
	}
}

func forget(tx pgx.Tx) { afterCommit.Delete(tx) }
