// Package idempotency implements Idempotency-Key for the POST routes that
// create or change something.
//
// Invariants: the remembered response is written by the same transaction as
// the work it describes, so after a crash there is either both or neither and
// a key is never stuck; no key's row commits claimed but unanswered
// (status_code 0), since every transaction answers or drops its claims
// before it commits, so a row a statement sees with status 0 is its own
// transaction's claim (ClaimedHere); a repeat of a running request waits on the
// uncommitted key row (then replays) or, past LockTimeout, answers 409; a
// different body under a key answers 422; keys are scoped by merchant, method
// and path, and kept for TTL. LockTimeout bounds only the claim of the key:
// the work itself may wait on row locks (a refund behind a capture) for as
// long as the request may last. A lock that cannot be had (lock_timeout or a
// deadlock) is answered 503, retryable, never 500; nothing is remembered then.
//
// Round trips: a request's transaction sends BEGIN with its first statement,
// and a keyed one its claim too, and its answer with COMMIT (db.PipelinedTx),
// so a key costs no round trip (a refused request's, one: the rollback of its
// work). A batch's transaction (db.WithPipelinedTx) is pipelined too: its keys'
// claim, with the claim's lock timeout set and reset, travels with BEGIN
// (ClaimTx), and on a connection of kept plans (db.PlanMode) with the work's
// first statement (Work), which leaves out by itself the requests whose keys
// the claim did not take (ClaimedHere); their answers travel with COMMIT
// (SettleTx) there. So keys cost a batch's requests no round trip on kept
// plans, and two (the claim, the answers) on the main pool; a batch that
// finds a key taken already spends four more on the take-over of expired
// keys and their work. A request's work's first
// statement runs before the claim's answer is read: when the key is taken, it
// is rolled back to the savepoint after the claim, and the remembered answer
// replayed. AfterCommit callbacks registered by the work run only when its work
// commits: not when it ends in a remembered business error, whose work is
// rolled back to the savepoint.
//
// DoBatched leaves a request to a use case that runs it in a batch with
// others, in a transaction of its own making (order, payment and refund
// creation), and runs it as Do does when the batch did not do its work. A
// batch claims its keyed requests' keys and writes their answers in that
// transaction (ClaimTx, SettleTx), under the same rules as Do: a key
// already claimed is never claimed again until it expires, and its request
// runs alone. A key held by a running transaction is waited for at most
// claimWait (50 ms), and then the batch runs again without its keyed
// requests, which run alone and wait there (ErrClaimWait).
//
// A use case's last writes (its events with their delivery jobs, whose ids
// it reads as they come back: db.QueryAtCommit; River's insert
// notification: db.ExecAtCommit) wait and travel with the COMMIT (and a keyed
// request's answer). Should one fail, the COMMIT is not run: the request
// fails and nothing of it is kept, its key included. A refused request's
// statements not yet sent are dropped with the rest of its work.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"paygate/db"
	"paygate/merchants"
	"paygate/web"
)

const (
	// Header is the request header that carries the key.
	Header = "Idempotency-Key"
	// ReplayedHeader marks a replayed response.
	ReplayedHeader = "Idempotent-Replayed"
	// TTL is how long a key is remembered.
	TTL = 24 * time.Hour
)

// Func does a request's work in tx and returns the status and the value to
// answer with. A *web.Error is a business answer: its writes are undone and
// the error is remembered like a success. Any other error rolls everything
// back and is not remembered.
type Func func(ctx context.Context, tx pgx.Tx) (status int, v any, err error)

// Keys runs requests under their Idempotency-Key.
type Keys struct {
	pool *pgxpool.Pool
	// Now is the clock; tests move it to expire keys.
	Now func() time.Time
	// LockTimeout bounds how long a repeat waits for the request it repeats
	// before answering 409.
	LockTimeout time.Duration
}

func New(pool *pgxpool.Pool) *Keys {
	return &Keys{pool: pool, Now: time.Now, LockTimeout: 5 * time.Second}
}

// Do runs fn in one transaction and answers its result. With an
// Idempotency-Key the answer is remembered in that same transaction, and a
// repeat is answered from memory. body is the request body that was already
// decoded (a malformed body never reaches Do, so it is not remembered), or a
// fingerprint of it where the body holds secrets such as a card number.
func (k *Keys) Do(c echo.Context, body []byte, fn Func) error {
	key, present, err := parseKey(c.Request().Header.Values(Header))
	if err != nil {
		return err
	}
	if !present {
		return busy(k.run(c, fn))
	}
	return k.keyed(c, key, RequestHash(body), fn)
}

