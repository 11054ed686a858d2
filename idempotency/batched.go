package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

type claimID struct {
	merchantID uuid.UUID
	route, key string
}

// ClaimTx claims, in one statement, the keys of claims (nil: a request
// without a key) that no one holds, or whose answer has expired, and
// reports for each whether it is the batch's. Of claims of one key, the
// first is claimed; the others run alone, after the batch (Do replays them
// then). Keys are claimed in one order, so that batches that wait for one
// another's keys never wait in a cycle.
func ClaimTx(ctx context.Context, tx pgx.Tx, claims []*Claim) ([]bool, error) {
	claimed := make([]bool, len(claims))
	first := make(map[claimID]int, len(claims))
	var merchantIDs []uuid.UUID
	var routes, keys []string
	var hashes [][]byte
	var ats, expire []time.Time
	for i, c := range claims {
		if c == nil {
			continue
		}
		id := claimID{c.MerchantID, c.Route, c.Key}
		if _, repeated := first[id]; repeated {
			continue
		}
		first[id] = i
		merchantIDs, routes, keys = append(merchantIDs, c.MerchantID), append(routes, c.Route), append(keys, c.Key)
		hashes, ats, expire = append(hashes, c.Hash), append(ats, c.At), append(expire, c.At.Add(TTL))
	}
	if len(first) == 0 {
		return claimed, nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('lock_timeout', $1, true)`, claimWait)
	b.Queue(`
		INSERT INTO idempotency_keys (merchant_id, route, key, request_hash, status_code, response_body, created_at, expires_at)
		SELECT c.merchant_id, c.route, c.key, c.hash, 0, '', c.at, c.expires_at
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[])
		     AS c(merchant_id, route, key, hash, at, expires_at)
		ORDER BY c.merchant_id, c.route, c.key
		ON CONFLICT (merchant_id, route, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, status_code = 0, response_body = '',
		    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		WHERE idempotency_keys.expires_at <= EXCLUDED.created_at
		RETURNING merchant_id, route, key`,
		merchantIDs, routes, keys, hashes, ats, expire).Query(func(rows pgx.Rows) error {
		var id claimID
		_, err := pgx.ForEachRow(rows, []any{&id.merchantID, &id.route, &id.key}, func() error {
			i, ok := first[id]
			if !ok {
				return fmt.Errorf("idempotency: claimed a key not asked for")
			}
			claimed[i] = true
			return nil
		})
		return err
	})
	b.Queue(`SET LOCAL lock_timeout TO DEFAULT`)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if isLockTimeout(err) {
			return nil, fmt.Errorf("%w: %w", ErrClaimWait, err)
		}
		return nil, err
	}
	return claimed, nil
}

// SettleTx writes the answers of the keys a batch claimed (ClaimTx) and did
// the work of, and drops the claims of the others, in at most two
// statements sent together.
func SettleTx(ctx context.Context, tx pgx.Tx, settled []Settled) error {
	var answered, dropped struct {
		merchantIDs []uuid.UUID
		routes      []string
		keys        []string
	}
	var statuses []int32
	var bodies [][]byte
	for _, s := range settled {
		to := &dropped
		if s.Status != 0 {
			to = &answered
			statuses, bodies = append(statuses, int32(s.Status)), append(bodies, s.Body)
		}
		to.merchantIDs, to.routes, to.keys = append(to.merchantIDs, s.Claim.MerchantID), append(to.routes, s.Claim.Route), append(to.keys, s.Claim.Key)
	}
	rowsEach := func(n int) func(pgconn.CommandTag) error {
		return func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != int64(n) {
				return fmt.Errorf("idempotency: settled %d of the batch's %d keys", tag.RowsAffected(), n)
			}
			return nil
		}
	}
	b := &pgx.Batch{}
	if len(answered.keys) > 0 {
		b.Queue(`
			UPDATE idempotency_keys k SET status_code = a.status, response_body = a.body
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[]) AS a(merchant_id, route, key, status, body)
			WHERE k.merchant_id = a.merchant_id AND k.route = a.route AND k.key = a.key`,
			answered.merchantIDs, answered.routes, answered.keys, statuses, bodies).Exec(rowsEach(len(answered.keys)))
	}
	if len(dropped.keys) > 0 {
		b.Queue(`
			DELETE FROM idempotency_keys k
			USING unnest($1::uuid[], $2::text[], $3::text[]) AS d(merchant_id, route, key)
			WHERE k.merchant_id = d.merchant_id AND k.route = d.route AND k.key = d.key`,
			dropped.merchantIDs, dropped.routes, dropped.keys).Exec(rowsEach(len(dropped.keys)))
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
