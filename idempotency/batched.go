package idempotency

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/web"
)

// Claim is a keyed request's claim of its Idempotency-Key, for a use case
// that runs requests in a batch in a transaction of its own (DoBatched).
// The batch claims its requests' keys (ClaimTx), does the work of those it
// claimed, and writes their answers, or drops the claims of those whose
// work it did not do (SettleTx), in that transaction: a key's answer still
// commits with its work, or neither does. A request whose key the batch did
// not claim (answered, in progress, or repeated in the batch) or whose work
// it did not do runs alone as Do runs it, which replays, waits or answers
// why, and remembers that.
type Claim struct {
	MerchantID uuid.UUID
	Route, Key string
	Hash       []byte
	At         time.Time // Keys.Now when the request came
}

// Settled is what a batch did with a key it claimed: the answer to
// remember (Status, Body), or Status 0 when it did not do the work, and
// the claim is dropped for the request to run alone.
type Settled struct {
	Claim  *Claim
	Status int
	Body   []byte
}

// ErrClaimWait is ClaimTx's error when a key is claimed by a transaction
// still running (a repeat of a request in progress): the batch's
// transaction is failed, and is run again without its keyed requests, which
// then run alone and wait for that transaction there (Do), so that one
// repeat does not hold up a whole batch.
var ErrClaimWait = errors.New("idempotency: a key of the batch is held by a request in progress")

// claimWait bounds how long a batch's claim waits for a key held by a
// running transaction before it gives up (ErrClaimWait).
const claimWait = "50ms"

// setClaimWait and resetLockTimeout set claimWait for a claim, and the
// timeout back to its default after it.
const (
	setClaimWait     = `SET LOCAL lock_timeout = '` + claimWait + `'`
	resetLockTimeout = `SET LOCAL lock_timeout TO DEFAULT`
)

type claimID struct {
	merchantID uuid.UUID
	route, key string
}

// Work is a batch's first statement of work, which ClaimTx sends in its
// claim's round trip where it can go in a batch (db.BatchArgs: on a
// connection of kept plans), and in a round trip of its own after the claim
// where not. ClaimTx calls it with the requests it may do (do[i]: one
// without a key, or the first of its key in the batch); it returns its
// statement (sql and args as tx.Query takes them, sql "" for none) and scan,
// which reads its rows. The statement runs before the claim's answer is
// read, so it must itself leave out each keyed request whose key its
// transaction has not claimed (ClaimedHere). Should expired keys be taken
// over, ClaimTx calls it again, for those requests alone.
type Work func(do []bool) (sql string, args []any, scan func(pgx.Rows) error)

// ClaimedHere is a condition for a Work's statement: that the key named by
// the SQL expressions merchantID, route and key is claimed by the
// statement's own transaction, or that key is NULL (a request without a
// key). A claimed key's row has status_code 0 until its answer is written,
// and every transaction writes its claims' answers, or drops them, before
// it commits (SettleTx, Do): so the only row a statement sees with status 0
// is one its own transaction claimed. The key's unique index finds it.
// (Its alias, claim_row, is not to be used by the expressions.)
func ClaimedHere(merchantID, route, key string) string {
	return `(` + key + ` IS NULL OR EXISTS (SELECT FROM idempotency_keys claim_row WHERE claim_row.merchant_id = ` + merchantID +
		` AND claim_row.route = ` + route + ` AND claim_row.key = ` + key + ` AND claim_row.status_code = 0))`
}

