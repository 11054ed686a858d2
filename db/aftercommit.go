package db

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// afterCommit holds, per transaction that WithTx runs, what to do once it
// has committed: counting a state change in a metric must not happen for a
// change that rolls back. WithTx enters a transaction before its work and
// removes it on every way out (commit, error, rollback, panic), so nothing
// outlives the transaction.
var afterCommit sync.Map // pgx.Tx → *[]func(Outcome)

// Outcome is how a transaction ended, as its client knows it.
type Outcome int

const (
	// RolledBack: nothing of it committed (rolled back, its work undone,
	// or its COMMIT refused by the server).
	RolledBack Outcome = iota
	Committed
	// Unknown: the COMMIT was sent and no answer came (the connection
	// broke): it may have committed or not.
	Unknown
)

// CommitOutcome is the outcome of a transaction whose COMMIT returned err.
// It is RolledBack only when that is certain: the COMMIT was never sent
// (pgconn.SafeToRetry; a pipelined COMMIT whose batch pgx could not build
// or prepare, pgx.ErrPreprocessingBatch), the transaction had failed or
// ended before it, or the server refused it with a plain ERROR. A FATAL or
// PANIC (a backend terminated by a shutdown or a switchover may finish the
// COMMIT and then report it, in one pipelined batch), a connection error
// (class 08, which a proxy may send for a lost server), an operator
// intervention (57P0x) or no answer at all leave it Unknown.
func CommitOutcome(err error) Outcome {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return Committed
	case pgconn.SafeToRetry(err), errors.Is(err, pgx.ErrTxCommitRollback), errors.Is(err, pgx.ErrTxClosed),
		errors.As(err, new(pgx.ErrPreprocessingBatch)):
		return RolledBack
	case errors.As(err, &pgErr):
		if pgErr.Severity == "ERROR" && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57P0") {
			return RolledBack
		}
		return Unknown
	default:
		return Unknown
	}
}

// AfterCommit runs fn after tx commits, and never otherwise (an Unknown
// outcome included). It works only inside WithTx or a transaction Track
// follows: in a transaction begun any other way (a raw pool.Begin, a
// nested savepoint transaction) fn is dropped, never run, and nothing is
// kept for it.
func AfterCommit(tx pgx.Tx, fn func()) {
	AfterEnd(tx, func(o Outcome) {
		if o == Committed {
			fn()
		}
	})
}

// AfterEnd runs fn with tx's outcome once it is known, like AfterCommit:
// only in a transaction WithTx or Track follows (Tracked).
func AfterEnd(tx pgx.Tx, fn func(Outcome)) {
	fns, ok := afterCommit.Load(tx)
	if !ok {
		return
	}
	// One transaction is used by one goroutine at a time: no lock needed.
	*fns.(*[]func(Outcome)) = append(*fns.(*[]func(Outcome)), fn)
}

// Tracked reports whether tx's AfterCommit and AfterEnd callbacks are kept
// (WithTx, Track): code that must learn its transaction's end (to release
// what it reserved for it) does its work otherwise where it is not.
func Tracked(tx pgx.Tx) bool {
	_, ok := afterCommit.Load(tx)
	return ok
}

// Track keeps the AfterCommit and AfterEnd callbacks of a transaction
// begun other than by WithTx: end(o), once tx's outcome o is known, runs
// them. Call end on every way out (defer end(db.RolledBack)); the first
// call counts.
func Track(tx pgx.Tx) (end func(Outcome)) {
	track(tx)
	return func(o Outcome) { ended(tx, o) }
}

// CallbackPanic is what ends a transaction's callbacks when one of them
// panicked: every callback still ran, and the first panic is raised again
// with the transaction's outcome, so that what catches it knows whether
// the work committed (a Batcher does not run a committed batch again).
type CallbackPanic struct {
	Outcome Outcome
	Value   any
	Stack   []byte
}

func (p *CallbackPanic) String() string { return fmt.Sprint(p.Value) }

// PanicStack is the stack of the callback's panic, for a recover that logs
// one (web's).
func (p *CallbackPanic) PanicStack() []byte { return p.Stack }

// track makes tx one whose callbacks are kept.
func track(tx pgx.Tx) { afterCommit.Store(tx, new([]func(Outcome))) }

// ended runs and forgets tx's callbacks.
func ended(tx pgx.Tx, o Outcome) {
	fns, found := afterCommit.LoadAndDelete(tx)
	if !found {
		return
	}
	var first *CallbackPanic
	for _, fn := range *fns.(*[]func(Outcome)) {
		func() {
			defer func() {
				if p := recover(); p != nil && first == nil {
					first = &CallbackPanic{Outcome: o, Value: p, Stack: debug.Stack()}
				}
			}()
			fn(o)
		}()
	}
	if first != nil {
		panic(first)
	}
}