// DoBatched is Do for a use case that runs its requests in a batch with
// others, in a transaction of its own making (batched). A keyed request is
// handed its claim (nil without a key), which the batch claims and settles
// with its work (ClaimTx, SettleTx). Should batched not do the work (done
// false), the request runs as Do runs it.
func (k *Keys) DoBatched(c echo.Context, body []byte, batched func(context.Context, *Claim) (status int, v any, done bool, err error), fn Func) error {
	key, present, err := parseKey(c.Request().Header.Values(Header))
	if err != nil {
		return err
	}
	var claim *Claim
	if present {
		claim = &Claim{MerchantID: merchants.FromContext(c).ID, Route: routeOf(c), Key: key, Hash: RequestHash(body), At: k.Now()}
	}
	status, v, done, err := batched(c.Request().Context(), claim)
	if err != nil {
		return busy(err)
	}
	if done {
		return web.JSON(c, status, v)
	}
	if !present {
		return busy(k.run(c, fn))
	}
	return k.keyed(c, key, claim.Hash, fn)
}

// routeOf is what a key is scoped by, beside its merchant: the request's
// method and path.
func routeOf(c echo.Context) string { return c.Request().Method + " " + c.Request().URL.Path }

// errKeyTaken is the claim's answer when another request holds the key:
// the work is told so (never pgx.ErrNoRows, which a use case would take for
// its own "not found") and its first statement is undone.
var errKeyTaken = errors.New("idempotency: the key is taken")

// repeatLockTimeout bounds what the work's first statement of a repeat
// waits for a lock: the statement is undone in any case, and a repeat of a
// completed request answers from memory at once rather than behind the locks
// of requests it does not need.
const repeatLockTimeout = "10ms"

// keyed runs a request under its key in no more round trips than the work
// takes without one: the claim of the key, the lock timeout that bounds it
// and the savepoint after it travel with BEGIN and the work's first
// statement, the remembered answer with COMMIT.
//
// The work's first statement is sent before the claim's answer is known,
// and runs after the savepoint. When the key turns out to be taken, that
// statement runs under a lock timeout of repeatLockTimeout, is rolled back
// to the savepoint and the remembered answer replayed: a repeat keeps
// nothing of the work it repeats. When the claim fails (its lock timeout, a
// deadlock), the statements after it are skipped, and the work is handed
// the claim's error.
func (k *Keys) keyed(c echo.Context, key string, hash []byte, fn Func) error {
	ctx := c.Request().Context()
	m := merchants.FromContext(c)
	route := routeOf(c)

	tx, err := db.BeginPipelined(ctx, k.pool)
	if err != nil {
		return err
	}
	defer tx.Release(ctx)
	end := db.Track(tx)
	defer end(db.RolledBack)

	now := k.Now()
	// Claim the key. A concurrent claim blocks on the INSERT until the first
	// transaction ends (at most LockTimeout); an expired key is taken over as
	// if new. Once the key is ours, the work waits on its locks like any
	// request, bounded by the request's deadline (and any lock_timeout the
	// operator set): the timeout goes back to its default before it. A
	// statement that fails ends the batch, so nothing after it runs.
	claim := &pgx.Batch{}
	claim.Queue(`SELECT set_config('lock_timeout', $1, true)`, strconv.FormatInt(k.LockTimeout.Milliseconds(), 10)+"ms")
	claimAt := claim.Len()
	claim.Queue(`
		INSERT INTO idempotency_keys (merchant_id, route, key, request_hash, status_code, response_body, created_at, expires_at)
		VALUES ($1, $2, $3, $4, 0, '', $5, $6)
		ON CONFLICT (merchant_id, route, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, status_code = 0, response_body = '',
		    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		WHERE idempotency_keys.expires_at <= EXCLUDED.created_at
		RETURNING true`, m.ID, route, key, hash, now, now.Add(TTL))
	claim.Queue(`SET LOCAL lock_timeout TO DEFAULT`)
	// Only when the key is someone else's (answered: status_code is set).
	claim.Queue(`SELECT set_config('lock_timeout', $4, true) WHERE NOT EXISTS (
		SELECT 1 FROM idempotency_keys WHERE merchant_id = $1 AND route = $2 AND key = $3 AND status_code = 0)`,
		m.ID, route, key, repeatLockTimeout)
	claim.Queue(`SAVEPOINT idempotent_work`)
	tx.SendFirst(claim, func(results pgx.BatchResults) error {
		for i := range claim.Len() {
			var err error
			if i == claimAt {
				var claimed bool
				if err = results.QueryRow().Scan(&claimed); errors.Is(err, pgx.ErrNoRows) {
					err = errKeyTaken
				}
			} else {
				_, err = results.Exec()
			}
			if err != nil {
				return err
			}
		}
		return nil
	})

	status, v, err := fn(ctx, tx)
	if claimErr := tx.FirstResult(ctx); claimErr != nil {
		tx.DropAtCommit()
		switch {
		case isLockTimeout(claimErr):
			return web.Errorf(web.CodeIdempotencyConflict, "A request with this Idempotency-Key is still being processed; retry later")
		case errors.Is(claimErr, errKeyTaken):
			if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT idempotent_work`); err != nil {
				return err
			}
			return busy(replay(ctx, c, tx, m.ID, route, key, hash))
		}
		return busy(claimErr) // a deadlock broken on the claim: retry
	}
	err = busy(err)
	answer := &pgx.Batch{}
	var apiErr *web.Error
	if errors.As(err, &apiErr) && apiErr.Code != web.CodeUnavailable {
		tx.DropAtCommit() // the work is undone: so are its statements not sent yet
		// In a round trip of its own: pgx prepares the statements of a
		// batch before it sends them, which a transaction aborted by the
		// work's failed statement refuses (the answer's UPDATE, on a
		// connection that has not prepared it yet).
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT idempotent_work`); err != nil {
			return err
		}
		// The work is undone: so are its after-commit callbacks.
		end(db.RolledBack)
		end = db.Track(tx)
		status, v = apiErr.HTTPStatus(), map[string]*web.Error{"error": apiErr}
	} else if err != nil {
		return err
	}
	resp, err := web.Marshal(v)
	if err != nil {
		return err
	}
	answer.Queue(`
		UPDATE idempotency_keys SET status_code = $4, response_body = $5
		WHERE merchant_id = $1 AND route = $2 AND key = $3`, m.ID, route, key, status, resp)
	err = tx.CommitWith(ctx, answer)
	end(db.CommitOutcome(err))
	if err != nil {
		return busy(err) // a statement sent with the COMMIT may meet a lock too
	}
	return c.Blob(status, echo.MIMEApplicationJSON, resp)
}