// ClaimTx claims the keys of claims (nil: a request without a key) that no
// one holds, or whose answer has expired, reports for each whether it is
// the batch's, and runs work (nil: none) for the requests it may do. Of
// claims of one key, the first is claimed; the others run alone, after the
// batch (Do replays them then). New keys are claimed in one statement, and
// expired ones, should a key be taken, taken over in a second; each takes
// its keys in one order, so that batches that wait for one another's keys
// never wait in a cycle. An answered key is neither locked nor waited for
// (ON CONFLICT DO NOTHING). Both are bounded by claimWait. The claim is
// sent in one batch with the lock timeout's set and reset around it, and
// work's statement after them where it can go in a batch: in a pipelined
// transaction (db.WithPipelinedTx) all of it travels with BEGIN, so that
// the keys cost the batch no round trip. The take-over reads the keys'
// table, so it is planned each time, or kept on grown tables (db.PlanMode),
// in round trips of its own, and the work of the keys it takes over in one
// more. After an error, tx is to be rolled back.
func ClaimTx(ctx context.Context, tx pgx.Tx, claims []*Claim, work Work) ([]bool, error) {
	claimed := make([]bool, len(claims))
	do := make([]bool, len(claims))
	var first map[claimID]int // made for the first key: a batch without keys costs nothing
	var k keyArrays
	for i, c := range claims {
		if c == nil {
			do[i] = true
			continue
		}
		if first == nil {
			first = make(map[claimID]int, len(claims))
		}
		id := claimID{c.MerchantID, c.Route, c.Key}
		if _, repeated := first[id]; repeated {
			continue
		}
		first[id] = i
		do[i] = true
		k.add(c)
	}
	// The work now, or where it goes: after the claim, in its batch or not.
	var sql string
	var args []any
	var scan func(pgx.Rows) error
	if work != nil {
		sql, args, scan = work(do)
	}
	if len(first) == 0 {
		if sql == "" {
			return claimed, nil
		}
		if err := db.QueryScan(ctx, tx, scan, sql, args...); err != nil {
			return nil, err
		}
		return claimed, nil
	}
	mark := func(rows pgx.Rows, into []bool) (n int, err error) {
		var id claimID
		_, err = pgx.ForEachRow(rows, []any{&id.merchantID, &id.route, &id.key}, func() error {
			i, ok := first[id]
			if !ok || claimed[i] {
				return fmt.Errorf("idempotency: claimed a key not asked for, or twice")
			}
			claimed[i] = true
			if into != nil {
				into[i] = true
			}
			n++
			return nil
		})
		return n, err
	}
	// The claim travels with its lock timeout and the timeout's reset in
	// one batch (with BEGIN, in a pipelined transaction: db.WithPipelinedTx). Its plan
	// reads no table (the conflicts are found through the key's unique
	// index), so it goes prepared, as a batch sends it, on every pool.
	b := &pgx.Batch{}
	b.Queue(setClaimWait)
	b.Queue(`
		INSERT INTO idempotency_keys (merchant_id, route, key, request_hash, status_code, response_body, created_at, expires_at)
		SELECT c.merchant_id, c.route, c.key, c.hash, 0, '', c.at, c.expires_at
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[])
		     AS c(merchant_id, route, key, hash, at, expires_at)
		ORDER BY c.merchant_id, c.route, c.key
		ON CONFLICT (merchant_id, route, key) DO NOTHING
		RETURNING merchant_id, route, key`,
		k.merchantIDs, k.routes, k.keys, k.hashes, k.ats, k.expire)
	b.Queue(resetLockTimeout)
	batched, inBatch := db.BatchArgs(args)
	inBatch = inBatch && sql != ""
	if inBatch {
		b.Queue(sql, batched...)
	}
	results := tx.SendBatch(ctx, b)
	_, err := results.Exec()
	var n int
	if err == nil {
		rows, _ := results.Query()
		n, err = mark(rows, nil)
		err = waited(err)
	}
	if err == nil {
		_, err = results.Exec()
	}
	if err == nil && inBatch {
		rows, _ := results.Query()
		err = db.ScanRows(rows, scan)
	}
	if closeErr := results.Close(); err == nil {
		err = closeErr
	}
	if err == nil && !inBatch && sql != "" {
		err = db.QueryScan(ctx, tx, scan, sql, args...)
	}
	if err == nil && n < len(first) {
		err = takeOverTx(ctx, tx, &k, mark, make([]bool, len(claims)), work)
	}
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// waited is a claim's error: ErrClaimWait should it have waited claimWait
// for a key.
func waited(err error) error {
	if isLockTimeout(err) {
		return fmt.Errorf("%w: %w", ErrClaimWait, err)
	}
	return err
}

// takeOverTx claims, for ClaimTx, those of the keys k whose answers have
// expired (as Do takes them over), marks them in taken (indexed as
// ClaimTx's claims), and runs work for their requests. It
// reads the keys' table, so it is planned as PlanMode says, and cannot go
// in a batch on the main pool; keys are taken only by repeats.
func takeOverTx(ctx context.Context, tx pgx.Tx, k *keyArrays, mark func(pgx.Rows, []bool) (int, error), taken []bool, work Work) error {
	if _, err := tx.Exec(ctx, setClaimWait); err != nil {
		return err
	}
	rows, _ := tx.Query(ctx, `
		WITH expired AS (
			SELECT k.merchant_id, k.route, k.key, c.hash, c.at, c.expires_at
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[])
			     AS c(merchant_id, route, key, hash, at, expires_at)
			JOIN idempotency_keys k ON k.merchant_id = c.merchant_id AND k.route = c.route AND k.key = c.key
			WHERE k.expires_at <= c.at
			ORDER BY k.merchant_id, k.route, k.key
			FOR UPDATE OF k
		)
		UPDATE idempotency_keys k
		SET request_hash = e.hash, status_code = 0, response_body = '', created_at = e.at, expires_at = e.expires_at
		FROM expired e
		WHERE k.merchant_id = e.merchant_id AND k.route = e.route AND k.key = e.key
		RETURNING k.merchant_id, k.route, k.key`,
		db.PlanMode(tx), k.merchantIDs, k.routes, k.keys, k.hashes, k.ats, k.expire)
	n, err := mark(rows, taken)
	if err != nil {
		return waited(err)
	}
	if _, err := tx.Exec(ctx, resetLockTimeout); err != nil {
		return err
	}
	if n == 0 || work == nil {
		return nil
	}
	if sql, args, scan := work(taken); sql != "" {
		return db.QueryScan(ctx, tx, scan, sql, args...)
	}
	return nil
}

// keyArrays are claims as the columns of unnest(…).
type keyArrays struct {
	merchantIDs  []uuid.UUID
	routes, keys []string
	hashes       [][]byte
	ats, expire  []time.Time
}

func (k *keyArrays) add(c *Claim) {
	k.merchantIDs, k.routes, k.keys = append(k.merchantIDs, c.MerchantID), append(k.routes, c.Route), append(k.keys, c.Key)
	k.hashes, k.ats, k.expire = append(k.hashes, c.Hash), append(k.ats, c.At), append(k.expire, c.At.Add(TTL))
}

// SettleTx writes, in one statement, the answers of the keys a batch
// claimed (ClaimTx) and did the work of, and drops the claims of the others.
// The statement travels with the COMMIT where tx sends statements so
// (db.ExecAtCommit: on a connection of kept plans); it checks that it
// settled every key itself, failing the transaction otherwise, since its
// answer comes back only with the COMMIT's.
func SettleTx(ctx context.Context, tx pgx.Tx, settled []Settled) error {
	if len(settled) == 0 {
		return nil
	}
	n := len(settled)
	merchantIDs, routes, keys := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	statuses, bodies := make([]int32, n), make([][]byte, n)
	for i, s := range settled {
		merchantIDs[i], routes[i], keys[i] = s.Claim.MerchantID, s.Claim.Route, s.Claim.Key
		statuses[i], bodies[i] = int32(s.Status), s.Body
	}
	return db.ExecAtCommit(ctx, tx, `
		WITH s AS (
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[])
			       AS s(merchant_id, route, key, status, body)
		), answered AS (
			UPDATE idempotency_keys k SET status_code = s.status, response_body = s.body
			FROM s
			WHERE s.status <> 0 AND k.merchant_id = s.merchant_id AND k.route = s.route AND k.key = s.key
			RETURNING 1
		), dropped AS (
			DELETE FROM idempotency_keys k USING s
			WHERE s.status = 0 AND k.merchant_id = s.merchant_id AND k.route = s.route AND k.key = s.key
			RETURNING 1
		)
		SELECT CASE WHEN n = $6::bigint THEN n
		       -- an error of the server's own: the transaction fails
		       ELSE ('idempotency: settled ' || n || ' of the batch''s ' || $6::bigint || ' keys')::int END
		FROM (SELECT (SELECT count(*) FROM answered) + (SELECT count(*) FROM dropped) AS n) AS done`,
		db.PlanMode(tx), merchantIDs, routes, keys, statuses, bodies, n)
}

// SettleCreatedTx writes the answers of the keys of reqs that a batch of
// creations claimed (claimed, from ClaimAllTx, at the same indexes):
// 201 with answer(i) for a request it created something for (made), and
// the claim dropped for the others, which run alone (SettleTx).
func SettleCreatedTx[Req Request](ctx context.Context, tx pgx.Tx, reqs []Req, claimed []bool, answer func(i int) (v any, made bool)) error {
	var settled []Settled
	for i, r := range reqs {
		if !claimed[i] {
			continue
		}
		s := Settled{Claim: r.KeyClaim()} // not made: dropped, for the request to run alone
		if v, made := answer(i); made {
			body, err := web.Marshal(v)
			if err != nil {
				return err
			}
			s.Status, s.Body = http.StatusCreated, body
		}
		settled = append(settled, s)
	}
	return SettleTx(ctx, tx, settled)
}

// Request is a request of a batch of API requests (a use case's
// db.Batcher): its deadline (zero: none) and its Idempotency-Key's claim
// (nil: none).
type Request interface {
	Due() time.Time
	KeyClaim() *Claim
}

// ClaimAllTx claims the keys of reqs, and runs work (ClaimTx).
func ClaimAllTx[Req Request](ctx context.Context, tx pgx.Tx, reqs []Req, work Work) ([]bool, error) {
	claims := make([]*Claim, len(reqs))
	for i, r := range reqs {
		claims[i] = r.KeyClaim()
	}
	return ClaimTx(ctx, tx, claims, work)
}

// InBatch runs a batch of API requests with run, but for those whose
// deadlines have passed (db.Due), in a context that ends by the earliest
// deadline of the others, and answers each at its index (the zero value for
// those left out). Should run meet a key held by a request in progress
// (ErrClaimWait), the keyed requests are left out, to run alone and wait
// for it there, and the others are run again without them, under their own
// deadlines.
func InBatch[Req Request, Res any](ctx context.Context, reqs []Req, run func(context.Context, []Req) ([]Res, error)) ([]Res, error) {
	live, at, due, cancel := db.Due(ctx, reqs, Req.Due)
	defer cancel()
	res := make([]Res, len(reqs))
	if len(live) == 0 {
		return res, nil
	}
	made, err := run(due, live)
	if errors.Is(err, ErrClaimWait) {
		var unkeyed []Req
		at = nil
		for i, r := range reqs {
			if r.KeyClaim() == nil {
				unkeyed, at = append(unkeyed, r), append(at, i)
			}
		}
		made, err = InBatch(ctx, unkeyed, run) // no key: no claim to wait for
	}
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		res[i] = made[j]
	}
	return res, nil
}
