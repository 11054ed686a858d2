package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/idempotency"
	"paygate/merchants"
)

// withTx are the transactions a batch's keys are claimed and settled in:
// pgx's (db.WithTx), and a pipelined one (db.WithPipelinedTx), where the
// answers travel with the COMMIT on a connection of kept plans, and are
// sent at once on the main pool, where their statement is planned each
// time.
func withTx(a *app.App) map[string]func(context.Context, func(pgx.Tx) error) error {
	on := func(with func(context.Context, *pgxpool.Pool, func(pgx.Tx) error) error, pool *pgxpool.Pool) func(context.Context, func(pgx.Tx) error) error {
		return func(ctx context.Context, fn func(pgx.Tx) error) error { return with(ctx, pool, fn) }
	}
	return map[string]func(context.Context, func(pgx.Tx) error) error{
		"pgx":                     on(db.WithTx, a.Pool),
		"pipelined":               on(db.WithPipelinedTx, a.Pool),
		"pipelined on kept plans": on(db.WithPipelinedTx, a.KeptPlans.Kept()),
	}
}

// inEachTx runs test on one app once for each of withTx's transactions, as
// a subtest of its name, with a route of its own for the keys.
func inEachTx(t *testing.T, test func(t *testing.T, a *app.App, route string, withTx func(context.Context, func(pgx.Tx) error) error)) {
	t.Parallel()
	a := apptest.New(t)
	for name, withTx := range withTx(a) {
		t.Run(name, func(t *testing.T) { test(t, a, "POST /test/"+name, withTx) })
	}
}