// run runs fn in a transaction whose BEGIN travels with fn's first
// statement.
func (k *Keys) run(c echo.Context, fn Func) error {
	ctx := c.Request().Context()
	tx, err := db.BeginPipelined(ctx, k.pool)
	if err != nil {
		return err
	}
	defer tx.Release(ctx)
	end := db.Track(tx)
	defer end(db.RolledBack)
	status, v, err := fn(ctx, tx)
	if err != nil {
		return err
	}
	err = tx.Commit(ctx)
	end(db.CommitOutcome(err))
	if err != nil {
		return err
	}
	return web.JSON(c, status, v)
}

func replay(ctx context.Context, c echo.Context, tx pgx.Tx, merchantID any, route, key string, hash []byte) error {
	var storedHash, resp []byte
	var status int
	err := tx.QueryRow(ctx, `
		SELECT request_hash, status_code, response_body FROM idempotency_keys
		WHERE merchant_id = $1 AND route = $2 AND key = $3`, merchantID, route, key).Scan(&storedHash, &status, &resp)
	if err != nil {
		return err
	}
	if status == 0 {
		// Never committed so: a claim is answered, or dropped, by the
		// transaction that makes it.
		return fmt.Errorf("idempotency: key %q of %v is remembered without an answer", key, merchantID)
	}
	if !bytes.Equal(storedHash, hash) {
		return web.FieldError(web.CodeIdempotencyReused, Header,
			"This Idempotency-Key was already used with a different request body")
	}
	c.Response().Header().Set(ReplayedHeader, "true")
	return c.Blob(status, echo.MIMEApplicationJSON, resp)
}

// parseKey accepts 1–255 printable ASCII characters, or the same as an
// RFC 8941 sf-string in double quotes.
func parseKey(values []string) (key string, present bool, err error) {
	if len(values) == 0 {
		return "", false, nil
	}
	bad := func(why string) error { return web.BadField(Header, "Idempotency-Key "+why) }
	if len(values) > 1 {
		return "", true, bad("must be sent once")
	}
	key = values[0]
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	if key == "" {
		return "", true, bad("must not be empty")
	}
	if len(key) > 255 {
		return "", true, bad("must be at most 255 characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", true, bad("must be printable ASCII")
		}
	}
	return key, true, nil
}

// RequestHash identifies a request body independently of key order and
// white space, so that a client re-encoding the same request is not refused.
func RequestHash(body []byte) []byte {
	canonical := body
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) == nil {
		if b, err := web.Marshal(v); err == nil {
			canonical = b
		}
	}
	sum := sha256.Sum256(canonical)
	return sum[:]
}

func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// busy answers a lock that could not be had (lock_not_available, or a
// deadlock PostgreSQL broke by cancelling us) as 503: the request did
// nothing and may be sent again as it is.
func busy(err error) error {
	var pgErr *pgconn.PgError
	if isLockTimeout(err) || (errors.As(err, &pgErr) && pgErr.Code == "40P01") {
		return web.Errorf(web.CodeUnavailable, "The object is busy with another request; retry shortly")
	}
	return err
}

// IsReplay reports whether a response was replayed; for tests and logs.
func IsReplay(h http.Header) bool { return strings.EqualFold(h.Get(ReplayedHeader), "true") }
