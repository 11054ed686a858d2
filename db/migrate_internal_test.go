package db

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"
)

// Only a migration's own lock_timeout is run again: a lock not available
// in a migration that sets none (a role's lock_timeout under an index
// built concurrently) is an error, as is any other error.
func TestOnlyAMigrationsOwnLockTimeoutIsRetried(t *testing.T) {
	failed := func(path, code string) (error, *goose.PartialError) {
		p := &goose.PartialError{Failed: &goose.MigrationResult{Source: &goose.Source{Path: path}},
			Err: &pgconn.PgError{Code: code}}
		return fmt.Errorf("wrapped: %w", p), p
	}
	err, p := failed("00020_order_paid_by_its_payment.sql", "55P03")
	require.True(t, lockTimedOut(err, p))
	err, p = failed("00019_redundant_merchant_keys.sql", "55P03")
	require.True(t, lockTimedOut(err, p))
	err, p = failed("00022_ascending_list_indexes.sql", "55P03")
	require.False(t, lockTimedOut(err, p), "it sets no lock_timeout")
	err, p = failed("00020_order_paid_by_its_payment.sql", "40P01")
	require.False(t, lockTimedOut(err, p), "a deadlock")
	require.False(t, lockTimedOut(&pgconn.PgError{Code: "55P03"}, nil), "not a migration's")
}
