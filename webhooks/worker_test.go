package webhooks

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"soon", 0},
		{"-5", 0},
		{"0", time.Second}, // at least a second: no hot loop on "0"
		{"1", time.Second},
		{" 120 ", 2 * time.Minute},
		{"86400", maxRetryAfter},
		{"99999999999999999999", 0}, // does not fit: unreadable
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), time.Second},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, parseRetryAfter(tc.in, now), "%q", tc.in)
	}
}

func TestScheduleIndexesByFailedAttempt(t *testing.T) {
	t.Parallel()
	s := &Service{Schedule: DefaultSchedule}
	require.Equal(t, time.Minute, s.wait(1), "after the first attempt")
	require.Equal(t, 2*time.Hour, s.wait(4), "before the fifth")
	require.Equal(t, 2*time.Hour, s.wait(9), "past the end: the last wait")
	require.Len(t, DefaultSchedule, maxAttempts-1)
	require.Len(t, TestSchedule, maxAttempts-1)
}
