package web

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Time is a timestamp as the API shows it: RFC 3339, UTC, whole seconds
// ("2026-11-25T10:31:00Z"). It scans from and writes to timestamptz, so
// domain structs use it directly, with *Time for nullable columns.
type Time time.Time

func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(time.RFC3339) + `"`), nil
}

func (t *Time) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := tt.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Time(tt)
	return nil
}

func (t *Time) ScanTimestamptz(v pgtype.Timestamptz) error {
	*t = Time(v.Time)
	return nil
}

func (t Time) TimestamptzValue() (pgtype.Timestamptz, error) {
	return pgtype.Timestamptz{Time: time.Time(t), Valid: true}, nil
}

// Unix is the time in unix seconds.
func (t Time) Unix() int64 { return time.Time(t).Unix() }
