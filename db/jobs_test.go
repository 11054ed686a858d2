package db_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"paygate/db"
)

// A job whose time has come runs; one due within moments sleeps through the
// wait in its worker; one due later snoozes towards its time, at most 5 s at
// once; a stopping worker stops sleeping.
func TestSnoozeUntil(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	require.NoError(t, db.SnoozeUntil(ctx, time.Now().Add(-time.Second)))

	at := time.Now().Add(2 * time.Millisecond)
	require.NoError(t, db.SnoozeUntil(ctx, at), "a moment's wait is slept through, not snoozed")
	require.False(t, time.Now().Before(at), "it returned only once its time had come")

	var snooze *rivertype.JobSnoozeError
	require.True(t, errors.As(db.SnoozeUntil(ctx, time.Now().Add(time.Hour)), &snooze))
	require.Equal(t, 5*time.Second, snooze.Duration)

	stopped, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, db.SnoozeUntil(stopped, time.Now().Add(5*time.Millisecond)), context.Canceled)
}

// A reconciler goes on with another batch while one comes back full, so a
// crashed process's held work is resumed in one run; it stops at the first
// error.
func TestResumeInBatchesGoesOnWhileFull(t *testing.T) {
	t.Parallel()
	runs := []int{db.ResumeBatch, db.ResumeBatch, 3, db.ResumeBatch}
	calls := 0
	n, err := db.ResumeInBatches(func() (int, error) { calls++; return runs[calls-1], nil })
	require.NoError(t, err)
	require.Equal(t, 2*db.ResumeBatch+3, n)
	require.Equal(t, 3, calls)

	failed := errors.New("database away")
	calls = 0
	n, err = db.ResumeInBatches(func() (int, error) {
		calls++
		if calls == 2 {
			return 0, failed
		}
		return db.ResumeBatch, nil
	})
	require.ErrorIs(t, err, failed)
	require.Equal(t, db.ResumeBatch, n)
}
