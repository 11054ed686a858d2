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
var afterCommit sync.Map // pgx.Tx → *[]func(committed bool)

// AfterCommit runs fn after tx commits, and never if it rolls back. It works
// only inside WithTx or a transaction Track follows: in a transaction begun
// any other way (a raw pool.Begin, a nested savepoint transaction) fn is
// dropped, never run, and nothing is kept for it.
func AfterCommit(tx pgx.Tx, fn func()) {
	AfterEnd(tx, func(ok bool) {
		if ok {
			fn()
		}
	})
}

// AfterEnd runs fn(true) after tx commits and fn(false) once it is known
// not to (rolled back, or its work undone by the idempotency layer), like
// AfterCommit: only in a transaction WithTx or Track follows (Tracked).
func AfterEnd(tx pgx.Tx, fn func(committed bool)) {
	fns, ok := afterCommit.Load(tx)
	if !ok {
		return
	}
	// One transaction is used by one goroutine at a time: no lock needed.
	*fns.(*[]func(bool)) = append(*fns.(*[]func(bool)), fn)
}

// Tracked reports whether tx's AfterCommit and AfterEnd callbacks are kept
// (WithTx, Track): code that must learn its transaction's end (to release
// what it reserved for it) does its work otherwise where it is not.
func Tracked(tx pgx.Tx) bool {
	_, ok := afterCommit.Load(tx)
	return ok
}

// Track keeps the AfterCommit callbacks of a transaction begun other than
// by WithTx: end(true), once tx has committed, runs them; end(false) drops
// them (and runs the AfterEnd callbacks with false). Call end on every way
// out (defer end(false)); the first call counts.
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
func track(tx pgx.Tx) { afterCommit.Store(tx, new([]func(bool))) }

// committed runs and forgets tx's callbacks; forget runs them as for a
// transaction that did not commit (AfterCommit's not at all).
func committed(tx pgx.Tx) { end(tx, true) }

func forget(tx pgx.Tx) { end(tx, false) }

func end(tx pgx.Tx, ok bool) {
	if fns, found := afterCommit.LoadAndDelete(tx); found {
		for _, fn := range *fns.(*[]func(bool)) {
			fn(ok)
		}
	}
}
