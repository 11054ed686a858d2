package db

import (
	"fmt"
	"io/fs"
	"regexp"
	"strings"
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

// migrationTouches finds the tables a migration's statement locks.
var migrationTouches = regexp.MustCompile(`(?i)\b(?:ALTER TABLE|ALTER INDEX|DROP TABLE|LOCK TABLE|UPDATE|DELETE FROM|TRUNCATE|REFERENCES|INDEX(?: CONCURRENTLY)?(?: IF NOT EXISTS)?(?: \w+)? ON|TRIGGER\b[^;]*?\bON)\s+(?:IF EXISTS\s+)?(?:ONLY\s+)?(\w+)`)

func TestMigrationTouches(t *testing.T) {
	for stmt, want := range map[string]string{
		"ALTER TABLE payments ADD COLUMN x int":                                "payments",
		"CREATE UNIQUE INDEX a ON payments (x)":                                "payments",
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON webhook_logs (x)":        "webhook_logs",
		"CREATE TRIGGER t AFTER INSERT OR DELETE ON refunds FOR EACH ROW":      "refunds",
		"CREATE TRIGGER t BEFORE UPDATE OF status ON ONLY orders FOR EACH ROW": "orders",
		"LOCK TABLE merchants IN SHARE MODE":                                   "merchants",
		"DROP TABLE IF EXISTS old":                                             "old",
		"UPDATE payments p SET status = 'failed'":                              "payments",
		"merchant_id uuid NOT NULL REFERENCES merchants (id)":                  "merchants",
		"SELECT 1": "",
	} {
		m := migrationTouches.FindStringSubmatch(stmt)
		got := ""
		if m != nil {
			got = m[1]
		}
		require.Equal(t, want, got, stmt)
	}
}

// Every migration that locks a table an earlier one created bounds its wait
// for that lock: a transactional one sets lock_timeout before its first such
// statement (Migrate runs it again later), and one without a transaction
// builds and drops its indexes concurrently, so that writes go on. Queued
// behind a long transaction, a lock request would otherwise hold every
// request for that table behind it during an upgrade.
func TestMigrationsBoundTheirWaitForBusyTables(t *testing.T) {
	// Without a transaction SET LOCAL does nothing: only what takes no lock
	// that holds up writes may run there (a storage parameter's ALTER TABLE
	// takes SHARE UPDATE EXCLUSIVE, as an index built concurrently does).
	noTxAllowed := regexp.MustCompile(`(?i)^(?:(?:CREATE|DROP) (?:UNIQUE )?INDEX CONCURRENTLY|ALTER INDEX \w+ RENAME TO|ALTER TABLE \w+ (?:SET|RESET) \(|ANALYZE|SELECT)\b`)
	creates := regexp.MustCompile(`(?i)\bCREATE TABLE\s+(?:IF NOT EXISTS\s+)?(\w+)`)
	indexChange := regexp.MustCompile(`(?i)\b(?:CREATE (?:UNIQUE )?INDEX|DROP INDEX)\b`)
	files, err := fs.Glob(migrations, "migrations/*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, name := range files {
		b, err := fs.ReadFile(migrations, name)
		require.NoError(t, err)
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		var code strings.Builder
		for line := range strings.Lines(up) {
			line, _, _ = strings.Cut(line, "--")
			code.WriteString(line + "\n")
		}
		noTx := strings.Contains(up, "-- +goose NO TRANSACTION")
		own := map[string]bool{}
		for _, m := range creates.FindAllStringSubmatch(code.String(), -1) {
			own[strings.ToLower(m[1])] = true
		}
		bounded := false
		for stmt := range strings.SplitSeq(code.String(), ";") {
			stmt = strings.Join(strings.Fields(stmt), " ")
			if strings.Contains(strings.ToUpper(stmt), "SET LOCAL LOCK_TIMEOUT") {
				bounded = true
			}
			if noTx {
				if indexChange.MatchString(stmt) {
					require.Contains(t, strings.ToUpper(stmt), "CONCURRENTLY", "%s: %s", name, stmt)
				}
				require.True(t, stmt == "" || noTxAllowed.MatchString(stmt), "%s runs without a transaction what may hold up writes: %s", name, stmt)
				continue
			}
			for _, m := range migrationTouches.FindAllStringSubmatch(stmt, -1) {
				if !own[strings.ToLower(m[1])] {
					require.True(t, bounded, "%s locks %s, created earlier, without a lock_timeout first: %s", name, m[1], stmt)
				}
			}
			if strings.HasPrefix(strings.ToUpper(stmt), "DROP INDEX") {
				require.True(t, bounded, "%s drops an index without a lock_timeout first: %s", name, stmt)
			}
		}
	}
}