// A batch claims the keys no one holds and those whose answer has
// expired, not an answered one nor the second claim of a key in the batch;
// its work (idempotency.Work) sees as claimed only what the claim took; it
// writes the answers of the work it did and drops the other claims.
func TestABatchClaimsTheKeysNoOneHolds(t *testing.T) {
	inEachTx(t, func(t *testing.T, a *app.App, route string, withTx func(context.Context, func(pgx.Tx) error) error) {
		ctx := context.Background()
		now := time.Now()
		claim := func(key string, at time.Time) *idempotency.Claim {
			return &idempotency.Claim{MerchantID: merchants.TestMerchantID, Route: route, Key: key, Hash: []byte(key), At: at}
		}
		// Answered: both now; the batch's claim of "expired" is made when its
		// answer has expired.
		require.NoError(t, withTx(ctx, func(tx pgx.Tx) error {
			if _, err := idempotency.ClaimTx(ctx, tx, []*idempotency.Claim{claim("answered", now), claim("expired", now)}, nil); err != nil {
				return err
			}
			return idempotency.SettleTx(ctx, tx, []idempotency.Settled{
				{Claim: claim("answered", now), Status: 201, Body: []byte(`{"old":1}`)},
				{Claim: claim("expired", now), Status: 201, Body: []byte(`{"old":2}`)},
			})
		}))

		claims := []*idempotency.Claim{
			claim("new", now), nil, claim("answered", now), claim("expired", apptest.PastExpiry()), claim("new", now), claim("dropped", now),
		}
		// The work is asked for the requests without a key or first of
		// theirs, and its statement sees claimed (ClaimedHere) the keys the
		// claim took; then for the expired key alone, once taken over.
		var asked [][]bool
		var seen [][]int
		// Planned each time on the main pool, it goes after the claim
		// there, and in the claim's batch on kept plans.
		workIn := func(tx pgx.Tx) idempotency.Work {
			return func(do []bool) (string, []any, func(pgx.Rows) error) {
				asked = append(asked, do)
				routes, keys := make([]*string, len(claims)), make([]*string, len(claims))
				for i, c := range claims {
					if c != nil {
						routes[i], keys[i] = &c.Route, &c.Key
					}
				}
				return `SELECT (c.i - 1)::int FROM unnest($1::text[], $2::text[], $3::bool[]) WITH ORDINALITY AS c(route, key, todo, i)
				WHERE c.todo AND ` + idempotency.ClaimedHere("$4::uuid", "c.route", "c.key") + ` ORDER BY c.i`,
					[]any{db.PlanMode(tx), routes, keys, do, merchants.TestMerchantID}, func(rows pgx.Rows) error {
						is, err := pgx.CollectRows(rows, pgx.RowTo[int])
						seen = append(seen, is)
						return err
					}
			}
		}
		require.NoError(t, withTx(ctx, func(tx pgx.Tx) error {
			claimed, err := idempotency.ClaimTx(ctx, tx, claims, workIn(tx))
			require.NoError(t, err)
			require.Equal(t, []bool{true, false, false, true, false, true}, claimed)
			require.Equal(t, [][]bool{{true, true, true, true, false, true}, {false, false, false, true, false, false}}, asked)
			require.Equal(t, [][]int{{0, 1, 5}, {3}}, seen)
			return idempotency.SettleTx(ctx, tx, []idempotency.Settled{
				{Claim: claims[0], Status: 201, Body: []byte(`{"new":1}`)},
				{Claim: claims[3], Status: 400, Body: []byte(`{"new":2}`)},
				{Claim: claims[5]},
			})
		}))

		rows, err := a.Pool.Query(ctx, `SELECT key, status_code, convert_from(response_body, 'UTF8') FROM idempotency_keys
				WHERE merchant_id = $1 AND route = $2 ORDER BY key`, merchants.TestMerchantID, route)
		require.NoError(t, err)
		type row struct {
			Key    string
			Status int
			Body   string
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		require.NoError(t, err)
		require.Equal(t, []row{
			{"answered", 201, `{"old":1}`},
			{"expired", 400, `{"new":2}`}, // taken over
			{"new", 201, `{"new":1}`},
		}, got, "the dropped claim is gone")
	})
}

// A batch that would settle a key it did not claim fails, and nothing of
// it commits: the check is the statement's own, whether it travels with
// the COMMIT or not.
func TestABatchSettlesOnlyTheKeysItClaimed(t *testing.T) {
	inEachTx(t, func(t *testing.T, a *app.App, route string, withTx func(context.Context, func(pgx.Tx) error) error) {
		ctx := context.Background()
		mine, other := apptest.Claim(route, "mine", time.Now()), apptest.Claim(route, "other", time.Now())
		err := withTx(ctx, func(tx pgx.Tx) error {
			if _, err := idempotency.ClaimTx(ctx, tx, []*idempotency.Claim{mine}, nil); err != nil {
				return err
			}
			return idempotency.SettleTx(ctx, tx, []idempotency.Settled{
				{Claim: mine, Status: 201, Body: []byte(`{}`)},
				{Claim: other, Status: 201, Body: []byte(`{}`)},
			})
		})
		require.ErrorContains(t, err, "idempotency: settled 1 of the batch's 2 keys")
		require.NotErrorIs(t, err, db.ErrCommitUnknown)
		var n int
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE route = $1`, mine.Route).Scan(&n))
		require.Zero(t, n, "the claim was not kept")
	})
}

// A key claimed by a transaction still running fails the batch's claim
// soon (ErrClaimWait), rather than holding the batch until that
// transaction ends, and its work is not done.
func TestABatchDoesNotWaitForAKeyInProgress(t *testing.T) {
	inEachTx(t, func(t *testing.T, a *app.App, route string, withTx func(context.Context, func(pgx.Tx) error) error) {
		ctx := context.Background()
		held := apptest.Claim(route, "held", time.Now())
		require.Equal(t, []bool{true}, apptest.Hold(t, a, held))

		// Bounded well beyond the claim's wait, so that waiting for the
		// holder fails the test instead of hanging it.
		bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		worked := false // the work, in the claim's batch or after it, is not done
		err := withTx(bounded, func(tx pgx.Tx) error {
			_, err := idempotency.ClaimTx(bounded, tx, []*idempotency.Claim{nil, held}, func([]bool) (string, []any, func(pgx.Rows) error) {
				return `SELECT 1`, []any{db.PlanMode(tx)}, func(rows pgx.Rows) error {
					worked = true
					rows.Close()
					return rows.Err()
				}
			})
			return err
		})
		require.ErrorIs(t, err, idempotency.ErrClaimWait)
		require.False(t, worked)
		require.NoError(t, bounded.Err())
		require.False(t, errors.Is(err, context.DeadlineExceeded))
	})
}

// A batch that finds a key answered neither locks nor waits for it: two
// batches running at once with a repeat of one answered request both leave
// it to run alone (a replay), without a wait.
func TestABatchDoesNotLockAnAnsweredKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := apptest.New(t)
	answered := apptest.Claim("POST /test", "answered", time.Now())
	apptest.Remember(t, a, answered)
	require.Equal(t, []bool{false}, apptest.Hold(t, a, answered))

	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		claimed, err := idempotency.ClaimTx(ctx, tx, []*idempotency.Claim{answered}, nil)
		require.Equal(t, []bool{false}, claimed)
		return err
	}), "not ErrClaimWait: the first batch holds no lock on the key")
}
